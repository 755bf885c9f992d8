"""TLS for partners and on the bus, with real certificates made here: the
gateway serves gRPC and REST over TLS, a bearer token is refused over
plaintext from another machine (accepted on loopback, the local mode), the
CLI speaks TLS or local credentials and never sends a token in clear; a
nats-server that requires TLS is reached with its CA only."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import aiohttp
import grpc
import pytest
from test_security import _cert, _pem

from tanu.core import config as cfg
from tanu.core import errors, secrets, tls
from tanu.gateway import GatewayService
from tanu.ops.natsd import NatsServer
from tanu.v1 import identity_pb2, identity_pb2_grpc

from conftest import Cluster, env_for, nats_credentials, operator_token


async def test_services_reach_nats_over_tls_only_with_its_ca(tmp_path):
    from cryptography.hazmat.primitives.asymmetric import ec

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca, ca_name = _cert("tanu-test-ca", ca_key, None, ca_key, ca=True)
    srv_key = ec.generate_private_key(ec.SECP256R1())
    srv, _ = _cert("nats", ca_key, ca_name, srv_key, san=True)
    for n, obj in {"ca.pem": ca, "nats.pem": srv, "nats.key": srv_key}.items():
        (tmp_path / n).write_bytes(_pem(obj))
    server = NatsServer(tmp_path / "nats", auth_dir=nats_credentials(tmp_path),
                        tls_cert_file=str(tmp_path / "nats.pem"),
                        tls_key_file=str(tmp_path / "nats.key")).start()  # fmt: skip
    try:
        assert server.url.startswith("tls://")
        with pytest.raises(
            errors.Unavailable, match="TLS"
        ):  # the server's certificate is not trusted
            await Cluster(env_for(server.url, tmp_path)).start_store()
        c = Cluster(env_for(server.url, tmp_path, TANU_NATS_TLS_CA_FILE=str(tmp_path / "ca.pem")))
        try:
            store = await c.start_store()
            assert store.nc.is_connected
        finally:
            await c.stop()
    finally:
        server.stop()


def _own_address() -> str:
    """This machine's address on a network interface (not loopback), or ''."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))  # no packet is sent: it picks the route
            host = s.getsockname()[0]
        except OSError:
            return ""
    return "" if host.startswith("127.") else host


def _certs(tmp_path, host: str) -> dict[str, str]:
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca, ca_name = _cert("tanu-test-ca", ca_key, None, ca_key, ca=True)
    key = ec.generate_private_key(ec.SECP256R1())
    srv, _ = _cert("gateway", ca_key, ca_name, key, san=True)
    if host:  # the certificate names the network address too
        import datetime as dt

        srv = (
            x509.CertificateBuilder().subject_name(srv.subject).issuer_name(ca_name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5))
            .not_valid_after(dt.datetime.now(dt.UTC) + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([
                x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                x509.IPAddress(ipaddress.ip_address(host))]), critical=False)
            .sign(ca_key, hashes.SHA256())
        )  # fmt: skip
    out = {}
    for n, obj in {"ca.pem": ca, "gw.pem": srv, "gw.key": key}.items():
        (tmp_path / n).write_bytes(_pem(obj))
        out[n] = str(tmp_path / n)
    return out


def _cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tanu.ops.cli", *args], capture_output=True,
                          text=True, timeout=60, env={**os.environ, **(env or {})})  # fmt: skip


async def test_tokens_cross_the_network_over_tls_only(nats_server, tmp_path):
    host = _own_address()
    if not host:
        pytest.skip("this machine has no network interface besides loopback")
    env = env_for(nats_server.url, tmp_path, partitions=1, TANU_GRPC_HOST="0.0.0.0",
                  TANU_REST_PORT="0")  # fmt: skip
    c = Cluster(env)
    await c.start_all()
    token = operator_token(env)
    http = aiohttp.ClientSession()
    try:
        ask = identity_pb2.GetSubjectRequest(subject_id="nobody")
        # loopback: the local mode's plaintext is accepted (NOT_FOUND: answered)
        async with secrets.aio_channel(f"127.0.0.1:{c.gateway.port}", token) as ch:
            with pytest.raises(grpc.aio.AioRpcError) as got:
                await identity_pb2_grpc.IdentityStub(ch).GetSubject(ask)
            assert got.value.code() == grpc.StatusCode.NOT_FOUND
            # Worked out once per peer: the connection's later requests reuse it.
            before = tls.is_loopback.cache_info()
            for _ in range(3):
                with pytest.raises(grpc.aio.AioRpcError):
                    await identity_pb2_grpc.IdentityStub(ch).GetSubject(ask)
            after = tls.is_loopback.cache_info()
            assert after.misses == before.misses and after.hits >= before.hits + 3
        # the network: a token in clear is refused before any work
        async with secrets.aio_channel(f"{host}:{c.gateway.port}", token) as ch:
            with pytest.raises(grpc.aio.AioRpcError) as got:
                await identity_pb2_grpc.IdentityStub(ch).GetSubject(ask)
            assert got.value.code() == grpc.StatusCode.UNAUTHENTICATED
            assert "TLS" in got.value.details()
        headers = {"Authorization": f"Bearer {token}", "X-Tanu-Purpose": "kyc"}
        rest = c.gateway.rest.port
        async with http.get(f"http://{host}:{rest}/v1/persons/nobody/report", headers=headers) as r:
            assert r.status == 401 and "TLS" in (await r.json())["message"]
        async with http.get(
            f"http://127.0.0.1:{rest}/v1/persons/nobody/report", headers=headers
        ) as r:
            assert r.status == 404
        # the CLI: local credentials on loopback; refuses to send the token in clear elsewhere
        var = ["--var", str(tmp_path)]
        r = await asyncio.to_thread(
            _cli, *var, "subject", "nobody", "--gateway", f"127.0.0.1:{c.gateway.port}"
        )
        assert r.returncode == 2 and "NOT_FOUND" in r.stderr, r.stderr
        r = await asyncio.to_thread(
            _cli, *var, "subject", "nobody", "--gateway", f"{host}:{c.gateway.port}"
        )
        assert r.returncode != 0 and "--tls-ca" in r.stderr
    finally:
        await http.close()
        await c.stop()


async def test_the_gateway_serves_grpc_and_rest_over_tls(nats_server, tmp_path):
    import ssl

    host = _own_address()
    files = _certs(tmp_path, host)
    env = env_for(nats_server.url, tmp_path, partitions=1, TANU_GRPC_HOST="0.0.0.0",
                  TANU_REST_PORT="0", TANU_TLS_CERT_FILE=files["gw.pem"],
                  TANU_TLS_KEY_FILE=files["gw.key"])  # fmt: skip
    c = Cluster(env)
    await c.start_store()
    await c.start_searcher(0)
    gw = await GatewayService(cfg.from_env(cfg.GatewayConfig, env)).start()
    c.gateway = gw
    token = operator_token(env)
    where = host or "127.0.0.1"
    http = aiohttp.ClientSession()
    try:
        ctx = ssl.create_default_context(cafile=files["ca.pem"])
        headers = {"Authorization": f"Bearer {token}", "X-Tanu-Purpose": "kyc"}
        url = f"https://{where}:{gw.rest.port}/v1/persons/nobody/report"
        async with http.get(url, headers=headers, ssl=ctx) as r:
            assert r.status == 404  # authenticated over TLS, and answered
        with pytest.raises(aiohttp.ClientError):  # no plaintext on the TLS port
            async with http.get(url.replace("https", "http"), headers=headers) as r:
                pass
        r = await asyncio.to_thread(_cli, "--var", str(tmp_path), "subject", "nobody",
                                    "--gateway", f"{where}:{gw.port}", "--tls-ca", files["ca.pem"])  # fmt: skip
        assert r.returncode == 2 and "NOT_FOUND" in r.stderr, r.stderr
    finally:
        await http.close()
        await c.stop()
