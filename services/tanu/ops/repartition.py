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
   partition its subject maps to under P2, in every replica: compared by
   per-partition digest (``tanu.ops.reconcile``), so no id list crosses
   NATS whatever the partition's size.
4. ``switch``: ``layout`` becomes P2 and records in ``routed`` every
   partition count the stream's events were routed with; staging searchers
   join the queue groups ``searcher-p<k>``, the old ones leave theirs.
   From then on searchers of this cluster always read every partition's
   events and filter (the stream holds events routed under P).
5. The store migrates its record of the layout (its partition count and
   each subject's partition; ``MigrateLayout`` over NATS); the store and
   gateways restart with ``TANU_PARTITIONS=P2``, and the old searchers stop.

The store is only ever asked over NATS (``tanu.clients.store``): what it
holds comes from ``ListTemplates``, never from its database file.
"""

from __future__ import annotations

import asyncio
import json

from nats.js.errors import KeyWrongLastSequenceError

from tanu.clients.store import StoreClient
from tanu.core import bus, clusterconfig, errors, natsnames
from tanu.v1 import store_pb2

from . import reconcile
from .reconcile import Check

STORE_TIMEOUT_S = 30.0  # one page of ListTemplates
MIGRATE_TIMEOUT_S = 600.0  # MigrateLayout rewrites every subject's partition
LIST_PAGE_SUBJECTS = 1000  # subjects per ListTemplates page (well under NATS's max payload)


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


async def store_templates(store: StoreClient) -> dict[str, list[int]]:
    """subject id -> template ids of every subject the store holds, read page
    by page (``ListTemplates``)."""
    out: dict[str, list[int]] = {}
    after = ""
    while True:
        page = await store.list_templates(
            store_pb2.ListTemplatesRequest(after_subject_id=after, limit=LIST_PAGE_SUBJECTS)
        )
        for s in page.subjects:
            out[s.subject_id] = list(s.template_ids)
        after = page.next_after_subject_id
        if not after:
            return out


async def verify(nc, partitions: int, store: StoreClient) -> Check:
    """Every template the store holds is in its subject's partition under
    ``partitions``, in every replica answering, and in no other partition
    (per-partition digests: ``tanu.ops.reconcile.compare``)."""
    return await reconcile.compare(nc, store, partitions)


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


async def migrate_store(store: StoreClient, partitions: int) -> int:
    """Has the store migrate its own record of the layout (its partition
    count and every subject's partition, ``MigrateLayout``); returns how many
    subjects changed partition. Idempotent: run it again after the store
    restarts with the new count to fix subjects enrolled in between by a
    store still running the old one."""
    r = await store.migrate_layout(
        store_pb2.MigrateLayoutRequest(partitions=partitions), timeout=MIGRATE_TIMEOUT_S
    )
    return r.subjects_moved


async def rebalance(nats_url: str, partitions: int, wait_s: float, say=print) -> int:
    """The CLI: begin, wait for the staging searchers to hold exactly what
    the store holds, switch, migrate the store's record. Returns an exit code."""
    nc = await bus.connect(nats_url, "tanu-rebalance")
    js = nc.jetstream()
    store = StoreClient(nc, STORE_TIMEOUT_S)
    try:
        target = await begin(js, partitions)
        src = target["from_partitions"]
        say(f"rebalance {src} -> {partitions} partitions recorded in {natsnames.CLUSTER_BUCKET}/"
            f"{clusterconfig.NEXT_LAYOUT_KEY}.\nStart the staging searchers, for each k in 0..{partitions - 1}:\n"
            f"  TANU_PARTITIONS={partitions} TANU_SEARCHER_STAGING=true TANU_PARTITION=k python -m tanu.searcher\n"
            f"waiting up to {wait_s:.0f}s for them to hold every subject of the store ...")  # fmt: skip
        end = asyncio.get_running_loop().time() + wait_s
        while True:
            check = await verify(nc, partitions, store)
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
        moved = await migrate_store(store, partitions)
        say(f"switched: the layout is now {new}; {moved} subjects changed partition in the store.\n"
            f"Now restart the store and every gateway with TANU_PARTITIONS={partitions}, and stop the "
            f"old searchers (they have left their queue groups).")  # fmt: skip
        return 0
    except errors.TanuError as exc:
        say(f"error: {exc.message}")
        return 2
    finally:
        await nc.close()
