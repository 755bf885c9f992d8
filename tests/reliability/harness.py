"""The reliability suite's harness: a real local cluster (``tanu up`` as a
subprocess, its state in ``var/cluster.json``), SIGKILL of its processes by
name, and load through the gateway's public gRPC API with a tally of what
was acknowledged and what came back.

Nothing here reaches into a service: processes are found through the
supervisor's state file, requests go through the Identity API with the
operator token ``tanu up`` provisioned, and answers are judged only by
what the API returns.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import numpy as np

from tanu.core import secrets, vectors
from tanu.ops.local import health_status
from tanu.ops.natsd import free_port, port_in_use
from tanu.v1 import common_pb2, identity_pb2, identity_pb2_grpc

ROOT = Path(__file__).resolve().parents[2]
DIM = 128
RETRYABLE = {
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.INTERNAL,
    grpc.StatusCode.UNKNOWN,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
}


def unit_vectors(n: int, seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def sample(vec: np.ndarray) -> common_pb2.BiometricSample:
    return common_pb2.BiometricSample(template=common_pb2.Template(vector=vectors.to_bytes(vec)))


def enroll_request(sid: str, vec: np.ndarray) -> identity_pb2.EnrollRequest:
    return identity_pb2.EnrollRequest(
        subject_id=sid, sample=sample(vec), date_of_birth="1990-01-01",
        consent=identity_pb2.ConsentGrant(purposes=["identity_verification", "kyc"],
                                          evidence_ref="reliability-1"),
    )  # fmt: skip


@dataclass
class Tally:
    """What one scenario saw."""

    name: str
    acknowledged: int = 0
    lost: int = 0
    duplicates: int = 0
    wrong: int = 0
    partial: int = 0
    receipts: int = 0
    receipts_complete: int = 0
    retries: int = 0
    recovery_s: list[float] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def row(self) -> dict:
        rec = self.recovery_s
        return {
            "scenario": self.name, "acknowledged": self.acknowledged, "lost": self.lost,
            "duplicates": self.duplicates, "wrong": self.wrong, "partial": self.partial,
            "receipts_complete": f"{self.receipts_complete}/{self.receipts}" if self.receipts else "-",
            "recovery_s": f"max {max(rec):.1f} (n={len(rec)})" if rec else "-",
            "retries": self.retries, "notes": "; ".join(self.notes),
        }  # fmt: skip


class LocalUp:
    """``tanu up`` in a subprocess, its output in ``var/up.log``."""

    def __init__(self, var: Path, partitions: int = 2, replicas: int = 1, **env: str) -> None:
        self.var = var
        self.partitions, self.replicas = partitions, replicas
        self.env = {**os.environ, "TANU_MODEL_DIR": str(ROOT / "var" / "models"), **env}
        self.proc: subprocess.Popen | None = None
        self.extra: list[subprocess.Popen] = []

    def start(self, timeout: float = 180) -> float:
        """Starts the cluster; returns the seconds until it said it is up."""
        self.var.mkdir(parents=True, exist_ok=True)
        log = open(self.var / "up.log", "a")  # noqa: SIM115 - owned by the child
        t0 = time.monotonic()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tanu.ops.cli", "--var", str(self.var), "up",
             "--partitions", str(self.partitions), "--replicas", str(self.replicas),
             "--port", "0", "--nats-port", "0"],
            stdout=log, stderr=subprocess.STDOUT, env=self.env, start_new_session=True,
        )  # fmt: skip
        log.close()
        while time.monotonic() - t0 < timeout:
            if "Tanu is up" in self.output().split("stopping...")[-1]:
                return time.monotonic() - t0
            if self.proc.poll() is not None:
                raise RuntimeError(f"tanu up exited: {self.output()[-2000:]}")
            time.sleep(0.2)
        raise TimeoutError(f"tanu up not up after {timeout}s: {self.output()[-2000:]}")

    def output(self) -> str:
        path = self.var / "up.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def state(self) -> dict:
        return json.loads((self.var / "cluster.json").read_text())

    @property
    def token(self) -> str:
        return (self.var / "keys" / "operator.token").read_text()

    def pid(self, name: str) -> int:
        st = self.state()
        if name == "nats-server":
            return st["nats"]["pid"]
        return next(s["pid"] for s in st["services"] if s["name"] == name)

    def names(self, prefix: str) -> list[str]:
        return [s["name"] for s in self.state()["services"] if s["name"].startswith(prefix)]

    def healthy(self, name: str) -> bool:
        st = self.state()
        if name == "nats-server":
            return port_in_use(int(st["nats_url"].rsplit(":", 1)[1]))
        s = next(s for s in st["services"] if s["name"] == name)
        return health_status(f"127.0.0.1:{s['grpc_port']}", 0.5) == "SERVING"

    def kill(self, name: str) -> int:
        """SIGKILL of one process; returns its pid."""
        pid = self.pid(name)
        os.kill(pid, signal.SIGKILL)
        return pid

    def wait_back(self, name: str, old_pid: int, timeout: float = 90) -> float:
        """Seconds until ``name`` runs again under a new pid and is healthy
        (and the gateway with it)."""
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            try:
                if self.pid(name) != old_pid and self.healthy(name) and self.healthy("gateway"):
                    return time.monotonic() - t0
            except (OSError, ValueError, KeyError, StopIteration):
                pass
            time.sleep(0.1)
        raise TimeoutError(f"{name} did not come back within {timeout}s")

    def status(self) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "tanu.ops.cli", "--var", str(self.var), "status"],
            capture_output=True, text=True, timeout=60, env=self.env,
        )  # fmt: skip

    def extra_gateway(self) -> str:
        """Starts one more gateway process on the cluster (as a second
        replica of the gateway Deployment would run); returns its address."""
        st = self.state()
        port = free_port()
        env = {**self.env, **secrets.provision(self.var / "keys"), "TANU_NATS_URL": st["nats_url"],
               "TANU_NATS_CREDENTIALS_DIR": str(self.var / "keys" / "nats"),
               "TANU_PARTITIONS": str(self.partitions), "TANU_GRPC_PORT": str(port),
               "TANU_METRICS_PORT": str(free_port()), "TANU_REST_PORT": "-1",
               "PYTHONUNBUFFERED": "1"}  # fmt: skip
        log = open(self.var / "logs" / f"gateway-extra-{port}.log", "ab")  # noqa: SIM115
        self.extra.append(subprocess.Popen([sys.executable, "-m", "tanu.gateway"], env=env,
                                           stdout=log, stderr=subprocess.STDOUT))  # fmt: skip
        log.close()
        t0 = time.monotonic()
        while health_status(f"127.0.0.1:{port}", 0.5) != "SERVING":
            if time.monotonic() - t0 > 90:
                raise TimeoutError("the extra gateway did not start")
            time.sleep(0.2)
        return f"127.0.0.1:{port}"

    def stop(self, timeout: float = 90) -> int:
        for p in self.extra:
            p.terminate()
        for p in self.extra:
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
        self.extra.clear()
        if self.proc is None:
            return 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            code = self.proc.wait()
        self.proc = None
        return code


class Client:
    """The Identity API through one gateway, with bounded retries."""

    def __init__(self, address: str, token: str) -> None:
        self.channel = secrets.aio_channel(address, token)
        self.stub = identity_pb2_grpc.IdentityStub(self.channel)

    async def close(self) -> None:
        await self.channel.close()

    async def enroll(self, sid: str, vec: np.ndarray, tally: Tally, deadline_s: float = 90) -> str:
        """Enrols until an answer: "enrolled", "duplicate:<other>", or
        "failed". A retry that meets ALREADY_EXISTS (or a duplicate of
        itself) counts as acknowledged: the first try committed."""
        end, tries = time.monotonic() + deadline_s, 0
        while time.monotonic() < end:
            try:
                r = await self.stub.Enroll(enroll_request(sid, vec), timeout=10)
            except grpc.aio.AioRpcError as exc:
                if exc.code() == grpc.StatusCode.ALREADY_EXISTS and tries:
                    return "enrolled"
                if exc.code() not in RETRYABLE:
                    tally.notes.append(f"enroll {exc.code().name}: {exc.details()[:80]}")
                    return "failed"
                tries += 1
                tally.retries += 1
                await asyncio.sleep(min(0.2 * tries, 2))
                continue
            if r.enrolled:
                return "enrolled"
            other = r.duplicate_of.subject_id
            return "enrolled" if other == sid else f"duplicate:{other}"
        return "failed"

    async def identify(
        self, vec: np.ndarray, timeout: float = 10
    ) -> identity_pb2.IdentifyResponse | None:
        try:
            return await self.stub.Identify(identity_pb2.IdentifyRequest(sample=sample(vec), top_k=1),
                                            timeout=timeout)  # fmt: skip
        except grpc.aio.AioRpcError:
            return None

    async def delete(self, sid: str) -> identity_pb2.DeleteResponse | None:
        for tries in range(30):
            try:
                return await self.stub.Delete(identity_pb2.DeleteRequest(subject_id=sid,
                                                                         reason="reliability"),
                                              timeout=30)  # fmt: skip
            except grpc.aio.AioRpcError as exc:
                if exc.code() == grpc.StatusCode.NOT_FOUND and tries:
                    return None  # the first try erased it
                if exc.code() not in RETRYABLE:
                    return None
                await asyncio.sleep(0.5)
        return None


async def verify_searchable(client: Client, subjects: dict[str, np.ndarray], tally: Tally,
                            settle_s: float = 60) -> None:  # fmt: skip
    """Every acknowledged subject must come back as the best candidate of
    a search with its own template; within ``settle_s`` (the cluster heals
    first), else it is lost. A complete answer naming someone else is wrong."""
    pending = dict(subjects)
    end = time.monotonic() + settle_s
    while pending and time.monotonic() < end:
        for sid, vec in list(pending.items()):
            r = await client.identify(vec)
            if r is None:
                continue
            top = r.candidates[0].subject_id if r.candidates else ""
            if top == sid:
                pending.pop(sid)
            elif r.complete and top and r.candidates[0].is_match:
                tally.wrong += 1
                tally.notes.append(f"{sid}: a complete search named another subject")
                pending.pop(sid)
        if pending:
            await asyncio.sleep(1)
    tally.lost += len(pending)


async def mixed_identifies(client: Client, known: dict[str, float], vecs: dict[str, np.ndarray],
                           tally: Tally, stop: asyncio.Event, min_age_s: float = 5.0) -> int:  # fmt: skip
    """Identifies of subjects acknowledged at least ``min_age_s`` ago, until
    ``stop``: a complete answer that misses them is wrong, an incomplete one
    is flagged partial."""
    n = 0
    rng = np.random.default_rng(7)
    while not stop.is_set():
        now = time.monotonic()
        old = [s for s, t in list(known.items()) if now - t >= min_age_s and s in vecs]
        if not old:
            await asyncio.sleep(0.2)
            continue
        sid = old[int(rng.integers(len(old)))]
        r = await client.identify(vecs[sid], timeout=5)
        n += 1
        if r is None:
            continue
        top = r.candidates[0].subject_id if r.candidates else ""
        if not r.complete:
            tally.partial += 1
        elif top != sid:
            tally.wrong += 1
    return n
