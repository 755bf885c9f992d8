"""The Grafana dashboards in deploy/grafana: valid JSON, up to date with
their generator, every query valid PromQL (promtool) and every metric it
reads exported by tanu.core.metrics (or recorded by the Prometheus rules)."""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess

import pytest
import yaml

from tanu.core.metrics import Metrics

from helpers import ROOT

GRAFANA = ROOT / "deploy" / "grafana"
RULES = ROOT / "deploy" / "prometheus" / "rules" / "tanu.rules.yml"
EXPECTED = {
    "overview.json",
    "search.json",
    "enrolment.json",
    "security.json",
    "infrastructure.json",
}
KEYWORDS = {"and", "or", "unless", "bool", "offset", "inf", "nan"}
# Prometheus's own series (one per scrape target), not a Tanu metric.
PROMETHEUS_SERIES = {"up"}


def dashboards() -> dict[str, dict]:
    return {p.name: json.loads(p.read_text()) for p in (GRAFANA / "dashboards").glob("*.json")}


def exprs() -> list[tuple[str, str, str]]:
    out = []
    for name, d in dashboards().items():
        for p in d["panels"]:
            for t in p.get("targets", []):
                out.append((name, p["title"], t["expr"]))
    return out


def metric_names(expr: str) -> set[str]:
    """Series names an expression reads: identifiers that are neither
    functions, keywords, label names, strings nor durations."""
    e = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    e = re.sub(r"\{[^}]*\}", "", e)
    e = re.sub(r"\[[^\]]*\]", "", e)
    e = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", e)
    names = set()
    for m in re.finditer(r"(?<![\w.$])[a-zA-Z_:][a-zA-Z0-9_:]*", e):
        if e[m.end() :].lstrip().startswith("(") or m.group(0) in KEYWORDS:
            continue
        names.add(m.group(0))
    return names


def exported() -> tuple[set[str], set[str]]:
    """(every sample name Metrics.create() exports, its histogram families)."""
    names, histograms = set(), set()
    for family in Metrics.create().registry.collect():
        names.add(family.name)
        if family.type == "counter":
            names.add(family.name + "_total")
        if family.type == "histogram":
            histograms.add(family.name)
        names.update(s.name for s in family.samples)
    return names, histograms


def recorded() -> set[str]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return {r["record"] for g in groups for r in g["rules"] if "record" in r}


def test_the_five_dashboards_are_valid_json_with_unique_uids_and_queries():
    ds = dashboards()
    assert set(ds) == EXPECTED
    assert len({d["uid"] for d in ds.values()}) == len(ds)
    for name, d in ds.items():
        panels = [p for p in d["panels"] if p["type"] != "row"]
        assert len(panels) >= 6, name
        ids = [p["id"] for p in d["panels"]]
        assert len(ids) == len(set(ids)), name
        for p in panels:
            assert p["targets"] and all(t["expr"].strip() for t in p["targets"]), (name, p)


def test_dashboards_are_up_to_date_with_their_generator():
    spec = importlib.util.spec_from_file_location(
        "build_dashboards", GRAFANA / "build_dashboards.py"
    )
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    for name, text in mod.render().items():
        assert (GRAFANA / "dashboards" / name).read_text() == text, (
            f"{name} is stale: run .venv/bin/python deploy/grafana/build_dashboards.py"
        )


def test_metric_names_are_found_in_expressions():
    # the extractor itself, on the shapes the dashboards use
    assert metric_names(
        'histogram_quantile(0.99, sum by (le, method) (rate(tanu_rpc_duration_seconds_bucket{job="tanu",le="1e-3"}[$__rate_interval])))'
    ) == {"tanu_rpc_duration_seconds_bucket"}
    assert metric_names("a_total / on (x) group_left () b:c:d > 1e-9 and bool up") == {
        "a_total", "b:c:d", "up"
    }  # fmt: skip


def test_every_dashboard_metric_is_exported_by_tanu_or_recorded_by_the_rules():
    names, histograms = exported()
    rules = recorded()
    seen = set()
    for dash, title, expr in exprs():
        for m in metric_names(expr):
            seen.add(m)
            if ":" in m:
                assert m in rules, f"{dash} / {title}: {m} is not a recording rule"
                continue
            if m in PROMETHEUS_SERIES:
                continue
            base = re.sub(r"_(bucket|sum|count)$", "", m)
            assert m in names or base in histograms, (
                f"{dash} / {title}: {m} is not exported by tanu.core.metrics"
            )
    # the security dashboard shows every security metric
    security = {m for d, _, e in exprs() if d == "security.json" for m in metric_names(e)}
    assert {
        "tanu_denials_total", "tanu_rate_limited_total", "tanu_verify_lockouts_total",
        "tanu_biometric_lock_changes_total", "tanu_erasures_total", "tanu_key_rewraps_total",
        "tanu_audit_checkpoint_timestamp_seconds", "tanu_audit_entries_total",
    } <= security  # fmt: skip
    assert {"process_resident_memory_bytes", "tanu_disk_free_bytes"} <= seen


def test_every_dashboard_query_is_valid_promql(tmp_path):
    promtool = shutil.which("promtool")
    assert promtool, "promtool is not on PATH: `make test` installs Debian's prometheus package"
    rules = [
        {"record": f"dashboard:q{i}", "expr": e.replace("$__rate_interval", "5m")}
        for i, (_, _, e) in enumerate(exprs())
    ]
    path = tmp_path / "dashboards.rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}))
    r = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.parametrize("name", ["dashboards.yml", "datasources.yml"])
def test_provisioning_files_are_valid(name):
    doc = yaml.safe_load((GRAFANA / "provisioning" / name).read_text())
    assert doc["apiVersion"] == 1
    if name == "dashboards.yml":
        (provider,) = doc["providers"]
        assert provider["type"] == "file" and provider["options"]["path"]
    else:
        assert doc["datasources"][0]["type"] == "prometheus"
