"""`tanu up` chooses every service's ports before it starts them, one after
another; meanwhile an outgoing connection (a health check, a NATS client)
may take one as its ephemeral port. The supervisor then moves the service
to a fresh port instead of failing the whole start."""

from __future__ import annotations

import socket

import pytest

from tanu.ops.local import LocalCluster, Proc
from tanu.ops.natsd import bindable, free_port

from conftest import env_for

pytestmark = pytest.mark.slow


def connection_on_an_ephemeral_port(server: socket.socket) -> tuple[socket.socket, int]:
    """A connected socket, as an outgoing client holds one, and its local port."""
    client = socket.create_connection(server.getsockname())
    return client, client.getsockname()[1]


class RacedCluster(LocalCluster):
    """Its first start of a service skips the check for taken ports, as if
    the port had been taken between that check and the service's bind."""

    raced = 0

    def _claim_ports(self, proc: Proc) -> None:
        if not self.raced:
            self.raced += 1
            proc.env.update(TANU_GRPC_PORT=str(proc.grpc_port),
                            TANU_METRICS_PORT=str(proc.metrics_port))  # fmt: skip
            return
        super()._claim_ports(proc)


def test_a_port_taken_by_an_outgoing_connection_is_not_bindable_and_is_replaced(tmp_path):
    listener = socket.create_server(("127.0.0.1", 0))
    client, taken = connection_on_an_ephemeral_port(listener)
    try:
        assert not bindable(taken)
        said: list[str] = []
        cluster = LocalCluster(tmp_path, 1, 1, 0, 0, {}, say=said.append)
        proc = Proc("store", "tanu.store", taken, free_port())
        cluster._claim_ports(proc)
        assert proc.grpc_port != taken and bindable(proc.grpc_port)
        assert proc.env["TANU_GRPC_PORT"] == str(proc.grpc_port)
        assert said == [f"port {taken} for store gRPC is taken; using {proc.grpc_port}"]
    finally:
        client.close()
        listener.close()


def test_a_service_whose_port_was_taken_starts_again_on_a_fresh_one(nats_server, tmp_path):
    listener = socket.create_server(("127.0.0.1", 0))
    client, taken = connection_on_an_ephemeral_port(listener)
    said: list[str] = []
    cluster = RacedCluster(tmp_path / "var", 1, 1, 0, 0, {}, say=said.append)
    env = env_for(nats_server.url, tmp_path, TANU_GRPC_HOST="127.0.0.1", PYTHONUNBUFFERED="1")
    proc = Proc("store", "tanu.store", taken, free_port(), env)
    cluster.procs = [proc]
    try:
        cluster._start_one(proc)
        assert proc.grpc_port != taken
        assert any("could not listen: a port was taken" in m for m in said), said
        assert any(f"port {taken} for store gRPC is taken" in m for m in said), said
        assert cluster.running["store"].poll() is None
    finally:
        cluster.stop()
        client.close()
        listener.close()


def test_a_service_that_fails_for_another_reason_says_why(nats_server, tmp_path):
    cluster = LocalCluster(tmp_path / "var", 1, 1, 0, 0, {}, say=lambda m: None)
    env = env_for(nats_server.url, tmp_path, TANU_DIMENSION="not-a-number")
    proc = Proc("store", "tanu.store", free_port(), free_port(), env)
    cluster.procs = [proc]
    try:
        with pytest.raises(RuntimeError) as failed:
            cluster._start_one(proc)
        # one start only (nothing took its ports), and the log's end in the error
        assert "store exited with code" in str(failed.value)
        assert "TANU_DIMENSION" in str(failed.value)
    finally:
        cluster.stop()
