"""`tanu up` as a newcomer runs it: a real nats-server and every service as a
subprocess; the CLI verbs against it; SIGTERM stops everything cleanly."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import near, unit_vectors

pytestmark = pytest.mark.slow

TANU = [sys.executable, "-m", "tanu.cluster.cli"]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie still answers kill(0); it has exited all the same
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split()[2] != "Z"


def tanu(var: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*TANU, "--var", str(var), *args], capture_output=True, text=True, timeout=60
    )


def test_tanu_up_runs_a_cluster_that_the_cli_can_use_and_sigterm_stops(tmp_path):
    var = tmp_path / "var"
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    busy_port = taken.getsockname()[1]
    up = subprocess.Popen(
        [
            *TANU,
            "--var",
            str(var),
            "up",
            "--partitions",
            "2",
            "--port",
            str(busy_port),
            "--nats-port",
            "0",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            line = up.stdout.readline()
            if not line:
                break
            lines.append(line)
            if "Tanu is up" in line:
                break
        out = "".join(lines)
        assert "Tanu is up" in out, out
        assert f"port {busy_port} for the gateway is taken; using" in out

        status = tanu(var, "status", "--json")
        assert status.returncode == 0, status.stderr
        services = json.loads(status.stdout)["services"]
        assert {s["name"] for s in services} == {
            "store",
            "searcher-p0-r0",
            "searcher-p1-r0",
            "gateway",
        }
        assert all(s["health"] == "SERVING" for s in services)

        a, b = unit_vectors(2, seed=4)
        np.save(tmp_path / "a.npy", a)
        np.save(tmp_path / "a2.npy", near(a))
        np.save(tmp_path / "b.npy", b)
        np.save(tmp_path / "short.npy", a[:10])
        r = tanu(var, "enroll", "alice", str(tmp_path / "a.npy"), "--json")
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout)["enrolled"] is True
        dup = tanu(var, "enroll", "alias", str(tmp_path / "a2.npy"))
        assert dup.returncode == 3 and "matches alice" in dup.stdout
        assert tanu(var, "enroll", "bob", str(tmp_path / "b.npy")).returncode == 0
        found = json.loads(
            tanu(var, "identify", str(tmp_path / "a2.npy"), "--top-k", "2", "--json").stdout
        )
        assert found["candidates"][0]["subject_id"] == "alice" and found["complete"] is True
        v = json.loads(tanu(var, "verify", "bob", str(tmp_path / "a2.npy"), "--json").stdout)
        assert v["decision"] == "DECISION_NO_MATCH"
        bad = tanu(var, "identify", str(tmp_path / "short.npy"))
        assert (
            bad.returncode == 2
            and "INVALID_ARGUMENT" in bad.stderr
            and "dimension 10" in bad.stderr
        )
        assert tanu(var, "delete", "alice").returncode == 0
        gone = tanu(var, "subject", "alice")
        assert gone.returncode == 2 and "NOT_FOUND" in gone.stderr
    finally:
        pids = []
        state = var / "cluster.json"
        if state.exists():
            pids = [s["pid"] for s in json.loads(state.read_text())["services"]]
        up.send_signal(signal.SIGTERM)
        try:
            rest, _ = up.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            up.kill()
            rest, _ = up.communicate()
        taken.close()
    assert up.returncode == 0, rest
    assert "gateway" in rest and "nats-server" in rest and "stopped" in rest
    assert pids and not any(alive(p) for p in pids), "every service process must be gone"
    assert not (var / "cluster.json").exists()
    store_log = (var / "logs" / "store.log").read_text()
    assert '"event": "store_stopped"' in store_log
    # logs are JSON lines and never carry template bytes
    for line in store_log.splitlines():
        json.loads(line)


def test_status_without_a_cluster_says_how_to_start_one(tmp_path):
    r = tanu(tmp_path / "none", "status")
    assert r.returncode == 1 and "tanu up" in r.stderr
