"""Bounds on every caller-supplied field of an Identity request, checked
before any of it reaches a log, an audit entry or the bus.

An oversize value is refused with its limit (InvalidArgument naming the
field), never cut. Bytes fields (images, templates) are bounded by the
gRPC message limit and checked by their own rules (``vectors``, the
detector); strings and repeated fields are bounded here, by field name,
for every request type the ``Identity`` service has, so a field added to
a proto later is bounded by ``DEFAULT_CHARS`` until it gets its own limit.
"""

from __future__ import annotations

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from tanu.core import errors, ids

# Characters, by field name.
STRING_LIMITS = {
    "subject_id": ids.MAX_SUBJECT_ID_LEN,
    "guardian_subject_id": ids.MAX_SUBJECT_ID_LEN,
    "revoker_subject_id": ids.MAX_SUBJECT_ID_LEN,
    "source_subject_id": ids.MAX_SUBJECT_ID_LEN,
    "probe_subject_id": ids.MAX_SUBJECT_ID_LEN,
    "evidence_ref": 200,  # the store keeps 200: a longer one would be cut
    "relationship": 64,
    "purposes": 64,
    "reason": 200,
    "date_of_birth": 10,
    "model_id": 64,
    "page_token": 19,
    # Encounters: the store checks the rules (tanu.policy.encounters).
    "encounter_id": 64,
    "probe_encounter_id": 64,
    "encounter_type": 64,
    "galleries": 64,
    "gallery": 64,
    "data_json": 16 * 1024,
    "encounter_data_json": 16 * 1024,
}
DEFAULT_CHARS = 256
# Items, by repeated field name.
REPEATED_LIMITS = {"purposes": 32, "galleries": 32}
DEFAULT_ITEMS = 64
PURPOSE_CHARS = 64
_INT64_MAX = 2**63 - 1


def _refuse(path: str, what: str, size: int, limit: int) -> None:
    raise errors.InvalidArgument(f"{path} is {size} {what}; the limit is {limit}")


def check(message: Message, prefix: str = "") -> None:
    """Refuses a request holding a string or list over its limit (the
    message names the field and the limit), or a page token that is not a
    position in the log."""
    for fd, value in message.ListFields():
        path = prefix + fd.name
        repeated = fd.is_repeated
        if repeated:
            limit = REPEATED_LIMITS.get(fd.name, DEFAULT_ITEMS)
            if len(value) > limit:
                _refuse(path, "items long", len(value), limit)
        items = value if repeated else (value,)
        if fd.type == FieldDescriptor.TYPE_MESSAGE:
            for i, m in enumerate(items):
                check(m, f"{path}[{i}]." if repeated else path + ".")
        elif fd.type == FieldDescriptor.TYPE_STRING:
            limit = STRING_LIMITS.get(fd.name, DEFAULT_CHARS)
            for s in items:
                if len(s) > limit:
                    _refuse(path, "characters long", len(s), limit)
    token = getattr(message, "page_token", None)
    if isinstance(token, str) and token:
        if not token.isascii() or not token.isdigit() or int(token) > _INT64_MAX:
            raise errors.InvalidArgument(
                "page_token is not valid: pass the next_page_token of the previous page"
            )


def check_purpose(purpose: str) -> None:
    """Refuses an oversize ``x-tanu-purpose``."""
    if len(purpose) > PURPOSE_CHARS:
        _refuse("x-tanu-purpose", "characters long", len(purpose), PURPOSE_CHARS)


IDEMPOTENCY_KEY_CHARS = 128


def check_idempotency_key(key: str) -> str:
    """An idempotency key as given (stripped): printable ASCII, at most
    ``IDEMPOTENCY_KEY_CHARS``; refused otherwise, never cut."""
    key = key.strip()
    if len(key) > IDEMPOTENCY_KEY_CHARS:
        _refuse("idempotency-key", "characters long", len(key), IDEMPOTENCY_KEY_CHARS)
    if not all(32 < ord(c) < 127 for c in key):
        raise errors.InvalidArgument("idempotency-key must be printable ASCII without spaces")
    return key


def audit_subject(subject_id: str) -> str:
    """The subject id an audit entry may carry for a request: the id as
    given when it is a valid subject id (``ids.check_subject_id``), else ""
    (the refusal names the problem; an oversize or invisible value is never
    copied into the log)."""
    if not subject_id:
        return ""
    try:
        return ids.check_subject_id(subject_id)
    except errors.InvalidArgument:
        return ""
