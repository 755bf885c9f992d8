"""Idempotent writes: a tenant's idempotency key, the request's digest and
the serialised reply, written in the SAME transaction as the write's effect
(``Database._tx`` lets the write join it). A retry with the same key and
digest gets the first success's reply back, even when the first reply was
lost after the commit (a crash between commit and reply); the same key with
another request is refused (FAILED_PRECONDITION). A replay is audited as
such. Keys expire after ``idempotency_ttl_ms``; ``purge_idempotency``
deletes expired rows. Failed writes leave no key: their retry runs again.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from typing import TypeVar

from google.protobuf.message import Message

from tanu.core import audit, errors
from tanu.v1 import store_pb2

from .audit_log import AuditLog
from .schema import now_ms

M = TypeVar("M", bound=Message)

DEFAULT_TTL_MS = 86_400_000
KEY_RE = re.compile(r"[A-Za-z0-9._:\-]{1,128}")
SHA_RE = re.compile(r"[0-9a-f]{64}")


def check(idem: store_pb2.Idempotency) -> None:
    """Refuses a malformed key (INVALID_ARGUMENT, naming the rule)."""
    if not KEY_RE.fullmatch(idem.key):
        raise errors.InvalidArgument(
            "idempotency key must be 1..128 characters of A-Z a-z 0-9 . _ : -"
        )
    if not SHA_RE.fullmatch(idem.request_sha256) or not idem.tenant or not idem.operation:
        raise errors.InvalidArgument("idempotency needs tenant, operation and request_sha256")


class Idempotency(AuditLog):
    """The ``idempotency`` table."""

    DDL = """
CREATE TABLE IF NOT EXISTS idempotency (
    tenant TEXT NOT NULL,
    idem_key TEXT NOT NULL,
    operation TEXT NOT NULL,
    request_sha256 TEXT NOT NULL,
    reply {blob} NOT NULL,
    created_at_ms {big} NOT NULL,
    expires_at_ms {big} NOT NULL,
    PRIMARY KEY (tenant, idem_key)
);
CREATE INDEX IF NOT EXISTS idempotency_by_expiry ON idempotency(expires_at_ms)
"""
    idempotency_ttl_ms: int = DEFAULT_TTL_MS

    def idempotent(
        self,
        idem: store_pb2.Idempotency | None,
        subject_id: str,
        reply_type: type[M],
        fn: Callable[..., M],
        *args,
    ) -> M:
        """``fn(*args)`` (a write that opens its own transaction), keyed by
        ``idem`` when it carries a key: the stored reply when the key was
        used for this request before, else the write and its key together."""
        if idem is None or not idem.key:
            return fn(*args)
        check(idem)

        def tx(_c) -> M:
            if self.is_postgres:  # one holder of a key at a time, across store processes
                self._x(
                    "SELECT pg_advisory_xact_lock(hashtext(current_schema() || ?))",
                    ("\n" + idem.tenant + "\n" + idem.key,),
                )
            now = now_ms()
            row = self._one(
                "SELECT operation, request_sha256, reply, created_at_ms, expires_at_ms "
                "FROM idempotency WHERE tenant = ? AND idem_key = ?",
                (idem.tenant, idem.key),
            )
            if row is not None and row[4] >= now:
                if (row[0], row[1]) != (idem.operation, idem.request_sha256):
                    raise errors.IdempotencyConflict(
                        f"{errors.IdempotencyConflict.PREFIX}: this key was used for a different "
                        "request; use a new key for a new request", "idempotency_key_reused",
                    )  # fmt: skip
                self._append_audit([store_pb2.AuditRecord(
                    at_ms=now, tenant=idem.tenant, client=idem.client,
                    operation=idem.operation, subject_id=subject_id, result="replayed",
                    detail_json=audit.detail_json({
                        "replay_of_ms": row[3], "first_result": "ok",
                        "key_sha256": hashlib.sha256(idem.key.encode()).hexdigest()[:16]}),
                )])  # fmt: skip
                return reply_type.FromString(bytes(row[2]))
            if row is not None:
                self._x("DELETE FROM idempotency WHERE tenant = ? AND idem_key = ?",
                        (idem.tenant, idem.key))  # fmt: skip
            out = fn(*args)
            self._x(
                "INSERT INTO idempotency(tenant, idem_key, operation, request_sha256, reply, "
                "created_at_ms, expires_at_ms) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (idem.tenant, idem.key, idem.operation, idem.request_sha256,
                 out.SerializeToString(), now, now + self.idempotency_ttl_ms),
            )  # fmt: skip
            return out

        return self._tx(tx)

    def purge_idempotency(self) -> int:
        """Deletes expired keys; returns how many."""

        def tx(_c) -> int:
            ts = now_ms()
            (n,) = self._one("SELECT COUNT(*) FROM idempotency WHERE expires_at_ms < ?", (ts,))
            self._x("DELETE FROM idempotency WHERE expires_at_ms < ?", (ts,))
            return n

        return self._tx(tx)
