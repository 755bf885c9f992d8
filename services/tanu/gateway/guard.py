"""The gateway's front door: who is calling (token), may they (scope,
purpose, rate limit), are the request's fields within their bounds, and the
audit record of every request, allowed or not.

Every request is written to the audit log before its reply leaves: entries
are micro-batched to the store's audit writer (``tanu.store.audit``), so a
busy gateway costs the store one append per batch, not per request.
Identify's entries go with its candidates to be screened
(``record_screened``, ``tanu.store.audit.screen``): one store round trip
reads the candidates' consent and lock, withholds those the purpose may not
use, and appends the entries naming what is returned, in one transaction. A
batch is split by encoded size below the bus's payload limit, so no batch
can exceed it and no request can fail another's. Failed authentication is
limited per peer and audited in aggregate (``peers``), so an
unauthenticated flood costs no store write per request.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from google.protobuf.message import Message

from tanu.clients.store import StoreClient
from tanu.core import audit, auth, errors, logs, signing
from tanu.core.batching import MicroBatcher
from tanu.core.config import GatewayConfig
from tanu.core.metrics import Metrics
from tanu.v1 import store_pb2

from . import bounds, idempotency, peers, samples

if TYPE_CHECKING:
    from .api import IdentityOperation

log = logs.get(__name__)

PURPOSE_KEY = "x-tanu-purpose"
# The caller's address, put into a request's metadata by the transport
# (gRPC peer, REST remote). A client cannot send it: gRPC refuses keys
# starting with ':' and REST builds its metadata itself.
PEER_KEY = ":peer"
# The OSIA facade's ``transactionId``, put into the metadata by REST (a
# gRPC caller cannot send a key starting with ':' either).
TRANSACTION_KEY = ":transaction-id"
# Room left in a bus message for the headers and the request's framing.
_PAYLOAD_HEADROOM = 4096
# An audit entry larger than this (it cannot be, with bounded fields) keeps
# its fields but not its detail.
_MAX_RECORD_BYTES = 16 * 1024

# Candidates the store screens in one request (``tanu.store.handlers``).
MAX_SCREENED_USES = 16_384

# Refusals audited in aggregate per peer (``peers``), not per request.
AGGREGATED = ("unauthenticated", "auth_rate_limited")

# A request as given, or a function building it once the caller is
# authenticated (REST bodies; a gRPC body that did not decode raises).
RequestSource = Message | Callable[[], Message] | None


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
    # The OSIA transactionId (REST), recorded in the audit entry; "" when none.
    transaction_id: str = ""
    # Set by the guard: ``await call.record_screened(uses)`` writes this
    # request's audit with its candidates screened (``Guard.record_screened``).
    record_screened: Callable[[list[tuple[str, str]]], Awaitable[list[bool]]] | None = None
    # Whether the use case has written the audit already (the guard then does not).
    recorded: bool = False


class Guard:
    """Authenticates, authorises, rate-limits, bounds and audits every Identity request."""

    def __init__(
        self,
        config: GatewayConfig,
        store: StoreClient,
        metrics: Metrics,
        max_payload: Callable[[], int] = lambda: 1024 * 1024,
        rate_share: Callable[[], float] = lambda: 1.0,
    ) -> None:
        self.config = config
        self.metrics = metrics
        self._store = store
        self._max_payload = max_payload  # the bus's limit (nc.max_payload), read per batch
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
        # This gateway's share of each tenant's limit (``presence``: 1 / gateways up).
        self._rate_share = rate_share
        self.failures = peers.PeerFailures(
            config.auth_failure_rate_per_s, config.auth_failure_burst,
            config.auth_failure_audit_s, self._record_failures,
        )  # fmt: skip
        self._audit = MicroBatcher(
            self._append, name="audit", max_batch=512, max_wait_s=0.002, max_in_flight=2,
            metrics=metrics,
        )  # fmt: skip
        self._screen = MicroBatcher(
            self._screen_round, name="screen", max_batch=256, max_wait_s=0.002,
            max_in_flight=2, metrics=metrics,
        )  # fmt: skip

    async def close(self) -> None:
        await self.failures.close()
        await self._audit.close()
        await self._screen.close()

    def _chunks(self, items: list, record_of=lambda r: r, uses_of=lambda _r: 0) -> list[list]:
        """``items`` (audit records, or screened audits: ``record_of`` an
        item's own record) in order, in runs whose encoded request stays
        under the bus's limit and whose uses (``uses_of``) stay within what
        the store screens in one request."""
        budget = max(8 * 1024, self._max_payload() - _PAYLOAD_HEADROOM)
        out: list[list] = [[]]
        size = uses = 0
        for it in items:
            r = record_of(it)
            if r.ByteSize() > _MAX_RECORD_BYTES:
                r.detail_json = audit.detail_json({"detail_omitted_bytes": len(r.detail_json)})
            n = it.ByteSize() + 6  # the field tag and length of the item in the request
            u = uses_of(it)
            if out[-1] and (size + n > budget or uses + u > MAX_SCREENED_USES):
                out.append([])
                size = uses = 0
            out[-1].append(it)
            size += n
            uses += u
        return out

    async def _append(self, groups: list[list[store_pb2.AuditRecord]]) -> list[int]:
        """Store appends for the entries of many requests (each request's
        entries are one batch item, so one request never looks like load to
        the batcher's adaptive wait), split below the bus's payload limit.
        Returns each group's last sequence."""
        records = [r for g in groups for r in g]
        seqs: list[int] = []
        for chunk in self._chunks(records):
            reply = await self._store.append_audit(store_pb2.AppendAuditRequest(records=chunk))
            seqs.extend(range(reply.last_seq - len(chunk) + 1, reply.last_seq + 1))
        ends, i = [], 0
        for g in groups:
            i += len(g)
            ends.append(seqs[i - 1] if i else 0)
        return ends

    async def _screen_round(
        self, items: list[store_pb2.ScreenedAudit]
    ) -> list[store_pb2.ScreenedAuditResult]:
        """One store request per chunk of many requests' screened audits."""
        out: list[store_pb2.ScreenedAuditResult] = []
        for chunk in self._chunks(
            items, lambda a: a.record, lambda a: len(a.uses) + len(a.further)
        ):
            reply = await self._store.screen_audit(store_pb2.ScreenAuditRequest(audits=chunk))
            if len(reply.results) != len(chunk):
                raise errors.Internal("the store screened another number of audits than asked")
            out.extend(reply.results)
        return out

    async def record_screened(self, call: Call, uses: list[tuple[str, str]]) -> list[bool]:
        """Writes ``call``'s audit once the store has screened its candidates
        (``uses``: subject id and the result its entry would record) for
        the call's purpose: in one store transaction the candidates' status
        is read (``tanu.policy.consent.may_use``), the request's own entry
        gets the counts returned and withheld, each further subject
        (``call.extra``) an entry, and each usable candidate one; returns
        whether each use may be returned, once committed. The guard then
        writes no entry of its own for the call."""
        own, each = self._own_record(call.principal, call.operation, call.purpose,
                                     call.subject_id, call.result,
                                     _with_transaction(call.detail, call.transaction_id))  # fmt: skip
        screened = store_pb2.ScreenedAudit(
            record=own, purpose=call.purpose, use_detail_json=each,
            uses=[store_pb2.ScreenedUse(subject_id=sid, result=res) for sid, res in uses],
            further=[store_pb2.ScreenedUse(subject_id=sid, result=res) for sid, res in call.extra],
        )  # fmt: skip
        res = await self._screen.submit(screened)
        if len(res.usable) != len(uses):
            raise errors.Internal("the store screened another number of candidates than asked")
        call.recorded = True
        return list(res.usable)

    def _own_record(self, principal: auth.Principal | None, operation: str, purpose: str,
                    subject_id: str, result: str, detail: dict | None,
                    ) -> tuple[store_pb2.AuditRecord, str]:  # fmt: skip
        """A request's own entry, and the detail of each further subject's entry."""
        rid = logs.request_id_var.get()
        own = store_pb2.AuditRecord(
            at_ms=int(time.time() * 1000), tenant=principal.tenant_id if principal else "",
            client=principal.client if principal else "", operation=operation, purpose=purpose,
            subject_id=subject_id, result=result,
            detail_json=audit.detail_json({"request_id": rid, **(detail or {})}),
        )  # fmt: skip
        return own, audit.detail_json({"request_id": rid})

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
        own, each = self._own_record(principal, operation, purpose, subject_id, result, detail)
        return await self._audit.submit([own, *audit.subject_entries(own, extra, each)])

    async def _record_failures(
        self, peer: str, operation: str, reason: str, count: int, interval_s: float
    ) -> None:
        await self.record(None, operation, "", "", "UNAUTHENTICATED",
                          {"peer": peer, "reason": reason, "count": count,
                           "interval_s": interval_s, "aggregated": True})  # fmt: skip

    def authenticate(self, metadata: dict[str, str], operation: str) -> auth.Principal:
        """The caller behind the request's token. A failure is counted for
        the peer (and audited in aggregate, ``peers``); a peer past its
        budget of failures gets RESOURCE_EXHAUSTED instead."""
        try:
            return self.auth.authenticate(metadata.get(auth.AUTHORIZATION_KEY))
        except errors.Unauthenticated as exc:
            peer = peers.peer_host(metadata.get(PEER_KEY, ""))
            refusal: errors.TanuError = exc
            wait = self.failures.over_budget(peer)
            if wait > 0:
                refusal = errors.ResourceExhausted(
                    f"too many failed authentications from this address; retry in {wait:.1f}s",
                    "auth_rate_limited",
                )
            self.failures.failed(peer, operation, peers.reason_of(refusal))
            self.metrics.denials.labels("gateway", operation, refusal.reason).inc()
            raise refusal from None

    async def handle(
        self,
        op: IdentityOperation,
        metadata: dict[str, str],
        subject_id: str,
        fn: Callable[[Call], Awaitable[Any]],
        deadline_s: float | None = None,
        request: RequestSource = None,
    ) -> Any:
        """Authenticates (first: nothing of the request is looked at
        before), rate-limits, authorises (``op``'s scopes and purpose),
        builds the request when it is given as a function and bounds its
        fields (``bounds``), runs ``fn`` and audits the outcome (every
        denial included; failed authentication in aggregate)."""
        operation = op.name
        call = self._call(op, metadata, subject_id, deadline_s)
        try:
            principal = call.principal = self.authenticate(metadata, operation)
        except errors.TanuError as exc:
            if exc.reason not in AGGREGATED:  # e.g. a valid token of an unregistered tenant
                self.metrics.denials.labels("gateway", operation, exc.reason or "error").inc()
                await self._safe_record(None, operation, call.purpose, call.subject_id, exc,
                                        call.transaction_id)  # fmt: skip
            raise
        return await self._authorised(op, call, principal, metadata, fn, request, True)

    async def handle_as(
        self,
        op: IdentityOperation,
        principal: auth.Principal,
        metadata: dict[str, str],
        subject_id: str,
        fn: Callable[[Call], Awaitable[Any]],
        request: RequestSource = None,
    ) -> Any:
        """As ``handle`` for a caller authenticated earlier (an asynchronous
        OSIA task, run later from what its request's token allowed): the
        scope and purpose are checked again against ``principal``, the
        request is bounded, run and audited; no rate limit (the request
        was counted when it was accepted)."""
        call = self._call(op, metadata, subject_id, None)
        call.principal = principal
        return await self._authorised(op, call, principal, metadata, fn, request, False)

    def _call(self, op, metadata: dict[str, str], subject_id: str, deadline_s) -> Call:
        purpose = metadata.get(PURPOSE_KEY, "").strip()
        audit_purpose = purpose if len(purpose) <= bounds.PURPOSE_CHARS else ""
        call = Call(op.name, None, audit_purpose, bounds.audit_subject(subject_id),
                    deadline_s=deadline_s,
                    transaction_id=logs.bounded(metadata.get(TRANSACTION_KEY, ""), 128))  # fmt: skip
        call.record_screened = lambda uses: self.record_screened(call, uses)
        return call

    async def _authorised(self, op, call: Call, principal: auth.Principal, metadata, fn,
                          request: RequestSource, rate_limited: bool) -> Any:  # fmt: skip
        operation, scopes = op.name, op.scopes
        purpose = metadata.get(PURPOSE_KEY, "").strip()
        try:
            samples.tenant_var.set(principal.tenant_id)  # the face services' fair share
            wait = (self.limits.allow(principal.tenant, share=self._rate_share())
                    if rate_limited else 0)  # fmt: skip
            if wait > 0:
                self.metrics.rate_limited.labels(principal.tenant_id).inc()
                raise errors.ResourceExhausted(
                    f"tenant {principal.tenant_id!r} is over its rate limit "
                    f"({principal.tenant.rate_per_s:g}/s); retry in {wait:.2f}s",
                    "rate_limited",
                )
            bounds.check_purpose(purpose)
            call.idempotency_key = bounds.check_idempotency_key(
                metadata.get(idempotency.METADATA_KEY, "")
            )
            granted = [s for s in scopes if s in principal.scopes]
            auth.Authenticator.authorize(
                principal,
                granted[0] if granted else scopes[0],
                purpose if op.needs_purpose else None,
            )
            message = _built(request)
            if message is not None:
                bounds.check(message)
            out = await fn(call)
        except errors.TanuError as exc:
            if exc.reason:  # a refusal (scope, purpose, consent, limits)
                self.metrics.denials.labels("gateway", operation, exc.reason).inc()
            await self._safe_record(principal, operation, call.purpose, call.subject_id, exc,
                                    call.transaction_id)  # fmt: skip
            raise
        if not call.recorded:
            await self.record(principal, operation, call.purpose, call.subject_id, call.result,
                              _with_transaction(call.detail, call.transaction_id),
                              call.extra)  # fmt: skip
        return out

    async def _safe_record(self, principal, operation, purpose, subject_id, exc,
                           transaction_id: str = "") -> None:  # fmt: skip
        """Audits a refusal; if the audit log cannot be reached, the refusal
        still goes out (it released nothing) and the failure is logged."""
        detail = {"reason": logs.bounded(exc.message, 300)}
        if transaction_id:
            detail["transaction_id"] = transaction_id
        try:
            await self.record(principal, operation, purpose, subject_id, exc.code.name, detail)
        except errors.TanuError as audit_exc:
            log.error("audit_append_failed", operation=operation, error=audit_exc.message)


def _with_transaction(detail: dict | None, transaction_id: str) -> dict | None:
    """A request's audit detail, with the OSIA transactionId when it has one."""
    return {**(detail or {}), "transaction_id": transaction_id} if transaction_id else detail


def _built(request: RequestSource) -> Message | None:
    """The request, built when it is a function; a value the message
    refuses (out of its type's range, not UTF-8) is InvalidArgument."""
    if not callable(request):
        return request
    try:
        return request()
    except (ValueError, TypeError, OverflowError) as exc:
        raise errors.InvalidArgument(
            f"the request is not valid: {logs.bounded(str(exc), 200)}"
        ) from None
