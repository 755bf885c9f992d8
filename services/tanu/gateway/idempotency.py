"""Idempotency keys of the Identity API's writes (Enroll, Delete,
GrantConsent, RevokeConsent, SetBiometricLock): gRPC metadata
``idempotency-key`` (REST ``Idempotency-Key``). The key travels to the
store with the tenant and the digest of the caller's request; the store
keeps it with the reply in the write's own transaction
(``tanu.store.idempotency``)."""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

from google.protobuf.message import Message

from tanu.v1 import store_pb2

if TYPE_CHECKING:
    from .guard import Call

METADATA_KEY = "idempotency-key"


def request_digest(request: Message) -> str:
    """SHA-256 (hex) of the request's deterministic encoding: the same body
    gives the same digest over gRPC and REST."""
    return hashlib.sha256(request.SerializeToString(deterministic=True)).hexdigest()


def for_call(call: Call, request: Message) -> store_pb2.Idempotency | None:
    """The store's idempotency record for this call; None without a key."""
    if not call.idempotency_key:
        return None
    return store_pb2.Idempotency(
        tenant=call.principal.tenant_id, client=call.principal.client, key=call.idempotency_key,
        operation=call.operation, request_sha256=request_digest(request),
    )  # fmt: skip
