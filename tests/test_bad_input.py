"""Bad input gets a clear status naming the problem, and the gateway keeps
serving afterwards."""

from __future__ import annotations

import grpc
import numpy as np
import pytest

from tanu.core import bus, natsnames
from tanu.core.errors import InvalidArgument
from tanu.v1 import common_pb2, identity_pb2, store_pb2

from conftest import nats_url_as, unit_vectors
from helpers import enroll, enroll_request, identify, sample, verify


async def expect(call, code: grpc.StatusCode, *words: str) -> str:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call
    assert info.value.code() == code, info.value.details()
    details = info.value.details()
    for w in words:
        assert w in details, details
    return details


def raw(vector: bytes, model_id: str = "") -> common_pb2.BiometricSample:
    return common_pb2.BiometricSample(
        template=common_pb2.Template(vector=vector, model_id=model_id)
    )


async def test_bad_templates_are_refused_and_the_gateway_keeps_serving(cluster):
    stub = cluster.stub
    good = unit_vectors(1, seed=11)[0]
    await stub.Enroll(enroll("known", good, wait_indexed=True))
    nan = good.copy()
    nan[3] = np.nan
    inf = good.copy()
    inf[100] = np.inf
    huge = good.copy()
    huge[7] = -3.4e38  # finite, but past any template (and the fp16 index)
    cases = [
        (sample(unit_vectors(1, dim=127)[0]), "dimension 127", "128"),
        (sample(nan), "NaN or infinity", "index 3"),
        (sample(inf), "NaN or infinity", "index 100"),
        (sample(huge), "beyond ±65504", "index 7"),
        (raw(b""), "empty"),
        (raw(b"\x00" * 513), "513 bytes"),
        (common_pb2.BiometricSample(), "sample is empty"),
        (sample(good, model_id="arcface-r100"), "arcface-r100", "dlib-resnet-v1"),
    ]
    invalid = grpc.StatusCode.INVALID_ARGUMENT
    for bad, *words in cases:
        await expect(stub.Identify(identity_pb2.IdentifyRequest(sample=bad)), invalid, *words)
        await expect(stub.Enroll(enroll_request(subject_id="x", sample=bad)), invalid, *words)
        await expect(
            stub.Verify(identity_pb2.VerifyRequest(subject_id="known", sample=bad)), invalid, *words
        )
    await expect(stub.Identify(identify(good, top_k=5000)), invalid, "top_k is 5000")
    r = await stub.Identify(identify(good))
    assert r.candidates[0].subject_id == "known"


async def test_unknown_subjects_are_not_found(cluster):
    stub = cluster.stub
    v = unit_vectors(1)[0]
    await expect(stub.Verify(verify("ghost", v)), grpc.StatusCode.NOT_FOUND, "ghost")
    await expect(
        stub.Delete(identity_pb2.DeleteRequest(subject_id="ghost")),
        grpc.StatusCode.NOT_FOUND,
        "ghost",
    )
    await expect(
        stub.GetSubject(identity_pb2.GetSubjectRequest(subject_id="ghost")),
        grpc.StatusCode.NOT_FOUND,
    )


async def test_bad_subject_ids_are_refused(cluster):
    stub = cluster.stub
    v = unit_vectors(1)[0]
    await expect(
        stub.Enroll(enroll("", v)), grpc.StatusCode.INVALID_ARGUMENT, "subject_id is empty"
    )
    await expect(
        stub.Enroll(enroll("x" * 200, v)), grpc.StatusCode.INVALID_ARGUMENT, "200 characters"
    )
    await expect(
        stub.Enroll(enroll("a\nb", v)), grpc.StatusCode.INVALID_ARGUMENT, "control characters"
    )


async def test_a_duplicate_subject_id_is_refused_and_the_first_enrolment_kept(cluster):
    stub = cluster.stub
    a, b = unit_vectors(2, seed=21)
    await stub.Enroll(enroll("dup-id", a, wait_indexed=True))
    await expect(
        stub.Enroll(enroll("dup-id", b)),
        grpc.StatusCode.ALREADY_EXISTS,
        "dup-id",
        "already enrolled",
    )
    kept = await stub.Verify(verify("dup-id", a))
    assert kept.decision == common_pb2.DECISION_MATCH
    s = await stub.GetSubject(identity_pb2.GetSubjectRequest(subject_id="dup-id"))
    assert s.template_count == 1


async def test_an_oversize_message_is_refused_and_the_gateway_keeps_serving(cluster):
    stub = cluster.stub
    huge = raw(b"\x00" * (9 * 1024 * 1024))
    await expect(
        stub.Identify(identity_pb2.IdentifyRequest(sample=huge)), grpc.StatusCode.RESOURCE_EXHAUSTED
    )
    r = await stub.Identify(identify(unit_vectors(1)[0]))
    assert r.complete


async def test_an_image_without_a_face_pipeline_says_what_is_missing(cluster):
    req = identity_pb2.IdentifyRequest(sample=common_pb2.BiometricSample(image=b"\x89PNG...."))
    await expect(cluster.stub.Identify(req), grpc.StatusCode.UNAVAILABLE, "detector", "tanu.detect")


async def test_the_store_refuses_garbage_over_nats_and_keeps_serving(cluster):
    nc = await bus.connect(nats_url_as(cluster.env), "test")
    try:
        msg = await nc.request(natsnames.store("put"), b"\xff\xff\xff", timeout=2)
        assert msg.headers[bus.ERROR_CODE] == "INVALID_ARGUMENT"
        assert "PutSubjectRequest" in msg.headers[bus.ERROR_MESSAGE]
        with pytest.raises(InvalidArgument, match="at least one template"):
            await bus.request(
                nc,
                natsnames.store("put"),
                store_pb2.PutSubjectRequest(subject_id="s"),
                common_pb2.Subject,
                2,
            )
        ok = await bus.request(
            nc,
            natsnames.store("put"),
            store_pb2.PutSubjectRequest(
                subject_id="s",
                templates=[sample(unit_vectors(1)[0]).template],
                date_of_birth="1990-01-01",
                consent=common_pb2.Consent(purposes=["kyc"], evidence_ref="form-1"),
            ),
            common_pb2.Subject,
            2,
        )
        assert ok.subject_id == "s" and ok.template_count == 1
    finally:
        await nc.close()


async def test_the_store_caps_templates_per_subject(cluster):
    nc = await bus.connect(nats_url_as(cluster.env), "test")
    try:
        many = [sample(v).template for v in unit_vectors(33)]
        with pytest.raises(InvalidArgument, match="33 templates for one subject; the limit is 32"):
            await bus.request(nc, natsnames.store("put"), store_pb2.PutSubjectRequest(subject_id="m", templates=many),
                              common_pb2.Subject, 2)  # fmt: skip
    finally:
        await nc.close()
