"""With nats-server gone, a request through the gateway fails at once with
UNAVAILABLE naming the real cause (the message bus), not a timeout that
blames whichever service it asked; the gateway's health says NOT_SERVING."""

from __future__ import annotations

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tanu.v1 import identity_pb2


async def test_requests_say_the_message_bus_is_down(cluster, nats_server):
    nats_server.stop()
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await cluster.stub.GetSubject(identity_pb2.GetSubjectRequest(subject_id="x"), timeout=20)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "message bus is down" in info.value.details(), info.value.details()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{cluster.gateway.port}") as ch:
        r = await health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest())
    assert r.status == health_pb2.HealthCheckResponse.NOT_SERVING
