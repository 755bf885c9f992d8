"""Gallery-restricted search against unrestricted search on the same
partition index: 1M x 128 templates, top-10 L2, for a gallery holding 10%
of them, for ALL with 1% of the templates inactive (every position but a
few masked in), and for ALL with nothing inactive (the reference: no mask
work at all), at batch 1, 16 and 256, fp32 (flat: Tanu's exact kernel) and
fp16 (FAISS below batch 128, with an IDSelectorBitmap when restricted; the
kernel from 128).

    .venv/bin/python benchmarks/search/galleries.py [--templates 1000000] [--seconds 2]

Each figure is the median wall time of one search call over ``--seconds``;
the ratio is against the unrestricted search measured in the same run.
Every restricted result is checked to hold only members, and k of them.
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


def median_ms(fn, queries: np.ndarray, batch: int, seconds: float) -> float:
    fn(queries[:batch])
    times, i, end = [], 0, time.perf_counter() + seconds
    while time.perf_counter() < end or len(times) < 3:
        q = queries[(i * batch) % (len(queries) - batch) :][:batch]
        t = time.perf_counter()
        fn(q)
        times.append(time.perf_counter() - t)
        i += 1
    return 1000 * float(np.median(times))


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--templates", type=int, default=1_000_000)
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--seconds", type=float, default=2.0)
    args = ap.parse_args()
    n, d = args.templates, args.dim
    rng = np.random.default_rng(1)
    g = rng.standard_normal((n, d), dtype=np.float32)
    g /= np.linalg.norm(g, axis=1, keepdims=True)
    q = (g[rng.integers(0, n, 2048)] + 0.05 * rng.standard_normal((2048, d))).astype(np.float32)
    in_gallery = rng.random(n) < 0.10
    ids = np.arange(n, dtype=np.int64)
    print(f"gallery-restricted vs unrestricted top-{K}, L2, {n} x {d}; {os.cpu_count()} cores; "
          f"faiss {faiss.__version__}; numpy {np.__version__}; {time.strftime('%Y-%m-%d')}")  # fmt: skip
    print(f"gallery G: {in_gallery.sum()} members ({in_gallery.mean():.1%}); "
          f"ALL-1%: 1% of templates inactive")  # fmt: skip
    print(f"{'kind':>5} {'batch':>5} | {'ALL ms':>8} | {'G ms':>8} {'G/ALL':>6} | "
          f"{'ALL-1% ms':>9} {'ratio':>6}")  # fmt: skip
    for kind in ("flat", "fp16"):
        idx = PartitionIndex(d, "l2", kind)
        idx.add(ids, np.full(n, "s", dtype=object), g)
        members = ids[in_gallery]
        idx.set_memberships(members, Memberships.uniform(len(members), ["G"]))
        for batch in (1, 16, 256):
            full = median_ms(lambda x, i=idx: i.search(x, K), q, batch, args.seconds)
            gal = median_ms(lambda x, i=idx: i.search(x, K, "G"), q, batch, args.seconds)
            _, got = idx.search(q[:batch], K, "G")
            assert np.isin(got, members).all() and (got >= 0).sum(1).min() == K
            print(f"{kind:>5} {batch:>5} | {full:>8.2f} | {gal:>8.2f} {gal / full:>6.2f} | ",
                  end="", flush=True)  # fmt: skip
            off = ids[::100]  # ALL-1%: deactivated for this measurement
            idx.set_memberships(off, Memberships.uniform(len(off), [], inactive=True))
            most = median_ms(lambda x, i=idx: i.search(x, K), q, batch, args.seconds)
            _, got = idx.search(q[:batch], K)
            assert not np.isin(got, off).any()
            idx.set_memberships(off, Memberships.uniform(len(off), []))  # active again
            idx.set_memberships(np.intersect1d(off, members),
                                Memberships.uniform(len(np.intersect1d(off, members)), ["G"]))  # fmt: skip
            print(f"{most:>9.2f} {most / full:>6.2f}")
        mem = idx.memory_bytes()
        print(f"{kind}: gallery bitmaps {mem['galleries'] / n:.3f} B/template "
              f"(vectors {mem['vectors'] / n:.0f} B/template)")  # fmt: skip
        del idx
    return 0


if __name__ == "__main__":
    sys.exit(main())
