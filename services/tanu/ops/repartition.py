"""``tanu partitions rebalance --to P2``: moves the gallery from P to P2
partitions with no subject lost and search answering throughout.

1. ``begin``: records the target layout in the cluster configuration (NATS
   KV ``tanu_cluster``, key ``layout.next``).
2. The operator starts P2 x R *staging* searchers (``TANU_PARTITIONS=P2
   TANU_SEARCHER_STAGING=true``). Each reads every partition's template
   events (``tanu.events.templates.*``: the events were routed under P) and
   keeps those whose subject falls in its partition under P2
   (``partition_of(subject_id, P2)``); it answers gRPC and its stats subject
   but stays out of the search queue group. The old searchers keep serving.
3. ``verify``: every template the store holds is in exactly the staging
   partition its subject maps to under P2, in every replica.
4. ``switch``: ``layout`` becomes P2 and records in ``routed`` every
   partition count the stream's events were routed with; staging searchers
   join the queue groups ``searcher-p<k>``, the old ones leave theirs.
   From then on searchers of this cluster always read every partition's
   events and filter (the stream holds events routed under P).
5. The store's record of the layout (SQLite ``meta`` and each subject's
   partition) is migrated; the store and gateways restart with
   ``TANU_PARTITIONS=P2``, and the old searchers stop.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

from nats.js.errors import KeyWrongLastSequenceError

from tanu.core import bus, clusterconfig, errors, ids, natsnames
from tanu.v1 import searcher_pb2


async def begin(js, partitions: int) -> dict:
    """Records the target layout; returns it. Refuses a no-op or a second,
    different rebalance."""
    current, _ = await clusterconfig.read_layout(js)
    if current is None:
        raise errors.FailedPrecondition("the cluster has no layout yet (no service has started)")
    if partitions < 1 or partitions == int(current["partitions"]):
        raise errors.InvalidArgument(
            f"the cluster already has {current['partitions']} partitions; give another count (>= 1)"
        )
    pending, _ = await clusterconfig.read_layout(js, clusterconfig.NEXT_LAYOUT_KEY)
    if pending and int(pending["partitions"]) != partitions:
        raise errors.FailedPrecondition(
            f"a rebalance to {pending['partitions']} partitions is in progress; finish or abort it first"
        )
    target = {k: current[k] for k in ("partitions", "dimension", "metric", "model_id")}
    target["partitions"] = partitions
    target["from_partitions"] = int(current["partitions"])
    kv = await clusterconfig.bucket(js)
    await kv.put(clusterconfig.NEXT_LAYOUT_KEY, json.dumps(target).encode())
    return target


async def abort(js) -> None:
    kv = await clusterconfig.bucket(js)
    await kv.delete(clusterconfig.NEXT_LAYOUT_KEY)


async def replica_stats(nc, partitions: int, partition: int, window_s: float = 0.5) -> list:
    """The Stats (with template ids) of every replica answering for one
    partition of a ``partitions``-partition layout."""
    inbox = nc.new_inbox()
    sub = await nc.subscribe(inbox)
    out = []
    try:
        req = searcher_pb2.StatsRequest(include_template_ids=True).SerializeToString()
        await nc.publish(natsnames.searcher_stats(partitions, partition), req, reply=inbox)
        end = asyncio.get_running_loop().time() + window_s
        while (left := end - asyncio.get_running_loop().time()) > 0:
            try:
                msg = await sub.next_msg(timeout=left)
            except Exception:  # noqa: BLE001 - nats TimeoutError: the window closed
                break
            if msg.headers and msg.headers.get(bus.ERROR_CODE):
                continue
            r = searcher_pb2.StatsResponse()
            r.ParseFromString(msg.data)
            out.append(r)
    finally:
        await sub.unsubscribe()
    return out


def store_templates(db_path: str | Path) -> dict[str, list[int]]:
    """subject id -> template ids, read-only from the store's SQLite file."""
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        out: dict[str, list[int]] = {}
        for sid, tid in conn.execute("SELECT subject_id, template_id FROM templates"):
            out.setdefault(sid, []).append(tid)
        return out
    finally:
        conn.close()


def expected(held: dict[str, list[int]], partitions: int) -> dict[int, set[int]]:
    """Template ids each partition must hold under ``partitions``."""
    out: dict[int, set[int]] = {k: set() for k in range(partitions)}
    for sid, tids in held.items():
        out[ids.partition_of(sid, partitions)].update(tids)
    return out


@dataclass
class Check:
    ok: bool
    partitions: int
    templates: int = 0
    replicas: dict[int, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


async def verify(nc, partitions: int, held: dict[str, list[int]]) -> Check:
    """Every template the store holds is in its subject's partition under
    ``partitions``, in every replica answering, and in no other partition."""
    want = expected(held, partitions)
    check = Check(True, partitions, sum(len(v) for v in want.values()))
    for k in range(partitions):
        replicas = await replica_stats(nc, partitions, k)
        check.replicas[k] = len(replicas)
        if not replicas:
            check.problems.append(f"partition {k}: no searcher answers")
        for r in replicas:
            have = set(r.template_ids)
            missing, extra = want[k] - have, have - want[k]
            if not r.caught_up or missing or extra:
                check.problems.append(f"partition {k} replica {r.replica}: caught_up={r.caught_up}, "
                                      f"{len(missing)} missing, {len(extra)} not its own")  # fmt: skip
    check.ok = not check.problems
    return check


async def switch(js, partitions: int) -> dict:
    """Makes ``partitions`` the cluster's layout (compare-and-set), records
    the routing history, and ends the rebalance."""
    kv = await clusterconfig.bucket(js)
    for _ in range(10):
        current, revision = await clusterconfig.read_layout(js)
        if current is None:
            raise errors.FailedPrecondition("the cluster has no layout")
        routed = sorted(
            {*map(int, current.get("routed", [])), int(current["partitions"]), partitions}
        )
        new = {**current, "partitions": partitions, "routed": routed}
        try:
            await kv.update(clusterconfig.LAYOUT_KEY, json.dumps(new).encode(), last=revision)
        except KeyWrongLastSequenceError:
            continue
        try:
            await kv.delete(clusterconfig.NEXT_LAYOUT_KEY)
        except Exception:  # noqa: BLE001 - already gone
            pass
        return new
    raise RuntimeError("could not switch the layout: the key keeps changing")


def migrate_store_db(db_path: str | Path, partitions: int) -> int:
    """The SQLite store's own record of the layout: its ``partitions`` and
    every subject's partition; returns how many subjects changed partition.
    Idempotent: run it again after the store restarts with the new count to
    fix subjects enrolled in between by a store still running the old one."""
    conn = sqlite3.connect(str(db_path), isolation_level=None)
    try:
        conn.create_function("tanu_partition", 1, lambda s: ids.partition_of(s, partitions),
                             deterministic=True)  # fmt: skip
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("UPDATE meta SET value = ? WHERE key = 'partitions'", (str(partitions),))
        moved = conn.execute(
            "UPDATE subjects SET partition = tanu_partition(subject_id) "
            "WHERE partition != tanu_partition(subject_id)"
        ).rowcount
        conn.execute("COMMIT")
        return moved
    finally:
        conn.close()


async def rebalance(nats_url: str, partitions: int, store_db: str, wait_s: float, say=print) -> int:
    """The CLI: begin, wait for the staging searchers to hold exactly what
    the store holds, switch, migrate the store's record. Returns an exit code."""
    nc = await bus.connect(nats_url, "tanu-rebalance")
    js = nc.jetstream()
    try:
        target = await begin(js, partitions)
        src = target["from_partitions"]
        say(f"rebalance {src} -> {partitions} partitions recorded in {natsnames.CLUSTER_BUCKET}/"
            f"{clusterconfig.NEXT_LAYOUT_KEY}.\nStart the staging searchers, for each k in 0..{partitions - 1}:\n"
            f"  TANU_PARTITIONS={partitions} TANU_SEARCHER_STAGING=true TANU_PARTITION=k python -m tanu.searcher\n"
            f"waiting up to {wait_s:.0f}s for them to hold every subject of {store_db} ...")  # fmt: skip
        end = asyncio.get_running_loop().time() + wait_s
        while True:
            check = await verify(nc, partitions, store_templates(store_db))
            if check.ok:
                break
            if asyncio.get_running_loop().time() > end:
                say("not switched; still: " + "; ".join(check.problems[:8]))
                say("run the command again to keep waiting, or `tanu partitions abort`")
                return 1
            await asyncio.sleep(1.0)
        say(f"verified: {check.templates} templates, each in exactly its partition of {partitions} "
            f"(replicas per partition: {check.replicas})")  # fmt: skip
        new = await switch(js, partitions)
        moved = migrate_store_db(store_db, partitions)
        say(f"switched: the layout is now {new}; {moved} subjects changed partition in the store.\n"
            f"Now restart the store and every gateway with TANU_PARTITIONS={partitions}, and stop the "
            f"old searchers (they have left their queue groups).")  # fmt: skip
        return 0
    except errors.TanuError as exc:
        say(f"error: {exc.message}")
        return 2
    finally:
        await nc.close()


def add_parser(sub) -> None:
    """``tanu partitions rebalance --to P2`` and ``tanu partitions abort``."""
    import os

    pp = sub.add_parser("partitions", help="move the gallery to another partition count")
    pp.add_argument("action", choices=["rebalance", "abort"])
    pp.add_argument("--to", type=int, help="rebalance: the new partition count")
    pp.add_argument("--nats", help="NATS URL (default: the local cluster's, or TANU_NATS_URL)")
    pp.add_argument("--store-db", default=os.environ.get("TANU_STORE_DB", "var/store.sqlite3"),
                    help="the store's SQLite file (verified against, then migrated)")  # fmt: skip
    pp.add_argument("--wait", type=float, default=600.0,
                    help="seconds to wait for the staging searchers to hold every subject")  # fmt: skip


def main(args) -> int:
    import os

    state = Path(args.var) / "cluster.json"
    url = (
        args.nats
        or (json.loads(state.read_text())["nats_url"] if state.exists() else "")
        or (os.environ.get("TANU_NATS_URL", "nats://127.0.0.1:4222"))
    )
    if args.action == "abort":

        async def _abort() -> None:
            nc = await bus.connect(url, "tanu-rebalance")
            try:
                await abort(nc.jetstream())
            finally:
                await nc.close()

        asyncio.run(_abort())
        print("rebalance aborted; stop the staging searchers")
        return 0
    if not args.to:
        print("error: rebalance needs --to P (the new partition count)")
        return 2
    return asyncio.run(rebalance(url, args.to, args.store_db, args.wait))
