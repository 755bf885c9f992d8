"""Secrets for a cluster on one machine (``tanu up``, tests): creates what is
missing under one folder and names it in the environment the services read.

- ``master.keyring``: master keys wrapping every subject's data key;
- ``audit.pem`` (+ ``.pub``): Ed25519 key signing audit checkpoints and receipts;
- ``issuer.pem`` (+ ``.pub``): Ed25519 key signing tenant tokens;
- ``snapshot.key``: the searchers' snapshot key;
- ``jetstream.key``: the key JetStream encrypts its files with (``NatsServer``);
- ``log-pseudonym.key``: the key of the pseudonyms subject ids get in logs;
- ``tenants.json``: the tenant registry, with one operator tenant;
- ``operator.token``: a token for the operator tenant, for the CLI.

In production each comes from the secret store (Helm: Kubernetes Secrets)
and the token issuer's private key never sits beside the services.

Also the client side of those tokens: ``aio_channel`` (a channel whose calls
carry a token and purpose) and ``call_metadata``.
"""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

import grpc

from . import auth, envelope, files, signing, tls

DEFAULT_PURPOSES = (
    "identity_verification",
    "kyc",
    "border_control",
    "social_services",
    "law_enforcement",
)
DEFAULT_PURPOSE = "identity_verification"
OPERATOR = "operator"
LOOPBACK_CALLBACKS = ("http://127.0.0.1", "http://localhost", "http://[::1]")


def provision(folder: str | Path, token_ttl_s: float = 30 * 24 * 3600) -> dict[str, str]:
    """Creates the missing secrets under ``folder``; returns their settings."""
    d = Path(folder)
    d.mkdir(parents=True, exist_ok=True)
    envelope.init_keyring(d / "master.keyring")
    signing.init_signing_key(d / "audit.pem")
    issuer = signing.init_signing_key(d / "issuer.pem")
    for name in ("snapshot.key", "jetstream.key", "log-pseudonym.key"):
        if not (d / name).exists():
            files.write_private(d / name, base64.b64encode(os.urandom(32)).decode())
    snap = d / "snapshot.key"
    tenants = d / "tenants.json"
    if not tenants.exists():
        tenants.write_text(json.dumps({"tenants": [
            {"id": OPERATOR, "kind": "operator", "purposes": list(DEFAULT_PURPOSES),
             "rate_per_s": 1000, "burst": 2000,
             # OSIA callbacks to this machine, so local integrations work
             "callbacks": list(LOOPBACK_CALLBACKS)},
        ]}, indent=1))  # fmt: skip
    token = d / "operator.token"
    if not token.exists():
        files.write_private(
            token, auth.issue_token(issuer, OPERATOR, "cli", list(auth.SCOPES), ttl_s=token_ttl_s)
        )
    return {
        "TANU_MASTER_KEY_FILE": str(d / "master.keyring"),
        "TANU_AUDIT_KEY_FILE": str(d / "audit.pem"),
        "TANU_TOKEN_PUBLIC_KEY_FILE": str(d / "issuer.pem.pub"),
        "TANU_TENANTS_FILE": str(tenants),
        "TANU_SNAPSHOT_KEY_FILE": str(snap),
        "TANU_LOG_PSEUDONYM_KEY_FILE": str(d / "log-pseudonym.key"),
    }


class _Metadata(grpc.aio.UnaryUnaryClientInterceptor):
    """Adds the token and purpose to every call that does not set its own."""

    def __init__(self, token: str, purpose: str) -> None:
        self._md = call_metadata(token, purpose)

    async def intercept_unary_unary(self, continuation, details, request):
        have = {k for k, _ in (details.metadata or ())}
        md = list(details.metadata or ()) + [(k, v) for k, v in self._md if k not in have]
        details = grpc.aio.ClientCallDetails(
            details.method, details.timeout, md, details.credentials, details.wait_for_ready
        )
        return await continuation(details, request)


def aio_channel(
    address: str,
    token: str,
    purpose: str = DEFAULT_PURPOSE,
    credentials: grpc.ChannelCredentials | None = None,
) -> grpc.aio.Channel:
    """A channel whose calls carry ``token`` and ``purpose`` unless they set
    their own; TLS with ``credentials`` (``tls.channel_credentials``),
    plaintext without."""
    return tls.aio_channel(address, credentials, [_Metadata(token, purpose)])


def call_metadata(token: str, purpose: str = DEFAULT_PURPOSE) -> tuple[tuple[str, str], ...]:
    """The gRPC metadata that authenticates a call as ``token`` acting for ``purpose``."""
    return ((auth.AUTHORIZATION_KEY, f"Bearer {token}"), (auth.PURPOSE_KEY, purpose))
