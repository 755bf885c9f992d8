"""What one image costs the detector: wall time and the process's peak RSS
increase for one request, each case in a fresh process (peak RSS only grows).

    .venv/bin/python benchmarks/image_cost.py [--cases bomb,photo,photo_max] [--max-pixels 40000000]

Cases: ``bomb`` a blank RGB PNG of the largest square the pixel limit
allows (about 100 KB of file); ``photo`` a real face photo (Grace Hopper,
512x600 JPEG); ``photo_max`` that photo upscaled to the largest size the
limit allows (JPEG). The detector runs in this process as the service runs
it (``DetectorService.detect``: decoding, the cascade, quality), without NATS.
Run the same script with another checkout's interpreter to compare
(``/path/to/other/.venv/bin/python benchmarks/image_cost.py``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))


def make(case: str, max_pixels: int) -> bytes:
    import numpy as np
    from photos import blank_png, encode, originals
    from PIL import Image

    side = math.isqrt(max_pixels)
    if case == "bomb":
        return blank_png(side, side)
    hopper = originals()["hopper"]
    if case == "photo":
        return encode(hopper)
    h, w = hopper.shape[:2]
    k = math.sqrt(max_pixels / (w * h))
    big = Image.fromarray(hopper).resize((int(w * k), int(h * k)), Image.BICUBIC)
    return encode(np.asarray(big))


def one(case: str, path: str, max_pixels: int) -> dict:
    """Runs one detection of the image in ``path`` in this process (made by
    the parent, so that making it does not count) and reports it."""
    from tanu.core import config as cfg
    from tanu.core import errors
    from tanu.detector.service import DetectorService
    from tanu.v1 import detector_pb2

    data = Path(path).read_bytes()
    env = {"TANU_MODEL_DIR": str(ROOT / "var" / "models"), "TANU_MAX_IMAGE_PIXELS": str(max_pixels)}
    svc = DetectorService(cfg.from_env(cfg.DetectorConfig, env))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    async def go():
        try:
            reply = await svc.detect(detector_pb2.DetectRequest(image=data))
            return f"{len(reply.faces)} faces in {reply.width}x{reply.height}"
        except errors.TanuError as exc:
            return f"{exc.code.name}: {exc.message}"
        finally:
            await svc.release()

    start = time.perf_counter()
    outcome = asyncio.run(go())
    seconds = time.perf_counter() - start
    svc.close()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "case": case,
        "file_bytes": len(data),
        "outcome": outcome,
        "seconds": round(seconds, 2),
        "peak_rss_increase_mib": round((peak - before) / 1024, 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cases", default="bomb,photo,photo_max")
    ap.add_argument("--max-pixels", type=int, default=40_000_000)
    ap.add_argument("--timeout-s", type=float, default=300)
    ap.add_argument("--one", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        print(json.dumps(one(*args.one, args.max_pixels)))
        return
    tmp = Path(tempfile.mkdtemp(prefix="tanu-image-cost-"))
    for case in args.cases.split(","):
        path = tmp / case
        path.write_bytes(make(case, args.max_pixels))
        cmd = [
            sys.executable,
            __file__,
            "--one",
            case,
            str(path),
            "--max-pixels",
            str(args.max_pixels),
        ]
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout_s)
            line = r.stdout.strip().splitlines()[-1] if r.stdout.strip() else r.stderr[-500:]
        except subprocess.TimeoutExpired:
            line = json.dumps({"case": case, "outcome": f"still running after {args.timeout_s}s"})
        print(line, flush=True)


if __name__ == "__main__":
    main()
