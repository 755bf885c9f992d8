"""What consent allows: which subjects' data may be used for a purpose, what
a consent grant must state, and who may consent and act for a minor (an
enrolled adult guardian on record; ages by ``tanu.policy.subjects``).

Refusals are ``PermissionDenied`` with their reason (``consent`` or
``biometric_lock``); a grant that is incomplete is ``InvalidArgument``.
"""

from __future__ import annotations

from collections.abc import Sequence

from tanu.core import errors
from tanu.v1 import identity_pb2, store_pb2

from .subjects import RELATIONSHIPS, is_minor


def may_use(status: store_pb2.SubjectStatus, purpose: str) -> bool:
    """Whether a subject's data may be used (matched, returned) for
    ``purpose``: enrolled, consented to it, and not biometrically locked."""
    return status.enrolled and purpose in status.purposes and not status.biometric_locked


def check_not_locked(status: store_pb2.SubjectStatus, subject_id: str) -> None:
    """Refuses a subject who has locked the use of their biometrics."""
    if status.biometric_locked:
        raise errors.PermissionDenied(
            f"subject {subject_id!r} has locked the use of their biometrics", "biometric_lock"
        )


def check_consented(status: store_pb2.SubjectStatus, subject_id: str, purpose: str) -> None:
    """Refuses a use for a purpose the subject has not consented to."""
    if purpose not in status.purposes:
        raise errors.PermissionDenied(
            f"subject {subject_id!r} has not consented to {purpose!r} "
            f"(consented: {list(status.purposes)})",
            "consent",
        )


def check_enrolment_purpose(purposes: Sequence[str], purpose: str) -> None:
    """Refuses an enrolment for a purpose its consent does not name."""
    if purpose not in purposes:
        raise errors.PermissionDenied(
            f"purpose {purpose!r} is not among the consented purposes {list(purposes)}",
            "consent",
        )


def check_purposes_held(purposes: Sequence[str], held: frozenset[str], tenant_id: str) -> None:
    """Refuses a consent naming a purpose the enrolling tenant does not hold
    (the registry's purposes are the known ones): a tenant cannot record
    consent on another agency's behalf, nor for a purpose nobody serves."""
    foreign = sorted({p.strip() for p in purposes} - held)
    if foreign:
        shown = [p if len(p) <= 64 else p[:32] + f"...({len(p)} characters)" for p in foreign[:8]]
        raise errors.PermissionDenied(
            f"consent.purposes {shown} are not purposes tenant {tenant_id!r} holds "
            f"(it holds {sorted(held)})",
            "purpose",
        )


def grant_purposes(grant: identity_pb2.ConsentGrant) -> list[str]:
    """The purposes a grant consents to (trimmed, sorted, once each); the
    grant must name at least one and where its signed evidence is kept."""
    purposes = sorted({p.strip() for p in grant.purposes if p.strip()})
    if not purposes:
        raise errors.InvalidArgument(
            "consent.purposes is empty: name what the data may be used for"
        )
    if not grant.evidence_ref:
        raise errors.InvalidArgument(
            "consent.evidence_ref is empty: where is the signed consent kept?"
        )
    return purposes


def check_guardian_named(subject_id: str, dob: str, grant: identity_pb2.ConsentGrant) -> None:
    """For a minor: the grant names a guardian and a relationship under
    which an adult may consent for them."""
    if not grant.guardian_subject_id:
        raise errors.PermissionDenied(
            f"subject {subject_id!r} is under 18 (born {dob}): a guardian's consent is "
            "required (consent.guardian_subject_id, relationship, guardian_sample)",
            "consent",
        )
    if grant.relationship not in RELATIONSHIPS:
        raise errors.InvalidArgument(
            f"consent.relationship must be one of {list(RELATIONSHIPS)}, got {grant.relationship!r}"
        )


def check_guardian(guardian_id: str, guardian: store_pb2.SubjectStatus) -> None:
    """A guardian is an enrolled adult."""
    if not guardian.enrolled:
        raise errors.PermissionDenied(
            f"guardian {guardian_id!r} is not enrolled; a guardian must be an enrolled adult",
            "consent",
        )
    if is_minor(guardian.date_of_birth):
        raise errors.PermissionDenied(
            f"guardian {guardian_id!r} is under 18 and cannot consent for another", "consent"
        )


def check_guardian_on_record(
    guardian_id: str, subject_id: str, status: store_pb2.SubjectStatus
) -> None:
    """Refuses a guardian that the subject's consents in force do not name."""
    if guardian_id not in status.guardians:
        raise errors.PermissionDenied(
            f"{guardian_id!r} is not a guardian on record for {subject_id!r}", "consent"
        )


def check_still_minor(subject_id: str, status: store_pb2.SubjectStatus) -> None:
    """A guardian acts for a subject only while the subject is a minor."""
    if not is_minor(status.date_of_birth):
        raise errors.PermissionDenied(
            f"subject {subject_id!r} is now an adult: only they can act on their data",
            "consent",
        )
