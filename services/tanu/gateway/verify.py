"""Verify (1:1): a probe against the templates held for one subject, after
the subject's locks, the lockout's delay and their consent admit it; and the
face confirmation by which subjects and guardians prove who they are.

Every 1:1 outcome goes to the store, which counts the consecutive failures
(``tanu.policy.lockout``) and answers with the delay or lock they caused.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import numpy as np

from tanu.core import errors, ids, vectors
from tanu.core.config import Layout
from tanu.core.vectors import METRIC_PROTO
from tanu.policy import consent
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


async def record_outcome(gw: Gateway, subject_id: str, matched: bool) -> None:
    """Tells the store a 1:1 result: failures count towards the lockout."""
    await gw.store.record_verification(
        store_pb2.VerificationOutcome(subject_id=subject_id, matched=matched)
    )


async def templates(gw: Gateway, subject_id: str) -> store_pb2.GetTemplatesResponse:
    """The subject's templates and status, from the store."""
    return await gw.store.templates(store_pb2.GetTemplatesRequest(subject_id=subject_id))


async def confirm_person(
    gw: Gateway, subject_id: str, sample: common_pb2.BiometricSample, who: str
) -> float:
    """1:1 check that ``sample`` is ``subject_id`` (even while locked: the
    subject proving who they are to manage their own data); the best score,
    or PermissionDenied naming ``who`` did not match."""
    probe = await gw.samples.template(sample)
    held = await templates(gw, subject_id)
    best, match = compare(gw.layout, probe, held, gw.threshold("verify", None)[0])
    await record_outcome(gw, subject_id, match)
    if not match:
        raise errors.PermissionDenied(f"the face does not match {who} ({subject_id!r})", "identity")
    return best


def check_not_locked_out(st: store_pb2.SubjectStatus, subject_id: str) -> None:
    """Refuses a verification while the store's lockout holds: locked after
    repeated failures (until the subject unlocks), or inside the delay
    after the last failure."""
    if st.verification_locked:
        raise errors.PermissionDenied(
            f"subject {subject_id!r} is locked after {st.failed_verifications} failed "
            "verifications; the subject must unlock (SetBiometricLock locked=false)",
            "lockout",
        )
    wait_ms = st.retry_after_ms - int(time.time() * 1000)
    if wait_ms > 0:
        raise errors.ResourceExhausted(
            f"subject {subject_id!r}: {st.failed_verifications} failed verifications in a "
            f"row; retry in {wait_ms / 1000:.1f}s",
            "lockout",
        )


async def verify(
    gw: Gateway, req: identity_pb2.VerifyRequest, call: Call
) -> identity_pb2.VerifyResponse:
    subject_id = ids.check_subject_id(req.subject_id)
    threshold, source = gw.threshold("verify", req.threshold if req.HasField("threshold") else None)
    held = await templates(gw, subject_id)
    st = held.status
    consent.check_not_locked(st, subject_id)
    check_not_locked_out(st, subject_id)
    consent.check_consented(st, subject_id, call.purpose)
    probe = await gw.samples.template(req.sample)
    best, match = compare(gw.layout, probe, held, threshold)
    gw.metrics.match_score.labels("verify").observe(best)
    await record_outcome(gw, subject_id, match)
    call.result = "match" if match else "no_match"
    return identity_pb2.VerifyResponse(
        decision=common_pb2.DECISION_MATCH if match else common_pb2.DECISION_NO_MATCH,
        score=best,
        threshold=threshold,
        threshold_source=source,
        metric=METRIC_PROTO[gw.layout.metric],
        model_id=gw.layout.model_id,
    )
