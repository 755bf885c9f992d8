"""The OSIA ABIS 1.6.0 facade on a real cluster (store, searchers,
gateway; templates, so no face pipeline): a civil registry's person with
two encounters, galleries, identify by person and by encounter, merge and
move, deletes; idempotency by transactionId; and the spec's 400/404/409
bodies for hostile or wrong input."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import aiohttp
import pytest

from tanu.core import auth, signing

from conftest import Cluster, env_for, near, operator_token, unit_vectors


def _add_bank(env: dict) -> None:
    path = Path(env["TANU_TENANTS_FILE"])
    doc = json.loads(path.read_text())
    doc["tenants"].append({"id": "bank", "kind": "bank", "purposes": ["kyc"]})
    # A registry migrating to another ABIS: the one tenant configured with templates.read.
    doc["tenants"].append({"id": "migrator", "kind": "government",
                           "purposes": ["identity_verification", "kyc"],
                           "scopes": ["enrol", "subject.report", "templates.read"]})  # fmt: skip
    path.write_text(json.dumps(doc))


@pytest.fixture
async def osia(nats_server, tmp_path):
    env = env_for(nats_server.url, tmp_path, TANU_REST_PORT="0")
    _add_bank(env)
    c = Cluster(env)
    await c.start_all()
    issuer = signing.load_signing_key(tmp_path / "keys" / "issuer.pem")
    c.bank = {"Authorization": "Bearer " + auth.issue_token(issuer, "bank", "app", ["verify", "enrol"]),
              "X-Tanu-Purpose": "kyc"}  # fmt: skip
    c.migrator = {"Authorization": "Bearer " + auth.issue_token(
        issuer, "migrator", "export", ["enrol", "subject.report", "templates.read"]),
        "X-Tanu-Purpose": "identity_verification"}  # fmt: skip
    c.url = f"http://127.0.0.1:{c.gateway.rest.port}"
    c.h = {"Authorization": f"Bearer {operator_token(env)}",
           "X-Tanu-Purpose": "identity_verification"}  # fmt: skip
    c.http = aiohttp.ClientSession()
    try:
        yield c
    finally:
        await c.http.close()
        await c.stop()


def bio(v) -> list[dict]:
    return [{"biometricType": "FACE", "template": base64.b64encode(v.tobytes()).decode()}]


def encounter(v, galleries=("ALL",), **extra) -> dict:
    return {
        "encounterId": extra.pop("encounterId", ""), "status": "ACTIVE",
        "encounterType": "civil-registration", "galleries": list(galleries),
        "biographicData": {"dateOfBirth": "1990-04-01", "gender": "F"},
        "contextualData": {"consent": {"purposes": ["identity_verification", "kyc"],
                                       "evidenceRef": "form-2026-0001"}, "waitIndexed": True},
        "clientData": base64.b64encode(b"registry-ref-42").decode(),
        "biometricData": bio(v), **extra,
    }  # fmt: skip


async def call(c, method: str, path: str, headers=None, **kw):
    async with c.http.request(method, c.url + path, headers=c.h if headers is None else headers,
                              **kw) as r:  # fmt: skip
        body = await r.read()
        return r.status, (await r.json() if body else None)


def error_body(body) -> bool:
    return set(body) == {"code", "message"} and isinstance(body["code"], int) and body["message"]


async def test_a_civil_registry_person_with_two_encounters_galleries_and_identify_by_person(osia):
    c = osia
    v = unit_vectors(3, seed=150)
    st, ids = await call(c, "POST", "/v1/persons/anna/encounters/e1?transactionId=tx-1",
                         json=encounter(v[0], ["ALL", "ADULTS"]))  # fmt: skip
    assert st == 200 and ids["personId"] == "anna" and ids["encounterId"] == "e1", ids
    # a second encounter of the same person (the spec creates the person only once)
    st, ids = await call(c, "POST", "/v1/persons/anna/encounters?transactionId=tx-2",
                         json=encounter(near(v[0], seed=3)))  # fmt: skip
    assert st == 200 and ids["personId"] == "anna" and ids["encounterId"], ids
    e2 = ids["encounterId"]
    st, body = await call(c, "POST", "/v1/persons/anna/encounters/e1?transactionId=tx-3",
                          json=encounter(v[1]))  # fmt: skip
    assert st == 409 and error_body(body), body
    st, encs = await call(c, "GET", "/v1/persons/anna/encounters?transactionId=tx-4")
    assert st == 200 and sorted(e["encounterId"] for e in encs) == sorted(["e1", e2])
    st, e = await call(c, "GET", "/v1/persons/anna/encounters/e1?transactionId=tx-5")
    assert st == 200 and e["galleries"] == ["ALL", "ADULTS"] and e["status"] == "ACTIVE"
    assert e["biographicData"]["dateOfBirth"] == "1990-04-01" and "template" not in str(e)
    assert base64.b64decode(e["clientData"]) == b"registry-ref-42"
    # a second person, close to anna: identify by person and by encounter finds them
    st, _ = await call(c, "POST", "/v1/persons/bob/encounters/b1?transactionId=tx-6",
                       json=encounter(near(v[0], scale=0.03, seed=9), ["ALL", "ADULTS"],
                                      contextualData={"consent": {"purposes": ["identity_verification"],
                                                                  "evidenceRef": "f"},
                                                      "waitIndexed": True, "allowDuplicate": True}))  # fmt: skip
    assert st == 200
    st, cands = await call(c, "POST", "/v1/identify/ALL/anna?transactionId=tx-7&maxNbCand=5",
                           json={})  # fmt: skip
    assert st == 200 and [x["personId"] for x in cands] == ["bob"], cands
    assert cands[0]["rank"] == 1 and isinstance(cands[0]["score"], float)
    st, cands = await call(c, "POST", "/v1/identify/ADULTS/anna/encounters/e1?transactionId=tx-8")
    assert st == 200 and [x["personId"] for x in cands] == ["bob"], cands
    # galleries: status and membership
    st, _ = await call(c, "PUT", "/v1/persons/bob/encounters/b1/galleries?transactionId=tx-9",
                       json=["WATCHLIST"])  # fmt: skip
    assert st == 204
    st, names = await call(c, "GET", "/v1/galleries?transactionId=tx-10")
    assert st == 200 and names[0] == "ALL" and {"ADULTS", "WATCHLIST"} <= set(names)
    st, members = await call(c, "GET", "/v1/galleries/ADULTS?transactionId=tx-11")
    assert st == 200 and members == [{"personId": "anna", "encounterId": "e1"}], members
    st, _ = await call(
        c, "PUT", "/v1/persons/bob/encounters/b1/status?transactionId=tx-12&status=INACTIVE"
    )
    assert st == 204
    st, cands = await call(c, "POST", "/v1/identify/ALL/anna?transactionId=tx-13", json={})
    assert st == 200 and cands == [], cands  # an inactive encounter is never searched
    st, body = await call(c, "POST", "/v1/identify/ALL?transactionId=tx-14",
                          json={"filter": {}, "biometricData": bio(v[0])})  # fmt: skip
    assert st == 200 and cands == [] and body[0]["personId"] == "anna"
    # adjudication: move bob's encounter to anna, then delete one of anna's encounters
    st, _ = await call(c, "POST", "/v1/persons/anna/move/bob/encounters/b1?transactionId=tx-15")
    assert st == 204
    st, encs = await call(c, "GET", "/v1/persons/anna/encounters?transactionId=tx-16")
    assert st == 200 and "b1" in [e["encounterId"] for e in encs]
    st, body = await call(c, "GET", "/v1/persons/bob/encounters?transactionId=tx-17")
    assert st == 404 and error_body(body)  # bob held nothing else: erased
    st, _ = await call(c, "DELETE", f"/v1/persons/anna/encounters/{e2}?transactionId=tx-18")
    assert st == 204
    st, body = await call(c, "GET", f"/v1/persons/anna/encounters/{e2}?transactionId=tx-19")
    assert st == 404 and error_body(body)


async def test_merge_and_delete_all(osia):
    c = osia
    v = unit_vectors(2, seed=151)
    for pid, vec, txn in (("t1", v[0], "m1"), ("s1", v[1], "m2")):
        st, _ = await call(c, "POST", f"/v1/persons/{pid}/encounters/{pid}-e?transactionId={txn}",
                           json=encounter(vec))  # fmt: skip
        assert st == 200
    st, _ = await call(c, "POST", "/v1/persons/t1/merge/s1?transactionId=m3")
    assert st == 204
    st, encs = await call(c, "GET", "/v1/persons/t1/encounters?transactionId=m4")
    assert sorted(e["encounterId"] for e in encs) == ["s1-e", "t1-e"]
    st, body = await call(c, "POST", "/v1/persons/t1/merge/nobody?transactionId=m5")
    assert st == 404 and error_body(body)
    async with c.http.delete(c.url + "/v1/persons/t1?transactionId=m6", headers=c.h) as r:
        assert r.status == 204 and r.headers["X-Tanu-Receipt-Id"]
    st, body = await call(c, "DELETE", "/v1/persons/t1?transactionId=m7")
    assert st == 404 and error_body(body)


async def test_the_transaction_id_makes_a_write_idempotent_and_another_body_409(osia):
    c = osia
    v = unit_vectors(2, seed=152)
    st, first = await call(c, "POST", "/v1/persons?transactionId=reg-1", json=encounter(v[0]))
    assert st == 200 and first["personId"].startswith("p-")
    st, again = await call(c, "POST", "/v1/persons?transactionId=reg-1", json=encounter(v[0]))
    assert st == 200 and again["personId"] == first["personId"]
    assert again["encounterId"] == first["encounterId"]
    st, body = await call(c, "POST", "/v1/persons?transactionId=reg-1", json=encounter(v[1]))
    assert st == 409 and error_body(body), body
    st, encs = await call(c, "GET", f"/v1/persons/{first['personId']}/encounters?transactionId=r")
    assert st == 200 and len(encs) == 1
    # the transactionId is in the audit entries, the refusal's included
    rows = await c.store.db.run(c.store.db._all,
                                "SELECT operation, result, detail FROM audit ORDER BY seq")  # fmt: skip
    tx = [
        (op, res) for op, res, detail in rows if json.loads(detail).get("transaction_id") == "reg-1"
    ]
    assert ("Enroll", "ok") in tx and any(res != "ok" for _op, res in tx), tx


async def test_bad_input_gets_the_specs_error_bodies(osia):
    c = osia
    v = unit_vectors(1, seed=153)[0]
    path = "/v1/persons/carl/encounters/c1?transactionId=bad"
    j = {**c.h, "Content-Type": "application/json"}
    cases = [
        (dict(data=b"{not json", headers=j), 400, "not JSON"),
        (dict(data=b"[1, 2]", headers=j), 400, "object"),
        (dict(json={**encounter(v), "galleries": "ALL"}), 400, "galleries"),
        (dict(json={**encounter(v), "status": 3}), 400, "status"),
        (dict(json={**encounter(v), "biometricData": [{"biometricType": "FACE", "template": "%%"}]}),
         400, "base64"),
        (dict(json={**encounter(v), "clientData": "not base64!"}), 400, "clientData"),
        (dict(json={**encounter(v), "shoeSize": 44}), 400, "unknown Encounter fields"),
        (dict(json={**encounter(v), "biographicData": {"dateOfBirth": "1990-13-45"}}), 400, ""),
        (dict(json=encounter(v), headers={**c.h, "Content-Type": "text/plain"}), 415, "json"),
        (dict(json={**encounter(v), "biometricData": [{"biometricType": "FACE",
                                                        "image": "A" * (12 * 2**20)}]}),
         413, "too large"),
    ]  # fmt: skip
    for kw, status, words in cases:
        st, body = await call(c, "POST", path, **kw)
        assert st == status and error_body(body) and body["code"] == status, (status, body)
        assert words.lower() in body["message"].lower(), (words, body)
    for method, p in [("GET", "/v1/persons/nobody/encounters?transactionId=x"),
                      ("GET", "/v1/persons/nobody/encounters/e?transactionId=x"),
                      ("DELETE", "/v1/persons/nobody?transactionId=x"),
                      ("GET", "/v1/tasks/0000000000000000/status?transactionId=x")]:  # fmt: skip
        st, body = await call(c, method, p)
        assert st == 404 and error_body(body), (p, body)
    # identify by an unknown person: not found (before any consent check)
    st, body = await call(c, "POST", "/v1/identify/ALL/nobody?transactionId=x")
    assert st == 404 and error_body(body), body
    st, body = await call(c, "PUT", "/v1/persons/x/encounters/e/status?transactionId=x&status=GONE")
    assert st == 400 and "ACTIVE" in body["message"]
    st, body = await call(c, "PUT", "/v1/persons/x/encounters/e/galleries?transactionId=x",
                          json=["A", "A"])  # fmt: skip
    assert st == 400 and "duplicates" in body["message"]
    st, body = await call(c, "GET", "/v1/persons/x/encounters", headers={})
    assert st == 401 and error_body(body)


async def test_a_bank_is_verify_only_unless_configured(osia):
    c = osia
    v = unit_vectors(1, seed=154)[0]
    st, _ = await call(c, "POST", "/v1/persons/dora/encounters/d1?transactionId=b1",
                       json=encounter(v))  # fmt: skip
    assert st == 200
    st, body = await call(c, "POST", "/v1/verify/ALL/dora?transactionId=b2", headers=c.bank,
                          json={"biometricData": bio(near(v))})  # fmt: skip
    assert st == 200 and body == {"decision": True}  # no scores for a relying party
    for method, path, kw in [
        ("POST", "/v1/persons/eve/encounters/x?transactionId=b3", dict(json=encounter(v))),
        ("POST", "/v1/identify/ALL?transactionId=b4", dict(json={"filter": {}, "biometricData": bio(v)})),
        ("DELETE", "/v1/persons/dora?transactionId=b5", {}),
    ]:  # fmt: skip
        st, body = await call(c, method, path, headers=c.bank, **kw)
        assert st == 403 and error_body(body) and "may not" in body["message"], (path, body)


async def test_verify_from_bio_compares_two_samples_under_the_threshold_rules(osia):
    c = osia
    v, w = unit_vectors(2, seed=160)
    path = "/v1/verify?transactionId=vb1"
    st, body = await call(c, "POST", path, json={"biometricData1": bio(v),
                                                  "biometricData2": bio(near(v))})  # fmt: skip
    assert st == 200 and body["decision"] is True and body["scores"][0]["score"] < 0.5, body
    st, body = await call(
        c, "POST", path, json={"biometricData1": bio(v), "biometricData2": bio(w)}
    )
    assert st == 200 and body["decision"] is False and body["scores"][0]["score"] > 0.5, body
    # a relying party gets the decision only
    st, body = await call(c, "POST", path, headers=c.bank,
                          json={"biometricData1": bio(v), "biometricData2": bio(near(v))})  # fmt: skip
    assert st == 200 and body == {"decision": True}, body
    # only stricter: a very strict threshold turns the match down, a looser one is 400
    st, body = await call(c, "POST", path + "&threshold=0.0001",
                          json={"biometricData1": bio(v), "biometricData2": bio(near(v))})  # fmt: skip
    assert st == 200 and body["decision"] is False, body
    st, body = await call(c, "POST", path + "&threshold=1.99",
                          json={"biometricData1": bio(v), "biometricData2": bio(w)})  # fmt: skip
    assert st == 400 and error_body(body) and "looser" in body["message"], body
    bad = [
        ({"biometricData1": bio(v)}, "biometricData2"),
        ({"biometricData1": bio(v), "biometricData2": "x"}, "biometricData2"),
        ({"biometricData1": bio(v), "biometricData2": [{"biometricType": "FACE",
                                                        "template": "%%"}]}, "base64"),
        ({"biometricData1": bio(v), "biometricData2": [{"biometricType": "FACE",
                                                        "template": "AAAA"}]}, "sample b"),
        ({"biometricData1": bio(v), "biometricData2": bio(w), "extra": 1}, "unknown"),
    ]  # fmt: skip
    for j, words in bad:
        st, body = await call(c, "POST", path, json=j)
        assert st == 400 and error_body(body) and words in body["message"], (j, body)
    st, body = await call(c, "POST", path, headers={"Content-Type": "application/json"},
                          json={"biometricData1": bio(v), "biometricData2": bio(w)})  # fmt: skip
    assert st == 401 and error_body(body)


async def test_read_template_needs_the_templates_read_scope_and_rights_to_the_person(osia):
    import numpy as np

    from tanu.v1 import common_pb2

    c = osia
    v = unit_vectors(1, seed=170)[0]
    st, body = await call(c, "POST", "/v1/persons/mia/encounters/m1?transactionId=t1",
                          headers=c.migrator, json=encounter(v))  # fmt: skip
    assert st == 200, body
    st, _ = await call(c, "POST", "/v1/persons/ole/encounters/o1?transactionId=t2",
                       json=encounter(unit_vectors(1, seed=171)[0]))  # fmt: skip
    assert st == 200
    assert not any("templates.read" in s for s in auth.DEFAULT_SCOPES.values())
    # Without the scope (the operator, by default, and the bank): 403, the
    # same body whether the person exists or not.
    for headers in (c.h, c.bank):
        answers = []
        for person in ("mia", "ole", "nobody"):
            st, body = await call(c, "GET", f"/v1/persons/{person}/encounters/m1/templates"
                                  "?transactionId=t3", headers=headers)  # fmt: skip
            assert st == 403 and error_body(body) and "templates.read" in body["message"], body
            answers.append(body)
        assert answers[0] == answers[1] == answers[2]
    # With the scope, on its own person: the stored template, as raw float32.
    st, body = await call(c, "GET", "/v1/persons/mia/encounters/m1/templates?transactionId=t4",
                          headers=c.migrator)  # fmt: skip
    assert st == 200 and len(body) == 1, body
    item = body[0]
    assert item["biometricType"] == "FACE" and item["templateFormat"] == "TANU_F32LE"
    assert item["algorithm"] == c.layout.model_id
    got = np.frombuffer(base64.b64decode(item["template"]), dtype="<f4")
    assert got.shape == v.shape and np.allclose(got, v, atol=1e-5)
    # another's person, or one that does not exist: the uniform refusal
    for person, enc in (("ole", "o1"), ("nobody", "m1")):
        st, body = await call(c, "GET", f"/v1/persons/{person}/encounters/{enc}/templates"
                              "?transactionId=t5", headers=c.migrator)  # fmt: skip
        assert st == 404 and error_body(body), body
    st, body = await call(c, "GET", "/v1/persons/mia/encounters/zz/templates?transactionId=t6",
                          headers=c.migrator)  # fmt: skip
    assert st == 404 and error_body(body), body
    st, body = await call(c, "GET", "/v1/persons/mia/encounters/m1/templates?transactionId=t7"
                          "&templateFormat=ISO_19794_5", headers=c.migrator)  # fmt: skip
    assert st == 501 and "TANU_F32LE" in body["message"], body
    st, body = await call(
        c,
        "GET",
        "/v1/persons/mia/encounters/m1/templates?transactionId=t8"
        "&templateFormat=TANU_F32LE&biometricType=FINGER",
        headers=c.migrator,
    )
    assert st == 200 and body == [], body
    # every read is in the person's access history
    h = await c.stub.GetAccessHistory(common_pb2.AccessHistoryRequest(subject_id="mia"))
    reads = [e for e in h.entries if e.operation == "ReadTemplates"]
    assert [(e.tenant, e.result) for e in reads].count(("migrator", "templates_read")) == 2, reads
    assert any(e.tenant == "operator" and e.result == "PERMISSION_DENIED" for e in reads), reads
