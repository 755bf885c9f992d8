"""Gallery-restricted search against unrestricted search on the same
partition index: 1M x 128 templates, top-10 L2, at batch 1, 16 and 256, fp32
(flat: Tanu's exact kernel) and fp16 (FAISS below batch 128, with an
``IDSelectorBitmap`` when restricted; the kernel from 128).

- ALL: nothing inactive, no gallery: the unrestricted path (no mask work),
  the reference;
- G: a gallery holding 10% of the templates (the kernel gathers its rows);
- ALL-1%: ALL while 1% of the templates are inactive (every other position
  masked in: the kernel scores every row and masks the inactive ones).

    .venv/bin/python benchmarks/search/galleries.py [--templates 1000000] [--rounds 9]

The three are timed in interleaved rounds on the same index (each round one
call of each; the ALL-1% call deactivates 1% first and reactivates them
after, outside the timing), so load from other processes hits them alike;
each figure is the median of the rounds, the ratio against ALL measured in
the same rounds. Every restricted result is checked to hold only allowed
templates, and k of them.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import faiss
import numpy as np

from tanu.index import PartitionIndex
from tanu.index.galleries import Memberships

K = 10


def timed(fn, *args) -> tuple[float, object]:
    t = time.perf_counter()
    out = fn(*args)
    return 1000 * (time.perf_counter() - t), out


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--templates", type=int, default=1_000_000)
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--rounds", type=int, default=9)
    args = ap.parse_args()
    n, d = args.templates, args.dim
    rng = np.random.default_rng(1)
    g = rng.standard_normal((n, d), dtype=np.float32)
    g /= np.linalg.norm(g, axis=1, keepdims=True)
    q = (g[rng.integers(0, n, 4096)] + 0.05 * rng.standard_normal((4096, d))).astype(np.float32)
    ids = np.arange(n, dtype=np.int64)
    members = ids[rng.random(n) < 0.10]
    off = ids[::100]  # the 1% made inactive for ALL-1%
    print(f"gallery-restricted vs unrestricted top-{K}, L2, {n} x {d}; {os.cpu_count()} cores; "
          f"faiss {faiss.__version__}; numpy {np.__version__}; {time.strftime('%Y-%m-%d')}; "
          f"median of {args.rounds} interleaved rounds")  # fmt: skip
    print(f"G: {len(members)} members ({len(members) / n:.1%}); ALL-1%: {len(off)} inactive")
    print(f"{'kind':>5} {'batch':>5} | {'ALL ms':>8} | {'G ms':>8} {'G/ALL':>6} | "
          f"{'ALL-1% ms':>9} {'/ALL':>5}")  # fmt: skip
    for kind in ("flat", "fp16"):
        idx = PartitionIndex(d, "l2", kind)
        idx.add(ids, np.full(n, "s", dtype=object), g)
        idx.set_memberships(members, Memberships.uniform(len(members), ["G"]))
        was_g = np.isin(off, members)
        for batch in (1, 16, 256):
            times: dict[str, list[float]] = {"all": [], "g": [], "most": []}
            for r in range(args.rounds + 1):  # round 0 warms up
                x = q[(r * batch) % (len(q) - batch) :][:batch]
                t_all, _ = timed(idx.search, x, K)
                t_g, (_, got) = timed(idx.search, x, K, "G")
                assert np.isin(got, members).all() and (got >= 0).sum(1).min() == K
                idx.set_memberships(off, Memberships.uniform(len(off), [], inactive=True))
                t_most, (_, got) = timed(idx.search, x, K)
                assert not np.isin(got, off).any() and (got >= 0).sum(1).min() == K
                idx.set_memberships(off, Memberships.uniform(len(off), []))  # active again
                idx.set_memberships(off[was_g], Memberships.uniform(int(was_g.sum()), ["G"]))
                if r:
                    times["all"].append(t_all)
                    times["g"].append(t_g)
                    times["most"].append(t_most)
            a, gg, m = (float(np.median(times[k])) for k in ("all", "g", "most"))
            print(f"{kind:>5} {batch:>5} | {a:>8.2f} | {gg:>8.2f} {gg / a:>6.2f} | "
                  f"{m:>9.2f} {m / a:>5.2f}", flush=True)  # fmt: skip
        mem = idx.memory_bytes()
        print(f"{kind}: gallery bitmaps {mem['galleries'] / n:.3f} B/template for 1 gallery + "
              f"the inactive flag (vectors {mem['vectors'] / n:.0f} B/template)")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
