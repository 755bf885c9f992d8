"""The store service: the system of record behind ``tanu.store.<op>`` (NATS;
its gRPC port serves health and reflection only), with its outbox relay, the
audit log's single writer and checkpoint signer, and erasure receipts.

Every operation is registered from the one table
``tanu.clients.store.StoreClient`` on NATS; the handlers
are in ``tanu.store.handlers``."""

from __future__ import annotations

import asyncio
import os

from tanu.clients.operations import handlers_for
from tanu.clients.store import StoreClient
from tanu.core import bus, clusterconfig, envelope, errors, logs, natsnames, signing
from tanu.core.config import StoreConfig
from tanu.core.metrics import Metrics
from tanu.core.server import start_grpc
from tanu.core.service import ServiceBase
from tanu.policy.lockout import Lockout

from .db import Store
from .handlers import StoreHandlers
from .relay import OutboxRelay

log = logs.get(__name__)


class StoreService(ServiceBase):
    """A running store: database, relay, NATS responders and gRPC server."""

    name = "store"
    renews_in_process = False  # the relay holds a JetStream context of the client

    def __init__(self, config: StoreConfig, metrics: Metrics | None = None) -> None:
        super().__init__(config.common, metrics)
        self.config = config
        self.db: Store | None = None
        self.relay: OutboxRelay | None = None
        self.handlers: StoreHandlers | None = None
        self._checkpoints: asyncio.Task[None] | None = None

    async def start(self) -> StoreService:
        cfg, common = self.config, self.config.common
        provider = envelope.LocalKeyProvider.from_settings(cfg.master_key_file, cfg.master_key)
        if not cfg.audit_key_file:
            raise errors.FailedPrecondition(
                "the audit log is signed: set TANU_AUDIT_KEY_FILE (an Ed25519 PEM key, "
                "`tanu keys init` makes one)"
            )
        signer = signing.load_signing_key(cfg.audit_key_file)
        self.db = Store(cfg.dsn or cfg.db_path, common.layout, provider,
                        Lockout(cfg.lockout_after, cfg.lock_after, cfg.lockout_delay_ms))  # fmt: skip
        self.db.dedup_window_ms = int(cfg.dedup_window_s * 1000)
        self.db.idempotency_ttl_ms = int(cfg.idempotency_ttl_s * 1000)
        if not self.db.is_postgres:
            self.metrics.watch_disk(os.path.dirname(cfg.db_path) or ".")
        self.metrics.audit_checkpoint_timestamp.set(
            await self.db.run(self.db.last_checkpoint_ms) / 1000
        )
        nc = await self.connect("tanu-store")
        js = nc.jetstream()
        await clusterconfig.ensure_layout(js, common.layout, "store")
        await bus.ensure_events_stream(
            js, natsnames.EVENTS_STREAM, [natsnames.EVENTS_WILDCARD], common.stream_replicas,
            common.stream_duplicate_window_s,
        )  # fmt: skip
        if cfg.relay_enabled:
            self.relay = OutboxRelay(self.db, js, batch=cfg.relay_batch, poll_s=cfg.relay_poll_s,
                                     metrics=self.metrics, flush_timeout_s=cfg.relay_flush_s)  # fmt: skip
            self.relay.start()
        self.handlers = handlers = StoreHandlers(self.db, self.relay, signer, self.metrics,
                                                 max_queue=cfg.max_queue)  # fmt: skip
        for op, fn in handlers_for(StoreClient, handlers):
            await self.responder.serve(
                natsnames.store(op.name), natsnames.STORE_QUEUE, op.request, fn
            )
        # Health and reflection only: the store's operations (templates,
        # subject records, receipts, writes) are reachable over NATS alone,
        # where each role's permissions say who may call which.
        self.grpc = await start_grpc(self.common, self.name, self.metrics, [])
        self._checkpoints = asyncio.create_task(self._checkpoint_loop(), name="audit-checkpoints")
        log.info(
            "store_started", db=self.db.describe(),
            subjects=await self.db.run(self.db.count_subjects),
        )  # fmt: skip
        return self

    async def _checkpoint_loop(self) -> None:
        while not self._stopping:
            await asyncio.sleep(self.config.audit_checkpoint_s)
            try:
                await self.handlers.checkpoint()
            except Exception as exc:  # noqa: BLE001 - retried next round; the age alert fires
                log.error("audit_checkpoint_failed", error=str(exc))

    async def release(self) -> None:
        if self._checkpoints:
            self._checkpoints.cancel()
        if self.handlers:
            await self.handlers.close()
            try:  # seal what was appended since the last checkpoint
                await self.handlers.checkpoint()
            except Exception as exc:  # noqa: BLE001
                log.error("audit_checkpoint_failed", error=str(exc))
        if self.relay:
            await self.relay.stop()

    def close(self) -> None:
        if self.db:
            self.db.close()
