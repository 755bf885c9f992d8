"""No oracle: a tenant without rights to a subject gets the same reply
(same code, same message, same bytes) whether the subject is not enrolled,
belongs to another agency, did not consent to its purpose, has locked their
biometrics or is locked out, or the face is another's; and a bad sample is
refused before the subject is looked up, alike for every subject. One real
cluster for the module."""

from __future__ import annotations

import grpc
import pytest
import pytest_asyncio
from tenancy import md, start_cluster, token

from tanu.policy import access
from tanu.v1 import common_pb2, identity_pb2

from conftest import unit_vectors
from helpers import consent, enroll, sample, verify

pytestmark = pytest.mark.asyncio(loop_scope="module")

ONE_BYTE = common_pb2.BiometricSample(template=common_pb2.Template(vector=b"\x00"))
# kyc-consented subjects in different states, and an absent one
STATES = ("plain", "nokyc", "locked", "lockedout", "absent")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def orc(tmp_path_factory):
    c, nats, raw, ch = await start_cluster(tmp_path_factory.mktemp("oracles"))
    try:
        c.raw, c.faces = raw, {}
        gov = md(token(c.env, "gov-a"), "identity_verification")
        for i, state in enumerate(STATES[:-1]):
            v = c.faces[state] = unit_vectors(1, seed=800 + i)[0]
            purposes = ("identity_verification",) if state == "nokyc" else None
            kw = {"consent": consent(purposes)} if purposes else {}
            await raw.Enroll(enroll(f"o-{state}", v, **kw), metadata=gov)
        c.faces["absent"] = unit_vectors(1, seed=899)[0]
        await c.stub.SetBiometricLock(identity_pb2.SetBiometricLockRequest(
            subject_id="o-locked", locked=True, sample=sample(c.faces["locked"])))  # fmt: skip
        db = c.store.db
        for _ in range(10):
            await db.run(db.record_verification, "o-lockedout", False)
        yield c
    finally:
        await ch.close()
        await c.stop()
        nats.stop()


async def reply_of(call) -> tuple[str, str, bytes]:
    """(code, details, serialized reply) of a call."""
    try:
        r = await call
        return "OK", "", r.SerializeToString()
    except grpc.aio.AioRpcError as exc:
        return exc.code().name, exc.details(), b""


async def all_same(replies: dict[str, tuple]) -> tuple:
    first = next(iter(replies.values()))
    assert all(r == first for r in replies.values()), replies
    return first


async def test_a_bank_without_rights_learns_nothing_from_verify(orc):
    bank = md(token(orc.env, "bank"), "kyc")
    wrong = unit_vectors(1, seed=898)[0]
    replies = {
        # each subject's own face: only consent, locks or absence could tell them apart
        s: await reply_of(orc.raw.Verify(verify(f"o-{s}", orc.faces[s]), metadata=bank))
        for s in ("nokyc", "locked", "absent")
    }
    replies["wrong-face"] = await reply_of(orc.raw.Verify(verify("o-plain", wrong), metadata=bank))
    code, _, body = await all_same(replies)
    assert code == "OK"
    assert identity_pb2.VerifyResponse.FromString(body).decision == common_pb2.DECISION_NO_MATCH
    # it spent none of their attempts, and the subject's history says what happened
    for s in ("nokyc", "locked"):
        rep = await orc.stub.GetSubjectReport(identity_pb2.GetSubjectRequest(subject_id=f"o-{s}"))
        assert rep.failed_verifications == 0, s
        hist = await orc.raw.GetAccessHistory(
            common_pb2.AccessHistoryRequest(subject_id=f"o-{s}", page_size=500),
            metadata=md(token(orc.env, "gov-a")),
        )
        assert ("bank", "Verify", "no_rights") in {
            (e.tenant, e.operation, e.result) for e in hist.entries
        }, s


async def test_another_agency_learns_nothing_from_verify(orc):
    gov_b = md(token(orc.env, "gov-b"), "border_control")  # no subject consented to it
    replies = {
        s: await reply_of(orc.raw.Verify(verify(f"o-{s}", orc.faces[s]), metadata=gov_b))
        for s in STATES
    }
    code, _, body = await all_same(replies)
    assert code == "OK" and not identity_pb2.VerifyResponse.FromString(body).HasField("score")


async def test_a_one_byte_sample_is_refused_alike_before_any_look_up(orc):
    for tenant, purpose in (("bank", "kyc"), ("gov-b", "kyc"), ("gov-a", "kyc")):
        m = md(token(orc.env, tenant), purpose)
        replies = {
            s: await reply_of(orc.raw.Verify(
                identity_pb2.VerifyRequest(subject_id=f"o-{s}", sample=ONE_BYTE), metadata=m))
            for s in STATES
        }  # fmt: skip
        code, msg, _ = await all_same(replies)
        assert code == "INVALID_ARGUMENT" and "o-" not in msg, (tenant, msg)
    portal = md(token(orc.env, "portal", subject="o-plain"))
    for op, req in (
        ("SetBiometricLock", lambda s: identity_pb2.SetBiometricLockRequest(
            subject_id=s, locked=True, sample=ONE_BYTE)),
        ("GrantConsent", lambda s: identity_pb2.GrantConsentRequest(
            subject_id=s, consent=consent(("kyc",)), sample=ONE_BYTE)),
        ("RevokeConsent", lambda s: identity_pb2.RevokeConsentRequest(
            subject_id=s, revoker_sample=ONE_BYTE)),
    ):  # fmt: skip
        replies = {s: await reply_of(getattr(orc.raw, op)(req(f"o-{s}"), metadata=portal))
                   for s in STATES}  # fmt: skip
        code, _, _ = await all_same(replies)
        assert code == "INVALID_ARGUMENT", op


async def test_reads_and_changes_without_rights_get_one_answer(orc):
    """Another agency (gov-b) and a portal token bound to someone else read,
    change or erase nothing, and cannot tell absent from present, locked or
    unconsented subjects."""
    gov_b = md(token(orc.env, "gov-b"))
    other = md(token(orc.env, "portal", subject="someone-else"))
    absent_self = md(token(orc.env, "portal", subject="o-absent"))
    cases = {
        "GetSubject": (gov_b, lambda s: identity_pb2.GetSubjectRequest(subject_id=s)),
        "GetSubjectReport": (gov_b, lambda s: identity_pb2.GetSubjectRequest(subject_id=s)),
        "GetAccessHistory": (gov_b, lambda s: common_pb2.AccessHistoryRequest(subject_id=s)),
        "Delete": (gov_b, lambda s: identity_pb2.DeleteRequest(subject_id=s)),
        "GrantConsent": (other, lambda s: identity_pb2.GrantConsentRequest(
            subject_id=s, consent=consent(("kyc",)), sample=sample(orc.faces[s[2:]]))),
        "RevokeConsent": (other, lambda s: identity_pb2.RevokeConsentRequest(
            subject_id=s, revoker_sample=sample(orc.faces[s[2:]]))),
        "SetBiometricLock": (other, lambda s: identity_pb2.SetBiometricLockRequest(
            subject_id=s, locked=False, sample=sample(orc.faces[s[2:]]))),
    }  # fmt: skip
    for op, (m, req) in cases.items():
        replies = {s: await reply_of(getattr(orc.raw, op)(req(f"o-{s}"), metadata=m))
                   for s in STATES}  # fmt: skip
        code, msg, _ = await all_same(replies)
        assert (code, msg) == ("NOT_FOUND", access.NO_RIGHTS_MESSAGE), op
    # a bound token whose subject is absent gets the same as one bound to another
    got = await reply_of(orc.raw.GetSubjectReport(
        identity_pb2.GetSubjectRequest(subject_id="o-absent"), metadata=absent_self))  # fmt: skip
    assert got[:2] == ("NOT_FOUND", access.NO_RIGHTS_MESSAGE)
    # nothing changed: every present subject is still there, still locked where it was
    for s in STATES[:-1]:
        rep = await orc.stub.GetSubjectReport(identity_pb2.GetSubjectRequest(subject_id=f"o-{s}"))
        assert rep.biometric_locked is (s == "locked"), s


async def test_with_rights_the_owner_is_told_why(orc):
    """The contrast: the owning agency has rights, so it learns the state."""
    gov_a = md(token(orc.env, "gov-a"), "kyc")
    got = {
        s: await reply_of(orc.raw.Verify(verify(f"o-{s}", orc.faces[s]), metadata=gov_a))
        for s in STATES
    }
    assert got["plain"][0] == "OK"
    assert got["nokyc"][:1] == ("PERMISSION_DENIED",) and "consent" in got["nokyc"][1]
    assert got["locked"][:1] == ("PERMISSION_DENIED",) and "locked" in got["locked"][1]
    assert got["lockedout"][:1] == ("PERMISSION_DENIED",) and "failed" in got["lockedout"][1]
    assert got["absent"][0] == "OK"  # no one has rights to an absent subject: NO_MATCH
