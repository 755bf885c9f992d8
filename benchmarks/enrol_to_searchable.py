"""Enrol-to-searchable latency on a real local cluster (``tanu up``):
for each of N enrolments through gateway A (no wait_indexed), the time from
sending the Enroll until an Identify through gateway B (another process)
first returns the subject, and how often the very first Identify after the
acknowledgement already did (read-your-writes says: always).

    .venv/bin/python benchmarks/enrol_to_searchable.py [--n 200] [--concurrency 4]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "reliability"))

from harness import Client, LocalUp, Tally, unit_vectors  # noqa: E402
from loadgen import pct  # noqa: E402


async def main(args) -> dict:
    up = LocalUp(Path(tempfile.mkdtemp(prefix="tanu-ryw-")) / "var", partitions=args.partitions)
    up.start()
    try:
        a = Client(up.state()["gateway"], up.token)
        b = Client(up.extra_gateway(), up.token)
        vecs = unit_vectors(args.n, seed=5)
        ack_s, searchable_s, first_try, tally = [], [], 0, Tally("bench")
        queue = list(range(args.n))

        async def worker() -> None:
            nonlocal first_try
            while queue:
                i = queue.pop()
                sid = f"bench-{i}"
                t0 = time.perf_counter()
                if await a.enroll(sid, vecs[i], tally) != "enrolled":
                    continue
                ack_s.append(time.perf_counter() - t0)
                tries = 0
                while True:
                    r = await b.identify(vecs[i])
                    tries += 1
                    if r is not None and r.candidates and r.candidates[0].subject_id == sid:
                        break
                    if time.perf_counter() - t0 > 30:
                        break
                searchable_s.append(time.perf_counter() - t0)
                first_try += tries == 1

        t0 = time.perf_counter()
        await asyncio.gather(*[worker() for _ in range(args.concurrency)])
        wall = time.perf_counter() - t0
        await a.close()
        await b.close()
    finally:
        up.stop()
    return {
        "n": args.n, "concurrency": args.concurrency, "partitions": args.partitions,
        "acknowledged": len(ack_s), "enrol_ack_p50_ms": round(pct(ack_s, 50) * 1e3, 1),
        "enrol_ack_p99_ms": round(pct(ack_s, 99) * 1e3, 1),
        "enrol_to_searchable_p50_ms": round(pct(searchable_s, 50) * 1e3, 1),
        "enrol_to_searchable_p99_ms": round(pct(searchable_s, 99) * 1e3, 1),
        "found_on_first_identify": f"{first_try}/{len(searchable_s)}",
        "wall_s": round(wall, 1),
    }  # fmt: skip


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=200)
    p.add_argument("--concurrency", type=int, default=4)
    p.add_argument("--partitions", type=int, default=2)
    print(json.dumps(asyncio.run(main(p.parse_args())), indent=1))
