"""De-duplication serialised in the system of record: one face enrolled at
the same instant under two ids through different gateways (and, on
PostgreSQL, through two store processes sharing the database) enrols once;
the other enrolment is referred to adjudication. Right after an erasure the
same id and the same face enrol again, and no reply names the erased."""

from __future__ import annotations

import asyncio

import pytest
from pg import store_env

from tanu.core import config as cfg
from tanu.core import secrets
from tanu.gateway import GatewayService
from tanu.store import StoreService
from tanu.v1 import cases_pb2, common_pb2, identity_pb2, identity_pb2_grpc

from conftest import Cluster, env_for, near, operator_token, unit_vectors
from helpers import enroll

TRIALS = 50
GATEWAYS = 3


@pytest.fixture(params=["sqlite", "postgres"])
async def many(request, nats_server, tmp_path):
    """Two partitions, three gateways; on PostgreSQL two store processes
    (StoreService instances, one relaying) on one schema."""
    with store_env(request.param) as extra:
        async for x in _cluster(nats_server, tmp_path, extra):
            yield x


async def _cluster(nats_server, tmp_path, extra):
    c = Cluster(env_for(nats_server.url, tmp_path, **extra))
    stores: list[StoreService] = []
    gateways: list[GatewayService] = []
    channels = []
    try:
        await c.start_all()
        if "TANU_STORE_DSN" in extra:
            env = {**c.env, "TANU_RELAY_ENABLED": "false"}
            stores.append(await StoreService(cfg.from_env(cfg.StoreConfig, env)).start())
        stubs = [c.stub]
        for _ in range(GATEWAYS - 1):
            g = await GatewayService(cfg.from_env(cfg.GatewayConfig, c.env)).start()
            gateways.append(g)
            ch = secrets.aio_channel(f"127.0.0.1:{g.port}", operator_token(c.env))
            channels.append(ch)
            stubs.append(identity_pb2_grpc.IdentityStub(ch))
        yield c, stubs, len(stores) + 1
    finally:
        for ch in channels:
            await ch.close()
        for g in gateways:
            await g.stop()
        for s in stores:
            await s.stop()
        await c.stop()


async def test_one_face_through_three_gateways_at_once_enrols_once(many):
    c, stubs, store_processes = many
    faces = unit_vectors(TRIALS, seed=71)
    calls = []
    for i in range(TRIALS):
        a, b = stubs[i % GATEWAYS], stubs[(i + 1) % GATEWAYS]
        calls.append(a.Enroll(enroll(f"a-{i}", faces[i]), timeout=60))
        calls.append(b.Enroll(enroll(f"b-{i}", near(faces[i], seed=i)), timeout=60))
    replies = await asyncio.gather(*calls)
    for i in range(TRIALS):
        pair = replies[2 * i : 2 * i + 2]
        enrolled = [r for r in pair if r.enrolled]
        referred = [r for r in pair if r.outcome == "referred"]
        assert len(enrolled) == 1 and len(referred) == 1, (i, pair)
        # The operator (an adjudicator) is told which subject it matched.
        assert referred[0].duplicate_of.subject_id == enrolled[0].subject.subject_id
        assert referred[0].case_id
    cases = await stubs[1].ListCases(cases_pb2.ListCasesRequest(page_size=500))
    assert len(cases.cases) == TRIALS
    assert {x.case_id for x in cases.cases} == {r.case_id for r in replies if r.case_id}
    # Every matched subject's access history records the hit.
    held = cases.cases[0]
    hist = await stubs[2].GetAccessHistory(
        common_pb2.AccessHistoryRequest(subject_id=held.matched.subject_id)
    )
    assert any(e.operation == "dedup_hit" for e in hist.entries)
    assert store_processes == (2 if "TANU_STORE_DSN" in c.env else 1)


async def test_after_an_erasure_the_same_id_and_face_enrol_again_naming_no_one(cluster):
    v = unit_vectors(1, seed=5)[0]
    first = await cluster.stub.Enroll(enroll("erased-soon", v))
    assert first.enrolled
    await cluster.stub.Delete(identity_pb2.DeleteRequest(subject_id="erased-soon", reason="test"))
    # At once: not yet out of any searcher's index perhaps, but out of the store.
    again = await cluster.stub.Enroll(enroll("erased-soon", near(v, seed=2)))
    assert again.enrolled and not again.duplicate_of.subject_id and not again.case_id
    await cluster.stub.Delete(identity_pb2.DeleteRequest(subject_id="erased-soon", reason="test"))
    other = await cluster.stub.Enroll(enroll("someone-else", near(v, seed=3)))
    assert other.enrolled and other.outcome == "enrolled"
    assert "erased-soon" not in str(other)


async def test_beyond_the_window_the_indexed_gallery_still_stops_a_duplicate(nats_server, tmp_path):
    # A window of 0 s: the store compares no recent template itself, so only
    # the gateway's gallery candidates (from the searchers) can stop it.
    c = Cluster(env_for(nats_server.url, tmp_path, TANU_DEDUP_WINDOW_S="0"))
    try:
        await c.start_all()
        v = unit_vectors(1, seed=9)[0]
        first = await c.stub.Enroll(enroll("indexed", v, wait_indexed=True), timeout=30)
        assert first.enrolled and first.indexed
        dup = await c.stub.Enroll(enroll("late-twin", near(v, seed=4)))
        assert dup.outcome == "referred" and dup.duplicate_of.subject_id == "indexed"
    finally:
        await c.stop()


async def test_an_erasure_through_any_store_process_leaves_every_window(many):
    # Store processes answer from one queue group: enrolments, erasures and
    # re-enrolments land on either; each compares only what the database holds.
    c, stubs, _ = many
    faces = unit_vectors(6, seed=81)
    for i, face in enumerate(faces):
        assert (await stubs[i % GATEWAYS].Enroll(enroll(f"gone-{i}", face))).enrolled
        await stubs[(i + 1) % GATEWAYS].Delete(
            identity_pb2.DeleteRequest(subject_id=f"gone-{i}", reason="test")
        )
        again = await stubs[(i + 2) % GATEWAYS].Enroll(enroll(f"new-{i}", near(face, seed=i)))
        assert again.enrolled and not again.duplicate_of.subject_id, (i, again)
