"""The Prometheus side of operations: the alert rules and scrape configs in
deploy/prometheus pass promtool (Debian's `prometheus` package, installed by
`make test`), the rules' unit tests pass, every alert links to its runbook
section, and a real Prometheus scrapes a real local cluster (`tanu up`) and
answers Tanu metrics through its HTTP API, with the committed rules loaded."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import yaml

from tanu.ops.natsd import free_port

from helpers import ROOT

PROM = ROOT / "deploy" / "prometheus"
RULES = PROM / "rules" / "tanu.rules.yml"
OPERATIONS = ROOT / "docs" / "operations.md"


def tool(name: str) -> str:
    path = shutil.which(name)
    assert path, f"{name} is not on PATH: `make test` installs Debian's prometheus package"
    return path


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, cwd=cwd, timeout=120)


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def alerts() -> list[dict]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [r for g in groups for r in g["rules"] if "alert" in r]


def test_rules_pass_promtool_check():
    r = run(tool("promtool"), "check", "rules", str(RULES))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SUCCESS" in r.stdout


def test_rules_unit_tests_pass():
    r = run(tool("promtool"), "test", "rules", "tanu.rules.test.yml", cwd=RULES.parent)
    assert r.returncode == 0, r.stdout + r.stderr


def test_local_scrape_config_passes_promtool_check():
    r = run(tool("promtool"), "check", "config", str(PROM / "prometheus.local.yml"))
    assert r.returncode == 0, r.stdout + r.stderr


def test_kubernetes_scrape_config_passes_promtool_with_file_discovery_in_its_place(tmp_path):
    # Debian's promtool has no Kubernetes discovery; everything else in the
    # file (relabelling regexes, actions, target labels, rule files) is checked.
    config = yaml.safe_load((PROM / "prometheus.yml").read_text())
    swapped = 0
    for job in config["scrape_configs"]:
        if job.pop("kubernetes_sd_configs", None) is not None:
            job["file_sd_configs"] = [{"files": ["pods.json"]}]
            swapped += 1
    assert swapped >= 1
    tanu_job = next(j for j in config["scrape_configs"] if j["job_name"] == "tanu")
    targets = {rc.get("target_label") for rc in tanu_job["relabel_configs"]}
    # the labels the rules join on
    assert {"component", "namespace", "pod", "container"} <= targets
    (tmp_path / "rules").mkdir()
    shutil.copy(RULES, tmp_path / "rules" / RULES.name)
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    r = run(tool("promtool"), "check", "config", str(tmp_path / "prometheus.yml"))
    assert r.returncode == 0, r.stdout + r.stderr


def test_every_alert_has_a_severity_and_a_runbook_section():
    anchors = {
        github_anchor(line.lstrip("#"))
        for line in OPERATIONS.read_text().splitlines()
        if line.startswith("#")
    }
    names = [a["alert"] for a in alerts()]
    assert len(names) == len(set(names)) >= 10
    for a in alerts():
        assert a["labels"]["severity"] in {"critical", "warning"}, a["alert"]
        url = a["annotations"]["runbook_url"]
        page, _, anchor = url.partition("#")
        assert page == "docs/operations.md", (a["alert"], url)
        assert anchor == a["alert"].lower(), (a["alert"], url)
        assert anchor in anchors, f"docs/operations.md has no section for {a['alert']}"


# ---- a real Prometheus against a real local cluster -------------------------


def query(base: str, promql: str) -> list[dict]:
    url = f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
    with urllib.request.urlopen(url, timeout=5) as resp:
        body = json.load(resp)
    assert body["status"] == "success", body
    return body["data"]["result"]


def wait_for(what: str, fn, timeout: float = 90.0):
    """Polls ``fn`` until it returns something true; fails naming ``what``."""
    end = time.monotonic() + timeout
    last = None
    while time.monotonic() < end:
        try:
            last = fn()
        except OSError as exc:  # Prometheus not listening yet
            last = exc
        else:
            if last:
                return last
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}; last: {last!r}")


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.mark.slow
def test_prometheus_scrapes_a_local_cluster_and_answers_tanu_metrics(tmp_path):
    var = tmp_path / "var"
    up = subprocess.Popen(
        [sys.executable, "-m", "tanu.ops.cli", "--var", str(var), "up",
         "--partitions", "2", "--port", "0", "--nats-port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={**os.environ, "TANU_MODEL_DIR": str(ROOT / "var" / "models")},
        text=True,
    )  # fmt: skip
    prom = None
    try:
        lines = []
        for line in up.stdout:
            lines.append(line)
            if "Tanu is up" in line:
                break
        assert any("Tanu is up" in x for x in lines), "".join(lines)
        cluster = json.loads((var / "cluster.json").read_text())

        # The committed local configuration and rules, with targets written
        # by the committed helper from the cluster's own state file.
        conf = tmp_path / "prometheus"
        shutil.copytree(PROM, conf, ignore=shutil.ignore_patterns("targets", "*.test.yml"))
        r = run(sys.executable, str(PROM / "local_targets.py"), str(var / "cluster.json"),
                str(conf / "targets" / "tanu.json"))  # fmt: skip
        assert r.returncode == 0, r.stderr
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        prom = subprocess.Popen(
            [tool("prometheus"), f"--config.file={conf / 'prometheus.local.yml'}",
             f"--storage.tsdb.path={tmp_path / 'tsdb'}", f"--web.listen-address=127.0.0.1:{port}"],
            stdout=subprocess.DEVNULL,
            stderr=open(tmp_path / "prometheus.log", "wb"),  # noqa: SIM115 - the child owns it
        )  # fmt: skip

        services = len(cluster["services"])
        ups = wait_for(
            f"all {services} Tanu targets up",
            lambda: (res := query(base, 'up{job="tanu"} == 1')) and len(res) == services and res,
        )
        assert {x["metric"]["component"] for x in ups} == {
            "store", "searcher", "detector", "embedder", "gateway"
        }  # fmt: skip

        # Every partition's searcher reports its lag (0: caught up), the mark
        # of a live replica that the partition alerts rely on.
        lag = wait_for(
            "tanu_stream_lag_events of both partitions",
            lambda: (res := query(base, "tanu_stream_lag_events")) and len(res) == 2 and res,
        )
        assert sorted(x["metric"]["partition"] for x in lag) == ["0", "1"]
        assert {x["metric"]["component"] for x in lag} == {"searcher"}
        assert all(float(x["value"][1]) == 0 for x in lag)

        # The RPC counter of the gateway: `tanu up` asked its gRPC health
        # until it said SERVING, and every unary call is counted.
        checks = wait_for(
            "the gateway's health Check counter",
            lambda: query(
                base, 'tanu_rpc_requests_total{component="gateway",method="Check",code="OK"}'
            ),
        )
        assert float(checks[0]["value"][1]) >= 1
        assert checks[0]["metric"]["service"] == "gateway"
        assert np.isfinite(float(query(base, "max(process_resident_memory_bytes)")[0]["value"][1]))

        # The committed rules load and evaluate against the live series.
        def rules_evaluated():
            with urllib.request.urlopen(f"{base}/api/v1/rules", timeout=5) as resp:
                groups = json.load(resp)["data"]["groups"]
            rules = [r for g in groups for r in g["rules"]]
            return len(rules) >= 20 and all(r.get("lastEvaluation", "0001").startswith("20")
                                            for r in rules) and rules  # fmt: skip

        rules = wait_for("every rule evaluated", rules_evaluated)
        assert all(r["health"] == "ok" for r in rules), [
            (r["name"], r.get("lastError")) for r in rules if r["health"] != "ok"
        ]
        firing = query(base, 'ALERTS{alertname=~"TanuPartitionMissing|TanuSearchPartial"}')
        assert firing == []
    finally:
        if prom is not None:
            stop(prom)
        stop(up)
