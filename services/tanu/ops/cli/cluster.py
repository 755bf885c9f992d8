"""The local cluster: ``tanu up`` (NATS and every service in the
foreground, supervised by ``tanu.ops.local``) and ``tanu status``."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from ..local import STATE_FILE, health_status, read_state, up
from ..natsd import port_in_use

# What the gateway's health says per dependency (tanu.gateway.service).
GATEWAY_CHECKS = {"tanu.gateway.store": "no store answers", "tanu.gateway.layout":
                  "its partition layout differs from the cluster's"}  # fmt: skip


def _why(service: dict, health: str) -> str:
    """Why a service is not SERVING, as far as the supervisor and the
    service's own health checks say."""
    if service.get("given_up"):
        return service["given_up"]
    if service["name"] == "gateway" and health == "NOT_SERVING":
        addr = f"127.0.0.1:{service['grpc_port']}"
        down = [why for name, why in GATEWAY_CHECKS.items()
                if health_status(addr, service=name) == "NOT_SERVING"]  # fmt: skip
        # Neither dependency check failed: the gateway has lost NATS.
        return "; ".join(down) if down else "the message bus is down"
    return ""


def _nats(state: dict) -> dict:
    port = int(state["nats_url"].rsplit(":", 1)[1])
    nats = state.get("nats", {})
    up_ = port_in_use(port)
    return {"health": "UP" if up_ else "DOWN", "restarts": nats.get("restarts", 0),
            "reason": nats.get("given_up") or ("" if up_ else "the message bus is down")}  # fmt: skip


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
    rows = []
    for s in state["services"]:
        health = health_status(f"127.0.0.1:{s['grpc_port']}")
        rows.append({"name": s["name"], "address": f"127.0.0.1:{s['grpc_port']}",
                     "metrics_port": s["metrics_port"], "health": health,
                     "restarts": s.get("restarts", 0),
                     "reason": _why(s, health) if health != "SERVING" or s.get("given_up") else ""})  # fmt: skip
    nats = _nats(state)
    if args.json:
        print(
            json.dumps(
                {
                    "nats_url": state["nats_url"],
                    "gateway": state["gateway"],
                    "rest": state.get("rest"),
                    "nats": nats,
                    "services": rows,
                },  # fmt: skip
                indent=2,
            )
        )
    else:
        print(f"NATS {state['nats_url']}    Identity API {state['gateway']}    "
              f"REST {state.get('rest', '-')}")  # fmt: skip
        print(f"  {'nats-server':<16} {nats['health']:<12} {state['nats_url']:<18}"
              + (f"  {nats['reason']}" if nats["reason"] else ""))  # fmt: skip
        for r in rows:
            print(
                f"  {r['name']:<16} {r['health']:<12} {r['address']:<18} metrics :{r['metrics_port']}"
                + (f"  {r['reason']}" if r["reason"] else "")
            )
    ok = nats["health"] == "UP" and not nats["reason"]
    return 0 if ok and all(r["health"] == "SERVING" and not r["reason"] for r in rows) else 1


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
