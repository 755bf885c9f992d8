"""The local cluster: ``tanu up`` (NATS and every service in the
foreground, supervised by ``tanu.ops.local``) and ``tanu status``."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from ..local import STATE_FILE, health_status, read_state, up


def cmd_up(args) -> int:
    if args.partitions < 1 or args.replicas < 1:
        print("error: --partitions and --replicas must be at least 1", file=sys.stderr)
        return 2
    return up(Path(args.var), args.partitions, args.replicas, args.port, args.nats_port)


def cmd_status(args) -> int:
    state = read_state(Path(args.var))
    if state is None:
        print(
            f"no local cluster is running (no {Path(args.var) / STATE_FILE}); start one with `tanu up`",
            file=sys.stderr,
        )
        return 1
    rows = [
        {
            "name": s["name"],
            "address": f"127.0.0.1:{s['grpc_port']}",
            "metrics_port": s["metrics_port"],
            "health": health_status(f"127.0.0.1:{s['grpc_port']}"),
        }
        for s in state["services"]
    ]
    if args.json:
        print(
            json.dumps(
                {
                    "nats_url": state["nats_url"],
                    "gateway": state["gateway"],
                    "rest": state.get("rest"),
                    "services": rows,
                },  # fmt: skip
                indent=2,
            )
        )
    else:
        print(f"NATS {state['nats_url']}    Identity API {state['gateway']}    "
              f"REST {state.get('rest', '-')}")  # fmt: skip
        for r in rows:
            print(
                f"  {r['name']:<16} {r['health']:<12} {r['address']:<18} metrics :{r['metrics_port']}"
            )
    return 0 if all(r["health"] == "SERVING" for r in rows) else 1


def add_parsers(sub) -> None:
    u = sub.add_parser("up", help="start a local cluster (NATS + every service) in the foreground")
    u.set_defaults(run=cmd_up)
    u.add_argument("--partitions", type=int, default=int(os.environ.get("TANU_PARTITIONS", "4")))
    u.add_argument("--replicas", type=int, default=1, help="searcher replicas per partition")
    u.add_argument(
        "--port", type=int, default=50051, help="gateway gRPC port (a free one if taken)"
    )
    u.add_argument("--nats-port", type=int, default=4222, help="NATS port (a free one if taken)")
    s = sub.add_parser("status", help="health of every service of the local cluster")
    s.set_defaults(run=cmd_status)
    s.add_argument("--json", action="store_true")
