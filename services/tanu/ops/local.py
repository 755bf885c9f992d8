"""``tanu up``: a whole cluster on one machine. A nats-server (JetStream on,
data under ``./var``) and every service as a subprocess, each with its own
gRPC and metrics port; logs under ``var/logs``; the layout of the running
cluster in ``var/cluster.json`` for ``tanu status`` and the CLI verbs.

A service that dies, and nats-server too, is restarted with back-off, at
most 5 times a minute (``tanu.ops.restarts``); past that it is given up on,
``var/cluster.json`` says why (``tanu status`` shows it and exits non-zero)
and it is tried again once a minute. Ctrl-C or
SIGTERM stops everything in order: gateway, searchers, store, then NATS,
each with SIGTERM and a grace period.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from .natsd import NatsServer, bindable, free_port, port_in_use
from .restarts import RestartBudget

STATE_FILE = "cluster.json"
# How long a service may take to say SERVING; a searcher builds its
# partition's index first (as helm/tanu's searcher.startupSeconds allows).
SERVICE_STARTUP_S = 60.0
SEARCHER_STARTUP_S = 3600.0


def read_state(var: Path) -> dict | None:
    """The running local cluster's state (``var/cluster.json``: NATS URL,
    gateway and REST addresses, each service's ports and pid), or None when
    no local cluster is running there."""
    path = var / STATE_FILE
    if not path.exists():
        return None
    return json.loads(path.read_text())


@dataclass
class Proc:
    """One service process of the cluster."""

    name: str
    module: str
    grpc_port: int
    metrics_port: int
    env: dict[str, str] = field(default_factory=dict)
    restarts: int = 0
    pid: int = 0
    given_up: str = ""


def choose_port(wanted: int, what: str, say) -> int:
    """``wanted`` if free; otherwise a free port, saying so."""
    if wanted and not port_in_use(wanted):
        return wanted
    port = free_port()
    if wanted:
        say(f"port {wanted} for {what} is taken; using {port} instead")
    return port


def last_lines(log: Path, count: int = 8) -> str:
    """The end of a service's log, indented, to show why it stopped (a
    service's log holds no templates, tokens or keys)."""
    try:
        lines = log.read_text(errors="replace").splitlines()[-count:]
    except OSError:
        return ""
    return "".join(f"\n    {line[:300]}" for line in lines)


def health_status(address: str, timeout: float = 1.0, service: str = "") -> str:
    """SERVING, NOT_SERVING, or why it could not be asked (of the server,
    or of one ``service`` its health names)."""
    try:
        with grpc.insecure_channel(address) as ch:
            r = health_pb2_grpc.HealthStub(ch).Check(
                health_pb2.HealthCheckRequest(service=service), timeout=timeout
            )
        return health_pb2.HealthCheckResponse.ServingStatus.Name(r.status)
    except grpc.RpcError as exc:
        return f"DOWN ({exc.code().name})"


class LocalCluster:
    def __init__(
        self,
        var: Path,
        partitions: int,
        replicas: int,
        gateway_port: int,
        nats_port: int,
        env: dict[str, str],
        say=print,
        rest_port: int = 0,
    ) -> None:
        self.var = var
        self.partitions = partitions
        self.replicas = replicas
        self.gateway_port = gateway_port
        self.nats_port = nats_port
        self.base_env = env
        self.model_dir = env.get("TANU_MODEL_DIR") or str(var / "models")
        self.secret_env: dict[str, str] = {}
        self.rest_port = rest_port
        self.say = say
        self.nats: NatsServer | None = None
        self.procs: list[Proc] = []
        self.running: dict[str, subprocess.Popen] = {}
        self.budgets: dict[str, RestartBudget] = {}
        self._due: dict[str, float] = {}  # name -> when to start it again
        self._since: dict[str, float] = {}  # name -> when it was last started
        self._nats_restarts = 0
        self._stop = False

    def _plan(self, nats_url: str) -> list[Proc]:
        common = {
            **self.base_env,
            "TANU_NATS_URL": nats_url,
            "TANU_PARTITIONS": str(self.partitions),
            "TANU_STORE_DB": str(self.var / "store.sqlite3"),
            "TANU_MODEL_DIR": self.model_dir,
            "PYTHONUNBUFFERED": "1",
            # Every listener on loopback: gRPC, REST and metrics alike.
            "TANU_GRPC_HOST": "127.0.0.1",
            "TANU_METRICS_HOST": "127.0.0.1",
            **self.secret_env,
        }
        procs = [Proc("store", "tanu.store", free_port(), free_port(), dict(common))]
        # Searchers share this machine's cores: more FAISS threads than cores
        # in total makes every search slower. OpenBLAS (the exact kernel's
        # matrix products) lets its idle threads sleep at once instead of
        # spinning ~0.1 s after each call, which took a core from the
        # gateway, the store and NATS between searches.
        threads = str(max(1, (os.cpu_count() or 1) // (self.partitions * self.replicas)))
        for p in range(self.partitions):
            for r in range(self.replicas):
                env = {
                    "TANU_FAISS_THREADS": threads,
                    "OMP_NUM_THREADS": threads,
                    "OPENBLAS_THREAD_TIMEOUT": "4",
                    "TANU_SNAPSHOT_DIR": str(self.var / "snapshots"),
                    **common,
                    "TANU_PARTITION": str(p),
                    "TANU_REPLICA": f"r{r}",
                }
                procs.append(
                    Proc(f"searcher-p{p}-r{r}", "tanu.searcher", free_port(), free_port(), env)
                )
        # Two model services share the cores left: one onnxruntime thread
        # pool each, sized so they do not oversubscribe the machine.
        onnx_threads = str(max(1, (os.cpu_count() or 1) // 2))
        for name in ("detector", "embedder"):
            env = {"TANU_ONNX_THREADS": onnx_threads, **common}
            procs.append(Proc(name, f"tanu.{name}", free_port(), free_port(), env))
        gw = choose_port(self.gateway_port, "the gateway", self.say)
        self.rest_port = choose_port(self.rest_port or 0, "the REST facade", self.say)
        procs.append(Proc("gateway", "tanu.gateway", gw, free_port(), dict(common)))
        return procs

    def _claim_ports(self, proc: Proc) -> None:
        """Fresh ports for those of ``proc``'s that another socket has taken
        since they were chosen (an outgoing connection's ephemeral port
        comes from the same range as a free port), saying so."""
        for attr, what in (("grpc_port", "gRPC"), ("metrics_port", "metrics")):
            port = getattr(proc, attr)
            if not bindable(port):
                setattr(proc, attr, free_port())
                self.say(
                    f"port {port} for {proc.name} {what} is taken; using {getattr(proc, attr)}"
                )
        proc.env.update(
            TANU_GRPC_PORT=str(proc.grpc_port), TANU_METRICS_PORT=str(proc.metrics_port)
        )
        if proc.module == "tanu.gateway":
            if not bindable(self.rest_port):
                port, self.rest_port = self.rest_port, free_port()
                self.say(f"port {port} for the REST facade is taken; using {self.rest_port}")
            proc.env["TANU_REST_PORT"] = str(self.rest_port)

    def _lost_port(self, proc: Proc) -> bool:
        """Whether ``proc``, which has exited, could not have listened on
        its ports: another socket holds one of them now."""
        ports = [proc.grpc_port, proc.metrics_port]
        if proc.module == "tanu.gateway":
            ports.append(self.rest_port)
        return not all(bindable(port) for port in ports)

    def _start_one(self, proc: Proc, attempts: int = 3) -> None:
        """Starts ``proc`` and waits until it is SERVING. A start that
        failed because another socket took one of its ports in the
        meantime is tried again on fresh ports."""
        # A searcher rebuilds its partition before it says SERVING (minutes
        # for millions of templates: the chart's searcher.startupSeconds).
        wait = SEARCHER_STARTUP_S if proc.module == "tanu.searcher" else SERVICE_STARTUP_S
        for attempt in range(1, attempts + 1):
            self._spawn(proc)
            try:
                self._wait_serving(proc, wait)
                return
            except RuntimeError:
                child = self.running[proc.name]
                if child.poll() is None or attempt == attempts or not self._lost_port(proc):
                    raise
                self.say(f"{proc.name} could not listen: a port was taken; starting it again")

    def _spawn(self, proc: Proc) -> None:
        self._claim_ports(proc)
        logs = self.var / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        out = open(logs / f"{proc.name}.log", "ab")  # noqa: SIM115 - owned by the child
        child = subprocess.Popen(
            [sys.executable, "-m", proc.module],
            env=proc.env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        out.close()
        proc.pid = child.pid
        self.running[proc.name] = child
        self._since[proc.name] = time.monotonic()

    def _wait_serving(self, proc: Proc, timeout: float) -> None:
        start = time.monotonic()
        end = start + timeout
        status, said = "", False
        while time.monotonic() < end and not self._stop:
            if not said and time.monotonic() - start > 10:
                said = True
                self.say(f"{proc.name:<15} starting (building its index from the stream or a "
                         f"snapshot); waiting up to {timeout:.0f}s")  # fmt: skip
            child = self.running[proc.name]
            if child.poll() is not None:
                raise RuntimeError(
                    f"{proc.name} exited with code {child.returncode}; see var/logs/{proc.name}.log"
                    + last_lines(self.var / "logs" / f"{proc.name}.log")
                )
            status = health_status(f"127.0.0.1:{proc.grpc_port}", 0.5)
            if status == "SERVING":
                return
            time.sleep(0.1)
        raise RuntimeError(f"{proc.name} is not SERVING after {timeout:.0f}s (last: {status})")

    def write_state(self) -> None:
        assert self.nats
        nats = self.budgets.get("nats-server")
        state = {
            "nats_url": self.nats.url,
            "nats": {
                "pid": self.nats.proc.pid if self.nats.proc else 0,
                "restarts": self._nats_restarts,
                "given_up": nats.given_up if nats else "",
            },
            "gateway": f"127.0.0.1:{self.procs[-1].grpc_port}",
            "rest": f"http://127.0.0.1:{self.rest_port}",
            "supervisor_pid": os.getpid(),
            "services": [{k: v for k, v in asdict(p).items() if k != "env"} for p in self.procs],
        }
        # Atomically: `tanu status` and the CLI read it while it is rewritten.
        tmp = self.var / (STATE_FILE + ".tmp")
        tmp.write_text(json.dumps(state, indent=2))
        os.replace(tmp, self.var / STATE_FILE)

    def start(self) -> None:
        from tanu.face.models import prepare

        self.var.mkdir(parents=True, exist_ok=True)
        prepare(self.model_dir, say=lambda m: None)
        # Master keyring, audit and token-issuer keys, the snapshot key, the
        # tenant registry and an operator token for the CLI: the local
        # cluster keeps them beside its data, readable by its owner only.
        # (Production: they come from the secret store, never the data volume.)
        from tanu.core import natsroles, secrets

        self.secret_env = secrets.provision(self.var / "keys")
        # One NATS identity per service role; each service reads its own.
        creds = natsroles.provision(self.var / "keys" / "nats", self.partitions)
        self.secret_env["TANU_NATS_CREDENTIALS_DIR"] = str(creds)
        tls_cert, tls_key = (
            self.base_env.get(f"TANU_NATSD_TLS_{k}_FILE", "") for k in ("CERT", "KEY")
        )
        port = choose_port(self.nats_port, "NATS", self.say)
        self.nats = NatsServer(
            self.var / "nats", port=port, log_file=self.var / "logs" / "nats-server.log",
            encryption_key=(self.var / "keys" / "jetstream.key").read_text().strip(),
            auth_dir=creds, tls_cert_file=tls_cert, tls_key_file=tls_key,
        )  # fmt: skip
        (self.var / "logs").mkdir(parents=True, exist_ok=True)
        self.nats.start(say=self.say)
        self._nats_restarts = 0
        self._since["nats-server"] = time.monotonic()
        self.say(f"nats-server     {self.nats.url} (JetStream, data in {self.var / 'nats'})")
        self.procs = self._plan(self.nats.url)
        for proc in self.procs:
            self._start_one(proc)
            self.say(
                f"{proc.name:<15} SERVING  grpc 127.0.0.1:{proc.grpc_port}  metrics :{proc.metrics_port}"
            )
        self.write_state()

    def watch(self) -> None:
        """Restarts services (and nats-server) that die, until asked to stop."""
        while not self._stop:
            changed = self._watch_nats()
            for proc in self.procs:
                if self._stop:
                    break
                changed |= self._watch_one(proc)
            if changed:
                self.write_state()
            time.sleep(0.2)

    def _budget(self, name: str) -> RestartBudget:
        return self.budgets.setdefault(name, RestartBudget())

    def _exited(self, name: str, code: int | None) -> None:
        budget, now = self._budget(name), time.monotonic()
        was = budget.given_up
        self._due[name] = budget.next_start(now, code)
        if budget.given_up and not was:
            self.say(f"{name} keeps failing: {budget.given_up}")
        elif not budget.given_up:
            self.say(f"{name} exited with code {code}; restarting")

    def _watch_one(self, proc: Proc) -> bool:
        """One look at ``proc``; whether the cluster state changed."""
        budget, now = self._budget(proc.name), time.monotonic()
        child = self.running.get(proc.name)
        if child is not None and child.poll() is None:
            was = budget.given_up
            budget.running(now, self._since.get(proc.name, now))
            proc.given_up = budget.given_up
            return was != budget.given_up
        if child is not None:  # it has just exited
            self.running.pop(proc.name)
            self._exited(proc.name, child.returncode)
            proc.given_up = budget.given_up
            return True
        if now < self._due.get(proc.name, 0):
            return False
        budget.started(now)
        proc.restarts += 1
        self._spawn(proc)
        return True

    def _watch_nats(self) -> bool:
        """nats-server, supervised like every service (same port, same data)."""
        if self.nats is None or self._stop:
            return False
        budget, now, name = self._budget("nats-server"), time.monotonic(), "nats-server"
        proc = self.nats.proc
        if proc is not None and proc.poll() is None:
            was = budget.given_up
            budget.running(now, self._since.get(name, now))
            return was != budget.given_up
        if proc is not None:
            self.nats.proc = None
            self._exited(name, proc.returncode)
            return True
        if now < self._due.get(name, 0):
            return False
        budget.started(now)
        self._nats_restarts += 1
        try:
            self.nats.start(say=self.say)
            self._since[name] = now
        except (RuntimeError, TimeoutError, OSError) as exc:
            self.say(f"nats-server did not start again: {exc}")
            failed, self.nats.proc = self.nats.proc, None
            if failed is not None and failed.poll() is None:
                failed.kill()
            self._exited(name, None)
        return True

    def request_stop(self, *_args) -> None:
        self._stop = True

    def stop(self) -> None:
        for proc in reversed(self.procs):
            child = self.running.pop(proc.name, None)
            if child is None or child.poll() is not None:
                continue
            child.send_signal(signal.SIGTERM)
            try:
                child.wait(15)
            except subprocess.TimeoutExpired:
                self.say(f"{proc.name} did not stop in 15s; killing it")
                child.kill()
                child.wait()
            self.say(f"{proc.name:<15} stopped")
        if self.nats:
            self.nats.stop()
            self.say("nats-server     stopped")
        state = self.var / STATE_FILE
        if state.exists():
            state.unlink()


def up(var: Path, partitions: int, replicas: int, gateway_port: int, nats_port: int) -> int:
    cluster = LocalCluster(
        var,
        partitions,
        replicas,
        gateway_port,
        nats_port,
        {k: v for k, v in os.environ.items()},
        say=lambda m: print(m, flush=True),
    )
    signal.signal(signal.SIGTERM, cluster.request_stop)
    signal.signal(signal.SIGINT, cluster.request_stop)
    try:
        cluster.start()
        gw = cluster.procs[-1].grpc_port
        print(
            f"\nTanu is up: Identity API (gRPC) on 127.0.0.1:{gw}, partner REST on "
            f"http://127.0.0.1:{cluster.rest_port}; logs in {var / 'logs'}. Ctrl-C stops.",
            flush=True,
        )
        cluster.watch()
        return 0
    except (RuntimeError, TimeoutError, OSError) as exc:
        print(f"tanu up failed: {exc}", file=sys.stderr, flush=True)
        return 1
    finally:
        print("stopping...", flush=True)
        cluster.stop()
