"""Searcher restart: rebuilding a partition from the event stream against
loading an encrypted snapshot and replaying only the tail, in one run.

    .venv/bin/python benchmarks/search/restart.py [--templates 1000000] [--tail 1000]

One partition of N synthetic 128-d templates: bulk-written to the store,
relayed through a real nats-server's JetStream, applied by a searcher
(rebuild); that searcher writes its snapshot; T more enrolments arrive; a
new searcher restores the snapshot and replays the T-event tail. Reports
seconds until each is caught up (SERVING), snapshot size and write time.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from tanu.core import config as cfg
from tanu.core import envelope, logs, secrets
from tanu.ops.natsd import NatsServer
from tanu.searcher import SearcherService
from tanu.store import Store, StoreService


def synthetic(n: int, seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal((n, 128)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


async def caught_up(env: dict) -> tuple[SearcherService, float]:
    t = time.perf_counter()
    s = await SearcherService(cfg.from_env(cfg.SearcherConfig, env)).start()
    await s.caught_up.wait()
    return s, time.perf_counter() - t


async def run(args) -> None:
    with tempfile.TemporaryDirectory(prefix="tanu-restart-") as tmp:
        tmp = Path(tmp)
        nats = NatsServer(tmp / "nats").start()
        env = {
            "TANU_NATS_URL": nats.url, "TANU_PARTITIONS": "1", "TANU_STORE_DB": str(tmp / "store.sqlite3"),
            "TANU_RELAY_BATCH": "4096", "TANU_APPLY_BATCH": "4096", "TANU_SHUTDOWN_GRACE_S": "1",
            "TANU_SNAPSHOT_DIR": str(tmp / "snaps"), "TANU_SNAPSHOT_INTERVAL_S": "86400",
            "TANU_SNAPSHOT_KEY": base64.b64encode(os.urandom(32)).decode(), "TANU_INDEX_KIND": args.kind,
        }  # fmt: skip
        env.update({k: v for k, v in secrets.provision(tmp / "keys").items()
                    if k != "TANU_SNAPSHOT_KEY_FILE"})  # fmt: skip
        try:
            t = time.perf_counter()
            db = Store(env["TANU_STORE_DB"], cfg.Layout(partitions=1),
                             envelope.LocalKeyProvider.from_file(env["TANU_MASTER_KEY_FILE"]))  # fmt: skip
            for lo in range(0, args.templates, 50_000):
                vecs = synthetic(min(50_000, args.templates - lo), lo)
                db.put_many([(f"c{lo + i}", vecs[i : i + 1]) for i in range(len(vecs))])
            db.close()
            load_s = time.perf_counter() - t
            t = time.perf_counter()
            store = await StoreService(cfg.from_env(cfg.StoreConfig, env)).start()
            await store.relay.wait_idle(3600)
            relay_s = time.perf_counter() - t
            print(
                f"store: {args.templates} subjects written in {load_s:.1f}s; relayed in {relay_s:.1f}s",
                file=sys.stderr,
            )

            rebuilt, rebuild_s = await caught_up({**env, "TANU_SNAPSHOT_DIR": str(tmp / "snaps")})
            t = time.perf_counter()
            await rebuilt.take_snapshot()
            snap_write_s = time.perf_counter() - t
            snap_mb = rebuilt.snapshot_path.stat().st_size / 2**20
            size = len(rebuilt.index)
            rebuilt._snapshot_sequence = (
                rebuilt.index_sequence
            )  # the stop below need not rewrite it
            await rebuilt.stop()

            vecs = synthetic(args.tail, 10**9)
            await store.db.run(
                store.db.put_many, [(f"tail{i}", vecs[i : i + 1]) for i in range(args.tail)]
            )
            store.relay.wake()
            await store.relay.wait_idle(600)

            restored, restore_s = await caught_up(env)
            assert restored.restored_sequence > 0 and len(restored.index) == size + args.tail
            await restored.stop()
            await store.stop()
        finally:
            nats.stop()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"\nsearcher restart, {args.templates} x 128-d templates in one partition ({args.kind} index); "
        f"{platform.machine()}, {os.cpu_count()} cores; {time.strftime('%Y-%m-%d')}"
    )
    print(f"  rebuild from the stream ({args.templates} events):   {rebuild_s:8.1f} s to SERVING")
    print(f"  snapshot: {snap_mb:.0f} MB encrypted, written in {snap_write_s:.1f} s")
    print(f"  restart from snapshot + {args.tail}-event tail:     {restore_s:8.1f} s to SERVING")
    print(f"  speed-up: {rebuild_s / restore_s:.1f}x   (peak RSS of this process {rss:.0f} MB)")


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--templates", type=int, default=1_000_000)
    ap.add_argument("--tail", type=int, default=1000)
    ap.add_argument("--kind", default="flat", choices=["flat", "fp16"])
    args = ap.parse_args()
    logs.configure("bench", "warning")
    asyncio.run(run(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
