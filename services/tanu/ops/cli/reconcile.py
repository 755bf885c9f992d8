"""``tanu reconcile [--repair]``: the command line of ``tanu.ops.reconcile``
(the store and every searcher replica compared by per-partition digest)."""

from __future__ import annotations

import asyncio

from tanu.core import bus, clusterconfig

from .. import reconcile
from .client import nats_url


async def _partitions(url: str) -> int:
    nc = await bus.connect(url, "tanu-reconcile")
    try:
        current, _ = await clusterconfig.read_layout(nc.jetstream())
    finally:
        await nc.close()
    if current is None:
        raise SystemExit("error: the cluster has no layout; give --partitions")
    return int(current["partitions"])


def cmd_reconcile(args) -> int:
    url = nats_url(args)
    parts = args.partitions or asyncio.run(_partitions(url))
    return asyncio.run(reconcile.run(url, parts, args.repair, args.wait))


def add_parsers(sub) -> None:
    p = sub.add_parser("reconcile", help="compare the store with every searcher by digest")
    p.set_defaults(run=cmd_reconcile)
    p.add_argument("--repair", action="store_true",
                   help="re-publish what replicas lack, remove what the store does not hold")  # fmt: skip
    p.add_argument("--partitions", type=int, help="the layout (default: the cluster's)")
    p.add_argument("--nats", help="NATS URL (default: the local cluster's, or TANU_NATS_URL)")
    p.add_argument("--wait", type=float, default=30.0,
                   help="seconds to wait for the replicas to agree after a repair")  # fmt: skip
