"""TLS on the bus: a nats-server that requires TLS, with real certificates
made here; a service given the CA connects (and authenticates as its role),
one without it cannot."""

from __future__ import annotations

import pytest
from test_security import _cert, _pem

from tanu.core import errors
from tanu.ops.natsd import NatsServer

from conftest import Cluster, env_for, nats_credentials


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
        with pytest.raises(errors.Unavailable):  # the server's certificate is not trusted
            await Cluster(env_for(server.url, tmp_path)).start_store()
        c = Cluster(env_for(server.url, tmp_path, TANU_NATS_TLS_CA_FILE=str(tmp_path / "ca.pem")))
        try:
            store = await c.start_store()
            assert store.nc.is_connected
        finally:
            await c.stop()
    finally:
        server.stop()
