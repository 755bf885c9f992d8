"""Detector and embedder throughput through the services against raw
onnxruntime on the same images, in one run; and end-to-end enrolments/s.

    .venv/bin/python benchmarks/face_pipeline.py [--seconds 8] [--provider auto|cpu|cuda]

Services run as `tanu up` runs them (subprocesses, over NATS; the benchmark
calls the detector's and embedder's gRPC ports, and the gateway for
enrolment). The raw reference calls the same models in this process:
the MTCNN cascade on decoded arrays, and the recogniser's onnxruntime session
on pre-aligned chips, one item per call (batch 1) or 16 per call (what
concurrency 16 allows at best).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import grpc
import numpy as np
import onnxruntime as ort

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from loadgen import figures, load  # noqa: E402
from photos import originals, variants  # noqa: E402

from tanu.core import config as cfg  # noqa: E402
from tanu.core import secrets  # noqa: E402
from tanu.face import images, models  # noqa: E402
from tanu.face.embedding import Embedder  # noqa: E402
from tanu.face.mtcnn import MTCNN  # noqa: E402
from tanu.ops.local import LocalCluster  # noqa: E402
from tanu.v1 import (  # noqa: E402
    common_pb2,
    detector_pb2,
    detector_pb2_grpc,
    embedder_pb2,
    embedder_pb2_grpc,
    identity_pb2,
    identity_pb2_grpc,
)


def timed(fn, items: list, per_call: int, seconds: float) -> dict:
    """Calls fn on ``per_call`` items at a time for ``seconds``; items/s and per-call latency."""
    fn(items[:per_call])
    lat, n, i = [], 0, 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        batch = [items[(i + j) % len(items)] for j in range(per_call)]
        t = time.perf_counter()
        fn(batch)
        lat.append(time.perf_counter() - t)
        n += per_call
        i += per_call
    return figures(lat, n, time.perf_counter() - start)


async def services(cluster: LocalCluster, photos: list[bytes], faces: list, seconds: float) -> dict:
    ports = {p.name: p.grpc_port for p in cluster.procs}
    out: dict = {}
    async with (
        grpc.aio.insecure_channel(f"127.0.0.1:{ports['detector']}") as dch,
        grpc.aio.insecure_channel(f"127.0.0.1:{ports['embedder']}") as ech,
        secrets.aio_channel(
            f"127.0.0.1:{ports['gateway']}", (cluster.var / "keys" / "operator.token").read_text()
        ) as gch,
    ):
        detect = detector_pb2_grpc.DetectorStub(dch).Detect
        embed = embedder_pb2_grpc.EmbedderStub(ech).Embed
        enroll = identity_pb2_grpc.IdentityStub(gch).Enroll
        dreqs = [detector_pb2.DetectRequest(image=p) for p in photos]
        ereqs = [
            embedder_pb2.EmbedRequest(image=p, faces=[f])
            for p, f in zip(photos, faces, strict=True)
        ]
        for c in (1, 16):
            out[f"detector_c{c}"] = await load(lambda r: detect(r, timeout=60), dreqs, c, seconds)
            out[f"embedder_c{c}"] = await load(lambda r: embed(r, timeout=60), ereqs, c, seconds)
        ids = iter(range(10**9))

        async def enrol(photo: bytes):
            req = identity_pb2.EnrollRequest(
                subject_id=f"bench-{next(ids)}",
                allow_duplicate=True,
                sample=common_pb2.BiometricSample(image=photo),
                date_of_birth="1980-01-01",
                consent=identity_pb2.ConsentGrant(
                    purposes=[secrets.DEFAULT_PURPOSE], evidence_ref="bench"
                ),
            )
            r = await enroll(req, timeout=60)
            assert r.enrolled

        clean = [
            p
            for p, f in zip(photos, faces, strict=True)
            if f.quality.pose <= 0.6 and f.quality.face_size_px >= 60
        ]
        for c in (1, 16):
            out[f"enrol_c{c}"] = await load(enrol, clean, c, seconds)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--provider", default="auto")
    ap.add_argument("--json")
    args = ap.parse_args()

    model_dir = str(Path(__file__).resolve().parents[1] / "var" / "models")
    models.prepare(model_dir, say=lambda m: None)
    photos = [data for vs in (variants(a) for a in originals().values()) for data in vs.values()]
    arrays = [images.decode(p, 40_000_000) for p in photos]
    # The same onnxruntime threads as each model service gets under `tanu up`.
    threads = max(1, (os.cpu_count() or 1) // 2)

    # --- raw reference, same models, same images -------------------------
    mtcnn = MTCNN(
        models.mtcnn_dir(), providers=models.providers(args.provider), intra_op_threads=threads
    )
    dets = mtcnn.detect(arrays)
    emb = Embedder(
        cfg.from_env(
            cfg.EmbedderConfig,
            {
                "TANU_MODEL_DIR": model_dir,
                "TANU_ONNX_PROVIDER": args.provider,
                "TANU_ONNX_THREADS": str(threads),
            },
        )
    )
    chips = [emb.chip(a, d.landmarks[0]) for a, d in zip(arrays, dets, strict=True)]
    raw = {
        "detector_c1": timed(mtcnn.detect, arrays, 1, args.seconds),
        "detector_c16": timed(mtcnn.detect, arrays, 16, args.seconds),
        "embedder_c1": timed(lambda b: emb.run(np.stack(b)), chips, 1, args.seconds),
        "embedder_c16": timed(lambda b: emb.run(np.stack(b)), chips, 16, args.seconds),
    }

    # --- through the services ------------------------------------------
    with tempfile.TemporaryDirectory(prefix="tanu-bench-") as tmp:
        env = dict(
            os.environ,
            TANU_LOG_LEVEL="warning",
            TANU_MODEL_DIR=model_dir,
            TANU_ONNX_PROVIDER=args.provider,
            TANU_REQUEST_TIMEOUT_S="60",
        )
        cluster = LocalCluster(
            Path(tmp) / "var", 1, 1, 0, 0, env, say=lambda m: print("  " + m, file=sys.stderr)
        )
        try:
            cluster.start()
            faces = []

            async def detect_all():
                async with grpc.aio.insecure_channel(
                    f"127.0.0.1:{next(p.grpc_port for p in cluster.procs if p.name == 'detector')}"
                ) as ch:
                    stub = detector_pb2_grpc.DetectorStub(ch)
                    for p in photos:
                        faces.append(
                            (
                                await stub.Detect(detector_pb2.DetectRequest(image=p), timeout=60)
                            ).faces[0]
                        )

            asyncio.run(detect_all())
            svc = asyncio.run(services(cluster, photos, faces, args.seconds))
        finally:
            cluster.stop()

    result = {
        "benchmark": "face_pipeline",
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, onnxruntime {ort.__version__} "
        f"{models.providers(args.provider)[0]}",
        "images": len(photos),
        "raw": raw,
        "service": svc,
    }
    print(
        f"\nface_pipeline: {len(photos)} photos (3 people x 7 variants, 256-600 px), provider "
        f"{models.providers(args.provider)[0]}, {threads} threads"
    )
    print(
        f"{'what':<14} | {'service/s':>9} {'p50 ms':>8} {'p99 ms':>8} | {'raw/s':>8} {'p50 ms':>8} | {'ratio':>5}"
    )
    for key in ("detector_c1", "detector_c16", "embedder_c1", "embedder_c16"):
        s, r = svc[key], raw[key]
        print(
            f"{key:<14} | {s['per_s']:>9.1f} {s['p50_ms']:>8.1f} {s['p99_ms']:>8.1f} | "
            f"{r['per_s']:>8.1f} {r['p50_ms']:>8.1f} | {s['per_s'] / r['per_s']:>5.2f}"
        )
    for key in ("enrol_c1", "enrol_c16"):
        s = svc[key]
        print(
            f"{key:<14} | {s['per_s']:>9.1f} {s['p50_ms']:>8.1f} {s['p99_ms']:>8.1f} | "
            f"{'(end to end: decode, detect, quality, embed, de-dup search, store)'}"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
