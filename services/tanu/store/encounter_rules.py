"""One template's encounter as the store writes it (``EncounterMeta``),
checked with the rules of ``tanu.policy.encounters``, and the sealing of
the encounter data with the subject's data key (like the templates).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace

from tanu.core import envelope
from tanu.policy.encounters import (  # noqa: F401 (the store's parts read the rules here)
    ACTIVE,
    ALL,
    FIELDS,
    INACTIVE,
    MAX_GALLERIES,
    check_data,
    check_encounter_id,
    check_fields,
    check_galleries,
    check_gallery,
    check_status,
    check_type,
)
from tanu.v1 import encounters_pb2


def _aad(subject_id: str) -> str:
    return subject_id + "\n" + "encounter-data"


def seal_data(dek: bytes, subject_id: str, data: bytes) -> bytes | None:
    return envelope.seal_template(dek, _aad(subject_id), data) if data else None


def open_data(dek: bytes, subject_id: str, sealed) -> str:
    if not sealed:
        return ""
    return envelope.open_template(dek, _aad(subject_id), bytes(sealed)).decode()


@dataclass(frozen=True)
class EncounterMeta:
    """One template's encounter as written: id, type, galleries, status, data."""

    encounter_id: str
    encounter_type: str = ""
    galleries: tuple[str, ...] = ()
    inactive: bool = False
    data: bytes = b""  # canonical JSON, or empty

    @classmethod
    def generated(cls) -> EncounterMeta:
        return cls(uuid.uuid4().hex)

    @classmethod
    def of(cls, f: encounters_pb2.EncounterFields | None) -> EncounterMeta:
        """The checked encounter of a caller's fields (a generated id when none)."""
        if f is None:
            return cls.generated()
        return cls(
            check_encounter_id(f.encounter_id) if f.encounter_id else uuid.uuid4().hex,
            check_type(f.encounter_type), check_galleries(f.galleries), check_status(f.status),
            check_data(f.data_json),
        )  # fmt: skip

    def updated(self, f: encounters_pb2.EncounterFields, fields: tuple[str, ...]) -> EncounterMeta:
        """This encounter with ``fields`` of ``f`` replaced (checked)."""
        out = self
        if "encounter_type" in fields:
            out = replace(out, encounter_type=check_type(f.encounter_type))
        if "data_json" in fields:
            out = replace(out, data=check_data(f.data_json))
        if "galleries" in fields:
            out = replace(out, galleries=check_galleries(f.galleries))
        if "status" in fields:
            out = replace(out, inactive=check_status(f.status))
        return out

    def others(self) -> EncounterMeta:
        """The encounter of a further template given with this one: a generated id, the rest alike."""
        return replace(self, encounter_id=uuid.uuid4().hex)
