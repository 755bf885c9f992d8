"""The REST facade (OSIA ABIS 1.6.0) on a real gateway: the same guard
as gRPC, errors as the spec's Error body with the HTTP status naming the
problem, per-route metrics. (Encounters, tasks and conformance:
tests/test_osia*.py.)"""

from __future__ import annotations

import base64

import aiohttp
import pytest

from tanu.core import auth, signing
from tanu.v1 import identity_pb2

from conftest import Cluster, env_for, near, unit_vectors
from helpers import enroll


@pytest.fixture
async def rest(nats_server, tmp_path):
    env = env_for(nats_server.url, tmp_path, TANU_REST_PORT="0")
    c = Cluster(env)
    await c.start_all()
    issuer = signing.load_signing_key(tmp_path / "keys" / "issuer.pem")
    c.url = f"http://127.0.0.1:{c.gateway.rest.port}"
    c.token = auth.issue_token(issuer, "operator", "bank-app", ["verify", "identify", "delete"])
    c.http = aiohttp.ClientSession()
    try:
        yield c
    finally:
        await c.http.close()
        await c.stop()


def face(v) -> dict:
    return {"biometricData": [{"biometricType": "FACE",
                               "template": base64.b64encode(v.tobytes()).decode()}]}  # fmt: skip


def hdrs(c, purpose: str | None = "kyc", token: str | None = None) -> dict:
    h = {"Authorization": f"Bearer {token or c.token}"}
    if purpose:
        h["X-Tanu-Purpose"] = purpose
    return h


async def call(c, method: str, path: str, **kw) -> tuple[int, object]:
    async with c.http.request(method, c.url + path, **kw) as r:
        return r.status, (await r.json() if r.status != 204 else dict(r.headers))


async def test_verify_identify_and_delete_over_rest(rest):
    c = rest
    v = unit_vectors(1, seed=80)[0]
    await c.stub.Enroll(enroll("rest-1", v, wait_indexed=True))
    st, body = await call(c, "POST", "/v1/verify/ALL/rest-1?transactionId=t1", json=face(near(v)),
                          headers=hdrs(c))  # fmt: skip
    assert st == 200 and body["decision"] is True and body["scores"][0]["score"] < 0.6
    st, body = await call(c, "POST", "/v1/identify/ALL?transactionId=t2&maxNbCand=3",
                          json={"filter": {}, **face(near(v))}, headers=hdrs(c))  # fmt: skip
    assert st == 200 and body[0]["personId"] == "rest-1" and body[0]["rank"] == 1
    assert (
        body[0]["others"]["isMatch"] is True and body[0]["score"] == body[0]["scores"][0]["score"]
    )
    st, hd = await call(c, "DELETE", "/v1/persons/rest-1?transactionId=t3&reason=court-order",
                        headers=hdrs(c, None))  # fmt: skip
    assert st == 204 and hd["X-Tanu-Receipt-Id"]
    receipt = await c.stub.GetErasureReceipt(
        identity_pb2.GetErasureReceiptRequest(
            receipt_id=hd["X-Tanu-Receipt-Id"], subject_id="rest-1"
        )
    )
    assert receipt.signature
    st, body = await call(c, "POST", "/v1/verify/ALL/rest-1?transactionId=t4", json=face(v),
                          headers=hdrs(c))  # fmt: skip
    assert st == 404 and "not enrolled" in body["message"]
    m, route = c.gateway.metrics, "/v1/verify/{galleryId}/{personId}"
    assert m.sample("tanu_http_requests_total", route=route, method="POST", status="200") == 1
    assert m.sample("tanu_http_requests_total", route=route, method="POST", status="404") == 1


async def test_rest_errors_name_the_problem_with_their_http_status(rest):
    c = rest
    v = unit_vectors(1, seed=81)[0]
    await c.stub.Enroll(enroll("rest-2", v))
    path = "/v1/verify/ALL/rest-2?transactionId=t"
    bad_token = auth.issue_token(signing.Ed25519PrivateKey.generate(), "operator", "x", ["verify"])
    cases = [
        (dict(json=face(v)), 401, "no credentials"),
        (dict(json=face(v), headers=hdrs(c, token=bad_token)), 401, "signature"),
        (dict(json=face(v), headers=hdrs(c, purpose=None)), 403, "purpose"),
        (dict(json=face(v), headers=hdrs(c, purpose="border_control")), 403, "consented"),
        (dict(data=b"{not json", headers={**hdrs(c), "Content-Type": "application/json"}),
             400, "not JSON"),
        (dict(json={"biometricData": []}, headers=hdrs(c)), 400, "non-empty"),
        (dict(json={"biometricData": [{"biometricType": "FACE", "image": "%%%"}]},
              headers=hdrs(c)), 400, "base64"),
        (dict(json=face(v[:100]), headers=hdrs(c)), 400, "dimension"),
    ]  # fmt: skip
    for kw, status, words in cases:
        st, body = await call(c, "POST", path, **kw)
        assert st == status and words in body["message"], (status, body)
        assert body["code"] == status
    st, body = await call(c, "POST", "/v1/verify/OTHER/rest-2?transactionId=t", json=face(v),
                          headers=hdrs(c))  # fmt: skip
    assert st == 404 and "not in gallery" in body["message"]
    st, body = await call(c, "POST", "/v1/verify/ALL/rest-2", json=face(v), headers=hdrs(c))
    assert st == 400 and "transactionId is required" in body["message"] and body["code"] == 400
    for q in ("maxNbCand=0", "maxNbCand=x", "priority=10", "priority=-1", "serviceLevel=x",
              "callback=ftp://x", "callback=http://example.invalid:81/cb"):  # fmt: skip
        st, body = await call(c, "POST", f"/v1/identify/ALL?transactionId=t&{q}",
                              json={"filter": {}, **face(v)}, headers=hdrs(c))  # fmt: skip
        assert st == 400 and body["code"] == 400, (q, body)
    huge = {"biometricData": [{"biometricType": "FACE", "image": "A" * (12 * 2**20)}]}
    st, body = await call(c, "POST", path, json=huge, headers=hdrs(c))
    assert st == 413
    # the gateway still serves
    st, body = await call(c, "POST", path, json=face(v), headers=hdrs(c))
    assert st == 200 and body["decision"] is True
    st, body = await call(c, "GET", "/healthz")
    assert st == 200 and body["serving"]


async def test_unsupported_operations_answer_501_with_the_error_body(rest):
    c = rest
    for method, path, kw in [
        # readTemplate in a format other than Tanu's (refused before the scope check)
        ("GET", "/v1/persons/p/encounters/e/templates?transactionId=t&templateFormat=ISO_19794_5", {}),
        ("POST", "/v1/verify?transactionId=t",
         dict(json={"biometricData1": [{"biometricType": "FINGER", "image": "AA=="}],
                    "biometricData2": [{"biometricType": "FINGER", "image": "AA=="}]})),
        ("POST", "/v1/identify/ALL?transactionId=t",
         dict(json={"filter": {}, "biometricData": [{"biometricType": "FINGER", "image": "AA=="}]})),
    ]:  # fmt: skip
        st, body = await call(c, method, path, headers=hdrs(c), **kw)
        assert st == 501 and body["code"] == 501 and body["message"], (path, body)
        st, body = await call(c, method, path, **kw)  # no token: 401 first
        assert st == 401 and body["code"] == 401


async def test_openapi_json_is_the_spec_plus_tanus_additions(rest):
    c = rest
    st, doc = await call(c, "GET", "/openapi.json")
    assert st == 200 and doc["openapi"].startswith("3.0")
    ops = [op for item in doc["paths"].values() for m, op in item.items()
           if m in ("get", "post", "put", "delete")]  # fmt: skip
    osia = [op for op in ops if not op["operationId"].startswith("tanu")]
    assert len(osia) == 22
    for op in osia:
        for code in ("401", "403", "501"):
            assert op["responses"][code]["content"]["application/json"]["schema"] == {
                "$ref": "#/components/schemas/Error"}, (op["operationId"], code)  # fmt: skip
    assert "biographicData.dateOfBirth" in doc["x-tanu-extensions"]
