"""Memory a searcher needs beyond its partition to write and to restore its
encrypted snapshot, against the partition's own vectors, in one run.

    .venv/bin/python benchmarks/search/snapshot_memory.py [--templates 1000000] [--kind flat]

Each phase runs in a fresh process that first builds a ``PartitionIndex``
of N synthetic 128-d templates, then resets the kernel's peak-RSS mark
(``/proc/self/clear_refs``), and reports the peak resident memory above
what it held before the phase (VmHWM - VmRSS), so allocations inside FAISS
and the cipher count too (tracemalloc sees only Python's):

- write: ``PartitionIndex.export`` on the index (the consistent cut) and
  ``snapshot.write`` (encrypt, write, fsync, rename), the live index kept;
- read: ``snapshot.read`` and ``PartitionIndex.restore`` into an empty
  index (what a restarted searcher does); the restored index itself is
  one "vectors" of the figure.

At 20M x 128 in 4 partitions on a 23 GB machine, the snapshot writes of
format 4 (2.2x a partition beyond the index while writing) were what the
OOM killer stopped (benchmarks/RESULTS.md).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

DIM = 128


def _status(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(field)


def _build(n: int, kind: str):
    from tanu.index import PartitionIndex

    idx = PartitionIndex(DIM, "cosine", kind, nlist=1024, nprobe=64, rerank=150)
    rng = np.random.default_rng(1)
    chunk = 250_000
    for a in range(0, n, chunk):
        m = min(chunk, n - a)
        v = rng.standard_normal((m, DIM)).astype(np.float32)
        v /= np.linalg.norm(v, axis=1, keepdims=True)
        ids = np.arange(a + 1, a + m + 1, dtype=np.int64)
        idx.add(ids, [f"KZ-{i:012d}" for i in range(a, a + m)], v)
    return idx


def phase(which: str, n: int, kind: str, folder: Path) -> dict:
    """One phase, in this (fresh) process."""
    from tanu.index import PartitionIndex, snapshot

    key = bytes(range(32))
    binding = {"format": 2, "partition": 0, "kind": kind}
    path = folder / "p.snap"
    idx = _build(n, kind)
    vectors = idx.memory_bytes()["vectors"]
    if which == "read":
        snapshot.write(path, key, binding, idx.export(1))
        del idx
    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to VmRSS
    base = _status("VmRSS")
    t = time.perf_counter()
    if which == "write":
        size = snapshot.write(path, key, binding, idx.export(1))
    else:
        size = path.stat().st_size
        back = PartitionIndex(DIM, "cosine", kind, nlist=1024, nprobe=64, rerank=150)
        back.restore(snapshot.read(path, key, binding))
        assert len(back) == n
    seconds = time.perf_counter() - t
    peak = _status("VmHWM") - base
    return {"phase": which, "vectors_bytes": vectors, "peak_above_bytes": peak,
            "peak_over_vectors": round(peak / vectors, 3), "seconds": round(seconds, 2),
            "file_bytes": size}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--templates", type=int, default=1_000_000)
    ap.add_argument("--kind", default="flat", choices=["flat", "fp16", "ivf"])
    ap.add_argument("--phase", choices=["write", "read"], help=argparse.SUPPRESS)
    ap.add_argument("--folder", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.phase:
        print(json.dumps(phase(args.phase, args.templates, args.kind, Path(args.folder))))
        return
    print(f"# snapshot memory: {args.templates:,} x {DIM} {args.kind}, {platform.node()}, "
          f"{os.cpu_count()} CPUs, {time.strftime('%Y-%m-%d %H:%M')}")  # fmt: skip
    for which in ("write", "read"):
        with tempfile.TemporaryDirectory(prefix="tanu-snapmem-") as tmp:
            run = subprocess.run(
                [sys.executable, __file__, "--phase", which, "--templates", str(args.templates),
                 "--kind", args.kind, "--folder", tmp],
                capture_output=True, text=True,
            )  # fmt: skip
        if run.returncode:
            sys.exit(f"the {which} phase failed ({run.returncode}):\n{run.stderr[-3000:]}")
        r = json.loads(run.stdout.strip().splitlines()[-1])
        print(f"{which:5}: peak {r['peak_above_bytes'] / 2**20:,.0f} MiB above the process "
              f"= {r['peak_over_vectors']:.2f}x the partition's vectors "
              f"({r['vectors_bytes'] / 2**20:,.0f} MiB); {r['seconds']:.2f} s; "
              f"file {r['file_bytes'] / 2**20:,.0f} MiB")  # fmt: skip


if __name__ == "__main__":
    main()
