"""What every CLI verb that talks to the cluster shares: where the gateway
and NATS are, the token and purpose on each gateway call, the channel, the
common client flags, reading a sample from a file, and printing a reply as
text or JSON."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import grpc
import numpy as np
from google.protobuf import json_format

from tanu.core import auth, natsroles, tls, vectors
from tanu.v1 import common_pb2, identity_pb2_grpc

from ..local import read_state

DEFAULT_GATEWAY = "127.0.0.1:50051"
DEFAULT_NATS_URL = "nats://127.0.0.1:4222"

T = TypeVar("T")


def gateway_address(args) -> str:
    """``--gateway``, else ``TANU_GATEWAY``, else the local cluster's gateway,
    else 127.0.0.1:50051."""
    if args.gateway:
        return args.gateway
    if os.environ.get("TANU_GATEWAY"):
        return os.environ["TANU_GATEWAY"]
    state = read_state(Path(args.var))
    return state["gateway"] if state else DEFAULT_GATEWAY


def nats_url(args) -> str:
    """``--nats``, else the local cluster's NATS URL, else ``TANU_NATS_URL``,
    else nats://127.0.0.1:4222; with the operator's NATS credentials in it
    (TANU_NATS_USER and TANU_NATS_PASSWORD(_FILE), else the local
    cluster's ``var/keys/nats/operator.password``) unless it has its own."""
    if args.nats:
        url = args.nats
    else:
        state = read_state(Path(args.var))
        url = state["nats_url"] if state else os.environ.get("TANU_NATS_URL", DEFAULT_NATS_URL)
    if "@" in url or "://" not in url:
        return url
    user = os.environ.get("TANU_NATS_USER", natsroles.OPERATOR)
    password = os.environ.get("TANU_NATS_PASSWORD", "")
    file = os.environ.get("TANU_NATS_PASSWORD_FILE", "")
    local = natsroles.password_file(Path(args.var) / "keys" / "nats", user)
    if not password and (file or local.exists()):
        password = Path(file or local).read_text().strip()
    if not password:
        return url
    if any(c in password + user for c in "@:/%"):
        # nats-py reads the URL's user and password as written (no %-decoding)
        raise SystemExit("error: the NATS user and password must not contain @ : / or %")
    scheme, rest = url.split("://", 1)
    return ",".join(f"{scheme}://{user}:{password}@{u.split('://', 1)[-1]}"
                    for u in rest.split(","))  # fmt: skip


def token(args) -> str:
    """``--token``, else ``TANU_TOKEN``, else the local cluster's operator token."""
    if getattr(args, "token", None):
        return args.token
    if os.environ.get("TANU_TOKEN"):
        return os.environ["TANU_TOKEN"]
    path = Path(args.var) / "keys" / "operator.token"
    if path.exists():
        return path.read_text().strip()
    raise SystemExit("error: no token: pass --token, set TANU_TOKEN, or run `tanu up` first")


class _Metadata(grpc.UnaryUnaryClientInterceptor):
    """Adds the token and purpose to every call."""

    def __init__(self, md) -> None:
        self._md = list(md)

    def intercept_unary_unary(self, continuation, details, request):
        details = details._replace(metadata=list(details.metadata or ()) + self._md)
        return continuation(details, request)


def _tls_file(args, name: str) -> str:
    return getattr(args, f"tls_{name}", None) or os.environ.get(
        f"TANU_GATEWAY_TLS_{name.upper()}_FILE", ""
    )


def channel(args) -> tuple[grpc.Channel, grpc.Channel]:
    """(the intercepted channel to make stubs on, the raw channel to close).

    The token travels as call credentials, which grpc sends only over a
    secure channel: TLS when a CA is given (``--tls-ca`` or
    TANU_GATEWAY_TLS_CA_FILE; a client certificate with ``--tls-cert`` and
    ``--tls-key``), else only to a gateway on this machine (local
    credentials); a token is never sent in clear over the network."""
    address = gateway_address(args)
    ca, cert, key = (_tls_file(args, n) for n in ("ca", "cert", "key"))
    if ca or cert:
        transport = tls.channel_credentials(ca, cert, key)
    elif tls.is_loopback(address.rsplit(":", 1)[0].strip("[]")):
        transport = grpc.local_channel_credentials(grpc.LocalConnectionType.LOCAL_TCP)
    else:
        raise SystemExit(
            f"error: the gateway {address} is not on this machine: pass --tls-ca (or set "
            "TANU_GATEWAY_TLS_CA_FILE) so that the token travels over TLS"
        )
    creds = grpc.composite_channel_credentials(
        transport, grpc.access_token_call_credentials(token(args))
    )
    raw = grpc.secure_channel(address, creds)
    md = [(auth.PURPOSE_KEY, args.purpose)]
    return grpc.intercept_channel(raw, _Metadata(md)), raw


def call(args, fn: Callable[[identity_pb2_grpc.IdentityStub], T]) -> T:
    """Runs ``fn`` on an Identity stub; a gRPC error is printed (with the
    gateway's address) and exits with code 2."""
    addr = gateway_address(args)
    intercepted, raw = channel(args)
    with raw:
        stub = identity_pb2_grpc.IdentityStub(intercepted)
        try:
            return fn(stub)
        except grpc.RpcError as exc:
            print(f"error: {exc.code().name}: {exc.details()} (gateway {addr})", file=sys.stderr)
            raise SystemExit(2) from None


def all_pages(args, fetch: Callable[[identity_pb2_grpc.IdentityStub, str], T], items: str) -> list:
    """Every item of a paginated call: ``fetch(stub, page_token)`` returns a
    reply whose ``items`` field holds a page and ``next_page_token`` the next."""
    out: list = []
    token = ""
    while True:
        r = call(args, lambda s, t=token: fetch(s, t))
        out.extend(getattr(r, items))
        token = r.next_page_token
        if not token:
            return out


def load_sample(path: str) -> common_pb2.BiometricSample:
    """A photo's bytes, or a ``.npy`` template, as a sample."""
    p = Path(path)
    if not p.exists():
        raise SystemExit(f"error: {path}: no such file")
    if p.suffix.lower() == ".npy":
        try:
            arr = np.load(p, allow_pickle=False)
        except (ValueError, EOFError, OSError) as exc:
            raise SystemExit(f"error: {path} is not a numpy .npy file: {exc}") from None
        arr = np.asarray(arr, dtype=np.float32).reshape(-1)
        return common_pb2.BiometricSample(
            template=common_pb2.Template(vector=vectors.to_bytes(arr))
        )
    return common_pb2.BiometricSample(image=p.read_bytes())


def show(args, reply, text: str) -> None:
    """Prints ``reply`` as JSON with ``--json``, else ``text``."""
    if args.json:
        print(
            json.dumps(
                json_format.MessageToDict(
                    reply,
                    preserving_proto_field_name=True,
                    always_print_fields_with_no_presence=True,
                ),
                indent=2,
            )
        )
    else:
        print(text)


def add_client_parser(sub, name: str, help_: str) -> argparse.ArgumentParser:
    """A verb that calls the gateway, with the flags every such verb takes."""
    c = sub.add_parser(name, help=help_)
    c.add_argument("--gateway", help="gateway address host:port")
    c.add_argument("--json", action="store_true", help="machine-readable output")
    c.add_argument("--timeout", type=float, default=30.0, help="deadline in seconds")
    c.add_argument("--token", help="tenant token (default: TANU_TOKEN or var/keys/operator.token)")
    c.add_argument(
        "--tls-ca", help="CA of the gateway's TLS certificate (TANU_GATEWAY_TLS_CA_FILE)"
    )
    c.add_argument(
        "--tls-cert", help="client certificate for mutual TLS (TANU_GATEWAY_TLS_CERT_FILE)"
    )
    c.add_argument("--tls-key", help="its private key (TANU_GATEWAY_TLS_KEY_FILE)")
    c.add_argument("--purpose", default="identity_verification",
                   help="why the data is used (the tenant must be allowed it)")  # fmt: skip
    return c
