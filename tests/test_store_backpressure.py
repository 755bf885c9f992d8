"""Back-pressure in the store: flooded with more enrolments than its
database thread serves within the bus deadline, it refuses the excess at
once with RESOURCE_EXHAUSTED (the gateway answers RESOURCE_EXHAUSTED, HTTP
429) instead of letting the last ones run past the deadline. Every
accepted enrolment is complete, every refused one left nothing, and a
retry of a refused one enrols it."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from tanu.core import errors

from conftest import Cluster, env_for, unit_vectors
from helpers import enroll

FLOOD = 120


@pytest.fixture
async def small_queue(nats_server, tmp_path):
    c = Cluster(env_for(nats_server.url, tmp_path, TANU_STORE_MAX_QUEUE="4"))
    try:
        await c.start_all()
        yield c
    finally:
        await c.stop()


async def test_a_flood_is_refused_at_once_and_refused_enrolments_leave_nothing(small_queue):
    c = small_queue
    faces = unit_vectors(FLOOD, seed=401)
    calls = [c.stub.Enroll(enroll(f"flood-{i}", f), timeout=30) for i, f in enumerate(faces)]
    replies = await asyncio.gather(*calls, return_exceptions=True)
    accepted = [i for i, r in enumerate(replies) if not isinstance(r, BaseException)]
    refused = [i for i, r in enumerate(replies) if isinstance(r, grpc.aio.AioRpcError)
               and r.code() == grpc.StatusCode.RESOURCE_EXHAUSTED]  # fmt: skip
    assert len(accepted) + len(refused) == FLOOD, [r for r in replies if isinstance(r, Exception)]
    assert accepted and refused
    assert "retry later" in replies[refused[0]].details()
    # Operators see the refusals on the store's metrics, one per refusal.
    counted = c.store.metrics.registry.get_sample_value(
        "tanu_store_refused_total", {"reason": "overloaded"}
    )
    assert counted == len(refused)
    assert errors.ResourceExhausted("x").http_status == 429  # the REST answer
    db = c.store.db
    for i in accepted:
        assert replies[i].enrolled
        assert len((await db.run(db.get_templates, f"flood-{i}")).templates) == 1
    for i in refused:
        with pytest.raises(errors.NotFound):
            await db.run(db.get_templates, f"flood-{i}")
    # Retry-safe: the refused ones enrol when asked again, one at a time.
    for i in refused[:5]:
        again = await c.stub.Enroll(enroll(f"flood-{i}", faces[i]), timeout=30)
        assert again.enrolled
