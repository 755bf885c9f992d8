"""Shared by the benchmarks: percentiles and a closed-loop load generator
(``concurrency`` callers, each sending its next request as soon as the last
one is answered, for ``seconds``)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence


def pct(xs: Sequence[float], q: float) -> float:
    """The q-th percentile (nearest rank) of ``xs``."""
    s = sorted(xs)
    return s[min(len(s) - 1, int(round(q / 100 * (len(s) - 1))))]


def figures(latencies_s: Sequence[float], items: int, wall_s: float) -> dict:
    """Throughput and latency percentiles in the form every benchmark prints."""
    return {
        "per_s": items / wall_s,
        "p50_ms": pct(latencies_s, 50) * 1e3,
        "p99_ms": pct(latencies_s, 99) * 1e3,
    }


async def load(
    call: Callable[[object], Awaitable[object]],
    requests: Sequence,
    concurrency: int,
    seconds: float,
    failure: Callable[[BaseException], str | None] = lambda _exc: None,
) -> dict:
    """Figures of the answered requests. A request that raises stops the
    run, unless ``failure(exc)`` names it (e.g. a status code): then it is
    counted under that name in ``figures["failed"]`` and the run goes on."""
    try:
        await call(requests[0])  # warm-up
    except Exception as exc:
        if failure(exc) is None:
            raise
    lat: list[float] = []
    failed: dict[str, int] = {}
    end = time.perf_counter() + seconds
    counter = iter(range(10**12))

    async def caller() -> None:
        while time.perf_counter() < end:
            req = requests[next(counter) % len(requests)]
            t = time.perf_counter()
            try:
                await call(req)
            except Exception as exc:
                name = failure(exc)
                if name is None:
                    raise
                failed[name] = failed.get(name, 0) + 1
                continue
            lat.append(time.perf_counter() - t)

    start = time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(concurrency)))
    out = figures(lat or [0.0], len(lat), time.perf_counter() - start)
    if failed:
        out["failed"] = failed
    return out
