"""A running gateway: the public ``tanu.v1.Identity`` gRPC API (and the
partner REST facade), orchestrating each request over NATS: the face
pipeline for images, scatter-gather to every partition's searchers for 1:N,
the store for enrolment, verification, erasure and subject records.

Start: NATS, the layout check against the cluster's, the guard and the
gateway, the calibrated thresholds, the gRPC server, the REST facade. Every
TANU_THRESHOLD_REFRESH_S the thresholds are re-read and the layout is
checked again (health NOT_SERVING while it differs).
"""

from __future__ import annotations

import asyncio

from tanu.clients.store import StoreClient
from tanu.core import clusterconfig, logs, tls
from tanu.core.config import GatewayConfig
from tanu.core.metrics import Metrics
from tanu.core.service import ServiceBase
from tanu.v1 import identity_pb2_grpc

from .gateway import Gateway
from .guard import Guard
from .servicer import IdentityServicer

log = logs.get(__name__)


class GatewayService(ServiceBase):
    """A running gateway: NATS connection, the Identity gRPC server and the REST facade."""

    name = "gateway"

    def __init__(self, config: GatewayConfig, metrics: Metrics | None = None) -> None:
        super().__init__(config.common, metrics)
        self.config = config
        self.gateway: Gateway | None = None
        self.guard: Guard | None = None
        self.rest = None  # the RestFacade, when TANU_REST_PORT enables it
        self._refresh: asyncio.Task[None] | None = None

    async def start(self) -> GatewayService:
        nc = await self.connect("tanu-gateway")
        await clusterconfig.ensure_layout(nc.jetstream(), self.config.common.layout, "gateway")
        store = StoreClient(nc, self.config.common.request_timeout_s, self.metrics)
        self.guard = Guard(self.config, store, self.metrics, max_payload=lambda: nc.max_payload)
        self.gateway = Gateway(self.config, nc, self.metrics, store)
        await self.gateway.refresh_thresholds()
        self._refresh = asyncio.create_task(self._refresh_loop(), name="thresholds")
        await self.serve_grpc(
            identity_pb2_grpc.add_IdentityServicer_to_server,
            IdentityServicer(self.gateway, self.guard),
            "tanu.v1.Identity",
        )
        if self.config.rest_port >= 0:
            from .rest import RestFacade  # aiohttp only where the facade is served

            self.rest = RestFacade(self.gateway, self.guard, self.metrics,
                                   self.config.common.max_message_bytes,
                                   bus_up=lambda: bool(self.nc and self.nc.is_connected))  # fmt: skip
            common = self.config.common
            await self.rest.start(common.grpc_host, self.config.rest_port, tls.https_context(common),
                                  tls.refuses_plaintext_tokens(common))  # fmt: skip
        return self

    async def _refresh_loop(self) -> None:
        while not self._stopping:
            await asyncio.sleep(self.config.threshold_refresh_s)
            try:
                await self.gateway.refresh_thresholds()
            except Exception as exc:  # noqa: BLE001 - keep the last known thresholds
                log.warning("thresholds_refresh_failed", error=str(exc))
            await self.check_layout_now()

    async def check_layout_now(self) -> None:
        """Checks the cluster's layout against this gateway's at once, as
        the refresh loop does every TANU_THRESHOLD_REFRESH_S, and sets the
        gRPC health to match (NOT_SERVING while they differ). When the
        layout cannot be read, the last verdict stands (and is logged)."""
        try:
            ok = await self.gateway.check_layout()
            await self.grpc.set_serving(ok and bool(self.nc and self.nc.is_connected))
        except Exception as exc:  # noqa: BLE001 - keep the last verdict
            log.warning("layout_check_failed", error=str(exc))

    async def release(self) -> None:
        if self.rest:
            await self.rest.stop()
        if self._refresh:
            self._refresh.cancel()
        if self.gateway:
            await self.gateway.close()
        if self.guard:
            await self.guard.close()
