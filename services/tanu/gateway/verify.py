"""Verify (1:1): a probe against the templates held for one subject, after
the caller's rights to the subject, the subject's locks, the lockout and
their consent admit it; and the face confirmation by which subjects and
guardians prove who they are.

Every face confirmation is admitted and counted by the store in one step
(``StoreClient.admit_attempt``: refused while delayed or locked, else
counted as a failure at once), and a match clears the count; so concurrent
attempts cannot slip past the delay, and a crash counts as a failure. The
rule is ``tanu.policy.lockout``.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import numpy as np

from tanu.core import errors, ids, vectors
from tanu.core.config import Layout
from tanu.core.vectors import METRIC_PROTO
from tanu.policy import access, consent
from tanu.v1 import common_pb2, identity_pb2, store_pb2

if TYPE_CHECKING:
    from .gateway import Gateway
    from .guard import Call


def compare(
    layout: Layout, probe: np.ndarray, held: store_pb2.GetTemplatesResponse, threshold: float
) -> tuple[float, bool]:
    """The best score of ``probe`` against the held templates of this
    layout's model, and whether it passes ``threshold``."""
    usable = [t.template.vector for t in held.templates if t.template.model_id == layout.model_id]
    if not usable:
        raise errors.FailedPrecondition(
            f"subject {held.subject.subject_id!r} has no {layout.model_id!r} templates to compare with"
        )
    gallery = vectors.from_bytes(b"".join(usable), layout.dimension)
    s = vectors.scores(probe, gallery, layout.metric)
    best = float(s.max() if vectors.best_first(layout.metric) else s.min())
    return best, vectors.is_match(best, threshold, layout.metric)


async def record_match(gw: Gateway, subject_id: str) -> None:
    """Tells the store an admitted attempt matched: the count is cleared.
    (A failure needs no second call: the admission counted it already.)"""
    await gw.store.record_verification(
        store_pb2.VerificationOutcome(subject_id=subject_id, matched=True)
    )


async def templates(gw: Gateway, subject_id: str) -> store_pb2.GetTemplatesResponse:
    """The subject's templates and status, from the store."""
    return await gw.store.templates(store_pb2.GetTemplatesRequest(subject_id=subject_id))


def refuse_unadmitted(adm: store_pb2.AdmitAttemptResponse, subject_id: str) -> None:
    """The lockout's refusal, for a caller with rights to the subject:
    locked after repeated failures (until the subject unlocks), or inside
    the delay after the last failure."""
    st = adm.status
    if (
        adm.refusal == "not_enrolled"
    ):  # the caller has rights: the operator, or a race with an erasure
        raise errors.NotFound(f"subject {subject_id!r} is not enrolled")
    if adm.refusal == "locked":
        raise errors.PermissionDenied(
            f"subject {subject_id!r} is locked after {st.failed_verifications} failed "
            "verifications; the subject must unlock (SetBiometricLock locked=false)",
            "lockout",
        )
    wait_ms = max(st.retry_after_ms - int(time.time() * 1000), 0)
    raise errors.ResourceExhausted(
        f"subject {subject_id!r}: {st.failed_verifications} failed face confirmations in a "
        f"row; retry in {wait_ms / 1000:.1f}s",
        "lockout",
    )


async def admit(gw: Gateway, subject_id: str, unlocking: bool = False) -> store_pb2.SubjectStatus:
    """One face confirmation admitted and counted by the store, in one step
    (``StoreClient.admit_attempt``); the refusal when the lockout holds."""
    adm = await gw.store.admit_attempt(
        store_pb2.AdmitAttemptRequest(subject_id=subject_id, unlocking=unlocking)
    )
    if not adm.admitted:
        refuse_unadmitted(adm, subject_id)
    return adm.status


async def confirm_person(
    gw: Gateway,
    subject_id: str,
    sample: common_pb2.BiometricSample,
    who: str,
    *,
    probe: np.ndarray | None = None,
    unlocking: bool = False,
) -> float:
    """1:1 check that ``sample`` is ``subject_id``, under the lockout like
    every face confirmation (the subject's own unlock is admitted while
    locked, still delayed); the best score, or PermissionDenied naming
    ``who`` did not match."""
    if probe is None:
        probe = await gw.samples.template(sample)
    await admit(gw, subject_id, unlocking)
    held = await templates(gw, subject_id)
    best, match = compare(gw.layout, probe, held, gw.threshold("verify", None)[0])
    if not match:
        raise errors.PermissionDenied(f"the face does not match {who} ({subject_id!r})", "identity")
    await record_match(gw, subject_id)
    return best


async def verify(
    gw: Gateway, req: identity_pb2.VerifyRequest, call: Call
) -> identity_pb2.VerifyResponse:
    """The sample is checked first; a caller without rights to the subject
    (``tanu.policy.access``) then gets NO_MATCH, the same reply whether the
    subject is not enrolled, not consented to its purpose, locked or
    another's face, and spends none of the subject's attempts."""
    subject_id = ids.check_subject_id(req.subject_id)
    threshold, source = gw.threshold("verify", req.threshold if req.HasField("threshold") else None)
    probe = await gw.samples.template(req.sample)
    reply = identity_pb2.VerifyResponse(
        decision=common_pb2.DECISION_NO_MATCH,
        threshold=threshold,
        threshold_source=source,
        metric=METRIC_PROTO[gw.layout.metric],
        model_id=gw.layout.model_id,
    )
    st = (await gw.statuses([subject_id]))[subject_id]
    rel = access.relation(call.principal, st, call.purpose)
    if not access.allowed("Verify", rel):
        # The caller is told NO_MATCH; the audit log (read by those with
        # rights: the owner, the subject, auditors) says what happened.
        call.result = "no_rights"
        return reply
    if not st.enrolled:  # only the operator is told
        raise errors.NotFound(f"subject {subject_id!r} is not enrolled")
    consent.check_not_locked(st, subject_id)
    consent.check_consented(st, subject_id, call.purpose)
    await admit(gw, subject_id)
    best, match = compare(gw.layout, probe, await templates(gw, subject_id), threshold)
    gw.metrics.match_score.labels("verify").observe(best)
    if match:
        await record_match(gw, subject_id)
        reply.decision = common_pb2.DECISION_MATCH
    call.result = "match" if match else "no_match"
    if call.principal.sees_scores:
        reply.score = best
    return reply
