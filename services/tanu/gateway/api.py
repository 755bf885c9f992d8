"""The Identity API, one declaration per operation: its name (the gRPC
method), the scopes that grant it (alternatives: the citizen portal reads a
subject's report with ``subject.report``, an auditor reads the access history
with ``audit.read``), whether the caller must name a purpose, and the use
case that serves it. The guard, the gRPC servicer and the REST facade all
read this table."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from google.protobuf.message import Message

from . import (
    cases,
    citizen,
    compare,
    encounters,
    enrol,
    erasure,
    galleries,
    identify,
    templates,
    verify,
)
from .gateway import Gateway
from .guard import Call, Guard

UseCase = Callable[[Gateway, Any, Call], Awaitable[Message]]


@dataclass(frozen=True)
class IdentityOperation:
    """One operation of ``tanu.v1.Identity``."""

    name: str  # the gRPC method, e.g. "Enroll"; also the audit's operation
    scopes: tuple[str, ...]  # any one of them grants the operation
    needs_purpose: bool  # the caller names why the data is used (x-tanu-purpose)
    use_case: UseCase

    async def serve(
        self,
        guard: Guard,
        gateway: Gateway,
        request: Message,
        metadata: dict[str, str],
        deadline_s: float | None = None,
    ) -> Message:
        """Runs the use case for ``request`` behind the guard."""

        return await guard.handle(
            self, metadata, getattr(request, "subject_id", ""),
            lambda call: self.use_case(gateway, request, call), deadline_s, request=request,
        )  # fmt: skip


OPERATIONS: dict[str, IdentityOperation] = {
    op.name: op
    for op in (
        IdentityOperation("Enroll", ("enrol",), True, enrol.enroll),
        IdentityOperation("Verify", ("verify",), True, verify.verify),
        # 1:1 between two samples; no subject (the audit entry names none).
        IdentityOperation("CompareSamples", ("verify",), True, compare.compare_samples),
        IdentityOperation("Identify", ("identify",), True, identify.identify),
        IdentityOperation("Delete", ("delete",), False, erasure.delete),
        IdentityOperation(
            "GetErasureReceipt", ("delete", "subject.report"), False, erasure.get_receipt
        ),
        IdentityOperation("GetSubject", ("subject.report",), False, citizen.get_subject),
        IdentityOperation("GetSubjectReport", ("subject.report",), False, citizen.report),
        IdentityOperation(
            "GetAccessHistory", ("subject.report", "audit.read"), False, citizen.history
        ),
        IdentityOperation("GrantConsent", ("consent.manage",), False, citizen.grant_consent),
        IdentityOperation("RevokeConsent", ("consent.manage",), False, citizen.revoke_consent),
        IdentityOperation("SetBiometricLock", ("lock.manage",), False, citizen.set_biometric_lock),
        IdentityOperation("ListCases", ("adjudicate",), False, cases.list_cases),
        IdentityOperation("GetCase", ("adjudicate",), False, cases.get_case),
        IdentityOperation("DecideCase", ("adjudicate",), False, cases.decide_case),
        # Encounters and galleries (the OSIA data model); rights on the
        # subject by tanu.policy.access (owner or operator).
        IdentityOperation("AddEncounter", ("enrol",), True, encounters.add_encounter),
        IdentityOperation("ListEncounters", ("subject.report",), False, encounters.list_encounters),
        IdentityOperation("GetEncounter", ("subject.report",), False, encounters.get_encounter),
        IdentityOperation("UpdateEncounter", ("enrol",), False, encounters.update_encounter),
        IdentityOperation("DeleteEncounter", ("delete",), False, encounters.delete_encounter),
        IdentityOperation("SetEncounterStatus", ("enrol",), False, encounters.set_status),
        IdentityOperation("SetEncounterGalleries", ("enrol",), False, encounters.set_galleries),
        IdentityOperation(
            "MoveEncounter", ("enrol", "adjudicate"), False, encounters.move_encounter
        ),
        IdentityOperation(
            "MergeSubjects", ("enrol", "adjudicate"), False, encounters.merge_subjects
        ),
        IdentityOperation(
            "ListGalleries", ("subject.report", "identify"), False, galleries.list_galleries
        ),
        IdentityOperation(
            "GetGalleryContent", ("subject.report", "identify"), False, galleries.gallery_content
        ),
        # Templates leave only for a tenant configured with templates.read
        # (none by default: a migration to another ABIS), owner or operator.
        IdentityOperation("ReadTemplates", ("templates.read",), False, templates.read_templates),
    )
}
