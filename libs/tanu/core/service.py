"""The lifecycle every Tanu service shares: a NATS connection with its
request/reply responder, a gRPC server with health, and an orderly stop.

Stop order (conventions): health → NOT_SERVING and in-flight RPCs finish
(grace), the NATS subscriptions stop taking requests and finish theirs,
the service releases what it runs (batchers, relays, consumers), NATS is
drained, then what needs NATS no longer (threads, database) is closed."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from tanu.core import bus, logs, natsconn, natsroles
from tanu.core.config import Common
from tanu.core.metrics import Metrics
from tanu.core.server import GrpcServer, start_grpc

log = logs.get(__name__)


class ServiceBase:
    """Base of the store, searcher, gateway, detector and embedder services."""

    name = "service"

    def __init__(self, common: Common, metrics: Metrics | None) -> None:
        self.common = common
        self.metrics = metrics or Metrics.create()
        self.grpc: GrpcServer | None = None
        self.nc = None
        self.responder: bus.Responder | None = None
        self._stopping = False
        self.failed = asyncio.Event()
        """Set when the service cannot go on in this process (see ``renews_in_process``)."""

    @property
    def port(self) -> int:
        """The gRPC port (bound; useful when configured as 0)."""
        assert self.grpc, "service not started"
        return self.grpc.port

    renews_in_process = True
    """Whether a NATS client closed for good is replaced in this process
    (``natsconn.Link``). A service holding JetStream state bound to its
    client (the store's relay, a searcher's consumer) says False: it goes
    NOT_SERVING and sets ``failed``, so that ``main`` exits for its
    supervisor (``tanu up``, Kubernetes) to start it afresh."""

    def nats_role(self) -> str:
        """The NATS identity this service connects as (``natsroles``)."""
        config = getattr(self, "config", None)
        return natsroles.role_of(self.name, getattr(config, "partition", 0),
                                 bool(getattr(config, "staging", False)))  # fmt: skip

    async def connect(self, client_name: str):
        """Connects to NATS as this service's role and prepares the responder
        for its subjects. While the connection is down, health says
        NOT_SERVING: no Tanu service can do its work without NATS."""
        auth = natsconn.auth_for(self.common, self.nats_role())
        self.nc = await natsconn.Link(self.common.nats_url, client_name, auth, self._nats_state,
                                      self.renews_in_process, self.failed.set).open()  # fmt: skip
        self.responder = bus.Responder(self.nc)
        return self.nc

    def ready(self) -> bool:
        """Whether the service can serve when NATS is up (a searcher: once caught up)."""
        return True

    async def _nats_state(self, connected: bool) -> None:
        if self.grpc and not self._stopping:
            await self.grpc.set_serving(connected and self.ready())

    async def serve_grpc(
        self, add: Callable, servicer: object, full_name: str, *, serving: bool = True
    ) -> None:
        """Starts the gRPC server with ``servicer`` plus health and reflection."""
        self.grpc = await start_grpc(self.common, self.name, self.metrics, [(add, servicer, full_name)],
                                     serving=serving)  # fmt: skip

    async def release(self) -> None:
        """Stops what the service runs (batchers, relays, consumers), before NATS drains."""

    def close(self) -> None:
        """Frees what needs NATS no longer (threads, files), after NATS drained."""

    async def stop(self) -> None:
        self._stopping = True
        if self.grpc:
            await self.grpc.stop(self.common.shutdown_grace_s)
        if self.responder:
            await self.responder.stop()
        await self.release()
        if self.nc:
            try:
                await self.nc.drain()
            except Exception:  # noqa: BLE001 - the connection may already be closed
                pass
        self.close()
        log.info("service_stopped", service=self.name)
