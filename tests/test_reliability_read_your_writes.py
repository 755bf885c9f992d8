"""Read-your-writes across gateways: an enrolment acknowledged by one
gateway is found by an Identify through another gateway sent right after
the acknowledgement (no wait_indexed), every time."""

from __future__ import annotations

import asyncio

from tanu.core import config as cfg
from tanu.core import secrets
from tanu.gateway import GatewayService
from tanu.v1 import identity_pb2_grpc

from conftest import operator_token, unit_vectors
from helpers import enroll, identify


async def test_an_acknowledged_enrolment_is_found_through_another_gateway_at_once(cluster):
    other = await GatewayService(cfg.from_env(cfg.GatewayConfig, cluster.env)).start()
    channel = secrets.aio_channel(f"127.0.0.1:{other.port}", operator_token(cluster.env))
    b = identity_pb2_grpc.IdentityStub(channel)
    try:
        vecs = unit_vectors(30, seed=11)

        async def trial(i: int) -> tuple[bool, bool]:
            r = await cluster.stub.Enroll(enroll(f"ryw-{i}", vecs[i]))
            assert r.enrolled
            found = await b.Identify(identify(vecs[i], top_k=1))
            top = found.candidates[0].subject_id if found.candidates else ""
            return top == f"ryw-{i}", found.complete

        # Sequential trials, then concurrent ones (enrolments racing searches).
        results = [await trial(i) for i in range(15)]
        results += await asyncio.gather(*(trial(i) for i in range(15, 30)))
        assert all(found for found, _ in results), results
        assert all(complete for _, complete in results)
        behind = other.metrics.registry.get_sample_value("tanu_search_behind_total")
        assert behind == 0
    finally:
        await channel.close()
        await other.stop()
