"""Who may be told which enrolled subject a de-duplication matched.

The enrolment is stopped whoever asks (it is referred to adjudication);
what differs is whether the reply names the matched subject. One rule, in
one function, so it can be unified with the tenant-ownership rules.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

from tanu.v1 import store_pb2

ADJUDICATE = "adjudicate"


def may_name_match(
    tenant_id: str,
    scopes: Collection[str],
    purpose: str,
    owners: Sequence[str],
    status: store_pb2.SubjectStatus,
) -> bool:
    """Whether a caller (``tenant_id`` with ``scopes``, acting for
    ``purpose``) may learn the matched subject's id: the subject must have
    consented to the purpose and not locked their biometrics, and the caller
    must have rights to it: its owner (the enrolling agency, as in
    ``tanu.policy.access``), a tenant of its consent records (``owners``),
    or an adjudicator."""
    if not status.enrolled or status.biometric_locked or purpose not in status.purposes:
        return False
    return status.owner == tenant_id or tenant_id in owners or ADJUDICATE in scopes
