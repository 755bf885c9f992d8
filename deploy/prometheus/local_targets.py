"""Writes a Prometheus file_sd target list for a local Tanu cluster.

Reads ``var/cluster.json`` (written by ``tanu up``: every service with its
metrics port) and writes one target group per service with the labels the
rules in rules/tanu.rules.yml expect (``component``; the job is ``tanu``).

    python deploy/prometheus/local_targets.py var/cluster.json deploy/prometheus/targets/tanu.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def component(name: str) -> str:
    """``searcher-p0-r1`` -> ``searcher``; other services keep their name."""
    return name.split("-", 1)[0]


def targets(cluster: dict, host: str = "127.0.0.1") -> list[dict]:
    groups = []
    for svc in cluster["services"]:
        if svc.get("metrics_port", -1) <= 0:
            continue
        groups.append(
            {
                "targets": [f"{host}:{svc['metrics_port']}"],
                "labels": {"component": component(svc["name"]), "process": svc["name"]},
            }
        )
    return groups


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    cluster = json.loads(Path(argv[1]).read_text())
    out = Path(argv[2])
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(targets(cluster), indent=2))
    tmp.replace(out)  # Prometheus must never read a half-written file
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
