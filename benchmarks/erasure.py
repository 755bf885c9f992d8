"""Erasure through the gateway on a local cluster: Delete latency, the
share of receipts complete when Delete returns, and how long until the
final receipt (every snapshot purged) is signed.

    .venv/bin/python benchmarks/erasure.py [--deletes 50] [--partitions 2] [--replicas 2]

The cluster is the one `tanu up` runs (nats-server + store + searchers with
snapshots + gateway as subprocesses); the subjects are bulk-loaded into the
store and relayed to the searchers, then deleted one at a time through
Identity.Delete. Prints JSON: p50/p99 of Delete, the complete share, and
p50/p99 of the time until GetErasureReceipt says snapshots_purged.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from loadgen import pct  # noqa: E402

from tanu.core import envelope, secrets, vectors  # noqa: E402
from tanu.core.config import Layout  # noqa: E402
from tanu.ops.local import LocalCluster  # noqa: E402
from tanu.store import Store  # noqa: E402
from tanu.v1 import common_pb2, identity_pb2, identity_pb2_grpc  # noqa: E402

DIM = 128


async def run(address: str, token: str, n: int, final_wait_s: float) -> dict:
    async with secrets.aio_channel(address, token) as ch:
        stub = identity_pb2_grpc.IdentityStub(ch)
        probe = identity_pb2.IdentifyRequest(sample=common_pb2.BiometricSample(
            template=common_pb2.Template(vector=vectors.to_bytes(np.ones(DIM, np.float32) / DIM**0.5))))  # fmt: skip
        end = time.perf_counter() + 300
        while (await stub.Identify(probe, timeout=30)).gallery_size < n:
            if time.perf_counter() > end:
                raise TimeoutError("the gallery did not fill")
            await asyncio.sleep(0.2)
        lat, complete, started = [], 0, {}
        for i in range(n):
            t = time.perf_counter()
            d = await stub.Delete(identity_pb2.DeleteRequest(subject_id=f"e{i}"), timeout=60)
            lat.append(time.perf_counter() - t)
            complete += d.receipt.complete
            started[d.receipt.receipt_id] = (f"e{i}", t)
        final: list[float] = []
        end = time.perf_counter() + final_wait_s
        while started and time.perf_counter() < end:
            for rid, (sid, t) in list(started.items()):
                r = await stub.GetErasureReceipt(
                    identity_pb2.GetErasureReceiptRequest(receipt_id=rid, subject_id=sid))  # fmt: skip
                if r.snapshots_purged:
                    final.append(time.perf_counter() - t)
                    del started[rid]
            await asyncio.sleep(1.0)
    return {
        "deletes": n, "delete_p50_ms": round(pct(lat, 50) * 1e3, 1),
        "delete_p99_ms": round(pct(lat, 99) * 1e3, 1),
        "complete_on_return": f"{complete}/{n} ({100 * complete / n:.1f}%)",
        "final_receipts": f"{len(final)}/{n}",
        "final_p50_s": round(pct(final, 50), 1) if final else None,
        "final_p99_s": round(pct(final, 99), 1) if final else None,
    }  # fmt: skip


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    ap.add_argument("--deletes", type=int, default=50)
    ap.add_argument("--partitions", type=int, default=2)
    ap.add_argument("--replicas", type=int, default=2)
    ap.add_argument("--final-wait", type=float, default=90.0,
                    help="seconds to wait for the final receipts")  # fmt: skip
    args = ap.parse_args()
    rng = np.random.default_rng(1)
    gallery = rng.standard_normal((args.deletes, DIM)).astype(np.float32)
    gallery /= np.linalg.norm(gallery, axis=1, keepdims=True)
    with tempfile.TemporaryDirectory(prefix="tanu-bench-") as tmp:
        var = Path(tmp) / "var"
        keyenv = secrets.provision(var / "keys")
        token = (var / "keys" / "operator.token").read_text()
        db = Store(var / "store.sqlite3", Layout(partitions=args.partitions, dimension=DIM),
                   envelope.LocalKeyProvider.from_file(keyenv["TANU_MASTER_KEY_FILE"]))  # fmt: skip
        consent = common_pb2.Consent(purposes=[secrets.DEFAULT_PURPOSE], evidence_ref="bench")
        db.put_many([(f"e{i}", gallery[i : i + 1]) for i in range(args.deletes)], "1980-01-01",
                    consent)  # fmt: skip
        db.close()
        env = dict(os.environ, TANU_LOG_LEVEL="warning", TANU_DIMENSION=str(DIM))
        cluster = LocalCluster(var, args.partitions, args.replicas, 0, 0, env,
                               say=lambda m: print("  " + m, file=sys.stderr))  # fmt: skip
        try:
            cluster.start()
            address = f"127.0.0.1:{cluster.procs[-1].grpc_port}"
            figures = asyncio.run(run(address, token, args.deletes, args.final_wait))
        finally:
            cluster.stop()
    print(json.dumps({
        "benchmark": "erasure", "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}",
        "partitions": args.partitions, "replicas": args.replicas, **figures,
    }, indent=2))  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
