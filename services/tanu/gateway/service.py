"""A running gateway: the public ``tanu.v1.Identity`` gRPC API (and the
partner REST facade), orchestrating each request over NATS: the face
pipeline for images, scatter-gather to every partition's searchers for 1:N,
the store for enrolment, verification, erasure and subject records.

Start: NATS, the layout check against the cluster's, the guard and the
gateway, the calibrated thresholds, the gRPC server, the REST facade. Every
TANU_THRESHOLD_REFRESH_S the thresholds are re-read and the layout is
checked again (health NOT_SERVING while it differs). Every
TANU_DEPENDENCY_CHECK_S it asks whether a store answers; while none does,
health is NOT_SERVING too. Health also says why, per dependency: the
health services ``tanu.gateway.store`` and ``tanu.gateway.layout`` are
NOT_SERVING while that one fails (``tanu status`` shows the reason).
"""

from __future__ import annotations

import asyncio

from grpc_health.v1 import health_pb2

from tanu.clients.store import StoreClient
from tanu.core import clusterconfig, errors, logs, tls
from tanu.core.config import GatewayConfig
from tanu.core.metrics import Metrics
from tanu.core.service import ServiceBase
from tanu.v1 import identity_pb2_grpc, store_pb2

from .gateway import Gateway
from .guard import Guard
from .presence import Presence
from .servicer import IdentityServicer

log = logs.get(__name__)

STORE_CHECK, LAYOUT_CHECK = "tanu.gateway.store", "tanu.gateway.layout"


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
        self._deps: asyncio.Task[None] | None = None
        self._store: StoreClient | None = None
        self.presence: Presence | None = None
        self._ok = {STORE_CHECK: True, LAYOUT_CHECK: True}

    async def start(self) -> GatewayService:
        nc = await self.connect("tanu-gateway")
        await clusterconfig.ensure_layout(nc.jetstream(), self.config.common.layout, "gateway")
        store = StoreClient(nc, self.config.common.request_timeout_s, self.metrics)
        self._store = store
        self.presence = await Presence(nc, self.metrics).start()
        self.guard = Guard(self.config, store, self.metrics, max_payload=lambda: nc.max_payload,
                           rate_share=self.presence.share)  # fmt: skip
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
        await self._set(LAYOUT_CHECK, True)
        self._deps = asyncio.create_task(self._dependency_loop(), name="dependencies")
        return self

    def ready(self) -> bool:
        return all(self._ok.values())

    async def _set(self, check: str, ok: bool) -> None:
        """Records one dependency's verdict and sets the health to match."""
        if self._ok[check] != ok:
            log.warning("gateway_dependency", check=check, ok=ok)
        self._ok[check] = ok
        if self.grpc and not self._stopping:
            s = health_pb2.HealthCheckResponse
            await self.grpc.health.set(check, s.SERVING if ok else s.NOT_SERVING)
            await self.grpc.set_serving(bool(self.nc and self.nc.is_connected) and self.ready())

    async def check_store_now(self) -> bool:
        """Whether a store answers (a status request for no subject)."""
        try:
            await self._store.status(store_pb2.StatusRequest(), timeout=2.0)
            ok = True
        except (errors.Unavailable, errors.DeadlineExceeded):
            ok = False
        await self._set(STORE_CHECK, ok)
        return ok

    async def _dependency_loop(self) -> None:
        while not self._stopping:
            await asyncio.sleep(self.config.dependency_check_s)
            if self.nc and self.nc.is_connected:
                try:
                    await self.check_store_now()
                except Exception as exc:  # noqa: BLE001 - keep the last verdict
                    log.warning("store_check_failed", error=str(exc))

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
            await self._set(LAYOUT_CHECK, ok)
        except Exception as exc:  # noqa: BLE001 - keep the last verdict
            log.warning("layout_check_failed", error=str(exc))

    async def release(self) -> None:
        if self.rest:
            await self.rest.stop()
        if self._refresh:
            self._refresh.cancel()
        if self._deps:
            self._deps.cancel()
        if self.gateway:
            await self.gateway.close()
        if self.guard:
            await self.guard.close()
        if self.presence:
            await self.presence.close()
