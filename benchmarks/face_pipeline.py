"""The face pipeline through the services against the same models in this
process, in one run: detector and embedder against raw onnxruntime, and
enrolments/s end to end against an in-process detect-and-embed reference.

    .venv/bin/python benchmarks/face_pipeline.py [--seconds 8] [--provider auto|cpu|cuda]
        [--only embedder]

``--only embedder`` measures the embedder alone (concurrency 1 against raw
onnxruntime over gRPC and over NATS, and 16) and the gRPC floor; the
default is the full run.

Services run as `tanu up` runs them (subprocesses, over NATS; the benchmark
calls the detector's and embedder's gRPC ports, and the gateway for
enrolment; the embedder also over NATS on ``tanu.embed``, the path the
gateway takes). The image is decoded once, by the detector, which returns the
face's aligned chip; the embedder gets the chip (150x150x3 bytes), never
the image.

References, same models, same threads, in this process:
- raw onnxruntime: the MTCNN cascade on decoded arrays, and the
  recogniser's session on aligned chips, 1 item per call (batch 1) or 16
  per call (what concurrency 16 allows at best);
- detect-and-embed: per photo, what the detector and embedder do together
  (decode, detect, quality, cut the chip, embed), one photo after another.

Also printed: where the time of one request goes (each stage of the
in-process reference, and the embedder service's p50 over raw onnxruntime
against a bare gRPC round trip to the same process), and the bytes each
hop carries.
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
from grpc_health.v1 import health_pb2, health_pb2_grpc

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from loadgen import figures, load  # noqa: E402
from photos import originals, variants  # noqa: E402

from tanu.clients.face import FaceClient  # noqa: E402
from tanu.core import bus, secrets  # noqa: E402
from tanu.core import config as cfg  # noqa: E402
from tanu.face import chips, images, models, quality  # noqa: E402
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


async def alternate(raw_fn, raw_items: list, call, reqs: list, seconds: float, window=0.25):
    """The raw reference (``raw_fn(item)``, in this thread) and the service
    (``await call(req)``), each at concurrency 1 for ``seconds``, in
    alternating windows of ``window`` s: load from outside this benchmark
    (a shared machine) then falls on both alike. Item i of both lists is
    the same work. Returns (raw, service) figures."""
    raw_fn(raw_items[0])
    await call(reqs[0])
    lat: dict[str, list[float]] = {"raw": [], "svc": []}
    wall = {"raw": 0.0, "svc": 0.0}
    i = 0
    while wall["raw"] + wall["svc"] < 2 * seconds:
        for kind in ("raw", "svc"):
            start = time.perf_counter()
            while (t := time.perf_counter()) < start + window:
                j = i % len(reqs)
                i += 1
                if kind == "raw":
                    raw_fn(raw_items[j])
                else:
                    await call(reqs[j])
                lat[kind].append(time.perf_counter() - t)
            wall[kind] += time.perf_counter() - start
    return (
        figures(lat["raw"], len(lat["raw"]), wall["raw"]),
        figures(lat["svc"], len(lat["svc"]), wall["svc"]),
    )


async def services(
    cluster: LocalCluster, photos: list[bytes], seconds: float, emb: Embedder, ref: Reference,
    only: str = "",
) -> dict:  # fmt: skip
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
        health = health_pb2_grpc.HealthStub(ech).Check
        enroll = identity_pb2_grpc.IdentityStub(gch).Enroll
        dreqs = [detector_pb2.DetectRequest(image=p, chips=1) for p in photos]
        found = [await detect(r, timeout=60) for r in dreqs]
        faces = [f.faces[0] for f in found]
        ereqs = [embedder_pb2.EmbedRequest(chips=[f.chip]) for f in faces]
        out["bytes"] = {
            "image": float(np.mean([len(p) for p in photos])),
            "detect_request": float(np.mean([r.ByteSize() for r in dreqs])),
            "detect_reply": float(np.mean([f.ByteSize() for f in found])),
            "embed_request": float(np.mean([r.ByteSize() for r in ereqs])),
        }
        out["grpc_floor_c1"] = await load(
            lambda r: health(r, timeout=60), [health_pb2.HealthCheckRequest()], 1, seconds / 2
        )
        for c in (1, 16) if not only else ():
            out[f"detector_c{c}"] = await load(lambda r: detect(r, timeout=60), dreqs, c, seconds)
        # The chips the detector cut, as arrays: the raw reference embeds the same.
        arrays = [chips.from_bytes(f.chip.pixels, f.chip.side)[None] for f in faces]
        out["raw_embedder_c1"], out["embedder_c1"] = await alternate(
            emb.run, arrays, lambda r: embed(r, timeout=60), ereqs, seconds
        )
        out["embedder_c16"] = await load(lambda r: embed(r, timeout=60), ereqs, 16, seconds)
        # The path the gateway takes: NATS request/reply on tanu.embed (the
        # embedder's queue group), against raw onnxruntime in the same windows.
        nc = await bus.connect(cluster.nats.url_for("gateway"), "bench-face")
        try:
            face = FaceClient(nc, 60)
            out["raw_embedder_nats_c1"], out["embedder_nats_c1"] = await alternate(
                emb.run, arrays, face.embed, ereqs, seconds
            )
        finally:
            await nc.close()
        if only == "embedder":
            return out

        async def pipeline(req: detector_pb2.DetectRequest):
            """What the gateway's Samples does: detect (with the chip), embed the chip."""
            f = (await detect(req, timeout=60)).faces[0]
            r = await embed(embedder_pb2.EmbedRequest(chips=[f.chip]), timeout=60)
            assert len(r.templates) == 1

        ref.stages = dict.fromkeys(ref.stages, 0.0)
        out["reference"], out["pipeline_c1"] = await alternate(
            ref.one, photos, pipeline, dreqs, seconds * 2
        )
        out["reference_stages_ms"] = {k: v / ref.calls * 1e3 for k, v in ref.stages.items()}
        out["pipeline_c16"] = await load(pipeline, dreqs, 16, seconds)
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
        out["enrol_photos"] = len(clean)
        for c in (1, 16):
            out[f"enrol_c{c}"] = await load(enrol, clean, c, seconds)
    return out


class Reference:
    """Detect-and-embed in this process: what the detector and embedder
    services do for one photo, without transport."""

    def __init__(self, mtcnn: MTCNN, emb: Embedder) -> None:
        self.mtcnn, self.emb = mtcnn, emb
        self.stages: dict[str, float] = dict.fromkeys(
            ("decode", "detect", "quality", "chip", "embed"), 0.0
        )
        self.calls = 0

    def __call__(self, batch: list[bytes]) -> None:
        for data in batch:
            self.one(data)

    def one(self, data: bytes) -> np.ndarray:
        st, t0 = self.stages, time.perf_counter()
        self.calls += 1
        w, h = images.measure(data, 40_000_000)
        image = images.decode_reduced(data, 40_000_000, self.mtcnn.fit(h, w))
        t1 = time.perf_counter()
        det = self.mtcnn.detect([image.pixels])[0]
        sx, sy = image.scale
        marks = det.landmarks / np.array([sx, sy], np.float32)
        boxes = det.boxes / np.array([sx, sy, sx, sy], np.float32)
        t2 = time.perf_counter()
        for j in range(len(boxes)):
            quality.assess(image.pixels, boxes[j], marks[j], image.scale)
        t3 = time.perf_counter()
        j = int(np.argmax((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])))
        chip = chips.cut(image, marks[j], self.emb.points, self.emb.config.input_size)
        t4 = time.perf_counter()
        out = self.emb.run(chip[None])[0]
        t5 = time.perf_counter()
        for k, a, b in (("decode", t0, t1), ("detect", t1, t2), ("quality", t2, t3),
                        ("chip", t3, t4), ("embed", t4, t5)):  # fmt: skip
            st[k] += b - a
        return out


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--provider", default="auto")
    ap.add_argument("--json")
    ap.add_argument("--only", choices=["embedder"], default="", help="measure only this")
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
    chip_arrays = [emb.chip(a, d.landmarks[0]) for a, d in zip(arrays, dets, strict=True)]
    ref = Reference(mtcnn, emb)
    # At concurrency 1 the embedder and the whole pipeline are measured in
    # windows alternating with their references (``alternate``), below.
    raw = {"embedder_c16": timed(lambda b: emb.run(np.stack(b)), chip_arrays, 16, args.seconds)}
    if not args.only:
        raw["detector_c1"] = timed(mtcnn.detect, arrays, 1, args.seconds)
        raw["detector_c16"] = timed(mtcnn.detect, arrays, 16, args.seconds)

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
            svc = asyncio.run(services(cluster, photos, args.seconds, emb, ref, args.only))
            for key in (
                "raw_embedder_c1",
                "raw_embedder_nats_c1",
                "reference",
                "reference_stages_ms",
            ):
                if key in svc:
                    raw[key.removeprefix("raw_")] = svc.pop(key)
        finally:
            cluster.stop()

    provider = models.providers(args.provider)[0]
    result = {
        "benchmark": "face_pipeline",
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, onnxruntime {ort.__version__} "
        f"{provider}",
        "load_average": os.getloadavg(),
        "images": len(photos),
        "raw": raw,
        "service": svc,
    }
    print(
        f"\nface_pipeline: {len(photos)} photos (3 people x 7 variants, 256-600 px), provider "
        f"{provider}, {threads} threads, load average {os.getloadavg()[0]:.2f}"
    )
    print(
        f"{'what':<14} | {'service/s':>9} {'p50 ms':>8} {'p99 ms':>8} | {'raw/s':>8} {'p50 ms':>8} | {'ratio':>5}"
    )
    for key in ("detector_c1", "detector_c16", "embedder_c1", "embedder_c16", "embedder_nats_c1"):
        if key not in svc:
            continue
        sv, r = svc[key], raw[key]
        print(
            f"{key:<14} | {sv['per_s']:>9.1f} {sv['p50_ms']:>8.1f} {sv['p99_ms']:>8.1f} | "
            f"{r['per_s']:>8.1f} {r['p50_ms']:>8.1f} | {sv['per_s'] / r['per_s']:>5.2f}"
        )
    ref_s = raw.get("reference")
    for key in ("pipeline_c1", "pipeline_c16", "enrol_c1", "enrol_c16") if ref_s else ():
        sv = svc[key]
        print(
            f"{key:<14} | {sv['per_s']:>9.1f} {sv['p50_ms']:>8.1f} {sv['p99_ms']:>8.1f} | "
            f"{ref_s['per_s']:>8.1f} {ref_s['p50_ms']:>8.1f} | {sv['per_s'] / ref_s['per_s']:>5.2f}"
        )
    e1, r1 = svc["embedder_c1"], raw["embedder_c1"]
    print(
        f"\nembedder at concurrency 1: service {e1['per_s']:.1f}/s vs raw onnxruntime "
        f"{r1['per_s']:.1f}/s = {e1['per_s'] / r1['per_s']:.2f} (goal >= 0.9) over gRPC"
    )
    n1, rn1 = svc["embedder_nats_c1"], raw["embedder_nats_c1"]
    print(
        f"embedder at concurrency 1 over NATS (the gateway's path): service {n1['per_s']:.1f}/s vs "
        f"raw onnxruntime {rn1['per_s']:.1f}/s = {n1['per_s'] / rn1['per_s']:.2f} (goal >= 0.9)"
    )
    for key, what in (("pipeline", "detector+embedder services"), ("enrol", "gateway Enroll")):
        for c in (1, 16) if ref_s else ():
            sv = svc[f"{key}_c{c}"]
            print(
                f"enrolments/s, {what}, concurrency {c}: {sv['per_s']:.1f} vs in-process "
                f"detect-and-embed {ref_s['per_s']:.1f} = {sv['per_s'] / ref_s['per_s']:.2f} (goal >= 0.8)"
            )
    if ref_s:
        stages = ", ".join(f"{k} {v:.1f}" for k, v in raw["reference_stages_ms"].items())
        print(f"\nin-process detect-and-embed, ms per photo: {stages}")
    floor = svc["grpc_floor_c1"]["p50_ms"]
    print(
        f"embedder service p50 {e1['p50_ms']:.2f} ms = raw onnxruntime {r1['p50_ms']:.2f} ms + "
        f"{e1['p50_ms'] - r1['p50_ms']:.2f} ms (a bare gRPC round trip to that process: {floor:.2f} ms)"
    )
    b = svc["bytes"]
    print(
        f"bytes per request: image {b['image']:.0f}; detect request {b['detect_request']:.0f}, "
        f"reply {b['detect_reply']:.0f} (with the chip); embed request {b['embed_request']:.0f} "
        "(the chip, no image)"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
