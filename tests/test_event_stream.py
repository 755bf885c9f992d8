"""The event stream is what makes searchers derived state: a searcher
rebuilt from scratch misses nothing, and relay or store restarts lose no
event and apply none twice."""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
from contextlib import closing
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tanu.core import bus, natsnames
from tanu.core.metrics import Metrics
from tanu.store import MSG_ID, OutboxRelay
from tanu.v1 import common_pb2, searcher_pb2, searcher_pb2_grpc, store_pb2

import helpers
from conftest import unit_vectors
from helpers import identify


def store_ids(cluster, partition: int | None = None) -> set[int]:
    """Template ids the system of record holds (for one partition), read
    from its SQLite file through a read-only connection of our own."""
    sql = "SELECT t.template_id FROM templates t JOIN subjects s USING (subject_id)"
    args: tuple = ()
    if partition is not None:
        sql += " WHERE s.partition = ?"
        args = (partition,)
    uri = Path(cluster.env["TANU_STORE_DB"]).resolve().as_uri() + "?mode=ro"
    with closing(sqlite3.connect(uri, uri=True)) as conn:
        return {r[0] for r in conn.execute(sql, args)}


async def bulk_enrol(cluster, prefix: str, n: int, seed: int) -> None:
    vecs = unit_vectors(n, seed=seed)
    items = [(f"{prefix}{i}", vecs[i : i + 1]) for i in range(n)]
    await cluster.store.db.run(
        cluster.store.db.put_many, items, helpers.ADULT_DOB,
        common_pb2.Consent(purposes=list(helpers.PURPOSES), evidence_ref="import-1"),
    )  # fmt: skip
    if cluster.store.relay:
        cluster.store.relay.wake()


async def stats(searcher) -> searcher_pb2.StatsResponse:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{searcher.port}") as ch:
        return await searcher_pb2_grpc.SearcherStub(ch).Stats(
            searcher_pb2.StatsRequest(include_template_ids=True)
        )


async def health(port: int) -> int:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as ch:
        r = await health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest())
        return r.status


async def settle(cluster, expect: dict[int, set[int]], timeout: float = 15.0) -> None:
    """Waits until each partition's searchers hold exactly the expected ids."""
    end = asyncio.get_running_loop().time() + timeout
    while True:
        got = {key: set((await stats(s)).template_ids) for key, s in cluster.searchers.items()}
        if all(got[key] == expect[key[0]] for key in got):
            return
        if asyncio.get_running_loop().time() > end:
            diff = {k: (len(v), len(expect[k[0]])) for k, v in got.items()}
            raise AssertionError(f"searchers did not converge: (held, expected) {diff}")
        await asyncio.sleep(0.05)


async def stream_messages(nc) -> int:
    info = await nc.jetstream().stream_info(natsnames.EVENTS_STREAM)
    return info.state.messages


async def test_a_searcher_rebuilt_from_scratch_misses_nothing_and_serves_only_once_caught_up(
    cluster,
):
    await bulk_enrol(cluster, "c", 600, seed=1)
    await cluster.store.relay.wait_idle(15)
    expect = {p: store_ids(cluster, p) for p in (0, 1)}
    await settle(cluster, expect)

    await cluster.stop_searcher(0)
    cluster.env["TANU_APPLY_BATCH"] = "1"  # one event per fetch: catching up takes many round trips
    fresh = await cluster.start_searcher(0, wait=False)
    assert await health(fresh.port) == health_pb2.HealthCheckResponse.NOT_SERVING
    # While it catches up, every answer is either the whole gallery or
    # flagged partial: never a silently smaller gallery.
    probe = identify(unit_vectors(1, seed=1)[0])
    partial_seen = 0
    while not fresh.caught_up.is_set():
        r = await cluster.stub.Identify(probe)
        if r.complete:
            assert r.gallery_size == 600
        else:
            assert list(r.missing_partitions) == [0]
            partial_seen += 1
    assert partial_seen > 0
    assert await health(fresh.port) == health_pb2.HealthCheckResponse.SERVING
    s = await stats(fresh)
    assert set(s.template_ids) == expect[0] and s.gallery_size == len(expect[0]) and s.caught_up
    r = await cluster.stub.Identify(probe)
    assert r.complete and r.gallery_size == 600


async def test_relay_and_store_restarts_lose_no_event_and_apply_none_twice(nats_server, tmp_path):
    from conftest import Cluster, env_for

    cluster = Cluster(env_for(nats_server.url, tmp_path, TANU_RELAY_ENABLED="false"))
    nc = await bus.connect(nats_server.url_for("test"), "test")
    try:
        await cluster.start_store()
        for p in (0, 1):
            await cluster.start_searcher(p)
        await bulk_enrol(cluster, "a", 50, seed=3)
        deleted = ["a1", "a2", "a3"]
        for sid in deleted:
            await cluster.store.db.run(cluster.store.db.delete_subject, sid, "test")
        expect = {p: store_ids(cluster, p) for p in (0, 1)}
        pending = await cluster.store.db.run(cluster.store.db.outbox_batch, 1000)
        # Erasure drops the deleted subjects' unpublished template events:
        # 47 additions and 3 removals are left to publish.
        assert len(pending) == 50 and await stream_messages(nc) == 0

        # A relay that published the first 30 events and died before it
        # could forget them: they are still in the outbox.
        crashed = OutboxRelay(
            cluster.store.db, nc.jetstream(), batch=30, poll_s=1, metrics=Metrics.create()
        )
        await crashed.publish(pending[:30])
        assert await stream_messages(nc) == 30

        # The store restarts (same database) with its relay on.
        await cluster.store.stop()
        await cluster.start_store(TANU_RELAY_ENABLED="true")
        await cluster.store.relay.wait_idle(15)
        assert await stream_messages(nc) == 50, (
            "re-published events must be de-duplicated by Nats-Msg-Id"
        )
        assert await cluster.store.db.run(cluster.store.db.outbox_pending) == 0
        await settle(cluster, expect)

        # Redelivery outside JetStream's window (a new message id): applying
        # the same event again changes nothing.
        for row in pending[:10]:
            await nc.jetstream().publish(
                row.subject, row.payload, headers={MSG_ID: uuid.uuid4().hex}
            )
        marker = store_pb2.TemplateEvent(
            event_id="marker",
            kind=store_pb2.TemplateEvent.KIND_REMOVED,
            partition=0,
            template_ids=[10**12],
        )
        for p in (0, 1):
            await nc.jetstream().publish(natsnames.template_events(p), marker.SerializeToString())
        last = (await nc.jetstream().stream_info(natsnames.EVENTS_STREAM)).state.last_seq
        for s in cluster.searchers.values():
            while s.applied_sequence < last - 1:
                await asyncio.sleep(0.02)
        await settle(cluster, expect)
        for s in cluster.searchers.values():
            assert len(s.index) == len(expect[s.config.partition])
    finally:
        await nc.close()
        await cluster.stop()
