"""National scale: N templates (default 20 million, 128-d) in P fp16
partitions (the searcher's PartitionIndex, id map included, in one process)
against one raw FAISS IndexScalarQuantizer fp16 holding the same vectors.

    .venv/bin/python benchmarks/search/national.py [--templates 20000000] [--partitions 4]
        [--batches 1,32,256]

Reports build time, memory (RSS growth, bytes per template, and the id
map's share), search throughput and latency percentiles at batch sizes 1,
32 and 256 (partitioned: every partition searched and the top-k merged, as
the gateway does; raw: one call), the ratio of the two, and recall@k of both
against exact fp32 search on a sample of queries. Vectors are generated in
chunks from per-chunk seeds (never all N in fp32 at once), so the exact
pass can regenerate them.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import faiss
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from loadgen import pct  # noqa: E402

from tanu.core.ids import partition_of  # noqa: E402
from tanu.index import PartitionIndex  # noqa: E402

DIM = 128


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def chunk(c: int, size: int, n: int) -> np.ndarray:
    rows = min(size, n - c * size)
    v = np.random.default_rng(1000 + c).standard_normal((rows, DIM), dtype=np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    return v


def subject(i: int) -> str:
    return f"KZ-{i:012d}"


def add_chunk(parts: list[PartitionIndex], v: np.ndarray, lo: int) -> tuple[float, float]:
    """Adds gallery rows ``lo..`` to their subjects' partitions; returns the
    seconds spent on subject ids and partition hashes, and in the adds."""
    t = time.perf_counter()
    names = [subject(i) for i in range(lo, lo + len(v))]
    where = np.fromiter((partition_of(s, len(parts)) for s in names), np.int64, len(v))
    ids = np.arange(lo, lo + len(v), dtype=np.int64)
    hashing = time.perf_counter() - t
    t = time.perf_counter()
    for p, idx in enumerate(parts):
        rows = np.flatnonzero(where == p)
        idx.add(ids[rows], [names[r] for r in rows], v[rows])
    return hashing, time.perf_counter() - t


def exact_top(q: np.ndarray, chunks, k: int) -> np.ndarray:
    """Gallery rows of the exact L2 top-k of each query, over the gallery
    given as consecutive fp32 chunks."""
    best_d = np.full((len(q), k), np.inf, np.float32)
    best_i = np.full((len(q), k), -1, np.int64)
    qq = (q**2).sum(1)[:, None]
    lo = 0
    for v in chunks:
        d = qq - 2 * q @ v.T + (v**2).sum(1)[None, :]
        top = np.argpartition(d, k, axis=1)[:, :k]
        cd = np.concatenate([best_d, np.take_along_axis(d, top, 1)], 1)
        ci = np.concatenate([best_i, top + lo], 1)
        o = np.argsort(cd, 1)[:, :k]
        best_d, best_i = np.take_along_axis(cd, o, 1), np.take_along_axis(ci, o, 1)
        lo += len(v)
    return best_i


def merged_search(parts: list[PartitionIndex], q: np.ndarray, k: int):
    """Every partition, then the top-k of the union (the gateway's merge)."""
    all_s, all_sub = [], []
    for p in parts:
        s, _, subs = p.search_subjects(q, k)
        all_s.append(s)
        all_sub.append(subs)
    scores = np.concatenate(all_s, axis=1)
    order = np.argsort(scores, axis=1)[:, :k]
    names = [
        [n for rows in all_sub for n in rows[i] + [None] * (k - len(rows[i]))]
        for i in range(len(q))
    ]
    return np.take_along_axis(scores, order, 1), [
        [names[i][j] for j in order[i]] for i in range(len(q))
    ]


def timed(fn, queries: np.ndarray, batch: int, seconds: float, min_calls: int = 3) -> dict:
    lat, n, i = [], 0, 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds or i < min_calls:
        q = queries[(i * batch) % (len(queries) - batch) :][:batch]
        t = time.perf_counter()
        fn(q)
        lat.append(time.perf_counter() - t)
        n += batch
        i += 1
    wall = time.perf_counter() - start
    return {"per_s": n / wall, "p50_ms": pct(lat, 50) * 1e3, "p99_ms": pct(lat, 99) * 1e3,
            "calls": i}  # fmt: skip


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--templates", type=int, default=20_000_000)
    ap.add_argument("--partitions", type=int, default=4)
    ap.add_argument("--chunk", type=int, default=500_000)
    ap.add_argument("--seconds", type=float, default=20.0, help="per throughput measurement")
    ap.add_argument("--recall-queries", type=int, default=100)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument(
        "--batches",
        default="1,32,256",
        help="query batch sizes (256: exact batched de-duplication of an enrolment queue)",
    )
    args = ap.parse_args()
    batches = [int(b) for b in args.batches.split(",")]
    n, k, size = args.templates, args.k, args.chunk
    chunks = (n + size - 1) // size
    say = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
    rng = np.random.default_rng(7)

    # Queries: mates of random gallery rows (a small perturbation), picked while generating.
    nq = max(2 * max(batches) + 1, args.recall_queries)
    pick = np.sort(rng.choice(n, nq, replace=False))
    queries = np.zeros((nq, DIM), np.float32)

    base_rss = rss()
    parts = [PartitionIndex(DIM, "l2", "fp16") for _ in range(args.partitions)]
    t_gen = t_hash = t_add = 0.0
    for c in range(chunks):
        t = time.perf_counter()
        v = chunk(c, size, n)
        lo = c * size
        t_gen += time.perf_counter() - t
        sel = pick[(pick >= lo) & (pick < lo + len(v))]
        queries[np.searchsorted(pick, sel)] = v[sel - lo]
        hashing, adding = add_chunk(parts, v, lo)
        t_hash += hashing
        t_add += adding
        if c % 8 == 0:
            say(
                f"  partitions: {lo + len(v):,} / {n:,} added ({t_add:.0f} s in add, RSS {rss() / 2**30:.1f} GiB)"
            )
    part_rss = rss() - base_rss
    mem = [p.memory_bytes() for p in parts]
    id_map = sum(m["id_map"] for m in mem)
    queries += np.random.default_rng(8).standard_normal(queries.shape).astype(np.float32) * 0.02

    before = rss()
    raw = faiss.IndexScalarQuantizer(DIM, faiss.ScalarQuantizer.QT_fp16, faiss.METRIC_L2)
    t_raw = 0.0
    for c in range(chunks):
        v = chunk(c, size, n)
        t = time.perf_counter()
        raw.add(v)
        t_raw += time.perf_counter() - t
    raw_rss = rss() - before
    say(f"  raw: {raw.ntotal:,} added in {t_raw:.0f} s")

    # Exact top-k of a sample, over fp32 regenerated chunk by chunk.
    rq = queries[: args.recall_queries]
    best_i = exact_top(rq, (chunk(c, size, n) for c in range(chunks)), k)
    _, raw_i = raw.search(rq, k)
    _, part_names = merged_search(parts, rq, k)
    exact_names = [{subject(int(i)) for i in row} for row in best_i]
    recall_raw = np.mean(
        [len(set(r.tolist()) & set(e.tolist())) / k for r, e in zip(raw_i, best_i, strict=True)]
    )
    recall_part = np.mean(
        [len(set(p) & e) / k for p, e in zip(part_names, exact_names, strict=True)]
    )
    rank1_part = np.mean(
        [p[0] == subject(int(e[0])) for p, e in zip(part_names, best_i, strict=True)]
    )

    results = {}
    for batch in batches:
        say(f"  searching at batch {batch} ...")
        results[("raw", batch)] = timed(lambda q: raw.search(q, k), queries, batch, args.seconds)
        results[("part", batch)] = timed(
            lambda q: merged_search(parts, q, k), queries, batch, args.seconds
        )

    gib = 2**30
    print(f"\nnational scale: {n:,} x {DIM}-d fp16 in {args.partitions} partitions (PartitionIndex, one process) "
          f"vs one raw FAISS IndexScalarQuantizer fp16; top-{k}")  # fmt: skip
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"faiss {faiss.__version__}, {time.strftime('%Y-%m-%d')}")  # fmt: skip
    print(f"build: partitions {t_add:.1f} s in add ({n / t_add:,.0f} templates/s), raw {t_raw:.1f} s; "
          f"(data generation {t_gen:.1f} s, subject ids + partition hash {t_hash:.1f} s, not counted)")  # fmt: skip
    print(f"memory: partitions RSS +{part_rss / gib:.2f} GiB = {part_rss / n:.0f} B/template "
          f"(vectors 256 B, id map {id_map / n:.1f} B incl. subject ids); raw RSS +{raw_rss / gib:.2f} GiB "
          f"= {raw_rss / n:.0f} B/template; process RSS {rss() / gib:.1f} GiB")  # fmt: skip
    print(f"recall@{k} vs exact fp32 ({len(rq)} mated queries): partitioned {recall_part:.4f}, raw {recall_raw:.4f}; "
          f"rank-1 partitioned {rank1_part:.3f}")  # fmt: skip
    print(
        f"{'batch':>5} | {'raw q/s':>8} {'p50 ms':>8} {'p99 ms':>8} | {'part q/s':>8} {'p50 ms':>8} {'p99 ms':>8} | ratio"
    )
    for batch in batches:
        r, p = results[("raw", batch)], results[("part", batch)]
        print(f"{batch:>5} | {r['per_s']:>8.2f} {r['p50_ms']:>8.1f} {r['p99_ms']:>8.1f} | "
              f"{p['per_s']:>8.2f} {p['p50_ms']:>8.1f} {p['p99_ms']:>8.1f} | {p['per_s'] / r['per_s']:.2f}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
