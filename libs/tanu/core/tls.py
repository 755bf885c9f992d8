"""TLS for gRPC, both ends: the server's credentials (TLS when a certificate
is configured, mutual TLS when a client CA is too), the client's channel
credentials, and the one place that chooses a secure or a plaintext port or
channel from them.

Every file is read once, when the server or channel is made; a missing or
unreadable file is a FailedPrecondition naming it, so a service fails at
start, not at its first call.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Sequence

import grpc

from tanu.core import errors
from tanu.core.config import Common


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as exc:
        raise errors.FailedPrecondition(f"cannot read a TLS file: {exc}") from None


def server_credentials(common: Common) -> grpc.ServerCredentials | None:
    """TLS when a certificate is configured; mutual TLS (client certificates
    required and checked against the CA) when a client CA is too; None for
    plaintext."""
    if not (common.tls_cert_file or common.tls_key_file):
        if common.tls_client_ca_file:
            raise errors.FailedPrecondition(
                "TANU_TLS_CLIENT_CA_FILE needs TANU_TLS_CERT_FILE and TANU_TLS_KEY_FILE"
            )
        return None
    cert = _read(common.tls_cert_file)
    key = _read(common.tls_key_file)
    ca = _read(common.tls_client_ca_file) if common.tls_client_ca_file else None
    return grpc.ssl_server_credentials(
        [(key, cert)], root_certificates=ca, require_client_auth=ca is not None
    )


def channel_credentials(
    ca_file: str = "", cert_file: str = "", key_file: str = ""
) -> grpc.ChannelCredentials:
    """A client's TLS credentials: the servers are checked against ``ca_file``
    (the system's roots when empty); with ``cert_file`` and ``key_file`` the
    client presents its own certificate (mutual TLS)."""
    if bool(cert_file) != bool(key_file):
        raise errors.FailedPrecondition("a client certificate needs both its file and its key file")
    return grpc.ssl_channel_credentials(
        root_certificates=_read(ca_file) if ca_file else None,
        private_key=_read(key_file) if key_file else None,
        certificate_chain=_read(cert_file) if cert_file else None,
    )


def add_port(server: grpc.aio.Server, address: str, common: Common) -> int:
    """Binds ``address`` with TLS when ``common`` configures it, else in
    plaintext; returns the port (0 when it could not be bound)."""
    creds = server_credentials(common)
    if creds is None:
        return server.add_insecure_port(address)
    return server.add_secure_port(address, creds)


def aio_channel(
    address: str,
    credentials: grpc.ChannelCredentials | None = None,
    interceptors: Sequence[grpc.aio.ClientInterceptor] = (),
) -> grpc.aio.Channel:
    """A channel to ``address``: TLS with ``credentials``, plaintext without."""
    if credentials is None:
        return grpc.aio.insecure_channel(address, interceptors=list(interceptors))
    return grpc.aio.secure_channel(address, credentials, interceptors=list(interceptors))


PLAINTEXT_TOKEN_REFUSAL = (
    "a bearer token is accepted over TLS only (or from this machine): "
    "connect with TLS (the server sets TANU_TLS_CERT_FILE and TANU_TLS_KEY_FILE)"
)


@functools.lru_cache(maxsize=4096)
def is_loopback(peer: str) -> bool:
    """Whether a peer address (gRPC's ``ipv4:127.0.0.1:5000``,
    ``ipv6:[::1]:5000``, ``unix:...``, or a bare host) is this machine.
    Asked on every request that carries a token over plaintext: remembered
    per peer address (one connection's requests share it), the most
    recently seen 4096."""
    if peer.startswith("unix:"):
        return True
    host = peer.split(":", 1)[1] if peer.startswith(("ipv4:", "ipv6:")) else peer
    if host.startswith("["):
        host = host[1 : host.index("]")]
    elif host.count(":") == 1:
        host = host.rsplit(":", 1)[0]
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def refuses_plaintext_tokens(common: Common) -> bool:
    """Whether a server of these settings must refuse bearer tokens from
    other machines: it speaks plaintext and plaintext tokens are not allowed."""
    return not common.tls_cert_file and not common.allow_plaintext_tokens


def https_context(common: Common):
    """The REST facade's server TLS context from the same settings as gRPC's
    (client certificates required when TANU_TLS_CLIENT_CA_FILE is set); None
    for plaintext."""
    import ssl

    if server_credentials(common) is None:  # checks the settings and files
        return None
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(common.tls_cert_file, common.tls_key_file)
    if common.tls_client_ca_file:
        ctx.load_verify_locations(common.tls_client_ca_file)
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx
