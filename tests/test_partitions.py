"""Scatter-gather across partitions: partial answers are flagged, never a
silently smaller gallery; replicas of a partition stand in for each other."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from tanu.core.ids import partition_of

from conftest import unit_vectors
from helpers import enroll, identify


async def test_identify_marks_partial_when_a_partition_is_down(cluster):
    stub = cluster.stub
    gallery = unit_vectors(30, seed=2)
    for i, v in enumerate(gallery):
        await stub.Enroll(enroll(f"s{i}", v, wait_indexed=True))
    full = await stub.Identify(identify(gallery[0]))
    assert full.complete and full.gallery_size == 30

    await cluster.stop_searcher(1)
    r = await stub.Identify(identify(gallery[0]))
    assert not r.complete and list(r.missing_partitions) == [1]
    in_p0 = sum(partition_of(f"s{i}", 2) == 0 for i in range(30))
    assert r.gallery_size == in_p0
    assert all(c.partition == 0 for c in r.candidates)

    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.Identify(identify(gallery[0], require_complete=True))
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE and "[1]" in info.value.details()

    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.Enroll(enroll("late", unit_vectors(1, seed=99)[0]))
    assert (
        info.value.code() == grpc.StatusCode.UNAVAILABLE and "de-duplicate" in info.value.details()
    )


async def test_a_replica_answers_when_its_sibling_stops(cluster):
    stub = cluster.stub
    v = unit_vectors(1, seed=8)[0]
    await stub.Enroll(enroll("held", v, wait_indexed=True))
    part = partition_of("held", 2)
    await cluster.start_searcher(part, replica="r1")
    await cluster.stop_searcher(part, "r0")
    assert [key for key in cluster.searchers if key[0] == part] == [(part, "r1")]
    r = await stub.Identify(identify(v))
    assert r.complete and r.candidates[0].subject_id == "held"


async def test_health_follows_the_nats_connection(cluster, nats_server):
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    async def statuses() -> dict[str, int]:
        out = {}
        svcs = {
            "gateway": cluster.gateway,
            "store": cluster.store,
            **{f"s{k}": s for k, s in cluster.searchers.items()},
        }
        for name, svc in svcs.items():
            async with grpc.aio.insecure_channel(f"127.0.0.1:{svc.port}") as ch:
                r = await health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest())
                out[name] = r.status
        return out

    async def wait_for(status: int) -> dict[str, int]:
        for _ in range(200):
            now = await statuses()
            if set(now.values()) == {status}:
                return now
            await asyncio.sleep(0.05)
        return now

    serving, not_serving = (
        health_pb2.HealthCheckResponse.SERVING,
        health_pb2.HealthCheckResponse.NOT_SERVING,
    )
    assert set((await statuses()).values()) == {serving}
    nats_server.stop()
    assert set((await wait_for(not_serving)).values()) == {not_serving}
    nats_server.start()
    assert set((await wait_for(serving)).values()) == {serving}
    r = await cluster.stub.Identify(identify(unit_vectors(1)[0]))
    assert r.complete


async def test_a_service_with_another_layout_refuses_to_start(cluster):
    from tanu.core import config as cfg
    from tanu.core import errors
    from tanu.gateway import GatewayService
    from tanu.searcher import SearcherService

    bad = [
        (
            SearcherService,
            cfg.SearcherConfig,
            {"TANU_DIMENSION": "512"},
            "dimension: cluster 128, searcher-p0 configured 512",
        ),
        (
            GatewayService,
            cfg.GatewayConfig,
            {"TANU_PARTITIONS": "3"},
            "partitions: cluster 2, gateway configured 3",
        ),
        (
            GatewayService,
            cfg.GatewayConfig,
            {"TANU_MODEL_ID": "arcface-r100"},
            "model_id: cluster 'dlib-resnet-v1'",
        ),
    ]
    for service, config, env, words in bad:
        svc = service(cfg.from_env(config, {**cluster.env, **env}))
        try:
            with pytest.raises(errors.FailedPrecondition, match="cluster layout mismatch") as info:
                await svc.start()
            assert words in info.value.message, info.value.message
        finally:
            await svc.stop()
    r = await cluster.stub.Identify(identify(unit_vectors(1)[0]))
    assert r.complete, "the running cluster is untouched"
