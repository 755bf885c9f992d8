"""The citizen's own controls over their data: consent (who may give it,
granting more purposes, revoking, which erases once nothing is left),
the biometric lock, and what is held about them (the subject, the report,
the access history).

Who may consent or act for a subject is ``tanu.policy.consent``'s rule;
here the giver is established by face (``verify.confirm_person``, under the
lockout). Who may ask at all is ``tanu.policy.access``'s: a caller without
rights to the subject gets the one uniform refusal, after its sample (if
any) has been checked and before anything about the subject is told.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tanu.core import errors, ids
from tanu.policy import access, consent
from tanu.policy.subjects import is_minor
from tanu.v1 import common_pb2, identity_pb2, store_pb2

from . import idempotency
from .erasure import erase
from .verify import confirm_person


async def subject_for(
    gw: Gateway, op: str, subject_id: str, call: Call
) -> tuple[store_pb2.SubjectStatus, str]:
    """The subject's status and the caller's relation to it, when the caller
    may run ``op`` on it (``tanu.policy.access``); else the uniform refusal."""
    if access.may_only_be_self(op, call.principal, subject_id):
        raise access.refused()
    st = (await gw.statuses([subject_id]))[subject_id]
    rel = access.check(op, call.principal, st, call.purpose)
    call.detail = {**(call.detail or {}), "relation": rel}
    return st, rel


async def checked_probe(gw: Gateway, sample: common_pb2.BiometricSample | None):
    """The sample's probe, checked before the subject is looked up (so a
    bad sample is refused alike for every subject); None without one."""
    if sample is None or not sample.WhichOneof("data"):
        return None
    return await gw.samples.template(sample)


if TYPE_CHECKING:
    from .gateway import Gateway
    from .guard import Call


async def consent_record(
    gw: Gateway,
    subject_id: str,
    dob: str,
    grant: identity_pb2.ConsentGrant,
    call: Call,
    sample: common_pb2.BiometricSample | None,
    *,
    probe=None,
    guardian_probe=None,
) -> common_pb2.Consent:
    """The consent record to store, once its giver is established: the
    subject (an adult; confirmed by ``sample`` when given), or for a minor a
    guardian who is an enrolled adult, states a relationship, and matches
    their own face 1:1."""
    purposes = consent.grant_purposes(grant)
    if not is_minor(dob):
        if sample is not None:
            await confirm_person(gw, subject_id, sample, "the subject", probe=probe)
        return common_pb2.Consent(
            purposes=purposes, given_by="self", evidence_ref=grant.evidence_ref,
            tenant=call.principal.tenant_id, client=call.principal.client,
        )  # fmt: skip
    consent.check_guardian_named(subject_id, dob, grant)
    gid = ids.check_subject_id(grant.guardian_subject_id)
    consent.check_guardian(gid, (await gw.statuses([gid]))[gid])
    if not grant.HasField("guardian_sample"):
        raise errors.InvalidArgument("consent.guardian_sample is required to verify the guardian")
    await confirm_person(gw, gid, grant.guardian_sample, "the guardian", probe=guardian_probe)
    call.detail = {**(call.detail or {}), "guardian_subject_id": gid,
                   "relationship": grant.relationship}  # fmt: skip
    return common_pb2.Consent(
        purposes=purposes, given_by="guardian", guardian_subject_id=gid,
        relationship=grant.relationship, evidence_ref=grant.evidence_ref,
        tenant=call.principal.tenant_id, client=call.principal.client,
    )  # fmt: skip


async def grant_consent(
    gw: Gateway, req: identity_pb2.GrantConsentRequest, call: Call
) -> identity_pb2.ConsentResponse:
    subject_id = ids.check_subject_id(req.subject_id)
    own = req.sample if req.HasField("sample") else None
    probe = await checked_probe(gw, own)
    guardian_probe = await checked_probe(
        gw, req.consent.guardian_sample if req.consent.HasField("guardian_sample") else None
    )
    st, rel = await subject_for(gw, "GrantConsent", subject_id, call)
    if not is_minor(st.date_of_birth) and own is None:
        raise errors.InvalidArgument("sample is required: the subject confirms by face")
    if rel == access.GUARDIAN and req.consent.guardian_subject_id != call.principal.subject:
        raise access.refused()
    record = await consent_record(gw, subject_id, st.date_of_birth, req.consent, call, own,
                                  probe=probe, guardian_probe=guardian_probe)  # fmt: skip
    if record.given_by == "guardian":
        consent.check_guardian_on_record(record.guardian_subject_id, subject_id, st)
    new = await gw.store.grant_consent(
        store_pb2.ConsentRecordRequest(
            subject_id=subject_id, consent=record, idempotency=idempotency.for_call(call, req)
        )
    )
    call.detail = {**(call.detail or {}), "purposes": list(record.purposes)}
    return identity_pb2.ConsentResponse(subject_id=subject_id, purposes=new.purposes)


async def acting_person(
    gw: Gateway,
    subject_id: str,
    revoker: str,
    sample: common_pb2.BiometricSample,
    st: store_pb2.SubjectStatus,
    probe=None,
) -> str:
    """Establishes who acts on a subject's data, verified by face: the
    subject (``self``), or a guardian on record while the subject is a
    minor (``guardian:<id>``)."""
    if not sample.WhichOneof("data"):
        raise errors.InvalidArgument("a face sample is required to confirm who is asking")
    if not revoker or revoker == subject_id:
        await confirm_person(gw, subject_id, sample, "the subject", probe=probe)
        return "self"
    revoker = ids.check_subject_id(revoker)
    consent.check_guardian_on_record(revoker, subject_id, st)
    consent.check_still_minor(subject_id, st)
    await confirm_person(gw, revoker, sample, "the guardian", probe=probe)
    return f"guardian:{revoker}"


async def revoke_consent(
    gw: Gateway, req: identity_pb2.RevokeConsentRequest, call: Call
) -> identity_pb2.ConsentResponse:
    subject_id = ids.check_subject_id(req.subject_id)
    if not req.revoker_sample.WhichOneof("data"):
        raise errors.InvalidArgument("a face sample is required to confirm who is asking")
    probe = await checked_probe(gw, req.revoker_sample)
    st, rel = await subject_for(gw, "RevokeConsent", subject_id, call)
    # A bound portal token acts as its own subject: itself, or as a guardian.
    acting_as = call.principal.subject if rel in (access.SELF, access.GUARDIAN) else None
    if acting_as is not None and (req.revoker_subject_id or subject_id) != acting_as:
        raise access.refused()
    who = await acting_person(gw, subject_id, req.revoker_subject_id, req.revoker_sample, st, probe)
    new = await gw.store.revoke_consent(
        store_pb2.ConsentRecordRequest(
            subject_id=subject_id,
            consent=common_pb2.Consent(purposes=list(req.purposes), revoked_by=who),
            idempotency=idempotency.for_call(call, req),
        )
    )
    call.detail = {"revoked": list(req.purposes) or "all", "by": who.split(":")[0]}
    reply = identity_pb2.ConsentResponse(subject_id=subject_id, purposes=new.purposes)
    if not new.purposes:  # nothing left to hold the data for: erase it
        _, receipt = await erase(gw, subject_id, f"consent_revoked by {who}", call)
        reply.erased = True
        reply.receipt.CopyFrom(receipt)
    return reply


async def set_biometric_lock(
    gw: Gateway, req: identity_pb2.SetBiometricLockRequest, call: Call
) -> identity_pb2.SetBiometricLockResponse:
    subject_id = ids.check_subject_id(req.subject_id)
    if not req.sample.WhichOneof("data"):
        raise errors.InvalidArgument("sample is required: the subject confirms by face")
    probe = await checked_probe(gw, req.sample)
    await subject_for(gw, "SetBiometricLock", subject_id, call)
    await confirm_person(gw, subject_id, req.sample, "the subject", probe=probe,
                         unlocking=not req.locked)  # fmt: skip
    st = await gw.store.set_lock(
        store_pb2.LockRequest(
            subject_id=subject_id, locked=req.locked, idempotency=idempotency.for_call(call, req)
        )
    )
    call.detail = {"locked": st.biometric_locked}
    return identity_pb2.SetBiometricLockResponse(subject_id=subject_id, locked=st.biometric_locked)


async def get_subject(
    gw: Gateway, req: identity_pb2.GetSubjectRequest, call: Call
) -> common_pb2.Subject:
    subject_id = ids.check_subject_id(req.subject_id)
    await subject_for(gw, "GetSubject", subject_id, call)
    return await gw.store.get(store_pb2.GetSubjectRecordRequest(subject_id=subject_id))


async def report(
    gw: Gateway, req: identity_pb2.GetSubjectRequest, call: Call
) -> common_pb2.SubjectReport:
    """The subject's report; the consents' evidence reference and the
    consenting tenant and client only for the owner and the operator."""
    subject_id = ids.check_subject_id(req.subject_id)
    _, rel = await subject_for(gw, "GetSubjectReport", subject_id, call)
    rep = await gw.store.report(store_pb2.GetSubjectRecordRequest(subject_id=subject_id))
    if rel not in access.SEES_CONSENT_PROVENANCE:
        for c in rep.consents:
            c.ClearField("evidence_ref")
            c.ClearField("tenant")
            c.ClearField("client")
    return rep


async def history(
    gw: Gateway, req: common_pb2.AccessHistoryRequest, call: Call
) -> common_pb2.AccessHistory:
    subject_id = ids.check_subject_id(req.subject_id)
    await subject_for(gw, "GetAccessHistory", subject_id, call)
    return await gw.store.history(req)
