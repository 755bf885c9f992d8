"""The ivf kind at national scale, in the searchers' own index: N clustered
templates (default 20 million, 128-d; a Gaussian mixture on the sphere
shaped like real embeddings, the generator of ``national_services.py``) in
P ivf ``PartitionIndex``es in one process, searched as the gateway does
(every partition, top-k merged), against exact fp32 search for recall@k.

    .venv/bin/python benchmarks/search/national_ivf.py [--templates 20000000]
        [--partitions 4] [--nlist 1024] [--settings 64:40,128:200]

Reports the build (index adds, the IVF-PQ training included), memory (RSS
growth, bytes per template) and, for each search setting (nprobe:rerank),
recall@10 of mated probes against exact search over the fp32 templates
(kept on disk meanwhile, in a temporary folder) and Identify latency and
throughput at batch 1 and 32. The same run measures the fp16
kind's exact scan (FAISS, as the searcher runs it at batch 1) of the same
partitions' fp16 copies as the reference an ivf search is meant to beat. In process, not through the
services: the services at 20M do not fit in a session on this machine
(benchmarks/RESULTS.md, search/national_services).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import faiss
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from national import add_chunk, exact_top, merged_search, rss, subject, timed  # noqa: E402
from national_services import _modes, _unit  # noqa: E402

from tanu.index import PartitionIndex  # noqa: E402

DIM = 128


def clustered_chunk(c: int, size: int, n: int, modes, weights, args) -> np.ndarray:
    """Chunk ``c`` of the gallery, from its own seed (regenerated for the
    exact pass): a subject per row around a Zipf-weighted mode, captured once."""
    rows = min(size, n - c * size)
    rng = np.random.default_rng(1000 + c)
    k = rng.choice(len(modes), size=rows, p=weights)
    person = _unit(modes[k] + args.between * rng.standard_normal((rows, DIM), np.float32))
    return _unit(person + args.within * rng.standard_normal((rows, DIM), np.float32)).astype(
        np.float32
    )


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--templates", type=int, default=20_000_000)
    ap.add_argument("--partitions", type=int, default=4)
    ap.add_argument("--chunk", type=int, default=500_000)
    ap.add_argument("--nlist", type=int, default=1024)
    ap.add_argument(
        "--settings",
        default="64:40,128:200",
        help="search settings to measure, nprobe:rerank each (rerank x top-k PQ candidates)",
    )
    ap.add_argument("--modes", type=int, default=2048)
    ap.add_argument("--between", type=float, default=0.06)
    ap.add_argument("--within", type=float, default=0.02)
    ap.add_argument("--probes", type=int, default=200, help="mated probes for recall@k")
    ap.add_argument("--seconds", type=float, default=15.0, help="per latency measurement")
    ap.add_argument("--k", type=int, default=10)
    args = ap.parse_args()
    n, k, size = args.templates, args.k, args.chunk
    chunks = (n + size - 1) // size
    say = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
    modes, weights = _modes(args.modes, 7)
    pick = np.sort(np.random.default_rng(4242).choice(n, args.probes, replace=False))
    probes = np.zeros((args.probes, DIM), np.float32)

    settings = [tuple(map(int, x.split(":"))) for x in args.settings.split(",")]
    work = tempfile.TemporaryDirectory(prefix="tanu-national-ivf-")
    fp32 = np.lib.format.open_memmap(
        Path(work.name) / "templates.npy", mode="w+", dtype=np.float32, shape=(n, DIM)
    )
    base = rss()
    parts = [PartitionIndex(DIM, "l2", "ivf", nlist=args.nlist) for _ in range(args.partitions)]
    t_add = 0.0
    for c in range(chunks):
        v = clustered_chunk(c, size, n, modes, weights, args)
        lo = c * size
        fp32[lo : lo + len(v)] = v
        sel = pick[(pick >= lo) & (pick < lo + len(v))]
        probes[np.searchsorted(pick, sel)] = v[sel - lo]
        t_add += add_chunk(parts, v, lo)[1]
        if c % 8 == 0:
            say(
                f"  {lo + len(v):,} / {n:,} added ({t_add:.0f} s in add, RSS {rss() / 2**30:.1f} GiB)"
            )
    grown = rss() - base
    assert all(p.trained for p in parts), "a partition is too small to train its IVF"
    # The same subject captured again.
    rng = np.random.default_rng(99)
    probes = _unit(probes + args.within * rng.standard_normal(probes.shape, np.float32))
    probes = probes.astype(np.float32)

    say("  exact ground truth ...")
    best_i = exact_top(probes, (np.asarray(fp32[lo : lo + size]) for lo in range(0, n, size)), k)
    exact = [{subject(int(i)) for i in row} for row in best_i]
    measured = []
    for nprobe, rerank in settings:
        for p in parts:
            p.nprobe, p.rerank = nprobe, rerank
            faiss.downcast_index(p._ivf).nprobe = nprobe
        _, names = merged_search(parts, probes, k)
        recall = float(np.mean([len(set(a) & e) / k for a, e in zip(names, exact, strict=True)]))
        rank1 = float(np.mean([a[0] == subject(int(p)) for a, p in zip(names, pick, strict=True)]))
        say(f"  nprobe {nprobe}, rerank {rerank}: recall@{k} {recall:.4f}; timing ...")
        per_batch = {
            b: timed(lambda q: merged_search(parts, q, k), probes, b, args.seconds) for b in (1, 32)
        }
        measured.append((nprobe, rerank, recall, rank1, per_batch))
    # The reference: the exact scan of the same partitions' fp16 copies at batch 1.
    say("  exact fp16 scan at batch 1 ...")
    flat_ref = timed(lambda q: [p._index.search(q, k) for p in parts], probes, 1, args.seconds)

    gib = 2**30
    print(f"\nivf at national scale: {n:,} x {DIM}-d clustered ({args.modes} modes) in "
          f"{args.partitions} ivf partitions (PartitionIndex, one process); nlist {args.nlist}; "
          f"top-{k}")  # fmt: skip
    print(f"machine: {os.cpu_count()} cores, faiss {faiss.__version__}, {time.strftime('%Y-%m-%d')}, "
          f"load average at the end {os.getloadavg()[0]:.1f}")  # fmt: skip
    print(f"build: {t_add:.1f} s in add ({n / t_add:,.0f} templates/s, IVF-PQ training included)")
    print(
        f"memory: RSS +{grown / gib:.2f} GiB = {grown / n:.0f} B/template; process RSS {rss() / gib:.1f} GiB"
    )
    print(f"exact fp16 scan (FAISS), batch 1: p50 {flat_ref['p50_ms']:.1f} ms")
    print(f"{'nprobe':>6} {'rerank':>6} | recall@{k} rank-1 | b1 q/s  p50 ms  p99 ms | "
          f"b32 q/s  p50 ms  p99 ms | b1 vs exact")  # fmt: skip
    for nprobe, rerank, recall, rank1, r in measured:
        a, b = r[1], r[32]
        print(f"{nprobe:>6} {rerank:>6} | {recall:>9.4f} {rank1:>6.3f} | {a['per_s']:>6.1f} "
              f"{a['p50_ms']:>7.1f} {a['p99_ms']:>7.1f} | {b['per_s']:>7.1f} {b['p50_ms']:>7.1f} "
              f"{b['p99_ms']:>7.1f} | {flat_ref['p50_ms'] / a['p50_ms']:>5.1f}x faster")  # fmt: skip
    del fp32
    work.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
