"""Tenants, signed tokens, scopes and purposes.

A tenant (a government system, a bank, the citizen portal, an auditor) is
registered in the tenants file with its kind, its scopes and the purposes it
may act for. It authenticates with a token: ``tanu1.<claims>.<signature>``,
base64url JSON claims signed with Ed25519 by the token issuer (``tanu tokens
issue``); gateways hold only the issuer's public key. A request's effective
scopes are the token's scopes that its tenant also holds; its purpose (gRPC
metadata ``x-tanu-purpose``) must be one the tenant and token allow.

A token may be bound to one subject (claim ``sub``, ``tanu tokens issue
--subject ID``): the citizen portal's token for the citizen it signed in,
which may act on that subject's data only (``tanu.policy.access``).
Whether a tenant sees raw match scores is ``scores`` in its entry
(default: operators and government agencies do; relying parties, the bank
kind, get the decision only, so scores cannot be hill-climbed).

``callbacks`` in a tenant's entry is its allow-list of asynchronous OSIA
callback addresses: ``scheme://host[:port]`` entries (no port: any port).
A callback must match one; a host that resolves to a private, loopback or
link-local address is refused unless an entry names that host literally
(``tanu.gateway.osia.callbacks``). Empty (the default): no callbacks.
"""

from __future__ import annotations

import base64
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from . import errors, signing

PREFIX = "tanu1"
# The gRPC metadata keys a call authenticates with ('Bearer <token>') and
# names its purpose in.
AUTHORIZATION_KEY = "authorization"
PURPOSE_KEY = "x-tanu-purpose"

SCOPES = (
    "enrol",
    "verify",
    "identify",
    "delete",
    "subject.report",
    "audit.read",
    "consent.manage",
    "lock.manage",
    "adjudicate",
    # The stored templates of a subject's encounters (OSIA readTemplate):
    # held by no tenant unless its entry lists it, e.g. for a migration to
    # another ABIS. Templates never leave otherwise.
    "templates.read",
)
# Scopes a tenant holds only when its entry lists them (not even the operator by default).
EXPLICIT_ONLY = frozenset({"templates.read"})

# What each kind of tenant may do when its entry lists no scopes of its own.
# Banks are verify-only unless the registry grants them more explicitly.
DEFAULT_SCOPES = {
    "government": ("enrol", "verify", "identify", "delete", "subject.report", "consent.manage"),
    "bank": ("verify",),
    "citizen_portal": ("subject.report", "consent.manage", "lock.manage"),
    "auditor": ("audit.read",),
    # Operators of the adjudication queue: cases of held enrolments, nothing else.
    "adjudicator": ("adjudicate",),
    "operator": tuple(s for s in SCOPES if s not in EXPLICIT_ONLY),
}
KINDS = tuple(DEFAULT_SCOPES)
# The kinds that see raw scores unless their entry says ``"scores": false``.
SCORES_BY_DEFAULT = frozenset({"operator", "government"})
MAX_SUBJECT_CLAIM = 128


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class Tenant:
    """One entry of the tenant registry: what the tenant may do, for which
    purposes, and its rate limit (requests per second, burst)."""

    tenant_id: str
    kind: str
    scopes: frozenset[str]
    purposes: frozenset[str]
    rate_per_s: float = 50.0
    burst: int = 100
    scores: bool = False  # whether its replies carry raw match scores
    # OSIA callback allow-list: (scheme, host, port or 0 for any), lower case.
    callbacks: tuple[tuple[str, str, int], ...] = ()


@dataclass(frozen=True)
class Principal:
    """Who is calling: the tenant, its client, and what this request may do."""

    tenant: Tenant
    client: str
    scopes: frozenset[str]
    purposes: frozenset[str]
    token_id: str = ""
    subject: str = ""  # the one subject the token is bound to ("" : none)

    @property
    def tenant_id(self) -> str:
        return self.tenant.tenant_id

    @property
    def kind(self) -> str:
        return self.tenant.kind

    @property
    def sees_scores(self) -> bool:
        """Raw scores go to tenants configured for them and to adjudicators;
        relying parties get decisions."""
        return self.tenant.scores or "adjudicate" in self.scopes


@dataclass
class Registry:
    """The tenants this service knows, by id (from the tenants file)."""

    tenants: dict[str, Tenant] = field(default_factory=dict)

    @classmethod
    def from_file(cls, path: str | Path) -> Registry:
        try:
            doc = json.loads(Path(path).read_text())
        except FileNotFoundError:
            raise errors.FailedPrecondition(f"tenants file {path} does not exist") from None
        except ValueError as exc:
            raise errors.FailedPrecondition(f"tenants file {path} is not JSON: {exc}") from None
        return cls.from_doc(doc, str(path))

    @classmethod
    def from_doc(cls, doc: dict, where: str = "tenants") -> Registry:
        out: dict[str, Tenant] = {}
        for i, t in enumerate(doc.get("tenants", [])):
            tid, kind = t.get("id"), t.get("kind")
            if not tid or kind not in DEFAULT_SCOPES:
                raise errors.FailedPrecondition(
                    f"{where}: tenant #{i} needs an id and a kind in {list(KINDS)}"
                )
            scopes = frozenset(t.get("scopes") or DEFAULT_SCOPES[kind])
            unknown = scopes - set(SCOPES)
            if unknown:
                raise errors.FailedPrecondition(
                    f"{where}: tenant {tid!r} has unknown scopes {sorted(unknown)}"
                )
            scores = t.get("scores", kind in SCORES_BY_DEFAULT)
            if not isinstance(scores, bool):
                raise errors.FailedPrecondition(
                    f"{where}: tenant {tid!r}: scores must be true or false, got {scores!r}"
                )
            out[tid] = Tenant(
                tid,
                kind,
                scopes,
                frozenset(t.get("purposes", [])),
                float(t.get("rate_per_s", 50.0)),
                int(t.get("burst", 100)),
                scores,
                _callbacks(t.get("callbacks", []), f"{where}: tenant {tid!r}"),
            )
        return cls(out)


def _callbacks(entries, where: str) -> tuple[tuple[str, str, int], ...]:
    """A tenant's callback allow-list, each ``scheme://host[:port]`` entry
    as (scheme, host, port; 0: any port)."""
    from urllib.parse import urlsplit

    if not isinstance(entries, list):
        raise errors.FailedPrecondition(f"{where}: callbacks must be a list of URLs")
    out = []
    for e in entries:
        try:
            u = urlsplit(e) if isinstance(e, str) else None
            port = u.port if u else None
        except ValueError:
            u = None
        if (u is None or u.scheme not in ("http", "https") or not u.hostname
                or u.path not in ("", "/") or u.query or u.username):  # fmt: skip
            raise errors.FailedPrecondition(
                f"{where}: callback entry {e!r} must be http(s)://host[:port]"
            )
        out.append((u.scheme, u.hostname.lower(), port or 0))
    return tuple(out)


def issue_token(
    key: Ed25519PrivateKey,
    tenant: str,
    client: str,
    scopes: list[str],
    purposes: list[str] | None = None,
    ttl_s: float = 3600.0,
    now: float | None = None,
    subject: str = "",
) -> str:
    """A signed token for ``tenant``'s ``client``, valid for ``ttl_s``
    seconds; bound to one subject when ``subject`` is given."""
    now = time.time() if now is None else now
    bad = set(scopes) - set(SCOPES)
    if bad:
        raise ValueError(f"unknown scopes {sorted(bad)}; known: {list(SCOPES)}")
    if len(subject) > MAX_SUBJECT_CLAIM:
        raise ValueError(f"subject is longer than {MAX_SUBJECT_CLAIM} characters")
    claims = {
        "ten": tenant,
        "cli": client,
        "scp": sorted(scopes),
        "pur": sorted(purposes or []),
        "iat": int(now),
        "exp": int(now + ttl_s),
        "jti": _b64(os.urandom(9)),
        "kid": signing.key_id(key.public_key()),
    }
    if subject:
        claims["sub"] = subject
    body = _b64(json.dumps(claims, separators=(",", ":"), sort_keys=True).encode())
    signed = f"{PREFIX}.{body}"
    return f"{signed}.{_b64(key.sign(signed.encode()))}"


class Authenticator:
    """Checks tokens against the issuer's public key and the tenant registry."""

    def __init__(self, public_key: Ed25519PublicKey, registry: Registry, leeway_s: float = 30.0):
        self._key = public_key
        self._kid = signing.key_id(public_key)
        self.registry = registry
        self._leeway = leeway_s
        self._cache: dict[str, tuple[float, Principal]] = {}

    def authenticate(self, authorization: str | None, now: float | None = None) -> Principal:
        """The caller behind a token. A token already verified is served from
        a small cache (the signature check costs ~0.1 ms) until it expires."""
        now = time.time() if now is None else now
        hit = self._cache.get(authorization or "")
        if hit is not None and now <= hit[0] + self._leeway:
            return hit[1]
        principal, exp = self._authenticate(authorization, now)
        if len(self._cache) >= 10_000:
            self._cache.clear()
        self._cache[authorization or ""] = (exp, principal)
        return principal

    def _authenticate(self, authorization: str | None, now: float) -> tuple[Principal, float]:
        if not authorization:
            raise errors.Unauthenticated(
                "no credentials: send 'authorization: Bearer <token>' metadata"
            )
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise errors.Unauthenticated("the authorization metadata must be 'Bearer <token>'")
        parts = token.strip().split(".")
        if len(parts) != 3 or parts[0] != PREFIX:
            raise errors.Unauthenticated(
                "the token is malformed (expected tanu1.<claims>.<signature>)"
            )
        try:
            sig = _unb64(parts[2])
            claims = json.loads(_unb64(parts[1]))
        except (ValueError, TypeError):
            raise errors.Unauthenticated("the token is malformed (bad base64 or JSON)") from None
        if not signing.verify_signature(self._key, sig, f"{parts[0]}.{parts[1]}".encode()):
            raise errors.Unauthenticated(
                "the token's signature is not valid (wrong issuer key or altered)"
            )
        try:
            exp, tenant_id, client = float(claims["exp"]), claims["ten"], claims["cli"]
            scopes, purposes = frozenset(claims["scp"]), frozenset(claims.get("pur", []))
            subject = claims.get("sub", "")
            if not isinstance(subject, str) or len(subject) > MAX_SUBJECT_CLAIM:
                raise ValueError("sub")
        except (KeyError, TypeError, ValueError):
            raise errors.Unauthenticated("the token lacks required claims") from None
        if now > exp + self._leeway:
            raise errors.Unauthenticated(
                f"the token expired at {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(exp))}"
            )
        tenant = self.registry.tenants.get(tenant_id)
        if tenant is None:
            raise errors.PermissionDenied(
                f"tenant {tenant_id!r} is not registered with this service", "scope"
            )
        return Principal(
            tenant=tenant,
            client=str(client)[:64],
            scopes=scopes & tenant.scopes,
            # A token naming no purposes may act for every purpose of its tenant.
            purposes=(purposes & tenant.purposes) if purposes else tenant.purposes,
            token_id=str(claims.get("jti", "")),
            subject=subject,
        ), exp

    @staticmethod
    def authorize(p: Principal, scope: str, purpose: str | None) -> None:
        """Refuses (PermissionDenied, reason scope or purpose) unless ``p``
        holds ``scope`` and, when ``purpose`` is not None, may act for it."""
        if scope not in p.scopes:
            raise errors.PermissionDenied(
                f"tenant {p.tenant_id!r} ({p.tenant.kind}) may not {scope!r}; "
                f"its token allows {sorted(p.scopes)}",
                "scope",
            )
        if purpose is None:
            return
        if not purpose:
            raise errors.PermissionDenied(
                "no purpose given: send 'x-tanu-purpose' metadata naming why the data is used",
                "purpose",
            )
        if purpose not in p.purposes:
            raise errors.PermissionDenied(
                f"purpose {purpose!r} is not allowed for tenant {p.tenant_id!r}; "
                f"allowed: {sorted(p.purposes)}",
                "purpose",
            )


class RateLimiter:
    """A token bucket per tenant, of ``share`` of the tenant's rate and burst:
    with N gateways up each enforces 1/N (``tanu.gateway.presence``), so a
    tenant spread over every gateway gets its limit in all, not N times it
    (and one pinned to a single gateway gets less, never more)."""

    def __init__(self) -> None:
        self._buckets: dict[str, tuple[float, float]] = {}

    def allow(self, tenant: Tenant, now: float | None = None, share: float = 1.0) -> float:
        """0.0 if the request may go ahead, else the seconds until it may."""
        now = time.monotonic() if now is None else now
        rate = tenant.rate_per_s * share
        burst = max(1.0, tenant.burst * share)
        level, last = self._buckets.get(tenant.tenant_id, (burst, now))
        level = min(burst, level + (now - last) * rate)
        if level >= 1.0:
            self._buckets[tenant.tenant_id] = (level - 1.0, now)
            return 0.0
        self._buckets[tenant.tenant_id] = (level, now)
        return (1.0 - level) / rate if rate > 0 else float("inf")
