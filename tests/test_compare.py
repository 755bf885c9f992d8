"""CompareSamples (gRPC) and OSIA verifyFromBio on the real face pipeline
(MTCNN detector and dlib embedder services on the real ONNX models, behind
the gateway, over a real nats-server): two photos of one person match,
of two people do not; an image without a face, or with two where one is
required, is refused naming the sample; relying parties get the decision
only; a looser threshold is refused; nothing is stored."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import aiohttp
import grpc
import numpy as np
import pytest
import pytest_asyncio
from photos import blank_png, encode, originals, variants

from tanu.core import auth, signing
from tanu.core import config as cfg
from tanu.detector.service import DetectorService
from tanu.embedder.service import EmbedderService
from tanu.face.models import prepare
from tanu.ops.natsd import NatsServer
from tanu.v1 import common_pb2, identity_pb2, identity_pb2_grpc

from conftest import Cluster, env_for, operator_token
from helpers import ROOT

pytestmark = pytest.mark.asyncio(loop_scope="module")
MODEL_DIR = str(ROOT / "var" / "models")


def image(data: bytes, **kw) -> common_pb2.BiometricSample:
    return common_pb2.BiometricSample(image=data, **kw)


def face(data: bytes) -> list[dict]:
    return [{"biometricType": "FACE", "image": base64.b64encode(data).decode()}]


def _add_bank(env: dict) -> None:
    path = Path(env["TANU_TENANTS_FILE"])
    doc = json.loads(path.read_text())
    doc["tenants"].append({"id": "bank", "kind": "bank", "purposes": ["kyc"]})
    path.write_text(json.dumps(doc))


@pytest.fixture(scope="module")
def photos():
    return {name: variants(a) for name, a in originals().items()}


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def faces(tmp_path_factory):
    prepare(MODEL_DIR, say=lambda m: None)
    tmp = tmp_path_factory.mktemp("compare")
    nats = NatsServer(tmp / "nats").start()
    env = env_for(nats.url, tmp, TANU_MODEL_DIR=MODEL_DIR, TANU_REST_PORT="0",
                  TANU_REQUEST_TIMEOUT_S="30", TANU_ONNX_THREADS="1")  # fmt: skip
    _add_bank(env)
    c = Cluster(env)
    det = emb = None
    try:
        await c.start_all()
        det = await DetectorService(cfg.from_env(cfg.DetectorConfig, env)).start()
        emb = await EmbedderService(cfg.from_env(cfg.EmbedderConfig, env)).start()
        issuer = signing.load_signing_key(tmp / "keys" / "issuer.pem")
        c.bank_md = (("authorization", "Bearer " + auth.issue_token(issuer, "bank", "app",
                                                                    ["verify"])),
                     ("x-tanu-purpose", "kyc"))  # fmt: skip
        c.url = f"http://127.0.0.1:{c.gateway.rest.port}"
        yield c
    finally:
        for s in (det, emb):
            if s:
                await s.stop()
        await c.stop()
        nats.stop()


async def refused(call, code: grpc.StatusCode, *words: str) -> str:
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await call
    assert exc.value.code() == code, exc.value.details()
    for w in words:
        assert w in exc.value.details(), (w, exc.value.details())
    return exc.value.details()


async def test_two_photos_of_one_person_match_and_of_two_people_do_not(faces, photos):
    stub = faces.stub
    for name, other in (("astronaut", "hopper"), ("hopper", "astronaut")):
        for variant in ("flip", "half_q30", "darker"):
            same = await stub.CompareSamples(
                identity_pb2.CompareSamplesRequest(
                    sample_a=image(photos[name]["original"]), sample_b=image(photos[name][variant])
                )
            )
            assert same.decision == common_pb2.DECISION_MATCH, (name, variant, same.score)
            assert same.HasField("score") and same.threshold_source in ("default", "calibrated")
            diff = await stub.CompareSamples(
                identity_pb2.CompareSamplesRequest(
                    sample_a=image(photos[name][variant]), sample_b=image(photos[other]["original"])
                )
            )
            assert diff.decision == common_pb2.DECISION_NO_MATCH, (name, variant, diff.score)
    # nothing was stored: the cluster holds no subject
    r = await stub.Identify(
        identity_pb2.IdentifyRequest(sample=image(photos["hopper"]["original"]))
    )
    assert not r.candidates


async def test_bad_samples_and_thresholds_are_refused_naming_the_problem(faces, photos):
    stub = faces.stub
    a = photos["astronaut"]["original"]
    await refused(stub.CompareSamples(identity_pb2.CompareSamplesRequest(
        sample_a=image(a), sample_b=image(blank_png(200, 200)))),
        grpc.StatusCode.INVALID_ARGUMENT, "sample b", "no face")  # fmt: skip
    await refused(
        stub.CompareSamples(identity_pb2.CompareSamplesRequest(sample_a=image(a))),
        grpc.StatusCode.INVALID_ARGUMENT,
        "two samples",
    )
    # two faces: the largest is compared (as Verify does), unless one is required
    pair = np.zeros((600, 1024 + 512, 3), np.uint8)
    pair[:512, :512] = originals()["astronaut"]
    pair[:, 512:1024] = originals()["hopper"]
    two = encode(pair)
    r = await stub.CompareSamples(
        identity_pb2.CompareSamplesRequest(
            sample_a=image(two), sample_b=image(photos["hopper"]["flip"])
        )
    )
    assert r.decision == common_pb2.DECISION_MATCH, r.score
    await refused(
        stub.CompareSamples(
            identity_pb2.CompareSamplesRequest(
                sample_a=image(two, face_selection=common_pb2.FACE_SELECTION_REQUIRE_SINGLE),
                sample_b=image(a),
            )
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "sample a",
        "2 faces found",
    )
    await refused(stub.CompareSamples(identity_pb2.CompareSamplesRequest(
        sample_a=image(a), sample_b=image(a), threshold=1.99)),
        grpc.StatusCode.INVALID_ARGUMENT, "looser")  # fmt: skip
    # a relying party gets the decision, not the score
    async with grpc.aio.insecure_channel(f"127.0.0.1:{faces.gateway.port}") as ch:
        r = await identity_pb2_grpc.IdentityStub(ch).CompareSamples(
            identity_pb2.CompareSamplesRequest(sample_a=image(a),
                                               sample_b=image(photos["astronaut"]["flip"])),
            metadata=faces.bank_md)  # fmt: skip
    assert r.decision == common_pb2.DECISION_MATCH and not r.HasField("score")


async def test_verify_from_bio_over_osia(faces, photos):
    h = {"Authorization": f"Bearer {operator_token(faces.env)}",
         "X-Tanu-Purpose": "identity_verification"}  # fmt: skip
    url = faces.url + "/v1/verify?transactionId=bio-1"
    async with aiohttp.ClientSession() as http:

        async def post(body, headers=h, q=""):
            async with http.post(url + q, json=body, headers=headers) as r:
                return r.status, await r.json()

        st, body = await post(
            {
                "biometricData1": face(photos["hopper"]["original"]),
                "biometricData2": face(photos["hopper"]["rotate12"]),
            }
        )
        assert st == 200 and body["decision"] is True and len(body["scores"]) == 1, body
        st, body = await post(
            {
                "biometricData1": face(photos["hopper"]["original"]),
                "biometricData2": face(photos["astronaut"]["original"]),
            }
        )
        assert st == 200 and body["decision"] is False, body
        st, body = await post(
            {
                "biometricData1": face(photos["hopper"]["original"]),
                "biometricData2": face(blank_png(200, 200)),
            }
        )
        assert st == 400 and set(body) == {"code", "message"} and "no face" in body["message"]
        st, body = await post(
            {
                "biometricData1": face(photos["hopper"]["original"]),
                "biometricData2": face(photos["hopper"]["png"]),
            },
            q="&threshold=2",
        )
        assert st == 400 and "looser" in body["message"], body
