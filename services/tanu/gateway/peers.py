"""Failed authentication, per peer: limited before it costs anything, and
audited in aggregate.

A peer (the gRPC peer's address or the REST remote address, without the
port) may fail authentication ``burst`` times and then ``rate_per_s`` times
a second; past that its failed attempts are refused with
RESOURCE_EXHAUSTED without further work. No failed authentication writes
to the store on its own: each is counted per (peer, operation, reason),
and every ``interval_s`` one audit entry per key records the count. A flood
of unauthenticated requests therefore costs the store one write per peer
and reason per interval, whatever its rate.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from tanu.core import errors, logs

log = logs.get(__name__)

# Peers tracked at once; past this the oldest are forgotten (their buckets
# refill) and new aggregation keys fold into one "other" peer.
MAX_PEERS = 10_000

# Why a token was refused, as a short reason for the aggregate.
_REASONS = (
    ("no credentials", "missing"),
    ("Bearer", "scheme"),
    ("malformed", "malformed"),
    ("signature", "signature"),
    ("claims", "claims"),
    ("expired", "expired"),
)


def reason_of(exc: errors.TanuError) -> str:
    """A short, bounded reason for an authentication failure."""
    if isinstance(exc, errors.ResourceExhausted):
        return "peer_rate_limited"
    for words, reason in _REASONS:
        if words in exc.message:
            return reason
    return "other"


def peer_host(peer: str) -> str:
    """The address part of a gRPC peer (``ipv4:1.2.3.4:5678``,
    ``ipv6:[::1]:5678``) or a REST remote, without the port; bounded."""
    p = peer or "unknown"
    for prefix in ("ipv4:", "ipv6:"):
        if p.startswith(prefix):
            p = p[len(prefix) :]
            if p.startswith("["):
                p = p[1 : p.find("]")] if "]" in p else p
            elif prefix == "ipv4:":
                p = p.rsplit(":", 1)[0]
    return p[:64]


class PeerFailures:
    """The per-peer failed-authentication budget and its audit aggregate."""

    def __init__(
        self,
        rate_per_s: float,
        burst: int,
        interval_s: float,
        write: Callable[[str, str, str, int, float], Awaitable[None]],
    ) -> None:
        self.rate_per_s = rate_per_s
        self.burst = max(1, burst)
        self.interval_s = interval_s
        self._write = write  # (peer, operation, reason, count, interval_s)
        self._buckets: dict[str, tuple[float, float]] = {}
        self._counts: dict[tuple[str, str, str], int] = {}
        self._task: asyncio.Task[None] | None = None

    def over_budget(self, peer: str, now: float | None = None) -> float:
        """Seconds until ``peer`` may fail again; 0.0 when it may now."""
        now = time.monotonic() if now is None else now
        level, last = self._buckets.get(peer, (float(self.burst), now))
        level = min(float(self.burst), level + (now - last) * self.rate_per_s)
        if level >= 1.0:
            return 0.0
        return (1.0 - level) / self.rate_per_s if self.rate_per_s > 0 else 60.0

    def failed(self, peer: str, operation: str, reason: str, now: float | None = None) -> None:
        """Counts one failed authentication of ``peer`` (spending its budget)."""
        now = time.monotonic() if now is None else now
        level, last = self._buckets.pop(peer, (float(self.burst), now))
        level = min(float(self.burst), level + (now - last) * self.rate_per_s)
        if len(self._buckets) >= MAX_PEERS:
            self._buckets.pop(next(iter(self._buckets)))
        self._buckets[peer] = (max(0.0, level - 1.0), now)  # re-inserted: newest last
        key = (peer, operation, reason)
        if key not in self._counts and len(self._counts) >= MAX_PEERS:
            key = ("other", operation, reason)
        self._counts[key] = self._counts.get(key, 0) + 1
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._flush_later(), name="auth-failures")

    async def _flush_later(self) -> None:
        logs.request_id_var.set("")
        await asyncio.sleep(self.interval_s)
        await self.flush()

    async def flush(self) -> None:
        """Writes one audit entry per (peer, operation, reason) counted since the last flush."""
        counts, self._counts = self._counts, {}
        for (peer, operation, reason), n in counts.items():
            try:
                await self._write(peer, operation, reason, n, self.interval_s)
            except errors.TanuError as exc:
                log.error("auth_failure_audit_failed", failures=n, error=exc.message)

    async def close(self) -> None:
        """Writes what is counted (the last interval's entries)."""
        if self._task and not self._task.done():
            self._task.cancel()
        await self.flush()
