"""The store on PostgreSQL outlives its database connection: a restart, a
failover or a network cut drops it (here: ``pg_terminate_backend``, as an
operator or a failover does). A request the loss interrupts is refused as
UNAVAILABLE, never half-applied; the store reconnects, and a retry with the
same idempotency key is enrolled exactly once. Before, every later request
failed ("the connection is closed") until the store was restarted."""

from __future__ import annotations

import asyncio
import uuid

import grpc
import psycopg
import pytest
from pg import PG_BASE, store_env

from tanu.v1 import identity_pb2

from conftest import Cluster, env_for, unit_vectors
from helpers import enroll, identify


def terminate(application: str) -> int:
    """Ends every PostgreSQL session of ``application``; how many."""
    with psycopg.connect(PG_BASE, autocommit=True) as c:
        rows = c.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s",
            (application,),
        ).fetchall()
    return len(rows)


@pytest.fixture
async def pg_cluster(nats_server, tmp_path):
    with store_env("postgres") as extra:
        app = "tanu-store-" + uuid.uuid4().hex[:8]
        extra["TANU_STORE_DSN"] += f"&application_name={app}"
        c = Cluster(env_for(nats_server.url, tmp_path, partitions=1, **extra))
        try:
            await c.start_all()
            c.application = app
            yield c
        finally:
            await c.stop()


async def until_answered(call, attempts: int = 20):
    """``call()`` retried, as a client retries UNAVAILABLE, until it answers."""
    for _ in range(attempts):
        try:
            return await call()
        except grpc.aio.AioRpcError as exc:
            assert exc.code() == grpc.StatusCode.UNAVAILABLE, exc.details()
            await asyncio.sleep(0.2)
    raise AssertionError(f"no answer after {attempts} attempts")


async def test_a_lost_database_connection_is_reconnected_and_a_retried_enrolment_lands_once(
    pg_cluster,
):
    c = pg_cluster
    v = unit_vectors(2, seed=41)
    assert (await c.stub.Enroll(enroll("before-loss", v[0]))).enrolled
    assert terminate(c.application) >= 1
    # The enrolment that meets the lost connection is refused as retryable
    # (or lands, if a background job reconnected first); its retry with the
    # same key gets the one outcome.
    key = [("idempotency-key", "after-loss-0001")]
    out = await until_answered(lambda: c.stub.Enroll(enroll("after-loss", v[1]), metadata=key))
    again = await c.stub.Enroll(enroll("after-loss", v[1]), metadata=key)
    assert out.enrolled and again.subject == out.subject
    # The data from before the loss is intact, and the one after is searchable.
    got = await c.stub.GetSubject(identity_pb2.GetSubjectRequest(subject_id="before-loss"))
    assert got.subject_id == "before-loss"
    for _ in range(50):
        found = await c.stub.Identify(identify(v[1]))
        if found.candidates and found.candidates[0].subject_id == "after-loss":
            break
        await asyncio.sleep(0.1)
    assert found.candidates[0].subject_id == "after-loss"
    assert c.store.db.reconnects >= 1


async def test_an_unreachable_database_is_unavailable_with_its_reason(pg_cluster):
    """Sessions ended again and again (a server that keeps dropping them):
    every refusal is UNAVAILABLE naming the database trouble, no request
    gets another error, and the store answers once the database stays up."""
    c = pg_cluster
    refusals = []
    for _ in range(5):
        terminate(c.application)
        try:
            await c.stub.GetSubject(identity_pb2.GetSubjectRequest(subject_id="nobody"))
        except grpc.aio.AioRpcError as exc:
            refusals.append((exc.code(), exc.details()))
    for code, details in refusals:
        assert code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.NOT_FOUND), details
        if code == grpc.StatusCode.UNAVAILABLE:
            assert "database" in details
    v = unit_vectors(1, seed=42)
    assert (await until_answered(lambda: c.stub.Enroll(enroll("steady", v[0])))).enrolled
