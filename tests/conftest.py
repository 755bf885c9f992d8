"""Fixtures: a real nats-server per test on a free port, and real services
(store, searchers, gateway) on grpc.aio servers bound to port 0."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import numpy as np
import pytest

from tanu.core import config as cfg
from tanu.core import logs, natsroles, secrets
from tanu.gateway import GatewayService
from tanu.ops.natsd import NatsServer
from tanu.searcher import SearcherService
from tanu.store import StoreService
from tanu.v1 import identity_pb2_grpc

DIM = 128


@pytest.fixture(autouse=True, scope="session")
def _logs():
    logs.configure("tests", "warning")


NATS_PARTITIONS = 16
"""Searcher identities the test server knows (partitions 0..15)."""


def nats_credentials(tmp_path: Path) -> Path:
    """Every role's NATS credentials (and the test harness's) under tmp_path."""
    return natsroles.provision(tmp_path / "keys" / "nats", NATS_PARTITIONS, test=True)


@pytest.fixture
def nats_server(tmp_path: Path):
    # JetStream encrypted at rest and every client authenticated as its
    # role, as `tanu up` and production run it.
    server = NatsServer(tmp_path / "nats", encryption_key=os.urandom(16).hex(),
                        auth_dir=nats_credentials(tmp_path)).start()  # fmt: skip
    try:
        yield server
    finally:
        server.stop()


def env_for(nats_url: str, tmp_path: Path, partitions: int = 2, **extra: str) -> dict[str, str]:
    env = {
        "TANU_NATS_URL": nats_url,
        "TANU_PARTITIONS": str(partitions),
        "TANU_DIMENSION": str(DIM),
        "TANU_STORE_DB": str(tmp_path / "store.sqlite3"),
        "TANU_SHUTDOWN_GRACE_S": "1",
        "TANU_RELAY_POLL_S": "0.2",
        "TANU_SEARCH_TIMEOUT_S": "1.5",
    }
    provisioned = secrets.provision(tmp_path / "keys")
    # Each service reads its own role's password from here.
    provisioned["TANU_NATS_CREDENTIALS_DIR"] = str(nats_credentials(tmp_path))
    if "TANU_SNAPSHOT_KEY" in extra:  # the test manages the snapshot key itself
        provisioned.pop("TANU_SNAPSHOT_KEY_FILE")
    env.update(provisioned)
    env["TANU_AUDIT_CHECKPOINT_S"] = "0.5"
    env.update(extra)
    return env


def nats_url_as(env: dict[str, str], role: str = natsroles.TEST) -> str:
    """The cluster's NATS URL with ``role``'s credentials in it; the
    ``test`` role may do anything (a test harness, not a service)."""
    password = natsroles.read_password(env["TANU_NATS_CREDENTIALS_DIR"], role)
    scheme, rest = env["TANU_NATS_URL"].split("://", 1)
    return f"{scheme}://{role}:{password}@{rest}"


def operator_token(env: dict[str, str]) -> str:
    """The operator tenant's token (every scope) that ``provision`` issued."""
    return (Path(env["TANU_TENANTS_FILE"]).parent / "operator.token").read_text()


class Cluster:
    """Real services in this process, started and stopped individually."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.store: StoreService | None = None
        self.searchers: dict[tuple[int, str], SearcherService] = {}
        self.gateway: GatewayService | None = None
        self.channel: grpc.aio.Channel | None = None
        self.stub: identity_pb2_grpc.IdentityStub | None = None

    @property
    def layout(self) -> cfg.Layout:
        return cfg.from_env(cfg.Layout, self.env)

    async def start_store(self, **overrides: str) -> StoreService:
        self.store = await StoreService(
            cfg.from_env(cfg.StoreConfig, {**self.env, **overrides})
        ).start()
        return self.store

    async def start_searcher(
        self, partition: int, replica: str = "r0", wait: bool = True
    ) -> SearcherService:
        env = {**self.env, "TANU_PARTITION": str(partition), "TANU_REPLICA": replica}
        s = await SearcherService(cfg.from_env(cfg.SearcherConfig, env)).start()
        if wait:
            await s.caught_up.wait()
        self.searchers[(partition, replica)] = s
        return s

    async def stop_searcher(self, partition: int, replica: str = "r0") -> None:
        await self.searchers.pop((partition, replica)).stop()

    async def start_gateway(self) -> GatewayService:
        self.gateway = await GatewayService(cfg.from_env(cfg.GatewayConfig, self.env)).start()
        self.channel = secrets.aio_channel(
            f"127.0.0.1:{self.gateway.port}", operator_token(self.env)
        )
        self.stub = identity_pb2_grpc.IdentityStub(self.channel)
        return self.gateway

    async def start_all(self) -> Cluster:
        await self.start_store()
        for p in range(self.layout.partitions):
            await self.start_searcher(p)
        await self.start_gateway()
        return self

    async def stop(self) -> None:
        if self.channel:
            await self.channel.close()
        if self.gateway:
            await self.gateway.stop()
        for s in list(self.searchers.values()):
            await s.stop()
        self.searchers.clear()
        if self.store:
            await self.store.stop()
            self.store = None


@pytest.fixture
async def cluster(nats_server, tmp_path) -> AsyncIterator[Cluster]:
    c = Cluster(env_for(nats_server.url, tmp_path))
    try:
        await c.start_all()
        yield c
    finally:
        await c.stop()


def unit_vectors(n: int, seed: int = 0, dim: int = DIM) -> np.ndarray:
    rng = np.random.default_rng(seed)
    v = rng.standard_normal((n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def near(v: np.ndarray, scale: float = 0.02, seed: int = 1) -> np.ndarray:
    """A template of the same person: a small perturbation."""
    rng = np.random.default_rng(seed)
    out = v + rng.standard_normal(v.shape).astype(np.float32) * scale
    return out.astype(np.float32)
