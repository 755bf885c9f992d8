"""The gateway's front door: who is calling (token), may they (scope,
purpose, rate limit), and the audit record of every request, allowed or not.

Every request is written to the audit log before its reply leaves: entries
are micro-batched to the store's audit writer (``tanu.store.audit``), so a
busy gateway costs the store one append per batch, not per request.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tanu.clients.store import StoreClient
from tanu.core import audit, auth, errors, logs, signing
from tanu.core.batching import MicroBatcher
from tanu.core.config import GatewayConfig
from tanu.core.metrics import Metrics
from tanu.v1 import store_pb2

from . import samples

if TYPE_CHECKING:
    from .api import IdentityOperation

log = logs.get(__name__)

PURPOSE_KEY = "x-tanu-purpose"


@dataclass
class Call:
    """One authorised request: who, why, and what the audit entry will say."""

    operation: str
    principal: auth.Principal | None  # None until the token is checked
    purpose: str
    subject_id: str = ""
    result: str = "ok"
    detail: dict[str, Any] | None = None
    # Further subjects whose data the request used: (subject id, result).
    extra: list[tuple[str, str]] = field(default_factory=list)
    # Seconds the caller left for the request (its gRPC deadline); None without one.
    deadline_s: float | None = None
    # The caller's idempotency key (metadata ``idempotency-key``); "" when none.
    idempotency_key: str = ""


class Guard:
    """Authenticates, authorises, rate-limits and audits every Identity request."""

    def __init__(self, config: GatewayConfig, store: StoreClient, metrics: Metrics) -> None:
        self.config = config
        self.metrics = metrics
        self._store = store
        if not config.token_public_key_file or not config.tenants_file:
            raise errors.FailedPrecondition(
                "the gateway authenticates every tenant: set TANU_TOKEN_PUBLIC_KEY_FILE "
                "(the token issuer's Ed25519 public key) and TANU_TENANTS_FILE"
            )
        self.auth = auth.Authenticator(
            signing.load_public_key(config.token_public_key_file),
            auth.Registry.from_file(config.tenants_file),
        )
        self.limits = auth.RateLimiter()
        self._audit = MicroBatcher(
            self._append, name="audit", max_batch=512, max_wait_s=0.002, max_in_flight=2,
            metrics=metrics,
        )  # fmt: skip

    async def close(self) -> None:
        await self._audit.close()

    async def _append(self, groups: list[list[store_pb2.AuditRecord]]) -> list[int]:
        """One store append for the entries of many requests (each request's
        entries are one batch item, so one request never looks like load to
        the batcher's adaptive wait). Returns each group's last sequence."""
        records = [r for g in groups for r in g]
        reply = await self._store.append_audit(store_pb2.AppendAuditRequest(records=records))
        ends, seq = [], reply.last_seq - len(records)
        for g in groups:
            seq += len(g)
            ends.append(seq)
        return ends

    async def record(
        self,
        principal: auth.Principal | None,
        operation: str,
        purpose: str,
        subject_id: str,
        result: str,
        detail: dict | None = None,
        extra: list[tuple[str, str]] = (),
    ) -> int:
        """Appends a request's audit entries (one, plus one per further
        subject it used) and waits until the store holds them."""
        now = int(time.time() * 1000)
        tenant = principal.tenant_id if principal else ""
        client = principal.client if principal else ""
        rid = logs.request_id_var.get()
        recs = [
            store_pb2.AuditRecord(
                at_ms=now, tenant=tenant, client=client, operation=operation, purpose=purpose,
                subject_id=subject_id, result=result,
                detail_json=audit.detail_json({"request_id": rid, **(detail or {})}),
            )
        ]  # fmt: skip
        recs += [
            store_pb2.AuditRecord(
                at_ms=now, tenant=tenant, client=client, operation=operation, purpose=purpose,
                subject_id=sid, result=res, detail_json=audit.detail_json({"request_id": rid}),
            )
            for sid, res in extra
        ]  # fmt: skip
        return await self._audit.submit(recs)

    async def handle(
        self,
        op: IdentityOperation,
        metadata: dict[str, str],
        subject_id: str,
        fn: Callable[[Call], Awaitable[Any]],
        deadline_s: float | None = None,
    ) -> Any:
        """Authenticates, authorises (``op``'s scopes and purpose),
        rate-limits, runs ``fn`` and audits the outcome (every denial
        included)."""
        operation, scopes = op.name, op.scopes
        purpose = metadata.get(PURPOSE_KEY, "").strip()
        call = Call(operation, None, purpose, subject_id, deadline_s=deadline_s)
        try:
            principal = call.principal = self.auth.authenticate(metadata.get("authorization"))
            samples.tenant_var.set(principal.tenant_id)  # the face services' fair share
            wait = self.limits.allow(principal.tenant)
            if wait > 0:
                self.metrics.rate_limited.labels(principal.tenant_id).inc()
                raise errors.ResourceExhausted(
                    f"tenant {principal.tenant_id!r} is over its rate limit "
                    f"({principal.tenant.rate_per_s:g}/s); retry in {wait:.2f}s",
                    "rate_limited",
                )
            granted = [s for s in scopes if s in principal.scopes]
            auth.Authenticator.authorize(
                principal,
                granted[0] if granted else scopes[0],
                purpose if op.needs_purpose else None,
            )
            out = await fn(call)
        except errors.TanuError as exc:
            if exc.reason:  # a refusal (authentication, scope, purpose, consent, limits)
                self.metrics.denials.labels("gateway", operation, exc.reason).inc()
            await self._safe_record(call.principal, operation, purpose, call.subject_id, exc)
            raise
        await self.record(principal, operation, purpose, call.subject_id, call.result, call.detail,
                          call.extra)  # fmt: skip
        return out

    async def _safe_record(self, principal, operation, purpose, subject_id, exc) -> None:
        """Audits a refusal; if the audit log cannot be reached, the refusal
        still goes out (it released nothing) and the failure is logged."""
        try:
            await self.record(principal, operation, purpose, subject_id, exc.code.name,
                              {"reason": exc.message[:300]})  # fmt: skip
        except errors.TanuError as audit_exc:
            log.error("audit_append_failed", operation=operation, error=audit_exc.message)
