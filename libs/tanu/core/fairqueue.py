"""Admission by cost, fair per tenant: a request waits for a share of a
bounded amount of work in flight (``max_cost``, e.g. pixels being decoded
and searched for faces), and waiting requests are admitted in start-time
fair queueing order (Goyal, Vin and Cheng 1996): each tenant's requests are
tagged with the virtual time at which its earlier requests' cost runs out,
so a tenant that sends many expensive requests queues behind its own, while
another tenant's cheap request is admitted next.

A request costing more than ``max_cost`` is admitted alone (when nothing
else is in flight): it is refused by the size limits, not here. Each
tenant may have at most ``max_queued`` requests waiting; beyond that it is
refused (RESOURCE_EXHAUSTED) rather than holding memory for ever."""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from tanu.core import errors

MAX_TENANT_CHARS = 128


@dataclass(order=True)
class _Waiter:
    start: float
    seq: int
    tenant: str = field(compare=False)
    cost: float = field(compare=False)
    granted: asyncio.Future[None] = field(compare=False)


class FairQueue:
    """Admits work by cost, in fair order across tenants (see the module)."""

    def __init__(self, name: str, max_cost: float, max_queued: int) -> None:
        if max_cost <= 0 or max_queued < 1:
            raise ValueError("max_cost must be positive and max_queued at least 1")
        self.name = name
        self.max_cost = float(max_cost)
        self.max_queued = max_queued
        self._heap: list[_Waiter] = []
        self._vtime = 0.0
        self._finish: dict[str, float] = {}
        self._queued: Counter[str] = Counter()
        self._in_flight = 0.0
        self._seq = itertools.count()

    @property
    def in_flight(self) -> float:
        """Cost admitted and not yet released."""
        return self._in_flight

    def queued(self, tenant: str | None = None) -> int:
        """Requests waiting (of ``tenant``, or of all)."""
        return sum(self._queued.values()) if tenant is None else self._queued[tenant]

    @asynccontextmanager
    async def admit(self, tenant: str, cost: float) -> AsyncIterator[None]:
        """Waits until ``cost`` may run for ``tenant``; releases it on exit."""
        if len(tenant) > MAX_TENANT_CHARS:
            raise errors.InvalidArgument(f"tenant id is longer than {MAX_TENANT_CHARS} characters")
        if self._queued[tenant] >= self.max_queued:
            raise errors.ResourceExhausted(
                f"{self._queued[tenant]} requests of this tenant are already waiting at the "
                f"{self.name} (the limit is {self.max_queued}); retry later",
                "overloaded",
            )
        cost = min(max(float(cost), 1.0), self.max_cost)
        start = max(self._vtime, self._finish.get(tenant, 0.0))
        self._finish[tenant] = start + cost
        waiter = _Waiter(start, next(self._seq), tenant, cost,
                         asyncio.get_running_loop().create_future())  # fmt: skip
        heapq.heappush(self._heap, waiter)
        self._queued[tenant] += 1
        self._dispatch()
        try:
            await asyncio.shield(waiter.granted)
        except asyncio.CancelledError:
            if waiter.granted.done():  # admitted just as the caller gave up
                self._release(cost)
            else:
                waiter.granted.cancel()  # dropped when it reaches the head
                self._unqueue(tenant)
                self._dispatch()
            raise
        try:
            yield
        finally:
            self._release(cost)

    def _unqueue(self, tenant: str) -> None:
        self._queued[tenant] -= 1
        if self._queued[tenant] <= 0:
            del self._queued[tenant]

    def _release(self, cost: float) -> None:
        self._in_flight = max(0.0, self._in_flight - cost)
        self._dispatch()

    def _dispatch(self) -> None:
        """Admits waiters from the head while their cost fits (the head
        waits rather than being overtaken, so a large request is not starved)."""
        while self._heap:
            head = self._heap[0]
            if head.granted.cancelled():
                heapq.heappop(self._heap)
                continue
            if self._in_flight > 0 and self._in_flight + head.cost > self.max_cost:
                return
            heapq.heappop(self._heap)
            self._vtime = max(self._vtime, head.start)
            self._in_flight += head.cost
            self._unqueue(head.tenant)
            head.granted.set_result(None)
        # Idle: forget tenants whose share has run out, so the table stays small.
        if len(self._finish) > 1024:
            self._finish = {t: f for t, f in self._finish.items() if f > self._vtime}
