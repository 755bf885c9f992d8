"""A hostile request harms no one else, and bad input is refused with a clear
message, on a real cluster (nats-server, store, searchers, gateway with its
REST facade): oversize values, invisible characters, non-calendar dates,
malformed protobuf, hostile JSON, unauthenticated floods, unsafe request
ids, and what reaches the logs.

The bus here has a small payload limit (128 KiB) so that an audit batch of
a few hundred concurrent requests would exceed it if it were not split."""

from __future__ import annotations

import asyncio
import datetime as dt
import io
import json
import sqlite3
import subprocess
from pathlib import Path

import aiohttp
import grpc
import pytest
import pytest_asyncio
from tenancy import code_of

from tanu.core import auth, logs, signing
from tanu.ops import natsd
from tanu.v1 import common_pb2, identity_pb2, identity_pb2_grpc

from conftest import Cluster, env_for, operator_token, unit_vectors
from helpers import consent, enroll, identify, sample

pytestmark = pytest.mark.asyncio(loop_scope="module")

BUS_LIMIT = 128 * 1024
FAILURE_BURST = 30


class SmallBus:
    """A real nats-server (JetStream) whose max_payload is ``BUS_LIMIT``."""

    def __init__(self, folder: Path) -> None:
        self.port = natsd.free_port()
        folder.mkdir(parents=True, exist_ok=True)
        conf = folder / "nats.conf"
        conf.write_text(f"max_payload: {BUS_LIMIT}\n")
        self.proc = subprocess.Popen(
            [natsd.find_binary(), "-c", str(conf), "-a", "127.0.0.1", "-p", str(self.port),
             "-js", "-sd", str(folder), "-l", str(folder / "nats.log")],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        natsd.wait_port(self.port, 15.0, "127.0.0.1", self.proc)
        self.url = f"nats://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def write_tenants(path: str) -> None:
    Path(path).write_text(json.dumps({"tenants": [
        {"id": "operator", "kind": "operator", "rate_per_s": 100000, "burst": 100000,
         "purposes": ["identity_verification", "kyc", "border_control"]},
        {"id": "gov", "kind": "government", "purposes": ["identity_verification", "kyc"],
         "rate_per_s": 100000, "burst": 100000},
    ]}))  # fmt: skip


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def hc(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("hostile")
    bus = SmallBus(tmp / "nats")
    env = env_for(bus.url, tmp, TANU_REST_PORT="0", TANU_AUTH_FAILURE_AUDIT_S="0.3",
                  TANU_AUTH_FAILURE_BURST=str(FAILURE_BURST),
                  TANU_AUTH_FAILURE_RATE_PER_S="0.5")  # fmt: skip
    write_tenants(env["TANU_TENANTS_FILE"])
    c = Cluster(env)
    try:
        await c.start_all()
        key = signing.load_signing_key(tmp / "keys" / "issuer.pem")
        c.gov = auth.issue_token(key, "gov", "gov-app", ["enrol", "verify", "subject.report"])
        c.ghost = auth.issue_token(key, "ghost-agency", "app", ["subject.report"])
        c.op = operator_token(env)
        c.raw = grpc.aio.insecure_channel(f"127.0.0.1:{c.gateway.port}")
        c.anon = identity_pb2_grpc.IdentityStub(c.raw)
        c.url = f"http://127.0.0.1:{c.gateway.rest.port}"
        c.http = aiohttp.ClientSession()
        c.grace = unit_vectors(1, seed=901)[0]
        assert (await c.stub.Enroll(enroll("grace", c.grace, wait_indexed=True))).enrolled
        yield c
    finally:
        if getattr(c, "http", None):
            await c.http.close()
        if getattr(c, "raw", None):
            await c.raw.close()
        await c.stop()
        bus.stop()


def audit_rows(c, where: str, args=()) -> list[tuple]:
    db = sqlite3.connect(c.env["TANU_STORE_DB"])
    try:
        return db.execute(
            "SELECT operation, tenant, subject_id, result, detail FROM audit WHERE " + where, args
        ).fetchall()
    finally:
        db.close()


def tok(t: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {t}"), ("x-tanu-purpose", "kyc"))


async def still_serving(c) -> None:
    r = await c.stub.Identify(identify(c.grace))
    assert r.complete and r.candidates[0].subject_id == "grace"


# --- one request harms no one else ----------------------------------------


async def test_a_multi_megabyte_subject_id_without_a_token_harms_no_one(hc):
    c = hc
    giant = identity_pb2.GetSubjectRequest(subject_id="x" * (3 * 1024 * 1024))
    legit = [code_of(c.stub.GetSubject(identity_pb2.GetSubjectRequest(subject_id="grace")))
             for _ in range(20)]  # fmt: skip
    got = await asyncio.gather(code_of(c.anon.GetSubject(giant)), *legit)
    assert got[0][0] == grpc.StatusCode.UNAUTHENTICATED
    assert all(code == grpc.StatusCode.OK for code, _ in got[1:]), got[1:]
    # With a token the oversize id is refused with its limit, and audited without it.
    code, details = await code_of(c.stub.GetSubject(giant))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "the limit is 128" in details
    await still_serving(c)
    rows = audit_rows(c, "operation = 'GetSubject' AND result = 'INVALID_ARGUMENT'")
    assert rows and all(len(r[2]) <= 128 and len(r[4]) < 1000 for r in rows)


async def test_audit_batches_stay_below_the_bus_payload_limit(hc):
    # An Identify returning 1000 candidates is audited as 1001 entries:
    # about 160 KiB, more than the bus's 128 KiB. Two at once, beside 200
    # small refusals.
    c = hc
    vs = unit_vectors(1000, seed=907)
    ids_ = [f"{i:04d}-" + "w" * 35 for i in range(1000)]
    # Enrolled 100 at a time: this test is about the audit of the Identify
    # replies, not the depth of the store's enrolment queue (each enrolment
    # waits at most the bus timeout for its turn).
    got = []
    for i in range(0, 1000, 100):
        got += await asyncio.gather(
            *(
                c.stub.Enroll(enroll(s, v))
                for s, v in zip(ids_[i : i + 100], vs[i : i + 100], strict=True)
            )
        )
    assert len(got) == 1000 and all(r.enrolled for r in got)
    await c.stub.Enroll(enroll("batch-last", unit_vectors(1, seed=908)[0], wait_indexed=True))
    small = [code_of(c.stub.GetSubject(identity_pb2.GetSubjectRequest(subject_id=f"nobody-{i}")))
             for i in range(200)]  # fmt: skip
    big = [c.stub.Identify(identify(vs[i], top_k=1000)) for i in range(2)]
    out = await asyncio.gather(*big, *small)
    assert all(len(r.candidates) >= 900 for r in out[:2])
    assert {code for code, _ in out[2:]} == {grpc.StatusCode.NOT_FOUND}
    hist = await c.stub.GetAccessHistory(common_pb2.AccessHistoryRequest(subject_id=ids_[0]))
    assert sum(e.operation == "Identify" for e in hist.entries) == 2
    await still_serving(c)


# --- malformed messages and out-of-range values -----------------------------


async def test_malformed_protobuf_is_invalid_argument_and_audited(hc):
    c = hc
    call = c.raw.unary_unary("/tanu.v1.Identity/GetSubject")
    for body in (b"\xff\xff\xff\xff", b"\x0a\x02\xff\xfe", b"\x0a\x10ab"):
        code, details = await code_of(call(body, metadata=tok(c.op)))
        assert code == grpc.StatusCode.INVALID_ARGUMENT, (body, code, details)
        assert "GetSubject request message" in details
        # authentication first: without a token the caller learns nothing more
        code, _ = await code_of(call(body))
        assert code == grpc.StatusCode.UNAUTHENTICATED
    rows = audit_rows(c, "operation = 'GetSubject' AND detail LIKE '%not a valid%'")
    assert len(rows) >= 3 and rows[0][1] == "operator"
    await still_serving(c)


async def test_out_of_range_numbers_and_tokens_are_invalid_argument(hc):
    c = hc
    for token in ("99999999999999999999", "-1", "abc", "١٢"):
        req = common_pb2.AccessHistoryRequest(subject_id="grace", page_token=token)
        code, details = await code_of(c.stub.GetAccessHistory(req))
        assert code == grpc.StatusCode.INVALID_ARGUMENT and "page_token" in details, token
    code, details = await code_of(c.stub.Identify(identify(c.grace, top_k=2**32 - 1)))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "top_k" in details


async def test_oversize_values_are_refused_with_their_limit_not_cut(hc):
    c = hc
    v = unit_vectors(1, seed=902)[0]
    grant = identity_pb2.ConsentGrant(purposes=["kyc"], evidence_ref="e" * 100_000)
    cases = [
        (enroll("big-evidence", v, consent=grant), "consent.evidence_ref", "the limit is 200"),
        (enroll("many-purposes", v, consent=consent(["kyc"] * 33)), "consent.purposes", "32"),
        (enroll("long-purpose", v, consent=consent(["k" * 65])), "consent.purposes", "64"),
    ]
    for req, field, limit in cases:
        code, details = await code_of(c.stub.Enroll(req))
        assert code == grpc.StatusCode.INVALID_ARGUMENT and field in details and limit in details
    code, details = await code_of(
        c.stub.Delete(identity_pb2.DeleteRequest(subject_id="grace", reason="r" * 201))
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "reason" in details and "200" in details
    md = (("authorization", f"Bearer {c.op}"), ("x-tanu-purpose", "p" * 65))
    code, details = await code_of(c.anon.Identify(identify(c.grace), metadata=md))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "x-tanu-purpose" in details
    assert (await c.stub.GetSubject(identity_pb2.GetSubjectRequest(subject_id="grace"))).subject_id


# --- input hygiene ---------------------------------------------------------------


async def test_subject_ids_with_invisible_characters_or_white_space_are_refused(hc):
    c = hc
    v = unit_vectors(1, seed=903)[0]
    cases = [
        ("grace ", "white space"),
        (" grace", "white space"),
        ("gr\u200bace", "U+200B"),  # zero-width space (Cf)
        ("gr\u202eace", "U+202E"),  # right-to-left override (bidi)
        ("gr\u2066ace", "U+2066"),  # left-to-right isolate (bidi)
        ("gra\u00adce", "U+00AD"),  # soft hyphen (Cf)
        ("a\u2028b", "U+2028"),  # line separator
        ("gr\u3000ace", "U+3000"),  # ideographic space
        ("gr\x7face", "control"),
        ("jose\u0301", "NFC"),  # decomposed: josé as j-o-s-e + combining acute
    ]
    for sid, words in cases:
        code, details = await code_of(c.stub.Enroll(enroll(sid, v)))
        assert code == grpc.StatusCode.INVALID_ARGUMENT and words in details, (sid, details)
        code, details = await code_of(
            c.stub.GetSubject(identity_pb2.GetSubjectRequest(subject_id=sid))
        )
        assert code == grpc.StatusCode.INVALID_ARGUMENT, (sid, code)
    assert (await c.stub.Enroll(enroll("jos\u00e9", v))).enrolled  # the composed form


async def test_dates_of_birth_must_be_calendar_dates_written_yyyy_mm_dd(hc):
    c = hc
    v = unit_vectors(1, seed=904)[0]
    tomorrow = (dt.date.today() + dt.timedelta(days=1)).isoformat()
    cases = [
        ("19900101", "YYYY-MM-DD"),
        ("1990-W01-1", "YYYY-MM-DD"),
        ("1990-001", "YYYY-MM-DD"),
        ("1990-1-1", "YYYY-MM-DD"),
        ("\uff11\uff19\uff19\uff10-01-01", "YYYY-MM-DD"),  # full-width digits
        ("1990-02-30", "not a calendar date"),
        ("1990-13-01", "not a calendar date"),
        (tomorrow, "in the future"),
        ("1879-12-31", "before 1880"),
    ]
    for dob, words in cases:
        code, details = await code_of(c.stub.Enroll(enroll("dob-case", v, date_of_birth=dob)))
        assert code == grpc.StatusCode.INVALID_ARGUMENT and words in details, (dob, details)


async def test_consent_purposes_must_be_ones_the_enrolling_tenant_holds(hc):
    c = hc
    stub = identity_pb2_grpc.IdentityStub(c.raw)
    v = unit_vectors(1, seed=905)[0]
    for purposes in (["kyc", "border_control"], ["kyc", "spying"]):
        req = enroll("purpose-case", v, consent=consent(purposes))
        code, details = await code_of(stub.Enroll(req, metadata=tok(c.gov)))
        assert code == grpc.StatusCode.PERMISSION_DENIED, (purposes, details)
        assert purposes[1] in details and "'gov'" in details
    ok = await stub.Enroll(enroll("purpose-ok", v, consent=consent(["kyc"])), metadata=tok(c.gov))
    assert ok.enrolled


async def test_unsafe_request_ids_are_replaced_by_fresh_ones(hc):
    c = hc
    req = identity_pb2.GetSubjectRequest(subject_id="grace")
    for given, kept in (("req-42.a:b_c", True), ("a b<c>", False), ("r" * 65, False)):
        call = c.stub.GetSubject(req, metadata=(("x-request-id", given),))
        await call
        rid = dict(await call.trailing_metadata())["x-request-id"]
        if kept:
            assert rid == given
        else:
            assert rid != given and len(rid) == 32 and rid.isalnum()
    rows = audit_rows(c, "detail LIKE ?", ("%a b<c>%",))
    assert rows == []


# --- the REST facade ------------------------------------------------------------------


def strict_json(text: str):
    def refuse(name):
        raise AssertionError(f"{name} is not JSON")

    return json.loads(text, parse_constant=refuse)


async def rest(c, method: str, path: str, **kw) -> tuple[int, object]:
    async with c.http.request(method, c.url + path, **kw) as r:
        return r.status, strict_json(await r.text())


def face(vector) -> dict:
    import base64

    return {"biometricData": [{"biometricType": "FACE",
                               "template": base64.b64encode(vector.tobytes()).decode()}]}  # fmt: skip


async def test_rest_authenticates_before_looking_at_the_body(hc):
    c = hc
    bad = [
        ("POST", "/v1/verify/ALL/grace", dict(data=b"{not json")),
        ("POST", "/v1/verify/NOPE/grace", dict(json=face(c.grace))),
        ("POST", "/v1/identify/ALL?maxCandidates=-5", dict(data=b"[]")),
        ("POST", "/v1/identify/ALL", dict(data=b"x", headers={"Content-Type": "text/plain"})),
        ("DELETE", "/v1/persons/" + "z" * 300, {}),
    ]
    for method, path, kw in bad:
        st, body = await rest(c, method, path, **kw)
        assert st == 401 and body["code"] == 401, (path, st, body)


async def test_rest_refuses_hostile_input_with_4xx_and_valid_json(hc):
    c = hc
    h = {"Authorization": f"Bearer {c.op}", "X-Tanu-Purpose": "kyc"}
    j = {**h, "Content-Type": "application/json"}
    deep = b'{"a":' * 5000 + b"1" + b"}" * 5000
    cases = [
        (
            "/v1/identify/ALL?transactionId=t",
            dict(data=b"{}", headers={**h, "Content-Type": "text/plain"}),
            415,
        ),
        ("/v1/identify/ALL?transactionId=t", dict(data=b"{}", headers=h), 415),
        ("/v1/identify/ALL?transactionId=t", dict(data=deep, headers=j), 400),
        ("/v1/identify/ALL?transactionId=t", dict(data=b'{"a": NaN}', headers=j), 400),
        ("/v1/identify/ALL?transactionId=t", dict(data=b'{"a": 1e999}', headers=j), 400),
        (
            "/v1/identify/ALL?transactionId=t",
            dict(data=b'{"a": ' + b"9" * 5000 + b"}", headers=j),
            400,
        ),
        ("/v1/identify/ALL?transactionId=t", dict(data=b"\xff\xfe", headers=j), 400),
        (
            "/v1/identify/ALL?transactionId=t",
            dict(data=b'{"biometricData": [{"image": 7}]}', headers=j),
            400,
        ),
    ]
    for q in ("-1", "0", "1001", "99999999999999999999", "1e400", "nan", "x"):
        cases.append(
            (f"/v1/identify/ALL?transactionId=t&maxNbCand={q}", dict(json=face(c.grace), headers=h),
             400)
        )  # fmt: skip
    for q in ("nan", "inf", "-inf", "1e400"):
        cases.append(
            (f"/v1/verify/ALL/grace?transactionId=t&threshold={q}",
             dict(json=face(c.grace), headers=h), 400)
        )  # fmt: skip
    for path, kw, status in cases:
        st, body = await rest(c, "POST", path, **kw)
        assert st == status and body["code"] == status, (path, st, body)
    st, body = await rest(c, "POST", "/v1/identify/ALL?transactionId=t&maxNbCand=3",
                          json=face(c.grace), headers=h)  # fmt: skip
    assert st == 200 and body[0]["personId"] == "grace"
    # a template whose scores overflow float32: still RFC 8259 JSON (null, never Infinity)
    huge = c.grace * 3e37
    st, _ = await rest(c, "POST", "/v1/identify/ALL?transactionId=t", json=face(huge), headers=h)
    assert st < 500


# --- logs ----------------------------------------------------------------------------


async def test_logs_pseudonymise_subject_ids_and_bound_caller_strings(hc):
    c = hc
    buf = io.StringIO()
    logs.configure("tests", "info", stream=buf,
                   pseudonym_key_file=c.env["TANU_LOG_PSEUDONYM_KEY_FILE"])  # fmt: skip
    try:
        v = unit_vectors(1, seed=906)[0]
        await c.stub.Enroll(enroll("erased-later", v, wait_indexed=True))
        await c.stub.Delete(identity_pb2.DeleteRequest(subject_id="erased-later"))
        await code_of(c.stub.Verify(
            identity_pb2.VerifyRequest(subject_id="erased-later", sample=sample(v))))  # fmt: skip
        await code_of(c.stub.GetSubject(
            identity_pb2.GetSubjectRequest(subject_id="q" * 100_000)))  # fmt: skip
        await c.stub.GetSubject(identity_pb2.GetSubjectRequest(subject_id="grace"),
                                metadata=(("x-request-id", "<" * 60),))  # fmt: skip
    finally:
        logs.configure("tests", "warning")
    text = buf.getvalue()
    assert "rpc_refused" in text and "request_id_replaced" in text
    assert "erased-later" not in text and logs.pseudonym("erased-later") in text
    assert "q" * 300 not in text and "<" * 60 not in text
    assert all(len(line) < 4000 for line in text.splitlines())


# --- failed authentication (last: it spends this address's budget) -------------------


async def test_failed_authentication_is_limited_per_peer_and_audited_in_aggregate(hc):
    c = hc
    before = len(audit_rows(c, "1 = 1"))
    bad = (("authorization", "Bearer tanu1.forged.token"),)
    req = identity_pb2.GetSubjectRequest(subject_id="grace")
    codes = [(await code_of(c.anon.GetSubjectReport(req, metadata=bad)))[0] for _ in range(80)]
    assert grpc.StatusCode.UNAUTHENTICATED in codes[:FAILURE_BURST]
    assert codes[-1] == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert set(codes) <= {grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.RESOURCE_EXHAUSTED}
    # a valid token from the same address still works
    assert (await c.anon.GetSubject(req, metadata=tok(c.op))).subject_id == "grace"
    # Aggregates are written every interval (0.3 s): wait for the last one
    # (a loaded machine may take a few intervals), never past 80.
    end = asyncio.get_running_loop().time() + 15
    while True:
        await asyncio.sleep(0.3)
        rows = audit_rows(c, "operation = 'GetSubjectReport' AND result = 'UNAUTHENTICATED'")
        counted = sum(json.loads(r[4])["count"] for r in rows)
        if counted >= 80 or asyncio.get_running_loop().time() > end:
            break
    assert counted == 80 and len(rows) <= 6, rows
    assert all(json.loads(r[4])["peer"] == "127.0.0.1" for r in rows)
    # 80 failures cost a handful of audit writes, not 80 (plus the valid call's)
    assert len(audit_rows(c, "1 = 1")) - before <= 7
    # a valid signature of a tenant the registry does not know is refused and audited per request
    code, details = await code_of(c.anon.GetSubject(req, metadata=tok(c.ghost)))
    assert code == grpc.StatusCode.PERMISSION_DENIED and "not registered" in details
    rows = audit_rows(c, "result = 'PERMISSION_DENIED' AND detail LIKE '%ghost-agency%'")
    assert len(rows) == 1 and rows[0][0] == "GetSubject"
