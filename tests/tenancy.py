"""Tenants, tokens and one real cluster per test module, for the tests of
decisions, lockout, oracles and tenant isolation."""

from __future__ import annotations

import json
from pathlib import Path

import grpc

from tanu.core import auth, secrets, signing
from tanu.v1 import identity_pb2_grpc

from conftest import Cluster, env_for

FAST = {"rate_per_s": 100000, "burst": 100000}

# id: (kind, purposes, extra registry fields)
TENANTS: dict[str, tuple[str, list[str], dict]] = {
    "gov-a": ("government", ["identity_verification", "kyc", "border_control"], {}),
    "gov-b": ("government", ["identity_verification", "kyc", "border_control"], {}),
    "bank": ("bank", ["kyc"], {}),
    "bank-scores": ("bank", ["kyc"], {"scores": True}),
    "gov-quiet": ("government", ["identity_verification", "kyc"], {"scores": False}),
    "portal": ("citizen_portal", ["identity_verification"], {}),
    "auditor": ("auditor", [], {}),
}


def write_tenants(env: dict[str, str]) -> None:
    doc = {"tenants": [
        {"id": "operator", "kind": "operator", "purposes": list(secrets.DEFAULT_PURPOSES), **FAST},
        *({"id": t, "kind": k, "purposes": p, **FAST, **x} for t, (k, p, x) in TENANTS.items()),
    ]}  # fmt: skip
    Path(env["TANU_TENANTS_FILE"]).write_text(json.dumps(doc))


def token(env: dict[str, str], tenant: str, subject: str = "", **kw) -> str:
    kind = "operator" if tenant == "operator" else TENANTS[tenant][0]
    key = signing.load_signing_key(Path(env["TANU_TENANTS_FILE"]).parent / "issuer.pem")
    scopes = kw.pop("scopes", list(auth.DEFAULT_SCOPES[kind]))
    return auth.issue_token(key, tenant, f"{tenant}-app", scopes, subject=subject, **kw)


def md(tok: str, purpose: str | None = None) -> list[tuple[str, str]]:
    out = [("authorization", f"Bearer {tok}")]
    if purpose is not None:
        out.append(("x-tanu-purpose", purpose))
    return out


async def code_of(call) -> tuple[grpc.StatusCode, str]:
    """The status code and details of a call (OK, "" when it succeeds)."""
    try:
        await call
        return grpc.StatusCode.OK, ""
    except grpc.aio.AioRpcError as exc:
        return exc.code(), exc.details()


async def start_cluster(tmp: Path, partitions: int = 1, **extra: str):
    """A real nats-server and store, searchers and gateway; (cluster, nats,
    a stub without default credentials, its channel)."""
    from tanu.ops.natsd import NatsServer

    nats = NatsServer(tmp / "nats").start()
    env = env_for(nats.url, tmp, partitions=partitions, **extra)
    write_tenants(env)
    c = Cluster(env)
    try:
        await c.start_all()
    except BaseException:
        await c.stop()
        nats.stop()
        raise
    ch = grpc.aio.insecure_channel(f"127.0.0.1:{c.gateway.port}")
    return c, nats, identity_pb2_grpc.IdentityStub(ch), ch
