"""``make test-reliability``: every fault scenario against one real local
cluster (``tanu up``), in order, with a table of what each saw.

    python tests/reliability/run.py [--enrolments 2000] [--faces 20] [--erasures 50]

Bounded: each scenario has a count and every wait a deadline. Exit status
1 when anything was lost, duplicated or answered wrongly.
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

from harness import LocalUp  # noqa: E402
from scenarios import (  # noqa: E402
    Run,
    erasure_under_load,
    gateways_same_faces,
    kill_searchers_and_nats,
    kill_store,
    whole_cluster_restart,
)

COLUMNS = ("scenario", "acknowledged", "lost", "duplicates", "wrong", "partial",
           "receipts_complete", "recovery_s", "retries")  # fmt: skip


def table(rows: list[dict]) -> str:
    out = [" | ".join(COLUMNS), " | ".join("---" for _ in COLUMNS)]
    out += [" | ".join(str(r[c]) for c in COLUMNS) for r in rows]
    notes = [f"- {r['scenario']}: {r['notes']}" for r in rows if r["notes"]]
    return "\n".join(out + ([""] + notes if notes else []))


async def main(args) -> int:
    var = Path(args.var or tempfile.mkdtemp(prefix="tanu-reliability-")) / "var"
    up = LocalUp(var, partitions=args.partitions)
    t0 = time.monotonic()
    print(f"starting tanu up in {var} ...", flush=True)
    up.start()
    run, rows = Run(up), []
    try:
        for scenario in (
            lambda: kill_store(run, args.enrolments, args.kills),
            lambda: kill_searchers_and_nats(run, args.enrolments, args.kills),
            lambda: gateways_same_faces(run, args.faces),
            lambda: erasure_under_load(run, args.erasures),
            lambda: whole_cluster_restart(run),
        ):
            tally = await scenario()
            rows.append(tally.row())
            print(json.dumps(rows[-1]), flush=True)
    finally:
        up.stop()
    print(f"\n{table(rows)}\n\nin {time.monotonic() - t0:.0f}s", flush=True)
    bad = any(r["lost"] or r["duplicates"] or r["wrong"] for r in rows)
    return 1 if bad else 0


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--enrolments", type=int, default=2000)
    p.add_argument("--kills", type=int, default=5)
    p.add_argument("--faces", type=int, default=20)
    p.add_argument("--erasures", type=int, default=50)
    p.add_argument("--partitions", type=int, default=2)
    p.add_argument(
        "--var", default="", help="a folder for the cluster (default: a new temporary one)"
    )
    sys.exit(asyncio.run(main(p.parse_args())))
