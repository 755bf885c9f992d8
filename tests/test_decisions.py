"""Decisions belong to the system: a request may only make the threshold
stricter (gRPC and REST), never looser, never NaN, infinite or out of range;
relying parties get the decision, not the raw score. On a real cluster, one
per module."""

from __future__ import annotations

import math

import aiohttp
import grpc
import pytest
import pytest_asyncio
from tenancy import code_of, md, start_cluster, token

from tanu.core import errors
from tanu.policy import thresholds
from tanu.v1 import common_pb2, identity_pb2

from conftest import near, unit_vectors
from helpers import enroll, identify, verify

pytestmark = pytest.mark.asyncio(loop_scope="module")

DEFAULT_VERIFY = 0.6  # TANU_VERIFY_THRESHOLD's default (l2)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def dec(tmp_path_factory):
    c, nats, raw, ch = await start_cluster(tmp_path_factory.mktemp("decisions"), TANU_REST_PORT="0")
    try:
        c.raw = raw
        c.dora = unit_vectors(1, seed=900)[0]
        await c.stub.Enroll(enroll("dora", c.dora, wait_indexed=True))
        yield c
    finally:
        await ch.close()
        await c.stop()
        nats.stop()


async def test_a_request_may_only_make_the_threshold_stricter_in_the_metrics_direction():
    cal = {"verify": {"threshold": 0.8}}
    assert thresholds.choose("verify", None, cal, {"verify": 0.6}, "l2") == (0.8, "calibrated")
    assert thresholds.choose("verify", None, {}, {"verify": 0.6}, "l2") == (0.6, "default")
    assert thresholds.choose("verify", 0.5, cal, {"verify": 0.6}, "l2") == (0.5, "request")
    # the system's own value, as the float32 a client sends back, is accepted
    assert thresholds.choose("verify", 0.800000011920929, cal, {}, "l2")[1] == "request"
    assert thresholds.choose("verify", 0.9, {}, {"verify": 0.5}, "cosine")[0] == 0.9
    bad = [
        (0.81, cal, "l2", "looser"),  # l2: higher is looser
        (0.4, {}, "cosine", "looser"),  # cosine: lower is looser
        (math.nan, cal, "l2", "finite"),
        (math.inf, cal, "l2", "finite"),
        (-math.inf, {}, "cosine", "finite"),
        (-0.1, cal, "l2", "[0, 2]"),
        (1.5, {}, "cosine", "[-1, 1]"),
    ]
    for requested, calib, metric, words in bad:
        with pytest.raises(errors.InvalidArgument) as e:
            thresholds.choose("verify", requested, calib, {"verify": 0.5}, metric)
        assert words in e.value.message, (requested, metric, e.value.message)


async def test_a_loose_threshold_is_refused_and_cannot_force_a_match(dec):
    stranger = unit_vectors(1, seed=901)[0]
    for loose in (1.99, 2.0, 0.61):
        code, msg = await code_of(dec.stub.Verify(verify("dora", stranger, threshold=loose)))
        assert code == grpc.StatusCode.INVALID_ARGUMENT and "looser" in msg, (loose, msg)
    for junk in (math.nan, math.inf, -1.0, 3.0):
        code, _ = await code_of(dec.stub.Verify(verify("dora", stranger, threshold=junk)))
        assert code == grpc.StatusCode.INVALID_ARGUMENT, junk
        code, _ = await code_of(dec.stub.Identify(identify(stranger, threshold=junk)))
        assert code == grpc.StatusCode.INVALID_ARGUMENT, junk
    # a refused request spent no attempt and reset nothing
    rep = await dec.stub.GetSubjectReport(identity_pb2.GetSubjectRequest(subject_id="dora"))
    assert rep.failed_verifications == 0
    # stricter is honoured: the genuine face, slightly perturbed, fails a very strict threshold
    r = await dec.stub.Verify(verify("dora", near(dec.dora, scale=0.05), threshold=0.0001))
    assert r.decision == common_pb2.DECISION_NO_MATCH and r.threshold_source == "request"
    r = await dec.stub.Verify(verify("dora", near(dec.dora), threshold=0.5))
    assert r.decision == common_pb2.DECISION_MATCH and abs(r.threshold - 0.5) < 1e-6


async def test_rest_threshold_is_validated_like_grpc(dec):
    import base64

    url = f"http://127.0.0.1:{dec.gateway.rest.port}/v1/verify/ALL/dora"
    body = {"biometricData": [{"biometricType": "FACE",
                               "template": base64.b64encode(dec.dora.tobytes()).decode()}]}  # fmt: skip
    h = {"Authorization": f"Bearer {token(dec.env, 'operator')}", "X-Tanu-Purpose": "kyc"}
    async with aiohttp.ClientSession() as http:
        for q in ("nan", "inf", "-inf", "1.9", "5", "-1"):
            async with http.post(f"{url}?transactionId=t&threshold={q}", json=body, headers=h) as r:
                assert r.status == 400, (q, r.status, await r.text())
        async with http.post(f"{url}?transactionId=t&threshold=0.5", json=body, headers=h) as r:
            out = await r.json()
            assert r.status == 200 and out["decision"] is True and "scores" in out
        hb = {**h, "Authorization": f"Bearer {token(dec.env, 'bank')}"}
        async with http.post(f"{url}?transactionId=t", json=body, headers=hb) as r:
            out = await r.json()
            assert r.status == 200 and out == {"decision": True}  # no score for a bank


async def test_relying_parties_get_decisions_not_scores(dec):
    probe = near(dec.dora, seed=2)
    for tenant, sees in (("bank", False), ("bank-scores", True), ("gov-quiet", False),
                         ("gov-a", True), ("operator", True)):  # fmt: skip
        r = await dec.raw.Verify(verify("dora", probe), metadata=md(token(dec.env, tenant), "kyc"))
        assert r.decision == common_pb2.DECISION_MATCH, tenant
        assert r.HasField("score") is sees, tenant
    for tenant, sees in (("gov-quiet", False), ("gov-a", True)):
        r = await dec.raw.Identify(identify(probe), metadata=md(token(dec.env, tenant), "kyc"))
        assert r.candidates and r.candidates[0].subject_id == "dora" and r.candidates[0].is_match
        assert all(c.HasField("score") is sees for c in r.candidates), tenant
