"""Identifiers: the subject-id rules, the gallery-name rules (shared by
the store, which refuses bad names, and the searchers, which drop them
from events), the stable subject → partition routing, and erasure receipt
ids."""

from __future__ import annotations

import hashlib
import os
import re
import unicodedata

from tanu.core import errors

MAX_SUBJECT_ID_LEN = 128

ALL_GALLERY = "ALL"  # the implicit gallery of every encounter, never stored
GALLERY_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")
MAX_GALLERIES_PER_ENCOUNTER = 32


def is_gallery_name(name: str) -> bool:
    """Whether ``name`` is a well-formed gallery name ("ALL" included)."""
    return bool(GALLERY_NAME.fullmatch(name))


# Unicode categories a subject id may never hold: controls (Cc), format
# characters (Cf: bidi controls, zero-width joiners, soft hyphen...),
# surrogates, private use and unassigned code points, line and paragraph
# separators. Letters that render as nothing are listed on their own.
_FORBIDDEN_CATEGORIES = {"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"}
_INVISIBLE = {0x115F, 0x1160, 0x2800, 0x3164, 0xFFA0, 0x034F, 0x180E}
_VARIATION = (range(0xFE00, 0xFE10), range(0xE0100, 0xE01F0))


def partition_of(subject_id: str, partitions: int) -> int:
    """The subject's partition: a stable hash of its id (independent of process,
    platform and Python's hash seed) modulo the partition count."""
    digest = hashlib.blake2b(subject_id.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "little") % partitions


def _invisible(c: str) -> bool:
    cp = ord(c)
    if cp in _INVISIBLE or any(cp in r for r in _VARIATION):
        return True
    return unicodedata.category(c) == "Zs" and c != " "


def check_subject_id(subject_id: str, field: str = "subject_id") -> str:
    """Refuses (InvalidArgument, naming the rule) an empty or overlong id,
    one not in Unicode NFC, one holding control, format (bidi), invisible
    or separator characters, or one with white space around it. An id is
    never rewritten: ``"grace "`` is refused, not taken for ``"grace"``."""
    if not subject_id:
        raise errors.InvalidArgument(f"{field} is empty")
    if len(subject_id) > MAX_SUBJECT_ID_LEN:
        raise errors.InvalidArgument(
            f"{field} is {len(subject_id)} characters long; the limit is {MAX_SUBJECT_ID_LEN}"
        )
    for i, c in enumerate(subject_id):
        cat = unicodedata.category(c)
        if cat == "Cc":
            raise errors.InvalidArgument(
                f"{field} contains control characters (U+{ord(c):04X} at position {i})"
            )
        if cat in _FORBIDDEN_CATEGORIES or _invisible(c):
            raise errors.InvalidArgument(
                f"{field} contains an invisible, format or bidirectional character "
                f"(U+{ord(c):04X}, category {cat}, at position {i})"
            )
    if subject_id != subject_id.strip():
        raise errors.InvalidArgument(f"{field} begins or ends with white space")
    if unicodedata.normalize("NFC", subject_id) != subject_id:
        raise errors.InvalidArgument(
            f"{field} is not in Unicode normal form NFC; send it composed (NFC)"
        )
    return subject_id


def receipt_id(subject_id: str, ts: int) -> str:
    """A fresh, unguessable id for the erasure receipt of ``subject_id`` at ``ts``."""
    return (
        "er-" + hashlib.sha256(f"{subject_id}:{ts}:{os.urandom(8).hex()}".encode()).hexdigest()[:20]
    )
