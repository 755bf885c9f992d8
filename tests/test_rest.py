"""The partner REST facade (OSIA subset) on a real gateway: the same guard
as gRPC, errors as HTTP statuses naming the problem, per-route metrics."""

from __future__ import annotations

import base64

import aiohttp
import pytest

from tanu.core import auth, signing

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
        return r.status, await r.json()


async def test_verify_identify_and_delete_over_rest(rest):
    c = rest
    v = unit_vectors(1, seed=80)[0]
    await c.stub.Enroll(enroll("rest-1", v, wait_indexed=True))
    st, body = await call(c, "POST", "/v1/verify/ALL/rest-1?transactionId=t1", json=face(near(v)),
                          headers=hdrs(c))  # fmt: skip
    assert st == 200 and body["decision"] is True and body["scores"][0]["score"] < 0.6
    st, body = await call(c, "POST", "/v1/identify/ALL?transactionId=t2&maxCandidates=3",
                          json={"filter": {}, **face(near(v))}, headers=hdrs(c))  # fmt: skip
    assert st == 200 and body[0]["personId"] == "rest-1" and body[0]["rank"] == 1
    st, body = await call(c, "DELETE", "/v1/persons/rest-1?transactionId=t3&reason=court-order",
                          headers=hdrs(c, None))  # fmt: skip
    assert st == 200 and body["receipt"]["signature"] and body["templatesRemoved"] == 1
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
    assert st == 404 and "unknown gallery" in body["message"]
    huge = {"biometricData": [{"biometricType": "FACE", "image": "A" * (12 * 2**20)}]}
    st, body = await call(c, "POST", path, json=huge, headers=hdrs(c))
    assert st == 413
    # the gateway still serves
    st, body = await call(c, "POST", path, json=face(v), headers=hdrs(c))
    assert st == 200 and body["decision"] is True
    st, body = await call(c, "GET", "/healthz")
    assert st == 200 and body["serving"]
