"""Which gateways are up, so that a tenant's rate limit holds for the whole
cluster, not per gateway: behind a load balancer a tenant reaches every
gateway, and N gateways each allowing the full limit would allow N times it.

Every gateway says it is up on ``natsnames.GATEWAYS_PRESENT`` every
``period_s`` (its random instance id, nothing else) and hears the others; a
gateway not heard for ``expiry_s`` counts as gone from the next period on. Each enforces ``share()``
= 1 / (gateways heard, itself included) of every tenant's rate and burst
(``auth.RateLimiter``). No request waits on the bus for this.

What it does not do: share the buckets themselves. A tenant spread evenly
over the gateways gets its limit; one pinned to a single gateway gets
1/N of it (stricter, never looser). While a gateway cannot reach NATS it
hears nobody and enforces the whole limit, but then it cannot answer
requests either (every one needs the store and the searchers over NATS).
"""

from __future__ import annotations

import asyncio
import time
import uuid

from nats.aio.client import Client as NATS

from tanu.core import logs, natsnames
from tanu.core.metrics import Metrics

log = logs.get(__name__)

# The most other gateways remembered: an id is 32 hex characters; anything
# else on the subject is ignored (only gateways may publish there).
MAX_PEERS = 1024
_ID_LENGTH = 32


class Presence:
    """This gateway's announcements and the other gateways it hears."""

    def __init__(
        self, nc: NATS, metrics: Metrics | None = None, period_s: float = 1.0,
        expiry_s: float = 3.5,
    ) -> None:  # fmt: skip
        self.instance = uuid.uuid4().hex
        self._nc = nc
        self._metrics = metrics
        self.period_s = period_s
        self.expiry_s = expiry_s
        self._heard: dict[str, float] = {}  # instance id -> when last heard (monotonic)
        self._sub = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> Presence:
        self._sub = await self._nc.subscribe(natsnames.GATEWAYS_PRESENT, cb=self._on_message)
        await self._announce()
        self._task = asyncio.create_task(self._loop(), name="gateway-presence")
        return self

    async def _on_message(self, msg) -> None:
        peer = msg.data.decode("ascii", "replace")
        if len(peer) != _ID_LENGTH or peer == self.instance:
            return
        if peer not in self._heard and len(self._heard) >= MAX_PEERS:
            return
        if peer not in self._heard:
            log.info("gateway_heard", gateways=len(self._heard) + 2)
        self._heard[peer] = time.monotonic()

    async def _announce(self) -> None:
        if self._nc.is_connected:
            await self._nc.publish(natsnames.GATEWAYS_PRESENT, self.instance.encode())

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.period_s)
            try:
                await self._announce()
            except Exception as exc:  # noqa: BLE001 - said again next period
                log.warning("gateway_presence_failed", error=type(exc).__name__)
            self._forget_the_gone()
            if self._metrics:
                self._metrics.gateways_present.set(self.count())

    def _forget_the_gone(self) -> None:
        """Drops the gateways not heard for ``expiry_s`` (once a period, not
        on every request's ``share``)."""
        cutoff = time.monotonic() - self.expiry_s
        for peer in [p for p, at in self._heard.items() if at < cutoff]:
            del self._heard[peer]

    def count(self) -> int:
        """The gateways up, this one included (as of the last period)."""
        return 1 + len(self._heard)

    def share(self) -> float:
        """This gateway's share of every tenant's rate limit."""
        return 1.0 / self.count()

    async def close(self) -> None:
        if self._task:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        if self._sub is not None:
            try:
                await self._sub.unsubscribe()
            except Exception:  # noqa: BLE001 - the connection may be closed already
                pass
