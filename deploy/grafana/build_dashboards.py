"""Writes the Grafana dashboards in dashboards/ (run after editing this file;
tests/test_deploy_grafana.py fails when the JSON is out of date).

    python deploy/grafana/build_dashboards.py

Every panel queries the Prometheus data source `${datasource}`; metric names
are those of tanu.core.metrics (docs/metrics.md) and the recording rules in
deploy/prometheus/rules/tanu.rules.yml.
"""

from __future__ import annotations

import json
from pathlib import Path

OUT = Path(__file__).resolve().parent / "dashboards"
RI = "$__rate_interval"


def target(expr: str, legend: str = "") -> dict:
    return {"datasource": {"type": "prometheus", "uid": "${datasource}"}, "expr": expr,
            "legendFormat": legend, "refId": "A"}  # fmt: skip


def panel(title: str, exprs: list[tuple[str, str]], unit: str = "short", kind: str = "timeseries",
          desc: str = "") -> dict:  # fmt: skip
    targets = []
    for i, (expr, legend) in enumerate(exprs):
        t = target(expr, legend)
        t["refId"] = chr(ord("A") + i)
        targets.append(t)
    return {"type": kind, "title": title, "description": desc,
            "datasource": {"type": "prometheus", "uid": "${datasource}"},
            "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
            "options": {}, "targets": targets}  # fmt: skip


def q(metric: str, quantile: float, by: str, sel: str = 'job="tanu"') -> str:
    return (f"histogram_quantile({quantile}, sum by (le, {by}) "
            f"(rate({metric}_bucket{{{sel}}}[{RI}])))")  # fmt: skip


def dashboard(uid: str, title: str, rows: list[tuple[str, list[dict]]]) -> dict:
    panels, y, pid = [], 0, 1
    for row_title, row_panels in rows:
        panels.append({"type": "row", "title": row_title, "id": pid, "collapsed": False,
                       "gridPos": {"h": 1, "w": 24, "x": 0, "y": y}, "panels": []})  # fmt: skip
        pid += 1
        y += 1
        width = 24 // min(len(row_panels), 3)
        for i, p in enumerate(row_panels):
            p = dict(p, id=pid)
            p["gridPos"] = {"h": 8, "w": width, "x": (i % 3) * width, "y": y + (i // 3) * 8}
            panels.append(p)
            pid += 1
        y += 8 * ((len(row_panels) + 2) // 3)
    return {
        "uid": uid, "title": title, "tags": ["tanu"], "timezone": "browser",
        "schemaVersion": 39, "version": 1, "editable": True, "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "templating": {"list": [{"name": "datasource", "type": "datasource",
                                 "query": "prometheus", "label": "Prometheus"}]},
        "annotations": {"list": []}, "links": [], "panels": panels,
    }  # fmt: skip


GW = 'job="tanu",service="gateway"'


def overview() -> dict:
    return dashboard(
        "tanu-overview",
        "Tanu / Overview (SLOs)",
        [
            (
                "Service level",
                [
                    panel(
                        "Identify/Verify slower than objective (5m)",
                        [("tanu:gateway_slow_requests:ratio_rate5m", "{{method}}")],
                        "percentunit",
                        desc="Objective: 99% of Identify within 1 s, Verify within 0.5 s.",
                    ),
                    panel(
                        "Error budget burn rate (1h)",
                        [("tanu:gateway_slow_requests:ratio_rate1h / 0.01", "{{method}}")],
                        "short",
                        desc="1 = spending the 30-day budget exactly; 14.4 pages.",
                    ),
                    panel(
                        "Server-side error ratio",
                        [('tanu:rpc_errors:ratio_rate5m{service="gateway"}', "{{method}}")],
                        "percentunit",
                    ),
                ],
            ),
            (
                "Traffic",
                [
                    panel(
                        "Requests by method",
                        [
                            (
                                f"sum by (method) (rate(tanu_rpc_requests_total{{{GW}}}[{RI}]))",
                                "{{method}}",
                            )
                        ],
                        "reqps",
                    ),
                    panel(
                        "Requests by status",
                        [
                            (
                                f"sum by (code) (rate(tanu_rpc_requests_total{{{GW}}}[{RI}]))",
                                "{{code}}",
                            )
                        ],
                        "reqps",
                    ),
                    panel(
                        "Gateway latency p99",
                        [(q("tanu_rpc_duration_seconds", 0.99, "method", GW), "{{method}}")],
                        "s",
                    ),
                ],
            ),
            (
                "Health",
                [
                    panel(
                        "Partial searches",
                        [
                            (
                                f'sum(rate(tanu_search_partial_total{{job="tanu"}}[{RI}]))',
                                "partial/s",
                            )
                        ],
                        "reqps",
                    ),
                    panel(
                        "Live searcher replicas per partition",
                        [
                            (
                                'count by (partition) (tanu_stream_lag_events{job="tanu"})',
                                "p{{partition}}",
                            )
                        ],
                    ),
                    panel("Targets up", [('sum by (component) (up{job="tanu"})', "{{component}}")]),
                ],
            ),
        ],
    )


def search() -> dict:
    return dashboard(
        "tanu-search",
        "Tanu / Search",
        [
            (
                "Gallery",
                [
                    panel(
                        "Templates per partition",
                        [
                            (
                                'max by (partition) (tanu_gallery_templates{job="tanu"})',
                                "p{{partition}}",
                            )
                        ],
                    ),
                    panel(
                        "Stream lag per replica",
                        [('tanu_stream_lag_events{job="tanu"}', "p{{partition}} {{replica}}")],
                    ),
                    panel(
                        "Snapshot age",
                        [
                            (
                                'time() - tanu_snapshot_timestamp_seconds{job="tanu"}',
                                "p{{partition}} {{replica}}",
                            )
                        ],
                        "s",
                    ),
                ],
            ),
            (
                "FAISS",
                [
                    panel(
                        "FAISS search p50/p99",
                        [
                            (
                                q("tanu_faiss_search_seconds", 0.5, "partition"),
                                "p50 p{{partition}}",
                            ),
                            (
                                q("tanu_faiss_search_seconds", 0.99, "partition"),
                                "p99 p{{partition}}",
                            ),
                        ],
                        "s",
                    ),
                    panel(
                        "Queries per FAISS call (mean)",
                        [
                            (
                                f'sum by (batcher) (rate(tanu_batch_size_sum{{job="tanu",batcher=~"search-.*"}}[{RI}])) / sum by (batcher) (rate(tanu_batch_size_count{{job="tanu",batcher=~"search-.*"}}[{RI}]))',
                                "{{batcher}}",
                            )
                        ],
                    ),
                    panel(
                        "Search queue depth",
                        [
                            (
                                'tanu_batch_queue_depth{job="tanu",batcher=~"search-.*|identify|dedup"}',
                                "{{batcher}} {{instance}}",
                            )
                        ],
                    ),
                ],
            ),
            (
                "Scatter",
                [
                    panel(
                        "NATS search round trip p99",
                        [
                            (
                                q(
                                    "tanu_nats_request_duration_seconds",
                                    0.99,
                                    "operation",
                                    'job="tanu",operation="search"',
                                ),
                                "search",
                            )
                        ],
                        "s",
                    ),
                    panel(
                        "Partial searches",
                        [
                            (
                                f'sum(rate(tanu_search_partial_total{{job="tanu"}}[{RI}]))',
                                "partial/s",
                            )
                        ],
                        "reqps",
                    ),
                    panel(
                        "Best identify score",
                        [
                            (
                                q(
                                    "tanu_match_score",
                                    0.5,
                                    "operation",
                                    'job="tanu",operation="identify"',
                                ),
                                "median",
                            )
                        ],
                        desc="Distance for l2 (lower is closer), similarity for cosine.",
                    ),
                ],
            ),
        ],
    )


def enrolment() -> dict:
    enroll = 'job="tanu",service="gateway",method="Enroll"'
    return dashboard(
        "tanu-enrolment",
        "Tanu / Enrolment pipeline",
        [
            (
                "Enrolments",
                [
                    panel(
                        "Enrol by status",
                        [
                            (
                                f"sum by (code) (rate(tanu_rpc_requests_total{{{enroll}}}[{RI}]))",
                                "{{code}}",
                            )
                        ],
                        "reqps",
                    ),
                    panel(
                        "Enrol latency p50/p99",
                        [
                            (q("tanu_rpc_duration_seconds", 0.5, "method", enroll), "p50"),
                            (q("tanu_rpc_duration_seconds", 0.99, "method", enroll), "p99"),
                        ],
                        "s",
                    ),
                    panel(
                        "Internal calls p99",
                        [
                            (
                                q("tanu_nats_request_duration_seconds", 0.99, "operation"),
                                "{{operation}}",
                            )
                        ],
                        "s",
                    ),
                ],
            ),
            (
                "Face pipeline",
                [
                    panel(
                        "Model run time p99",
                        [(q("tanu_model_inference_seconds", 0.99, "model"), "{{model}}")],
                        "s",
                    ),
                    panel(
                        "Model batch size (mean)",
                        [
                            (
                                f'sum by (batcher) (rate(tanu_batch_size_sum{{job="tanu",batcher=~"detector|embedder"}}[{RI}])) / sum by (batcher) (rate(tanu_batch_size_count{{job="tanu",batcher=~"detector|embedder"}}[{RI}]))',
                                "{{batcher}}",
                            )
                        ],
                    ),
                    panel(
                        "Model queue depth",
                        [
                            (
                                'sum by (batcher) (tanu_batch_queue_depth{job="tanu",batcher=~"detector|embedder"})',
                                "{{batcher}}",
                            )
                        ],
                    ),
                ],
            ),
            (
                "Outbox and stream",
                [
                    panel(
                        "Outbox pending",
                        [('max(tanu_outbox_pending_events{job="tanu"})', "pending")],
                    ),
                    panel(
                        "Events published",
                        [
                            (
                                f'sum(rate(tanu_events_published_total{{job="tanu"}}[{RI}]))',
                                "events/s",
                            )
                        ],
                        "ops",
                    ),
                    panel(
                        "Max stream lag",
                        [
                            (
                                'max by (partition) (tanu_stream_lag_events{job="tanu"})',
                                "p{{partition}}",
                            )
                        ],
                    ),
                ],
            ),
        ],
    )


def security() -> dict:
    return dashboard(
        "tanu-security",
        "Tanu / Security",
        [
            (
                "Refusals",
                [
                    panel(
                        "Denials by reason",
                        [
                            (
                                f'sum by (reason) (rate(tanu_denials_total{{job="tanu"}}[{RI}]))',
                                "{{reason}}",
                            )
                        ],
                        "reqps",
                    ),
                    panel(
                        "Denials by operation",
                        [
                            (
                                f'sum by (operation) (rate(tanu_denials_total{{job="tanu"}}[{RI}]))',
                                "{{operation}}",
                            )
                        ],
                        "reqps",
                    ),
                    panel(
                        "Rate-limited by tenant",
                        [
                            (
                                f'sum by (tenant) (rate(tanu_rate_limited_total{{job="tanu"}}[{RI}]))',
                                "{{tenant}}",
                            )
                        ],
                        "reqps",
                    ),
                ],
            ),
            (
                "Subjects",
                [
                    panel(
                        "Verify lockouts (1h)",
                        [('sum(increase(tanu_verify_lockouts_total{job="tanu"}[1h]))', "lockouts")],
                    ),
                    panel(
                        "Biometric lock changes (1h)",
                        [
                            (
                                'sum by (action) (increase(tanu_biometric_lock_changes_total{job="tanu"}[1h]))',
                                "{{action}}",
                            )
                        ],
                    ),
                    panel(
                        "Erasures (1h)",
                        [
                            (
                                'sum by (reason) (increase(tanu_erasures_total{job="tanu"}[1h]))',
                                "{{reason}}",
                            )
                        ],
                    ),
                ],
            ),
            (
                "Audit and keys",
                [
                    panel(
                        "Audit checkpoint age",
                        [
                            (
                                'time() - max(tanu_audit_checkpoint_timestamp_seconds{job="tanu"})',
                                "age",
                            )
                        ],
                        "s",
                        "stat",
                        desc="Alert TanuAuditCheckpointStale above 2 h.",
                    ),
                    panel(
                        "Audit entries",
                        [(f'sum(rate(tanu_audit_entries_total{{job="tanu"}}[{RI}]))', "entries/s")],
                        "ops",
                    ),
                    panel(
                        "Key re-wraps (total)",
                        [('sum(tanu_key_rewraps_total{job="tanu"})', "re-wrapped")],
                        "short",
                        "stat",
                        desc="Rises to the number of subjects during `tanu keys rotate`.",
                    ),
                ],
            ),
        ],
    )


def infrastructure() -> dict:
    return dashboard(
        "tanu-infrastructure",
        "Tanu / Infrastructure",
        [
            (
                "Processes",
                [
                    panel(
                        "Resident memory",
                        [
                            (
                                'process_resident_memory_bytes{job="tanu"}',
                                "{{component}} {{instance}}",
                            )
                        ],
                        "bytes",
                    ),
                    panel(
                        "CPU",
                        [
                            (
                                f'rate(process_cpu_seconds_total{{job="tanu"}}[{RI}])',
                                "{{component}} {{instance}}",
                            )
                        ],
                        "percentunit",
                    ),
                    panel(
                        "Open file descriptors",
                        [
                            (
                                'process_open_fds{job="tanu"} / process_max_fds{job="tanu"}',
                                "{{component}} {{instance}}",
                            )
                        ],
                        "percentunit",
                    ),
                ],
            ),
            (
                "Disk",
                [
                    panel(
                        "Free disk",
                        [('tanu_disk_free_bytes{job="tanu"}', "{{instance}} {{path}}")],
                        "bytes",
                    ),
                    panel(
                        "Days until full (6h trend)",
                        [
                            (
                                'tanu_disk_free_bytes{job="tanu"} / clamp_min(-deriv(tanu_disk_free_bytes{job="tanu"}[6h]), 1e-9) / 86400',
                                "{{instance}} {{path}}",
                            )
                        ],
                        "d",
                    ),
                    panel(
                        "Uptime",
                        [
                            (
                                'time() - process_start_time_seconds{job="tanu"}',
                                "{{component}} {{instance}}",
                            )
                        ],
                        "s",
                    ),
                ],
            ),
            (
                "NATS",
                [
                    panel(
                        "NATS round trip p99",
                        [
                            (
                                q("tanu_nats_request_duration_seconds", 0.99, "operation"),
                                "{{operation}}",
                            )
                        ],
                        "s",
                    ),
                    panel(
                        "Events published / outbox",
                        [
                            (
                                f'sum(rate(tanu_events_published_total{{job="tanu"}}[{RI}]))',
                                "published/s",
                            ),
                            ('max(tanu_outbox_pending_events{job="tanu"})', "outbox pending"),
                        ],
                    ),
                    panel(
                        "Stream lag",
                        [
                            (
                                'sum by (partition) (tanu_stream_lag_events{job="tanu"})',
                                "p{{partition}}",
                            )
                        ],
                    ),
                ],
            ),
        ],
    )


DASHBOARDS = {
    "overview.json": overview,
    "search.json": search,
    "enrolment.json": enrolment,
    "security.json": security,
    "infrastructure.json": infrastructure,
}


def render() -> dict[str, str]:
    return {name: json.dumps(fn(), indent=2) + "\n" for name, fn in DASHBOARDS.items()}


if __name__ == "__main__":
    OUT.mkdir(exist_ok=True)
    for name, text in render().items():
        (OUT / name).write_text(text)
        print(f"wrote {OUT / name}")
