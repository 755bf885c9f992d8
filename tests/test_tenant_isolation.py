"""Tenant isolation by ownership, every cell of the matrix in
docs/security.md (tenant kind x operation x relation to the subject),
against one real cluster for the module. Each cell gets a subject of its
own, enrolled by the agency gov-a (its owner), so cells that change or
erase a subject do not affect each other.

The expectations are written out here, independently of
``tanu.policy.access.MATRIX``: OK (allowed), DENIED (the scope or purpose
is not the tenant's: PERMISSION_DENIED), HIDDEN (the uniform NOT_FOUND, or
for Verify the uniform NO_MATCH, of a caller without rights)."""

from __future__ import annotations

import itertools
import subprocess
import sys

import grpc
import pytest
import pytest_asyncio
from tenancy import code_of, md, start_cluster, token

from tanu.core import auth, signing
from tanu.policy import access
from tanu.v1 import common_pb2, identity_pb2

from conftest import unit_vectors
from helpers import consent, enroll, sample

OK, DENIED, HIDDEN = "ok", "denied", "hidden"
OPS = ("Verify", "GetSubject", "GetSubjectReport", "GetAccessHistory", "GrantConsent",
       "RevokeConsent", "SetBiometricLock", "Delete")  # fmt: skip

# row: (tenant, purpose it acts for, relation, does the subject consent to kyc, minor)
ROWS = {
    "operator": ("operator", "kyc", access.OPERATOR, True, False),
    "owner": ("gov-a", "kyc", access.OWNER, True, False),
    "gov-purpose": ("gov-b", "kyc", access.PURPOSE, True, False),
    "gov-none": ("gov-b", "border_control", access.NONE, True, False),
    "bank-purpose": ("bank", "kyc", access.PURPOSE, True, False),
    "bank-none": ("bank", "kyc", access.NONE, False, False),
    "portal-self": ("portal", "identity_verification", access.SELF, True, False),
    "portal-guardian": ("portal", "identity_verification", access.GUARDIAN, True, True),
    "portal-other": ("portal", "identity_verification", access.NONE, True, False),
    "auditor": ("auditor", "", access.AUDITOR, True, False),
}
WANT = {  # row -> one expectation per operation, in OPS' order
    "operator":        (OK, OK, OK, OK, OK, OK, OK, OK),
    "owner":           (OK, OK, OK, OK, OK, OK, DENIED, OK),
    "gov-purpose":     (OK, HIDDEN, HIDDEN, HIDDEN, HIDDEN, HIDDEN, DENIED, HIDDEN),
    "gov-none":        (HIDDEN, HIDDEN, HIDDEN, HIDDEN, HIDDEN, HIDDEN, DENIED, HIDDEN),
    "bank-purpose":    (OK, DENIED, DENIED, DENIED, DENIED, DENIED, DENIED, DENIED),
    "bank-none":       (HIDDEN, DENIED, DENIED, DENIED, DENIED, DENIED, DENIED, DENIED),
    "portal-self":     (DENIED, OK, OK, OK, OK, OK, OK, DENIED),
    "portal-guardian": (DENIED, OK, OK, OK, OK, OK, HIDDEN, DENIED),
    "portal-other":    (DENIED, HIDDEN, HIDDEN, HIDDEN, HIDDEN, HIDDEN, HIDDEN, DENIED),
    "auditor":         (DENIED, DENIED, DENIED, OK, DENIED, DENIED, DENIED, DENIED),
}  # fmt: skip
CELLS = [(row, op) for row in ROWS for op in OPS]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def iso(tmp_path_factory):
    c, nats, raw, ch = await start_cluster(tmp_path_factory.mktemp("isolation"))
    try:
        c.raw, c.seeds = raw, itertools.count(2000)
        c.guardian = unit_vectors(1, seed=1999)[0]
        gov = md(token(c.env, "gov-a"), "kyc")
        await raw.Enroll(enroll("iso-guardian", c.guardian), metadata=gov)
        yield c
    finally:
        await ch.close()
        await c.stop()
        nats.stop()


async def subject_for(c, row: str, op: str):
    """A fresh subject for the cell, enrolled by gov-a: (id, its face)."""
    _, _, _, kyc, minor = ROWS[row]
    sid = f"iso-{row}-{op}"
    v = unit_vectors(1, seed=next(c.seeds))[0]
    purposes = ("identity_verification", "kyc") if kyc else ("identity_verification",)
    if minor:
        grant = consent(purposes, guardian_subject_id="iso-guardian", relationship="parent",
                        guardian_sample=sample(c.guardian))  # fmt: skip
        req = enroll(sid, v, date_of_birth="2015-06-01", consent=grant)
    else:
        req = enroll(sid, v, consent=consent(purposes))
    r = await c.raw.Enroll(req, metadata=md(token(c.env, "gov-a"), "identity_verification"))
    assert r.enrolled
    return sid, v


def request(c, op: str, sid: str, v, minor: bool):
    """The request of ``op`` on ``sid`` proven by the right face (the
    guardian's, for a minor)."""
    actor = dict(revoker_subject_id="iso-guardian", revoker_sample=sample(c.guardian)) if minor \
        else dict(revoker_sample=sample(v))  # fmt: skip
    grant = consent(("social_services",), guardian_subject_id="iso-guardian",
                    relationship="parent", guardian_sample=sample(c.guardian)) if minor \
        else consent(("social_services",))  # fmt: skip
    return {
        "Verify": identity_pb2.VerifyRequest(subject_id=sid, sample=sample(v)),
        "GetSubject": identity_pb2.GetSubjectRequest(subject_id=sid),
        "GetSubjectReport": identity_pb2.GetSubjectRequest(subject_id=sid),
        "GetAccessHistory": common_pb2.AccessHistoryRequest(subject_id=sid),
        "GrantConsent": identity_pb2.GrantConsentRequest(
            subject_id=sid, consent=grant, **({} if minor else {"sample": sample(v)})),
        "RevokeConsent": identity_pb2.RevokeConsentRequest(subject_id=sid, purposes=["kyc"],
                                                           **actor),
        "SetBiometricLock": identity_pb2.SetBiometricLockRequest(subject_id=sid, locked=True,
                                                                 sample=sample(v)),
        "Delete": identity_pb2.DeleteRequest(subject_id=sid, reason="test"),
    }[op]  # fmt: skip


def caller_token(c, row: str, sid: str) -> str:
    tenant, _, rel, _, _ = ROWS[row]
    bound = {access.SELF: sid, access.GUARDIAN: "iso-guardian", access.NONE: "iso-guardian"}
    return token(c.env, tenant, subject=bound.get(rel, "") if tenant == "portal" else "")


@pytest.mark.asyncio(loop_scope="module")
@pytest.mark.parametrize(("row", "op"), CELLS, ids=[f"{r}-{o}" for r, o in CELLS])
async def test_matrix_cell(iso, row: str, op: str):
    tenant, purpose, rel, _, minor = ROWS[row]
    want = WANT[row][OPS.index(op)]
    sid, v = await subject_for(iso, row, op)
    call = getattr(iso.raw, op)(
        request(iso, op, sid, v, minor), metadata=md(caller_token(iso, row, sid), purpose)
    )
    try:
        reply, code, msg = await call, grpc.StatusCode.OK, ""
    except grpc.aio.AioRpcError as exc:
        reply, code, msg = None, exc.code(), exc.details()
    cell = (row, op, code.name, msg)
    if want == DENIED:
        assert code == grpc.StatusCode.PERMISSION_DENIED, cell
    elif want == HIDDEN and op == "Verify":
        assert code == grpc.StatusCode.OK and reply.decision == common_pb2.DECISION_NO_MATCH, cell
    elif want == HIDDEN:
        assert code == grpc.StatusCode.NOT_FOUND and msg == access.NO_RIGHTS_MESSAGE, cell
    else:
        assert code == grpc.StatusCode.OK, cell
        if op == "Verify":
            assert reply.decision == common_pb2.DECISION_MATCH, cell
        if op == "GetSubjectReport":  # consent provenance only for the owner and the operator
            provenance = rel in (access.OWNER, access.OPERATOR)
            assert reply.consents and all(
                bool(x.evidence_ref) == provenance and bool(x.tenant) == provenance
                and bool(x.client) == provenance for x in reply.consents
            ), cell  # fmt: skip
    # an allowed change is really made; a refused one changes nothing
    after = await code_of(iso.stub.GetSubject(identity_pb2.GetSubjectRequest(subject_id=sid)))
    gone = op == "Delete" and want == OK
    assert (after[0] == grpc.StatusCode.NOT_FOUND) is gone, (cell, after)


@pytest.mark.asyncio(loop_scope="module")
async def test_the_matrix_here_is_the_policys():
    """The written-out expectations and ``tanu.policy.access.MATRIX`` agree
    wherever the scope lets the call through."""
    scope_ok = {OK, HIDDEN}
    for row, (_tenant, _, rel, _, _) in ROWS.items():
        for i, op in enumerate(OPS):
            if WANT[row][i] in scope_ok:
                assert access.allowed(op, rel) is (WANT[row][i] == OK), (row, op)


def test_tokens_issue_binds_a_subject(tmp_path):
    from tanu.core import secrets

    secrets.provision(tmp_path / "keys")
    r = subprocess.run(
        [sys.executable, "-m", "tanu.ops.cli", "--var", str(tmp_path), "tokens", "issue",
         "--tenant", "portal", "--client", "web", "--scopes", "subject.report",
         "--subject", "citizen-7"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    reg = auth.Registry.from_doc({"tenants": [{"id": "portal", "kind": "citizen_portal"}]})
    a = auth.Authenticator(signing.load_public_key(tmp_path / "keys" / "issuer.pem.pub"), reg)
    p = a.authenticate("Bearer " + r.stdout.strip())
    assert p.subject == "citizen-7" and p.kind == "citizen_portal" and not p.sees_scores


def test_a_store_from_before_owners_gains_the_column(tmp_path):
    import sqlite3

    from test_store import LAYOUT

    from tanu.core import envelope
    from tanu.store.db import Store

    envelope.init_keyring(tmp_path / "k")
    keys = envelope.LocalKeyProvider.from_file(tmp_path / "k")
    db = tmp_path / "old.sqlite3"
    Store(str(db), LAYOUT, keys).close()
    old = sqlite3.connect(db)
    old.execute("ALTER TABLE subjects DROP COLUMN owner")  # as the tables were
    old.commit()
    old.close()
    s = Store(str(db), LAYOUT, keys)
    try:
        rec = common_pb2.Consent(purposes=["kyc"], evidence_ref="f", tenant="gov-a")
        s.put_subject("old-1", unit_vectors(1, seed=3000), "1980-01-01", rec)
        assert s.status(["old-1"]).statuses[0].owner == "gov-a"
    finally:
        s.close()
