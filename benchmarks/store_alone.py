"""One store (SQLite, its relay on) on a real, authenticated nats-server
with JetStream, in this process: the set-up of the store benchmarks
(``store_flood.py``, ``ack_under_backlog.py``)."""

from __future__ import annotations

import os
from pathlib import Path

from tanu.core import bus, natsroles, secrets
from tanu.core import config as cfg
from tanu.ops.natsd import NatsServer
from tanu.store import StoreService


class StoreAlone:
    """``await StoreAlone(folder, dimension, **env).start()``, then
    ``connect(role)`` for NATS connections as a role, ``stop()``."""

    def __init__(self, folder: Path, dimension: int, **env: str) -> None:
        self.folder, self.dimension, self.extra = folder, dimension, env
        self.creds = natsroles.provision(folder / "keys" / "nats", 1)
        self.server: NatsServer | None = None
        self.store: StoreService | None = None

    async def start(self) -> StoreAlone:
        f = self.folder
        self.server = NatsServer(f / "nats", encryption_key=os.urandom(16).hex(),
                                 auth_dir=self.creds).start()  # fmt: skip
        env = {**secrets.provision(f / "keys"), "TANU_NATS_URL": self.server.url,
               "TANU_NATS_CREDENTIALS_DIR": str(self.creds), "TANU_PARTITIONS": "1",
               "TANU_DIMENSION": str(self.dimension), "TANU_STORE_DB": str(f / "store.sqlite3"),
               "TANU_GRPC_PORT": "0", "TANU_METRICS_PORT": "0", **self.extra}  # fmt: skip
        self.store = await StoreService(cfg.from_env(cfg.StoreConfig, env)).start()
        return self

    async def connect(self, role: str):
        """A NATS connection with ``role``'s credentials."""
        assert self.server is not None
        password = natsroles.read_password(str(self.creds), role)
        scheme, rest = self.server.url.split("://", 1)
        return await bus.connect(f"{scheme}://{role}:{password}@{rest}", f"bench-{role}")

    async def stop(self) -> None:
        if self.store:
            await self.store.stop()
        if self.server:
            self.server.stop()
