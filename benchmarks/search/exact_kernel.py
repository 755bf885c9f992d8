"""Tanu's exact batched top-k kernel (``tanu.index.kernel``) against FAISS's
exact flat search, on the same gallery and queries, at batch 1, 16, 64 and
256, for 128-d and 512-d galleries in fp32 (flat) and fp16; and both as a
share of the machine's dense matmul peak measured in the same run.

    .venv/bin/python benchmarks/search/exact_kernel.py [--templates 1000000] [--dims 128,512]

GFLOP/s counts the matrix product's 2·n·d flops per query, for both.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import faiss
import numpy as np

from tanu.index import PartitionIndex

K = 10


def matmul_peak(reps: int = 5) -> float:
    """Best of ``reps`` 2048² fp32 matrix products, in GFLOP/s."""
    a = np.random.default_rng(0).standard_normal((2048, 2048)).astype(np.float32)
    a @ a
    best = 0.0
    for _ in range(reps):
        t = time.perf_counter()
        a @ a
        best = max(best, 2 * 2048**3 / (time.perf_counter() - t))
    return best / 1e9


def gallery_and_queries(n: int, d: int, nq: int = 4096):
    rng = np.random.default_rng(1)
    g = rng.standard_normal((n, d), dtype=np.float32)
    g /= np.linalg.norm(g, axis=1, keepdims=True)
    q = g[rng.integers(0, n, nq)] + rng.standard_normal((nq, d), dtype=np.float32) * 0.05
    return g, q.astype(np.float32)


def gflops(search, queries: np.ndarray, n: int, batch: int, seconds: float = 2.0) -> float:
    """Best observed GFLOP/s of ``search(batch of queries)`` over ``seconds``."""
    d = queries.shape[1]
    search(queries[:batch])
    best, i, end = 0.0, 0, time.perf_counter() + seconds
    while time.perf_counter() < end:
        q = queries[(i * batch) % (len(queries) - batch) :][:batch]
        t = time.perf_counter()
        search(q)
        best = max(best, 2 * batch * n * d / (time.perf_counter() - t))
        i += 1
    return best / 1e9


def kernel_line(n: int = 1_000_000, d: int = 128, peak: float | None = None) -> str:
    """The headline: the kernel and FAISS flat (L2, fp32) at batch 256."""
    peak = peak or matmul_peak()
    g, q = gallery_and_queries(n, d, 1024)
    ours = PartitionIndex(d, "l2", "flat", kernel_min_batch=1)
    ours.add(np.arange(n), np.full(n, "s", dtype=object), g)
    flat = faiss.IndexFlatL2(d)
    flat.add(g)
    mine = gflops(lambda x: ours.search(x, K), q, n, 256)
    theirs = gflops(lambda x: flat.search(x, K), q, n, 256)
    return (f"Tanu exact kernel at batch 256: {mine:.1f} GFLOP/s = {mine / peak:.0%} of peak "
            f"(FAISS flat: {theirs / peak:.0%})")  # fmt: skip


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--templates", type=int, default=1_000_000)
    ap.add_argument("--dims", default="128,512")
    ap.add_argument("--seconds", type=float, default=2.0)
    args = ap.parse_args()
    peak = matmul_peak()
    print(f"exact top-{K}, L2, {args.templates} templates; {os.cpu_count()} cores; faiss "
          f"{faiss.__version__}; numpy {np.__version__}; {time.strftime('%Y-%m-%d')}")  # fmt: skip
    print(f"machine peak (numpy 2048^2 fp32 matmul): {peak:.1f} GFLOP/s")
    print(f"{'d':>4} {'kind':>5} {'batch':>5} | {'FAISS GFLOP/s':>13} {'%peak':>6} | "
          f"{'Tanu GFLOP/s':>12} {'%peak':>6} | {'Tanu/FAISS':>10}")  # fmt: skip
    for d in map(int, args.dims.split(",")):
        g, q = gallery_and_queries(args.templates, d)
        for kind in ("flat", "fp16"):
            ours = PartitionIndex(d, "l2", kind, kernel_min_batch=1)
            ours.add(np.arange(args.templates), np.full(args.templates, "s", dtype=object), g)
            theirs = PartitionIndex(d, "l2", kind, kernel_min_batch=0)  # FAISS
            theirs.add(np.arange(args.templates), np.full(args.templates, "s", dtype=object), g)
            for batch in (1, 16, 64, 256):
                f = gflops(
                    lambda x, i=theirs: i.search(x, K), q, args.templates, batch, args.seconds
                )
                t = gflops(lambda x, i=ours: i.search(x, K), q, args.templates, batch, args.seconds)
                print(f"{d:>4} {kind:>5} {batch:>5} | {f:>13.1f} {f / peak:>6.0%} | {t:>12.1f} "
                      f"{t / peak:>6.0%} | {t / f:>10.2f}")  # fmt: skip
            del ours, theirs
        del g, q
    print(kernel_line(args.templates, 128, peak))
    return 0


if __name__ == "__main__":
    sys.exit(main())
