"""``tanu partitions rebalance --to P2``, ``tanu partitions finish`` and
``tanu partitions abort``: the command line of ``tanu.ops.repartition``."""

from __future__ import annotations

import asyncio

from tanu.core import bus

from .. import repartition
from .client import nats_url


def cmd_partitions(args) -> int:
    url = nats_url(args)
    if args.action == "abort":

        async def abort() -> None:
            nc = await bus.connect(url, "tanu-rebalance")
            try:
                await repartition.abort(nc.jetstream())
            finally:
                await nc.close()

        asyncio.run(abort())
        print("rebalance aborted; stop the staging searchers")
        return 0
    if args.action == "finish":
        return asyncio.run(repartition.finish_cli(url, args.wait))
    if not args.to:
        print("error: rebalance needs --to P (the new partition count)")
        return 2
    return asyncio.run(repartition.rebalance(url, args.to, args.wait))


def add_parsers(sub) -> None:
    pp = sub.add_parser("partitions", help="move the gallery to another partition count")
    pp.set_defaults(run=cmd_partitions)
    pp.add_argument("action", choices=["rebalance", "finish", "abort"])
    pp.add_argument("--to", type=int, help="rebalance: the new partition count")
    pp.add_argument("--nats", help="NATS URL (default: the local cluster's, or TANU_NATS_URL)")
    pp.add_argument("--store-db",
                    help="deprecated and ignored: the store is asked over NATS, not read from its file")  # fmt: skip
    pp.add_argument("--wait", type=float, default=600.0,
                    help="seconds to wait for the staging searchers to hold every subject "
                         "(finish: for the store to publish the re-published events)")  # fmt: skip
