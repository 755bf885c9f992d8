"""The ivf index kind's recall@10 and latency against TANU_IVF_NPROBE and
TANU_IVF_RERANK, in process, on the clustered synthetic templates of
``national_services.py`` (population modes with Zipf weights, subjects
around them, probes the same subject captured again).

    .venv/bin/python benchmarks/search/ivf_recall.py [--templates 100000] [--nlist 1024]

One partition (the searcher's ``PartitionIndex``, kind ivf, trained once it
holds enough templates), then for each (nprobe, rerank) of the sweep:
recall@10 of ``--probes`` probes against an exact blocked brute force, and
the search time per query at batch 1 and batch 32. The reference in the
same run is the exhaustive fp16 search of the same partition (recall and
time). Prints JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
from national_services import exact_top, generate, probes_of

from tanu.index import PartitionIndex

K = 10


def recall(index: PartitionIndex, q: np.ndarray, truth: np.ndarray) -> float:
    _, ids, _ = index.search_subjects(q, K)  # template id = gallery row here
    got = [set(row[row >= 0].tolist()) for row in ids]
    return float(np.mean([len(g & set(t.tolist())) / K for g, t in zip(got, truth, strict=True)]))


def ms_per_query(index: PartitionIndex, q: np.ndarray, batch: int, rounds: int = 3) -> float:
    best = float("inf")
    for _ in range(rounds):
        t = time.perf_counter()
        for lo in range(0, len(q), batch):
            index.search_subjects(q[lo : lo + batch], K)
        best = min(best, (time.perf_counter() - t) / len(q) * 1000)
    return round(best, 3)


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--templates", type=int, default=100_000)
    ap.add_argument("--nlist", type=int, default=1024, help="TANU_IVF_NLIST (its default)")
    ap.add_argument("--nprobes", default="16,32,64")
    ap.add_argument("--reranks", default="4,10,20,40,64")
    ap.add_argument("--probes", type=int, default=300)
    ap.add_argument("--modes", type=int, default=2048)
    ap.add_argument("--between", type=float, default=0.06)
    ap.add_argument("--within", type=float, default=0.02)
    args = ap.parse_args()
    res: dict = {"templates": args.templates, "nlist": args.nlist, "cores": os.cpu_count(),
                 "load_before": os.getloadavg()}  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        t, _ = generate(Path(tmp), args.templates, args)
        gallery = np.load(t)
    _, q = probes_of(gallery, args.probes, args.within)
    truth = exact_top(gallery, q, K)
    tids = np.arange(len(gallery), dtype=np.int64)
    subs = np.asarray([f"NAT{i:010d}" for i in range(len(gallery))], dtype=object)
    fp16 = PartitionIndex(gallery.shape[1], "l2", "fp16", kernel_min_batch=0)
    fp16.add(tids, subs, gallery)
    res["fp16_exhaustive"] = {"recall@10": round(recall(fp16, q, truth), 4),
                              "b1_ms": ms_per_query(fp16, q[:50], 1, 1),
                              "b32_ms": ms_per_query(fp16, q, 32, 1)}  # fmt: skip
    del fp16
    ivf = PartitionIndex(gallery.shape[1], "l2", "ivf", nlist=args.nlist)
    t0 = time.perf_counter()
    ivf.add(tids, subs, gallery)
    res["train_and_add_s"] = round(time.perf_counter() - t0, 1)
    assert ivf.trained
    rows = []
    for nprobe in map(int, args.nprobes.split(",")):
        ivf.nprobe = ivf._ivf.nprobe = nprobe
        for rerank in map(int, args.reranks.split(",")):
            ivf.rerank = rerank
            rows.append({"nprobe": nprobe, "rerank": rerank,
                         "recall@10": round(recall(ivf, q, truth), 4),
                         "b1_ms": ms_per_query(ivf, q[:100], 1),
                         "b32_ms": ms_per_query(ivf, q, 32)})  # fmt: skip
            print(json.dumps(rows[-1]), flush=True)
    res["sweep"] = rows
    print(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
