"""What an encounter may hold (the OSIA data model): encounter ids, gallery
names, types, status and the encounter data (a bounded JSON object). The
store checks every write with these rules (``tanu.store.encounter_rules``);
the gateway checks a gallery it is asked to search.
"""

from __future__ import annotations

import json
import re

from tanu.core import errors, ids

ALL = ids.ALL_GALLERY
MAX_GALLERIES = ids.MAX_GALLERIES_PER_ENCOUNTER
MAX_DATA_BYTES = 16 * 1024
MAX_TYPE_CHARS = 64
ACTIVE, INACTIVE = "ACTIVE", "INACTIVE"
_ENCOUNTER_ID = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
FIELDS = ("encounter_type", "data_json", "galleries", "status")


def check_encounter_id(encounter_id: str) -> str:
    if not _ENCOUNTER_ID.fullmatch(encounter_id):
        raise errors.InvalidArgument("encounter_id must be 1-64 characters of A-Z a-z 0-9 _ . : -")
    return encounter_id


def check_gallery(name: str) -> str:
    if not ids.is_gallery_name(name):
        raise errors.InvalidArgument(
            f"gallery name {name[:70]!r} must be 1-64 characters of A-Z a-z 0-9 _ . -"
        )
    return name


def check_galleries(names) -> tuple[str, ...]:
    """The named galleries, sorted and unique, without the implicit ALL."""
    names = list(names)
    if len(names) > MAX_GALLERIES:
        raise errors.InvalidArgument(
            f"{len(names)} galleries; an encounter may be in at most {MAX_GALLERIES}"
        )
    return tuple(sorted({check_gallery(n) for n in names} - {ALL}))


def check_status(status: str) -> bool:
    """Whether ``status`` ("" is ACTIVE) means inactive."""
    if status not in ("", ACTIVE, INACTIVE):
        raise errors.InvalidArgument(f"status must be ACTIVE or INACTIVE, not {status[:40]!r}")
    return status == INACTIVE


def check_type(encounter_type: str) -> str:
    if len(encounter_type) > MAX_TYPE_CHARS or not encounter_type.isprintable():
        raise errors.InvalidArgument(
            f"encounter_type must be at most {MAX_TYPE_CHARS} printable characters"
        )
    return encounter_type


def check_data(data_json: str) -> bytes:
    """The encounter data as canonical bytes ("" stays empty): a JSON
    object of at most ``MAX_DATA_BYTES``."""
    if not data_json:
        return b""
    raw = data_json.encode()
    if len(raw) > MAX_DATA_BYTES:
        raise errors.InvalidArgument(
            f"encounter data is {len(raw)} bytes; the limit is {MAX_DATA_BYTES}"
        )
    try:
        doc = json.loads(raw)
    except (ValueError, RecursionError):
        raise errors.InvalidArgument("encounter data is not valid JSON") from None
    if not isinstance(doc, dict):
        raise errors.InvalidArgument("encounter data must be a JSON object")
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()


def check_fields(names) -> tuple[str, ...]:
    """The update's field names (empty: all)."""
    bad = [n for n in names if n not in FIELDS]
    if bad:
        raise errors.InvalidArgument(
            f"update_fields must be among {list(FIELDS)}, not {bad[0][:40]!r}"
        )
    return tuple(names) or FIELDS


def search_gallery(name: str) -> str:
    """The gallery a search asks for: "" (every active encounter) for "" or ALL."""
    return "" if name in ("", ALL) else check_gallery(name)
