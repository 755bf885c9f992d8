"""Identifiers: the subject-id rules, the stable subject → partition
routing, and erasure receipt ids."""

from __future__ import annotations

import hashlib
import os

from tanu.core import errors

MAX_SUBJECT_ID_LEN = 128


def partition_of(subject_id: str, partitions: int) -> int:
    """The subject's partition: a stable hash of its id (independent of process,
    platform and Python's hash seed) modulo the partition count."""
    digest = hashlib.blake2b(subject_id.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "little") % partitions


def check_subject_id(subject_id: str) -> str:
    """Refuses empty, overlong or control-character subject ids."""
    if not subject_id:
        raise errors.InvalidArgument("subject_id is empty")
    if len(subject_id) > MAX_SUBJECT_ID_LEN:
        raise errors.InvalidArgument(
            f"subject_id is {len(subject_id)} characters long; the limit is {MAX_SUBJECT_ID_LEN}"
        )
    if any(ord(c) < 32 or ord(c) == 127 for c in subject_id):
        raise errors.InvalidArgument("subject_id contains control characters")
    return subject_id


def receipt_id(subject_id: str, ts: int) -> str:
    """A fresh, unguessable id for the erasure receipt of ``subject_id`` at ``ts``."""
    return (
        "er-" + hashlib.sha256(f"{subject_id}:{ts}:{os.urandom(8).hex()}".encode()).hexdigest()[:20]
    )
