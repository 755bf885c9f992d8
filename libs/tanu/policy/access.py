"""Who may act on which subject: tenant isolation by ownership.

Scopes (``tanu.core.auth``) say what a tenant kind may do at all; this
module says what it may do to *one subject*, from its relation to it:

- ``operator``: the system operator, every operation on every subject
  (and told when one is not enrolled);
- ``owner``: the agency that enrolled the subject (``SubjectStatus.owner``);
- ``purpose``: a tenant acting for a purpose the subject consented to, with
  no biometric lock in force (``consent.may_use``): it may verify, nothing
  more (no report, no history);
- ``self``: the citizen portal with a token bound to this subject (claim
  ``sub``); what changes something is also proven by the subject's face;
- ``guardian``: the citizen portal with a token bound to a guardian on
  record of this subject while the subject is a minor;
- ``auditor``: reads the access history (the audit log) of any subject,
  and nothing else;
- ``none``: no relation, or the subject is not enrolled.

Where a caller has no right, it learns nothing: every such case gets the
one uniform answer (``refused``), whatever the subject's existence, consent
or lock state. The table is ``MATRIX``; ``docs/security.md`` shows it.
"""

from __future__ import annotations

from tanu.core import errors
from tanu.core.auth import Principal
from tanu.v1 import store_pb2

from .consent import may_use
from .subjects import is_minor

OPERATOR, OWNER, PURPOSE, SELF, GUARDIAN, AUDITOR, NONE = (
    "operator", "owner", "purpose", "self", "guardian", "auditor", "none",
)  # fmt: skip
RELATIONS = (OPERATOR, OWNER, PURPOSE, SELF, GUARDIAN, AUDITOR, NONE)

# operation -> the relations allowed it (scopes are checked before, by the guard).
MATRIX: dict[str, frozenset[str]] = {
    "Verify": frozenset({OPERATOR, OWNER, PURPOSE}),
    "GetSubject": frozenset({OPERATOR, OWNER, SELF, GUARDIAN}),
    "GetSubjectReport": frozenset({OPERATOR, OWNER, SELF, GUARDIAN}),
    "GetAccessHistory": frozenset({OPERATOR, OWNER, SELF, GUARDIAN, AUDITOR}),
    "GrantConsent": frozenset({OPERATOR, OWNER, SELF, GUARDIAN}),
    "RevokeConsent": frozenset({OPERATOR, OWNER, SELF, GUARDIAN}),
    "SetBiometricLock": frozenset({OPERATOR, SELF}),
    "Delete": frozenset({OPERATOR, OWNER}),
    # Encounters (tanu.v1.Identity, the OSIA data model): the owning agency
    # and the operator only; identifying with a subject's stored templates too.
    **{
        op: frozenset({OPERATOR, OWNER})
        for op in (
            "AddEncounter",
            "ListEncounters",
            "GetEncounter",
            "UpdateEncounter",
            "DeleteEncounter",
            "SetEncounterStatus",
            "SetEncounterGalleries",
            "MoveEncounter",
            "MergeSubjects",
            "IdentifyByPerson",
        )
    },  # fmt: skip
    # Templates out of Tanu (scope templates.read, held by no tenant by default).
    "ReadTemplates": frozenset({OPERATOR, OWNER}),
}
# Who sees a report's consent evidence reference and consenting tenant/client.
SEES_CONSENT_PROVENANCE = frozenset({OPERATOR, OWNER})

# The one answer for every subject a caller has no right to.
NO_RIGHTS_MESSAGE = "no subject with this id is available to this tenant"


def relation(p: Principal, st: store_pb2.SubjectStatus, purpose: str = "") -> str:
    """The caller's relation to the subject whose status is ``st``."""
    if p.kind == "auditor":
        return AUDITOR
    if p.kind == "operator":  # the system's operator: told even that a subject is absent
        return OPERATOR
    if not st.enrolled:
        return NONE
    if p.kind == "citizen_portal":
        if p.subject and p.subject == st.subject_id:
            return SELF
        if p.subject and p.subject in st.guardians and is_minor(st.date_of_birth):
            return GUARDIAN
        return NONE
    if st.owner and st.owner == p.tenant_id:
        return OWNER
    if purpose and purpose in p.purposes and may_use(st, purpose):
        return PURPOSE
    return NONE


def allowed(operation: str, rel: str) -> bool:
    """Whether ``rel`` may run ``operation`` on the subject (deny by default)."""
    return rel in MATRIX.get(operation, frozenset())


def refused() -> errors.NotFound:
    """The uniform refusal: the same code and message whether the subject
    is not enrolled, belongs to another agency, did not consent, or is
    locked."""
    return errors.NotFound(NO_RIGHTS_MESSAGE)


def check(operation: str, p: Principal, st: store_pb2.SubjectStatus, purpose: str = "") -> str:
    """The caller's relation when it may run ``operation`` on the subject;
    else the uniform refusal."""
    rel = relation(p, st, purpose)
    if not allowed(operation, rel):
        raise refused()
    return rel


def may_only_be_self(operation: str, p: Principal, subject_id: str) -> bool:
    """Whether the caller's rights to ``subject_id`` can be refused before
    any look-up (a bound portal token naming someone else, for an operation
    a guardian may not do), so no one else's attempts are spent."""
    return (
        p.kind == "citizen_portal"
        and p.subject != subject_id
        and GUARDIAN not in MATRIX.get(operation, frozenset())
    )
