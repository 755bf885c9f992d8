"""benchmarks/gpu/run.sh keeps working without a GPU: its --cpu mode runs
every section (exact fp16 flat, IVF, the face embedder on the CPU provider)
on a tiny gallery, passes its own top-k correctness check, and prints each
section's ratio to its bound. Times are not asserted, only that the ratios
are finite positive figures."""

from __future__ import annotations

import math
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RATIO = re.compile(r"^ratio (flat|ivf|face) b=(\d+): ([0-9.]+(?:e[-+]?\d+)?) of ", re.M)


def test_run_sh_cpu_prints_every_ratio():
    proc = subprocess.run(
        [
            "bash",
            "benchmarks/gpu/run.sh",
            "--cpu",
            "--templates",
            "5000",
            "--dim",
            "128",
            "--batch",
            "64",
            "--reps",
            "2",
            "--nprobe",
            "8",
            "--face-batches",
            "1,2",
            "--time-budget",
            "120",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    seen = {(m.group(1), int(m.group(2))): float(m.group(3)) for m in RATIO.finditer(out)}
    want = {("flat", 1), ("flat", 64), ("ivf", 1), ("ivf", 64), ("face", 1), ("face", 2)}
    assert want <= set(seen), out
    assert all(math.isfinite(v) and v > 0 for v in seen.values()), out
    assert re.search(r"^flat top-10 check on \d+ queries .*: ok$", out, re.M), out
    assert re.search(r"^ivf nprobe 8: recall@10 (0\.\d+|1\.0+) vs exact", out, re.M), out


def test_gpu_mode_without_cuda_refuses_clearly():
    """Without --cpu and with no CUDA device (or no torch) it says so and exits 2, not a traceback."""
    probe = subprocess.run(
        [
            "bash",
            "-c",
            "python3 -c 'import torch,sys; sys.exit(0 if torch.cuda.is_available() else 1)'",
        ],
        capture_output=True,
    )
    if probe.returncode == 0:
        pytest.skip("a CUDA device is here: the GPU path is the benchmark itself")
    proc = subprocess.run(
        ["bash", "benchmarks/gpu/run.sh", "--templates", "1000"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "run with --cpu" in proc.stdout
