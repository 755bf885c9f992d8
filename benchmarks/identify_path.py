"""Identify through the whole path (gateway → NATS scatter → 4 searcher
processes → gather) against raw FAISS on the same vectors, in one run.

    .venv/bin/python benchmarks/identify_path.py [--templates 100000] [--partitions 4]

The cluster is the one `tanu up` runs (nats-server + store + searchers +
gateway as subprocesses). The gallery is bulk-loaded into the store, relayed
through JetStream and applied by the searchers, as a real import would be.
Prints throughput and p50/p99 latency at each concurrency, the same for raw
FAISS (one exact index, same vectors, same queries), and the ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import faiss
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from loadgen import pct  # noqa: E402

from tanu.core import envelope, secrets, vectors
from tanu.core.config import Layout
from tanu.ops.local import LocalCluster  # noqa: E402
from tanu.store import Store
from tanu.v1 import common_pb2, identity_pb2, identity_pb2_grpc

DIM = 128

TOKEN = [""]  # the operator token of the benchmark's cluster, set in main()


def synthetic(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    v = rng.standard_normal((n, DIM)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def summary(lat_s: list[float], wall_s: float) -> dict:
    return {
        "requests": len(lat_s),
        "throughput_per_s": len(lat_s) / wall_s,
        "p50_ms": pct(lat_s, 50) * 1e3,
        "p99_ms": pct(lat_s, 99) * 1e3,
        "mean_ms": statistics.fmean(lat_s) * 1e3,
    }


def raw_faiss(gallery: np.ndarray, queries: np.ndarray, concurrency: int, k: int) -> dict:
    """The reference: one exact FAISS index over the same vectors. Concurrency
    c is served the way the best in-process server would: c queries per call."""
    index = faiss.IndexFlatL2(DIM)
    index.add(gallery)
    index.search(queries[:concurrency], k)  # warm-up
    lat: list[float] = []
    start = time.perf_counter()
    for i in range(0, len(queries) - concurrency + 1, concurrency):
        t = time.perf_counter()
        index.search(queries[i : i + concurrency], k)
        lat.extend([time.perf_counter() - t] * concurrency)
    return summary(lat, time.perf_counter() - start)


async def service(address: str, queries: np.ndarray, concurrency: int, k: int) -> dict:
    samples = [
        identity_pb2.IdentifyRequest(
            sample=common_pb2.BiometricSample(
                template=common_pb2.Template(vector=vectors.to_bytes(q))
            ),
            top_k=k,
        )
        for q in queries
    ]
    async with secrets.aio_channel(address, TOKEN[0]) as ch:
        stub = identity_pb2_grpc.IdentityStub(ch)
        for s in samples[:concurrency]:
            await stub.Identify(s, timeout=30)  # warm-up
        lat: list[float] = []
        partial = 0
        it = iter(samples)

        async def worker() -> None:
            nonlocal partial
            for s in it:
                t = time.perf_counter()
                r = await stub.Identify(s, timeout=30)
                lat.append(time.perf_counter() - t)
                partial += not r.complete

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        out = summary(lat, time.perf_counter() - start)
        out["partial_replies"] = partial
        return out


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def wait_gallery(address: str, n: int, timeout: float) -> float:
    start = time.perf_counter()
    probe = identity_pb2.IdentifyRequest(
        sample=common_pb2.BiometricSample(
            template=common_pb2.Template(vector=vectors.to_bytes(synthetic(1, 9)[0]))
        ),
        top_k=1,
    )
    async with secrets.aio_channel(address, TOKEN[0]) as ch:
        stub = identity_pb2_grpc.IdentityStub(ch)
        while time.perf_counter() - start < timeout:
            r = await stub.Identify(probe, timeout=30)
            if r.complete and r.gallery_size == n:
                return time.perf_counter() - start
            await asyncio.sleep(0.2)
    raise TimeoutError(f"gallery did not reach {n} templates in {timeout}s")


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--templates", type=int, default=100_000)
    ap.add_argument("--partitions", type=int, default=4)
    ap.add_argument("--concurrency", default="1,16")
    ap.add_argument(
        "--requests",
        type=int,
        default=400,
        help="requests per concurrency level (x concurrency/4 above 4)",
    )
    ap.add_argument("--top-k", type=int, default=10)
    ap.add_argument("--json", help="also write the figures to this file")
    args = ap.parse_args()

    gallery = synthetic(args.templates, seed=1)
    # Probes: noisy copies of enrolled templates (real identify traffic finds someone).
    rng = np.random.default_rng(2)
    picks = rng.integers(0, args.templates, size=args.requests * 8)
    queries = (
        gallery[picks] + rng.standard_normal((len(picks), DIM)).astype(np.float32) * 0.02
    ).astype(np.float32)

    with tempfile.TemporaryDirectory(prefix="tanu-bench-") as tmp:
        var = Path(tmp) / "var"
        layout = Layout(partitions=args.partitions, dimension=DIM)
        t = time.perf_counter()
        keyenv = secrets.provision(var / "keys")
        TOKEN[0] = (var / "keys" / "operator.token").read_text()
        db = Store(
            var / "store.sqlite3", layout,
            envelope.LocalKeyProvider.from_file(keyenv["TANU_MASTER_KEY_FILE"]),
        )  # fmt: skip
        consent = common_pb2.Consent(purposes=[secrets.DEFAULT_PURPOSE], evidence_ref="bench")
        for lo in range(0, args.templates, 20_000):
            db.put_many(
                [
                    (f"citizen-{i}", gallery[i : i + 1])
                    for i in range(lo, min(lo + 20_000, args.templates))
                ],
                "1980-01-01",
                consent,
            )
        db.close()
        load_s = time.perf_counter() - t
        env = {k: v for k, v in os.environ.items()}
        env.update(TANU_LOG_LEVEL="warning", TANU_DIMENSION=str(DIM))
        cluster = LocalCluster(
            var, args.partitions, 1, 0, 0, env, say=lambda m: print("  " + m, file=sys.stderr)
        )
        try:
            t = time.perf_counter()
            cluster.start()
            address = f"127.0.0.1:{cluster.procs[-1].grpc_port}"
            asyncio.run(wait_gallery(address, args.templates, 600))
            index_s = time.perf_counter() - t
            rows = []
            for c in [int(x) for x in args.concurrency.split(",")]:
                n = args.requests * max(1, c // 4)
                q = queries[:n]
                ref = raw_faiss(gallery, q, c, args.top_k)
                svc = asyncio.run(service(address, q, c, args.top_k))
                rows.append(
                    {
                        "concurrency": c,
                        "service": svc,
                        "raw_faiss": ref,
                        "throughput_ratio": svc["throughput_per_s"] / ref["throughput_per_s"],
                        "p50_overhead_ms": svc["p50_ms"] - ref["p50_ms"],
                    }
                )
            mem = {p.name: round(rss_mb(p.pid), 1) for p in cluster.procs}
        finally:
            cluster.stop()

    result = {
        "benchmark": "identify_path",
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}, faiss {faiss.__version__}",
        "templates": args.templates,
        "partitions": args.partitions,
        "dimension": DIM,
        "top_k": args.top_k,
        "bulk_load_s": round(load_s, 2),
        "relay_and_index_s": round(index_s, 2),
        "rss_mb": mem,
        "raw_index_mb": round(args.templates * DIM * 4 / 2**20, 1),
        "rows": rows,
    }
    print(
        f"\nidentify_path: {args.templates} x {DIM}-d templates, {args.partitions} partitions, top-{args.top_k}"
    )
    print(
        f"bulk load into the store {load_s:.1f}s; cluster start + relay + JetStream + searchers indexed all in {index_s:.1f}s"
    )
    print(
        f"{'conc':>4} | {'service q/s':>11} {'p50 ms':>7} {'p99 ms':>7} | {'raw q/s':>9} {'p50 ms':>7} {'p99 ms':>7} "
        f"| {'q/s ratio':>9} {'p50 overhead ms':>15}"
    )
    for r in rows:
        s, f = r["service"], r["raw_faiss"]
        print(
            f"{r['concurrency']:>4} | {s['throughput_per_s']:>11.1f} {s['p50_ms']:>7.2f} {s['p99_ms']:>7.2f} | "
            f"{f['throughput_per_s']:>9.1f} {f['p50_ms']:>7.2f} {f['p99_ms']:>7.2f} | "
            f"{r['throughput_ratio']:>9.2f} {r['p50_overhead_ms']:>15.2f}"
        )
    print(
        "resident memory (MB):",
        ", ".join(f"{k} {v}" for k, v in mem.items()),
        f"| raw fp32 vectors {result['raw_index_mb']} MB",
    )
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
