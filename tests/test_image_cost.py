"""Image work is bounded by cost, not only by pixel count: decompression
bombs under the pixel limit cost bounded memory, a real face photo at the
largest accepted size still gives its identity, and one tenant's bombs do
not hold up another tenant's photo. The detector runs as its own process
(``python -m tanu.detector``, so its peak RSS is its own), the embedder and
the rest of the cluster in this one, all over a real nats-server."""

from __future__ import annotations

import asyncio
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import grpc
import numpy as np
import pytest
import pytest_asyncio
from photos import blank_png, encode, originals
from PIL import Image

from tanu.clients.face import FaceClient
from tanu.core import auth, bus, errors, secrets, signing
from tanu.core import config as cfg
from tanu.core.fairqueue import FairQueue
from tanu.embedder.service import EmbedderService
from tanu.face.models import prepare
from tanu.ops.natsd import NatsServer
from tanu.v1 import common_pb2, detector_pb2, embedder_pb2, identity_pb2, identity_pb2_grpc

from conftest import Cluster, env_for
from helpers import ROOT

pytestmark = pytest.mark.asyncio(loop_scope="module")
MODEL_DIR = str(ROOT / "var" / "models")
MAX_PIXELS = 25_000_000  # the largest square bomb is 5000x5000
BOMB_SIDE = math.isqrt(MAX_PIXELS)
AGENCIES = ("agency-flood", "agency-quiet")


def peak_rss_bytes(pid: int) -> int:
    """The process's peak resident set (VmHWM) so far."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM in /proc status")


def add_agencies(tenants: Path) -> None:
    """Two more tenants of the operator's kind in the registry."""
    doc = json.loads(tenants.read_text())
    doc["tenants"] += [{**doc["tenants"][0], "id": t} for t in AGENCIES]
    tenants.write_text(json.dumps(doc))


@pytest.fixture(scope="module")
def hopper() -> np.ndarray:
    return originals()["hopper"]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def faces(tmp_path_factory, hopper):
    """A cluster with the detector in its own process; yields (cluster, face
    client, detector process)."""
    prepare(MODEL_DIR, say=lambda m: None)
    tmp = tmp_path_factory.mktemp("image-cost")
    nats = NatsServer(tmp / "nats").start()
    env = env_for(
        nats.url,
        tmp,
        TANU_MODEL_DIR=MODEL_DIR,
        TANU_MAX_IMAGE_PIXELS=str(MAX_PIXELS),
        TANU_REQUEST_TIMEOUT_S="60",
        TANU_ONNX_THREADS="1",
        # One bomb at a time, with room beside it for small photos.
        TANU_MODEL_MAX_PIXELS_IN_FLIGHT=str(MAX_PIXELS + 5_000_000),
    )
    add_agencies(Path(env["TANU_TENANTS_FILE"]))
    c = Cluster(env)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tanu.detector", env={**os.environ, **env},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    emb = nc = None
    try:
        await c.start_all()
        emb = await EmbedderService(cfg.from_env(cfg.EmbedderConfig, env)).start()
        nc = await bus.connect(nats.url, "image-cost-test")
        client = FaceClient(nc, timeout_s=60)
        small = encode(hopper)
        for _ in range(120):  # until the detector process answers
            try:
                await client.detect(detector_pb2.DetectRequest(image=small))
                break
            except errors.Unavailable:
                assert proc.returncode is None, "the detector process exited"
                await asyncio.sleep(0.5)
        yield c, client, proc
    finally:
        if nc:
            await nc.close()
        if emb:
            await emb.stop()
        await c.stop()
        proc.terminate()
        await asyncio.wait_for(proc.wait(), 30)
        nats.stop()


async def template(client: FaceClient, data: bytes, tenant: str = "t") -> tuple[np.ndarray, object]:
    found = await client.detect(detector_pb2.DetectRequest(image=data, tenant=tenant, chips=1))
    assert len(found.faces) == 1, len(found.faces)
    emb = await client.embed(embedder_pb2.EmbedRequest(chips=[found.faces[0].chip], tenant=tenant))
    return np.frombuffer(emb.templates[0].vector, np.float32), found


async def test_a_bomb_under_the_pixel_limit_is_no_face_within_bounded_memory(faces):
    c, client, proc = faces
    bomb = blank_png(BOMB_SIDE, BOMB_SIDE)
    assert len(bomb) < 200_000 and BOMB_SIDE * BOMB_SIDE <= MAX_PIXELS
    before = peak_rss_bytes(proc.pid)
    reply = await client.detect(detector_pb2.DetectRequest(image=bomb, tenant="flood"))
    assert len(reply.faces) == 0
    assert (reply.width, reply.height) == (BOMB_SIDE, BOMB_SIDE)
    grown = peak_rss_bytes(proc.pid) - before
    # Decoding 25 Mpx as RGB alone is 100 MB; before the bound it grew by gigabytes.
    assert grown < 1 << 30, f"the detector's peak RSS grew by {grown / 2**20:.0f} MiB"
    # Through the gateway: a clear refusal that names the image.
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await c.stub.Identify(
            identity_pb2.IdentifyRequest(sample=common_pb2.BiometricSample(image=bomb))
        )
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert f"no face found in the {BOMB_SIDE}x{BOMB_SIDE} image" in info.value.details()
    assert proc.returncode is None


async def test_a_face_photo_at_the_largest_accepted_size_keeps_its_identity(faces, hopper):
    _, client, _ = faces
    h, w = hopper.shape[:2]
    k = math.sqrt(MAX_PIXELS / (w * h)) * 0.999
    big = Image.fromarray(hopper).resize((int(w * k), int(h * k)), Image.BICUBIC)
    assert big.size[0] * big.size[1] <= MAX_PIXELS
    ref, small_found = await template(client, encode(hopper))
    # JPEG: a PNG this large is beyond the bus's message size.
    for fmt in ("JPEG",):
        t, found = await template(client, encode(np.asarray(big), fmt))
        # Landmarks and face size come back in the large image's own pixels.
        assert (found.width, found.height) == big.size
        f0, f1 = small_found.faces[0], found.faces[0]
        kx = big.size[0] / w
        for p0, p1 in zip(f0.landmarks, f1.landmarks, strict=True):
            assert abs(p1.x - p0.x * kx) < 0.05 * f1.quality.face_size_px, fmt
            assert abs(p1.y - p0.y * kx) < 0.05 * f1.quality.face_size_px, fmt
        assert f1.quality.face_size_px == pytest.approx(f0.quality.face_size_px * kx, rel=0.1)
        dist = float(np.linalg.norm(t - ref))
        assert dist < 0.3, f"{fmt}: the same photo, {k:.1f}x larger, is {dist:.3f} away"


async def test_a_small_face_in_a_large_photo_keeps_its_quality_measures(faces, hopper):
    _, client, _ = faces
    alone = Image.fromarray(hopper).resize((427, 501), Image.BILINEAR)  # a face of ~150 px
    canvas = Image.new("RGB", (6000, 4000), (128, 128, 128))  # reduced ~2.7x for the pyramid
    canvas.paste(alone, (3000, 2000))
    a = (await client.detect(detector_pb2.DetectRequest(image=encode(np.asarray(alone))))).faces
    b = (await client.detect(detector_pb2.DetectRequest(image=encode(np.asarray(canvas))))).faces
    assert len(a) == len(b) == 1
    qa, qb = a[0].quality, b[0].quality
    assert qb.face_size_px == pytest.approx(qa.face_size_px, rel=0.05)
    assert qb.sharpness == pytest.approx(qa.sharpness, rel=0.25), (qa.sharpness, qb.sharpness)
    assert qb.exposure == pytest.approx(qa.exposure, abs=0.03)
    assert b[0].box.x1 == pytest.approx(a[0].box.x1 + 3000, abs=5)


def stub_for(c: Cluster, tenant: str):
    key = signing.load_signing_key(Path(c.env["TANU_TENANTS_FILE"]).parent / "issuer.pem")
    token = auth.issue_token(key, tenant, "test-client", list(auth.SCOPES))
    return secrets.aio_channel(f"127.0.0.1:{c.gateway.port}", token)


async def test_one_tenants_bombs_do_not_hold_up_another_tenants_photo(faces, hopper):
    c = faces[0]
    sample = {
        "bomb": common_pb2.BiometricSample(image=blank_png(BOMB_SIDE, BOMB_SIDE)),
        "photo": common_pb2.BiometricSample(image=encode(hopper)),
    }
    done: list[str] = []

    async def identify(stub, name: str, kind: str) -> None:
        try:
            await stub.Identify(identity_pb2.IdentifyRequest(sample=sample[kind]))
            done.append(name)
        except grpc.aio.AioRpcError as exc:
            assert exc.code() == grpc.StatusCode.INVALID_ARGUMENT and "no face" in exc.details()
            done.append(name)

    flood, quiet = stub_for(c, AGENCIES[0]), stub_for(c, AGENCIES[1])
    try:
        fs, qs = identity_pb2_grpc.IdentityStub(flood), identity_pb2_grpc.IdentityStub(quiet)
        tasks = [asyncio.create_task(identify(fs, f"bomb{i}", "bomb")) for i in range(4)]
        tasks.append(asyncio.create_task(identify(qs, "photo", "photo")))
        await asyncio.gather(*tasks)
    finally:
        await flood.close()
        await quiet.close()
    # The quiet agency's photo waits at most for the bomb already being
    # worked on, not for the flood (the gateway passes each request's tenant).
    assert done.index("photo") <= 1, done


async def test_admission_is_fair_by_cost_and_bounded_per_tenant():
    q = FairQueue("detector", max_cost=100, max_queued=3)
    order: list[str] = []
    release = asyncio.Event()

    async def job(tenant: str, cost: float, name: str) -> None:
        async with q.admit(tenant, cost):
            order.append(name)
            await release.wait()

    first = asyncio.create_task(job("a", 100, "a0"))
    await asyncio.sleep(0)
    rest = [asyncio.create_task(job("a", 100, f"a{i}")) for i in (1, 2, 3)]
    await asyncio.sleep(0)
    with pytest.raises(errors.ResourceExhausted, match="already waiting"):
        async with q.admit("a", 1):
            pass
    small = [asyncio.create_task(job("b", 10, f"b{i}")) for i in range(2)]
    for _ in range(5):
        await asyncio.sleep(0)
    assert order == ["a0"] and q.queued("a") == 3 and q.queued("b") == 2
    release.set()
    await asyncio.gather(first, *rest, *small)
    # b's cheap requests overtake a's queued expensive ones.
    assert order[:3] == ["a0", "b0", "b1"], order
    assert q.in_flight == 0 and q.queued() == 0


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"TANU_MODEL_MAX_PIXELS_IN_FLIGHT": "0"}, "TANU_MODEL_MAX_PIXELS_IN_FLIGHT"),
        ({"TANU_MODEL_MAX_QUEUED_PER_TENANT": "0"}, "TANU_MODEL_MAX_QUEUED_PER_TENANT"),
        ({"TANU_DETECT_MAX_PYRAMID_PIXELS": "-1"}, "TANU_DETECT_MAX_PYRAMID_PIXELS"),
    ],
)
async def test_bad_cost_settings_are_refused_with_the_variable_named(env, variable):
    with pytest.raises(ValueError, match=variable):
        cfg.from_env(cfg.DetectorConfig, env)
