"""Adjudication instead of silent refusal: a de-duplication hit holds the
enrolment as a case; the reply names the matched subject only to a tenant
with rights to it; an adjudicator lists, opens and decides cases (through
the API and ``tanu cases``); both subjects' histories record it all."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import grpc
import pytest
from google.protobuf.descriptor import FieldDescriptor
from pg import store_env

from tanu.core import auth, secrets, signing
from tanu.core import config as cfg
from tanu.gateway import GatewayService
from tanu.v1 import cases_pb2, common_pb2, identity_pb2, identity_pb2_grpc

from conftest import Cluster, env_for, near, operator_token, unit_vectors
from helpers import consent, enroll

TENANTS = {
    "agency-a": ("government", ["identity_verification", "kyc"]),
    "agency-b": ("government", ["identity_verification", "kyc"]),
    "adj": ("adjudicator", []),
}


def _tenants(env: dict[str, str]) -> dict[str, str]:
    """Writes the tenant registry (two agencies, an adjudicator); their tokens."""
    doc = {"tenants": [
        {"id": "operator", "kind": "operator", "purposes": list(secrets.DEFAULT_PURPOSES)},
        *({"id": t, "kind": k, "purposes": p} for t, (k, p) in TENANTS.items()),
    ]}  # fmt: skip
    Path(env["TANU_TENANTS_FILE"]).write_text(json.dumps(doc))
    key = signing.load_signing_key(Path(env["TANU_TENANTS_FILE"]).parent / "issuer.pem")
    tokens = {
        t: auth.issue_token(key, t, "desk-1", list(auth.DEFAULT_SCOPES[k]))
        for t, (k, _) in TENANTS.items()
    }
    return tokens


@pytest.fixture(params=["sqlite", "postgres"])
async def adj(request, nats_server, tmp_path):
    with store_env(request.param) as extra:
        async for x in _adj_cluster(nats_server, tmp_path, extra):
            yield x


async def _adj_cluster(nats_server, tmp_path, extra):
    c = Cluster(env_for(nats_server.url, tmp_path, **extra))
    tokens = _tenants(c.env)
    channels = []
    try:
        await c.start_all()
        stubs = {}
        for t, tok in tokens.items():
            purpose = "adjudication" if t == "adj" else "kyc"
            ch = secrets.aio_channel(f"127.0.0.1:{c.gateway.port}", tok, purpose)
            channels.append(ch)
            stubs[t] = identity_pb2_grpc.IdentityStub(ch)
        yield c, stubs, tokens
    finally:
        for ch in channels:
            await ch.close()
        await c.stop()


def _no_bytes(desc) -> bool:
    """Whether no field of a message type (recursively) can carry bytes."""
    for f in desc.fields:
        if f.type == FieldDescriptor.TYPE_BYTES:
            return False
        if f.message_type is not None and not _no_bytes(f.message_type):
            return False
    return True


async def _cli(c: Cluster, token: str, *argv: str) -> dict:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tanu.ops.cli", "cases", *argv, "--json",
        "--gateway", f"127.0.0.1:{c.gateway.port}", "--token", token,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    return json.loads(out)


async def _history(stub, subject_id: str) -> list[str]:
    h = await stub.GetAccessHistory(common_pb2.AccessHistoryRequest(subject_id=subject_id))
    return [e.operation for e in h.entries]


async def test_a_hit_is_referred_named_only_to_rights_holders_and_decided(adj):
    c, s, tokens = adj
    v = unit_vectors(1, seed=11)[0]
    assert (await s["agency-a"].Enroll(enroll("orig", v))).enrolled
    # Another agency is stopped too, but not told who matched.
    other = await s["agency-b"].Enroll(enroll("dup-b", near(v, seed=2)))
    assert other.outcome == "referred" and other.case_id and not other.enrolled
    assert not other.duplicate_of.subject_id and other.duplicate_withheld
    # The enrolling agency of the matched subject is told.
    own = await s["agency-a"].Enroll(enroll("dup-a", near(v, seed=3)))
    assert own.outcome == "referred" and own.duplicate_of.subject_id == "orig"
    # Held, not enrolled: nothing searchable or readable as a subject.
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await c.stub.GetSubject(identity_pb2.GetSubjectRequest(subject_id="dup-b"))
    assert e.value.code() == grpc.StatusCode.NOT_FOUND
    # Only the adjudicator scope sees the queue.
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await s["agency-a"].ListCases(cases_pb2.ListCasesRequest())
    assert e.value.code() == grpc.StatusCode.PERMISSION_DENIED
    listed = await _cli(c, tokens["adj"], "list")
    assert {x["case_id"] for x in listed["cases"]} == {other.case_id, own.case_id}
    case = await s["adj"].GetCase(cases_pb2.GetCaseRequest(case_id=other.case_id))
    assert case.state == "open" and case.enrolment.subject_id == "dup-b"
    assert case.matched.subject_id == "orig" and case.matched.tenants == ["agency-a"]
    assert case.enrolment.tenants == ["agency-b"] and case.score > 0
    assert _no_bytes(cases_pb2.Case.DESCRIPTOR)  # a case can never carry a template
    shown = await _cli(c, tokens["adj"], "show", own.case_id)
    assert shown["matched"]["subject_id"] == "orig"
    # distinct: enrolled, through the outbox like any enrolment.
    d = await _cli(c, tokens["adj"], "decide", other.case_id, "distinct", "--note", "twins")
    assert d["case"]["state"] == "distinct" and d["subject"]["subject_id"] == "dup-b"
    got = await c.stub.GetSubject(identity_pb2.GetSubjectRequest(subject_id="dup-b"))
    assert got.template_count == 1
    # duplicate: refused, the held record destroyed.
    r = await s["adj"].DecideCase(
        cases_pb2.DecideCaseRequest(case_id=own.case_id, decision="duplicate", note="same")
    )
    assert r.case.state == "duplicate" and r.case.decided_by == "adj/desk-1"
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await s["adj"].DecideCase(cases_pb2.DecideCaseRequest(case_id=own.case_id,
                                                              decision="distinct"))  # fmt: skip
    assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await c.stub.GetSubject(identity_pb2.GetSubjectRequest(subject_id="dup-a"))
    assert e.value.code() == grpc.StatusCode.NOT_FOUND
    # Both subjects' access histories record the hits, the cases and the decisions.
    orig = await _history(c.stub, "orig")
    assert orig.count("dedup_hit") == 2 and orig.count("case_decided") == 2
    assert "GetCase" in orig  # opening a case is a use of the matched subject's data
    dup_b = await _history(c.stub, "dup-b")
    assert {"case_opened", "case_decided"} <= set(dup_b)


async def test_merge_adds_the_template_to_the_existing_identity(adj):
    c, s, _ = adj
    v = unit_vectors(1, seed=12)[0]
    assert (await s["agency-a"].Enroll(enroll("m-orig", v))).enrolled
    held = await s["agency-a"].Enroll(enroll("m-again", near(v, seed=4)))
    r = await s["adj"].DecideCase(cases_pb2.DecideCaseRequest(case_id=held.case_id,
                                                              decision="merge"))  # fmt: skip
    assert r.case.state == "merged" and r.subject.subject_id == "m-orig"
    assert r.subject.template_count == 2


async def test_a_locked_or_unconsenting_match_is_withheld_but_still_stops_the_enrolment(adj):
    c, s, _ = adj
    v = unit_vectors(2, seed=13)
    only_id = consent(purposes=["identity_verification"])
    idv = [("x-tanu-purpose", "identity_verification")]
    assert (
        await s["agency-a"].Enroll(enroll("no-kyc", v[0], consent=only_id), metadata=idv)
    ).enrolled
    # The owner itself is not told: the subject never consented to kyc.
    r = await s["agency-a"].Enroll(enroll("no-kyc-2", near(v[0], seed=5)))
    assert r.outcome == "referred" and r.duplicate_withheld and not r.duplicate_of.subject_id
    assert "dedup_hit" in await _history(c.stub, "no-kyc")
    assert (await s["agency-a"].Enroll(enroll("locked", v[1]))).enrolled
    await c.stub.SetBiometricLock(identity_pb2.SetBiometricLockRequest(
        subject_id="locked", locked=True, sample=enroll("x", v[1]).sample))  # fmt: skip
    r = await s["agency-a"].Enroll(enroll("locked-2", near(v[1], seed=6)))
    assert r.outcome == "referred" and r.duplicate_withheld and not r.duplicate_of.subject_id


async def test_beyond_the_certain_threshold_an_enrolment_is_refused_without_a_case(adj):
    c, s, _ = adj
    g = await GatewayService(cfg.from_env(
        cfg.GatewayConfig, {**c.env, "TANU_DEDUP_CERTAIN_THRESHOLD": "0.05"})).start()  # fmt: skip
    ch = secrets.aio_channel(f"127.0.0.1:{g.port}", operator_token(c.env))
    try:
        stub = identity_pb2_grpc.IdentityStub(ch)
        v = unit_vectors(1, seed=14)[0]
        assert (await stub.Enroll(enroll("c-orig", v))).enrolled
        same = await stub.Enroll(enroll("c-copy", v))  # the very same template: certain
        assert same.outcome == "refused" and not same.case_id and not same.enrolled
        close = await stub.Enroll(enroll("c-near", near(v, seed=7)))  # close, not certain
        assert close.outcome == "referred" and close.case_id
    finally:
        await ch.close()
        await g.stop()
    assert (await _history(c.stub, "c-orig")).count("dedup_hit") == 2


async def test_erasing_a_held_id_destroys_its_held_enrolment(adj):
    c, s, _ = adj
    v = unit_vectors(1, seed=15)[0]
    assert (await s["agency-a"].Enroll(enroll("e-orig", v))).enrolled
    held = await s["agency-a"].Enroll(enroll("e-held", near(v, seed=8)))
    with pytest.raises(grpc.aio.AioRpcError) as e:  # never enrolled
        await c.stub.Delete(identity_pb2.DeleteRequest(subject_id="e-held", reason="erasure"))
    assert e.value.code() == grpc.StatusCode.NOT_FOUND
    case = await s["adj"].GetCase(cases_pb2.GetCaseRequest(case_id=held.case_id))
    assert case.state == "erased" and not case.enrolment.present
    # Its id is free again (and its face is still a duplicate of e-orig).
    again = await s["agency-a"].Enroll(enroll("e-held", near(v, seed=9)))
    assert again.outcome == "referred" and again.case_id != held.case_id
