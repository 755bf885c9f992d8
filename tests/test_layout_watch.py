"""A gateway whose layout no longer matches the cluster's (after a
rebalance switched it) refuses to search instead of answering from part of
the gallery, and says NOT_SERVING, until the layout matches again."""

from __future__ import annotations

import json

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tanu.core import bus, clusterconfig

from conftest import nats_url_as, unit_vectors
from helpers import enroll, identify


async def health(cluster) -> int:
    ch = grpc.aio.insecure_channel(f"127.0.0.1:{cluster.gateway.port}")
    try:
        r = await health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest())
        return r.status
    finally:
        await ch.close()


async def test_a_gateway_refuses_searches_after_the_layout_changes(cluster):
    v = unit_vectors(1, seed=70)[0]
    await cluster.stub.Enroll(enroll("lw", v, wait_indexed=True))
    gw = cluster.gateway.gateway
    assert await gw.check_layout()
    nc = await bus.connect(nats_url_as(cluster.env), "test")
    try:
        kv = await clusterconfig.bucket(nc.jetstream())
        before = (await kv.get(clusterconfig.LAYOUT_KEY)).value
        switched = {**json.loads(before), "partitions": 3, "routed": [2, 3]}
        await kv.put(clusterconfig.LAYOUT_KEY, json.dumps(switched).encode())
        await cluster.gateway.check_layout_now()
        assert await health(cluster) == health_pb2.HealthCheckResponse.NOT_SERVING
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await cluster.stub.Identify(identify(v))
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "partitions: cluster 3, this gateway 2" in info.value.details()
        await kv.put(clusterconfig.LAYOUT_KEY, before)
        await cluster.gateway.check_layout_now()
        assert await health(cluster) == health_pb2.HealthCheckResponse.SERVING
        assert (await cluster.stub.Identify(identify(v))).candidates[0].subject_id == "lw"
    finally:
        await nc.close()
