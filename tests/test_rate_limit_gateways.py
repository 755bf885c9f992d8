"""A tenant's rate limit holds for the whole cluster, not per gateway:
behind a load balancer a bank reaches every gateway, and two gateways each
allowing the full burst allowed twice it. Each gateway hears the others
over NATS (``tanu.gateway.presence``) and enforces its share."""

from __future__ import annotations

import asyncio

import grpc
from tenancy import code_of
from test_security import md, token_for, write_tenants

from tanu.core import config as cfg
from tanu.gateway import GatewayService
from tanu.v1 import identity_pb2_grpc

from conftest import Cluster, env_for, unit_vectors
from helpers import enroll, verify

CAPPED = {"id": "capped-bank", "kind": "bank", "purposes": ["kyc"], "rate_per_s": 0.001,
          "burst": 4}  # fmt: skip


async def until_heard(*gateways: GatewayService, count: int) -> None:
    for _ in range(100):
        if all(g.presence.count() == count for g in gateways):
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"the gateways did not hear {count} of them")


async def test_two_gateways_together_allow_one_tenants_burst_not_twice_it(nats_server, tmp_path):
    env = env_for(nats_server.url, tmp_path)
    write_tenants(env, [CAPPED])
    c = Cluster(env)
    await c.start_all()
    other = await GatewayService(cfg.from_env(cfg.GatewayConfig, env)).start()
    channels = [grpc.aio.insecure_channel(f"127.0.0.1:{g.port}") for g in (c.gateway, other)]
    try:
        alice = unit_vectors(1, seed=31)[0]
        assert (await c.stub.Enroll(enroll("alice", alice, wait_indexed=True))).enrolled
        await until_heard(c.gateway, other, count=2)
        for _ in range(50):  # set once a period, for SREs' dashboards
            if c.gateway.metrics.sample("tanu_gateways_present") == 2.0:
                break
            await asyncio.sleep(0.1)
        assert c.gateway.metrics.sample("tanu_gateways_present") == 2.0
        tok = token_for(env, "capped-bank", scopes=["verify"])
        stubs = [identity_pb2_grpc.IdentityStub(ch) for ch in channels]
        codes = []
        for _ in range(5):  # a load balancer's round robin over both
            for stub in stubs:
                codes.append(await code_of(stub.Verify(verify("alice", alice),
                                                       metadata=md(tok, "kyc"))))  # fmt: skip
        ok = [code for code, _ in codes if code == grpc.StatusCode.OK]
        refused = [msg for code, msg in codes if code == grpc.StatusCode.RESOURCE_EXHAUSTED]
        assert len(ok) == 4 and len(refused) == 6, codes  # the burst of 4 in all, not 8
        assert all("rate limit" in msg for msg in refused)
        # A gateway that stops is forgotten: the other takes the whole limit again.
        await other.stop()
        other = None
        await until_heard(c.gateway, count=1)
    finally:
        for ch in channels:
            await ch.close()
        if other is not None:
            await other.stop()
        await c.stop()
