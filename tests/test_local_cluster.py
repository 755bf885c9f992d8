"""`tanu up` as a newcomer runs it: a real nats-server and every service as a
subprocess; the CLI verbs against it; SIGTERM stops everything cleanly."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from photos import encode, originals

from conftest import near, unit_vectors
from helpers import ROOT, read_until

pytestmark = pytest.mark.slow

TANU = [sys.executable, "-m", "tanu.ops.cli"]
MODEL_DIR = str(ROOT / "var" / "models")

CONSENT = ("--dob", "1990-01-01", "--evidence", "form-1")


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
        env={**os.environ, "TANU_MODEL_DIR": MODEL_DIR},
        text=True,
    )
    try:
        out = read_until(up, "Tanu is up", 120)
        assert "Tanu is up" in out, out
        assert f"port {busy_port} for the gateway is taken; using" in out

        status = tanu(var, "status", "--json")
        assert status.returncode == 0, status.stderr
        services = json.loads(status.stdout)["services"]
        assert {s["name"] for s in services} == {
            "store",
            "searcher-p0-r0",
            "searcher-p1-r0",
            "detector",
            "embedder",
            "gateway",
        }
        assert all(s["health"] == "SERVING" for s in services)

        a, b = unit_vectors(2, seed=4)
        np.save(tmp_path / "a.npy", a)
        np.save(tmp_path / "a2.npy", near(a))
        np.save(tmp_path / "b.npy", b)
        np.save(tmp_path / "short.npy", a[:10])
        r = tanu(var, "enroll", "alice", str(tmp_path / "a.npy"), "--json", *CONSENT)
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout)["enrolled"] is True
        dup = tanu(var, "enroll", "alias", str(tmp_path / "a2.npy"), *CONSENT)
        assert dup.returncode == 3 and "matches alice" in dup.stdout
        assert tanu(var, "enroll", "bob", str(tmp_path / "b.npy"), *CONSENT).returncode == 0
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

        # Photos: one at a time, then a folder with one file that is no photo.
        people = originals()
        (tmp_path / "hopper.jpg").write_bytes(encode(people["hopper"]))
        r = tanu(var, "enroll", "grace", str(tmp_path / "hopper.jpg"), *CONSENT)
        assert r.returncode == 0 and "enrolled grace" in r.stdout, r.stdout + r.stderr
        folder = tmp_path / "photos"
        folder.mkdir()
        (folder / "eileen.jpg").write_bytes(encode(people["astronaut"]))
        (folder / "grace-again.png").write_bytes(encode(people["hopper"], "PNG"))
        (folder / "broken.jpg").write_bytes(b"not a photo")
        bulk = tanu(var, "enroll", "--dir", str(folder), *CONSENT)
        assert bulk.returncode == 1, bulk.stdout + bulk.stderr
        assert "enrolled 1 of 3; 2 failed" in bulk.stdout
        assert "broken.jpg: INVALID_ARGUMENT: bytes are not a JPEG or PNG image" in bulk.stdout
        assert "grace-again.png: duplicate of grace" in bulk.stdout
        who = json.loads(tanu(var, "identify", str(folder / "eileen.jpg"), "--json").stdout)
        assert who["candidates"][0]["subject_id"] == "eileen"
        secret = a.astype("<f4").tobytes().hex()
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
    assert '"event": "service_stopped"' in store_log and '"service": "store"' in store_log
    # Logs are JSON lines and never carry template bytes, in any encoding.
    import base64

    raw = a.astype("<f4").tobytes()
    needles = [secret[:32], base64.b64encode(raw)[:24].decode(), f"{a[0]:.6f}", f"{a[1]:.5f}"]
    for log in (var / "logs").glob("*.log"):
        text = log.read_text()
        if log.name != "nats-server.log":
            for line in text.splitlines():
                json.loads(line)
        for n in needles:
            assert n not in text, f"{log.name} holds template data"


def test_status_without_a_cluster_says_how_to_start_one(tmp_path):
    r = tanu(tmp_path / "none", "status")
    assert r.returncode == 1 and "tanu up" in r.stderr
