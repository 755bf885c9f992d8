"""The query parameters of the OSIA operations, checked: ``transactionId``
(required), ``priority`` 0-9, ``maxNbCand``, ``threshold``,
``accuracyLevel`` / ``serviceLevel`` (accepted, bounded, ignored: Tanu's
search is exact), ``offset`` / ``limit``. Each bad value is a 400 naming
it; a number is never NaN or infinite."""

from __future__ import annotations

import hashlib
import math
import re

from tanu.core import errors

F32_MAX = 3.4028234663852886e38  # request fields are float32
MAX_TRANSACTION_ID = 128
_KEY = re.compile(r"[A-Za-z0-9._:\-]{1,100}")


def shown(raw: str) -> str:
    return repr(raw) if len(raw) <= 32 else f"of {len(raw)} characters"


def transaction_id(query) -> str:
    """The required ``transactionId`` (1..128 characters)."""
    raw = query.get("transactionId")
    if raw is None or not raw.strip():
        raise errors.InvalidArgument("transactionId is required (query parameter)")
    if len(raw) > MAX_TRANSACTION_ID:
        raise errors.InvalidArgument(
            f"transactionId is longer than {MAX_TRANSACTION_ID} characters"
        )
    return raw


def idempotency_key(transaction: str, operation: str) -> str:
    """The store's idempotency key of a write for a transaction: the
    transactionId itself when it has a key's form, else its digest; one per
    Identity operation (a create may run Enroll or AddEncounter)."""
    base = transaction if _KEY.fullmatch(transaction) else (
        "tx-" + hashlib.sha256(transaction.encode()).hexdigest()[:40])  # fmt: skip
    return f"{base}:{operation}"[:128]


def integer(query, name: str, lo: int | None = None, hi: int | None = None) -> int | None:
    raw = query.get(name)
    if raw is None:
        return None
    try:
        value = int(raw) if len(raw) <= 20 and raw.strip() == raw else None
    except ValueError:
        value = None
    if value is None:
        raise errors.InvalidArgument(f"{name}={shown(raw)} is not an integer")
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise errors.InvalidArgument(f"{name}={shown(raw)} is out of range: {lo}..{hi}")
    return value


def number(query, name: str) -> float | None:
    raw = query.get(name)
    if raw is None:
        return None
    try:
        value = float(raw) if len(raw) <= 32 else None
    except ValueError:
        value = None
    if value is None or not (math.isfinite(value) and abs(value) <= F32_MAX):
        raise errors.InvalidArgument(f"{name}={shown(raw)} is not a finite number")
    return value


def priority(query) -> int:
    """``priority`` 0 (lowest) .. 9 (highest); 0 when absent."""
    value = integer(query, "priority", 0, 9)
    return 0 if value is None else value


def ignored_levels(query) -> None:
    """``accuracyLevel`` (a string) and ``serviceLevel`` (an integer):
    checked, then ignored (one exact search serves every level)."""
    level = query.get("accuracyLevel")
    if level is not None and len(level) > 64:
        raise errors.InvalidArgument("accuracyLevel is longer than 64 characters")
    integer(query, "serviceLevel")
