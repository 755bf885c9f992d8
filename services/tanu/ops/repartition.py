"""``tanu partitions rebalance --to P2`` and ``tanu partitions finish``:
move the gallery from P to P2 partitions with no subject lost and search
answering throughout, and leave a stream whose every event is routed under
P2, so each searcher reads its own partition's events only.

1. ``begin``: records the target layout in the cluster configuration (NATS
   KV ``tanu_cluster``, key ``layout.next``).
2. The operator starts P2 x R *staging* searchers (``TANU_PARTITIONS=P2
   TANU_SEARCHER_STAGING=true``, NATS role ``searcher-staging``). Each reads
   every partition's template events (``tanu.events.templates.*``: the
   events were routed under P) and keeps those whose subject falls in its
   partition under P2 (``partition_of(subject_id, P2)``); it answers gRPC
   and its stats subject but stays out of the search queue group. The old
   searchers keep serving.
3. ``verify``: every template the store holds is in exactly the staging
   partition its subject maps to under P2, in every replica: compared by
   per-partition digest (``tanu.ops.reconcile``), so no id list crosses
   NATS whatever the partition's size.
4. ``switch``: ``layout`` becomes P2 and records in ``routed`` every
   partition count the stream's events were routed with; staging searchers
   join the queue groups ``searcher-p<k>``, the old ones leave theirs.
   While ``routed`` names another count, only staging replicas start (an
   ordinary one, whose credentials read its own partition only, refuses).
5. The store migrates its record of the layout (its partition count and
   each subject's partition; ``MigrateLayout`` over NATS); the store and
   gateways restart with ``TANU_PARTITIONS=P2``, and the old searchers stop.
6. ``finish`` (``tanu partitions finish``), once the store runs with P2:
   re-publishes every subject's template event under its P2 partition
   (``Republish`` with ``partitions=P2``, a page of subjects at a time,
   progress in ``layout.republish`` so that a retry resumes), waits until
   the store's outbox has put them all on the stream, purges every template
   event older than the first re-published one (``cut``: all events routed
   under P), and removes ``routed`` from the layout. The operator then
   restarts the searchers as ordinary replicas (role ``searcher-p<k>``,
   filter ``tanu.events.templates.p<k>``) and stops the staging ones.

   Safe to retry after a kill at any point: a subject re-published twice
   carries the same template ids, and a searcher adds a template id it
   holds (or has removed) no more than once; the purge and the layout
   update are idempotent. Erasure keeps its promise: every re-published
   message is recorded like any other (``published``), so deleting a
   subject deletes its copies on the stream; the purge removes the old
   ones, and a snapshot older than the cut is refused at restore (the
   stream no longer holds the events after it), so a searcher never misses
   a removal that was purged.

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
REPUBLISH_SUBJECTS = 200  # subjects re-published per Republish request (one store transaction)
REPUBLISH_KEY = "layout.republish"  # finish's progress: {"partitions", "cut", "after", "done", ...}
PUBLISHED_POLL_S = 0.2
MAX_REPUBLISH_IDS = 1000  # the store's limit of template ids per Republish request


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
        await _forget_progress(js)  # a new routing: an older finish's progress is void
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


async def _progress(js, partitions: int) -> dict | None:
    """The recorded progress of an interrupted ``finish`` to ``partitions``."""
    record, _ = await clusterconfig.read_layout(js, REPUBLISH_KEY)
    if record and int(record.get("partitions", 0)) == partitions:
        return record
    return None


async def _save_progress(js, progress: dict) -> None:
    kv = await clusterconfig.bucket(js)
    await kv.put(REPUBLISH_KEY, json.dumps(progress).encode())


async def _forget_progress(js) -> None:
    record, _ = await clusterconfig.read_layout(js, REPUBLISH_KEY)
    if record is not None:
        kv = await clusterconfig.bucket(js)
        await kv.delete(REPUBLISH_KEY)


async def _until_published(
    store: StoreClient, partitions: int, last_queued: int, wait_s: float
) -> bool:
    """Waits until the store's outbox has put every event up to outbox
    position ``last_queued`` on the stream (an empty ``Republish`` says
    where the outbox stands)."""
    end = asyncio.get_running_loop().time() + wait_s
    while True:
        r = await store.republish(store_pb2.RepublishRequest(partitions=partitions))
        if r.outbox_oldest_seq == 0 or r.outbox_oldest_seq > last_queued:
            return True
        if asyncio.get_running_loop().time() > end:
            return False
        await asyncio.sleep(PUBLISHED_POLL_S)


async def _forget_routing(js, partitions: int) -> dict:
    """Removes ``routed`` from the layout (compare-and-set): the stream holds
    only events routed under ``partitions`` now."""
    kv = await clusterconfig.bucket(js)
    for _ in range(10):
        current, revision = await clusterconfig.read_layout(js)
        if current is None or int(current["partitions"]) != partitions:
            raise errors.FailedPrecondition(
                "the cluster's layout changed during the rebalance's finish"
            )
        new = {k: v for k, v in current.items() if k != "routed"}
        if new == current:
            return current
        try:
            await kv.update(clusterconfig.LAYOUT_KEY, json.dumps(new).encode(), last=revision)
            return new
        except KeyWrongLastSequenceError:
            continue
    raise RuntimeError("could not update the layout: the key keeps changing")


async def finish(
    js,
    store: StoreClient,
    wait_s: float = 600.0,
    batch_subjects: int = REPUBLISH_SUBJECTS,
    say=print,
) -> dict:
    """The rebalance's last step (step 6 of the module's description):
    every subject's events re-published under the current layout, the old
    layout's events purged from the stream, ``routed`` removed. Returns the
    layout. Resumes an interrupted run; a no-op when nothing is re-routed."""
    layout, _ = await clusterconfig.read_layout(js)
    if layout is None:
        raise errors.FailedPrecondition("the cluster has no layout")
    pending, _ = await clusterconfig.read_layout(js, clusterconfig.NEXT_LAYOUT_KEY)
    if pending:
        raise errors.FailedPrecondition(
            f"the rebalance to {pending['partitions']} partitions is not switched yet"
        )
    partitions = int(layout["partitions"])
    if not clusterconfig.rerouted(layout, partitions):
        await _forget_progress(js)  # a run killed after its last step
        return layout
    if not 1 <= batch_subjects <= MAX_REPUBLISH_IDS:
        raise errors.InvalidArgument(f"batch_subjects must be 1..{MAX_REPUBLISH_IDS}")
    # Subjects enrolled by a store still running the old count move too
    # (idempotent), then the store must run with the new count (Republish
    # with ``partitions`` refuses otherwise).
    await migrate_store(store, partitions)
    progress = await _progress(js, partitions)
    if progress is None:
        state = (await js.stream_info(natsnames.EVENTS_STREAM)).state
        # Every event from here on is routed under ``partitions``: the store
        # runs with it (checked by the first Republish), and re-published
        # events come after this sequence.
        progress = {"partitions": partitions, "cut": state.last_seq + 1, "after": "",
                    "done": False, "last_queued": 0, "subjects": 0}  # fmt: skip
        await store.republish(store_pb2.RepublishRequest(partitions=partitions))  # the check
        await _save_progress(js, progress)
    elif progress["after"] or progress["done"]:
        say(f"resuming: {progress['subjects']} subjects re-published already")
    while not progress["done"]:
        page = await store.list_templates(store_pb2.ListTemplatesRequest(
            after_subject_id=progress["after"], limit=batch_subjects))  # fmt: skip
        # One template id per subject: the store re-publishes the subject's
        # whole event (every template it holds).
        firsts = [s.template_ids[0] for s in page.subjects if s.template_ids]
        if firsts:
            r = await store.republish(
                store_pb2.RepublishRequest(template_ids=firsts, partitions=partitions)
            )
            progress["last_queued"] = max(progress["last_queued"], r.outbox_last_seq)
            progress["subjects"] += r.subjects
        progress["after"] = page.next_after_subject_id
        progress["done"] = not page.next_after_subject_id
        await _save_progress(js, progress)
    if not await _until_published(store, partitions, progress["last_queued"], wait_s):
        raise errors.Unavailable(
            "the store's outbox has not published the re-published events yet; run again"
        )
    # Every event before the cut was routed under an older layout (or is
    # re-published after it): none is needed any more.
    await js.purge_stream(
        natsnames.EVENTS_STREAM, seq=int(progress["cut"]), subject=natsnames.ALL_TEMPLATE_EVENTS
    )
    new = await _forget_routing(js, partitions)
    await _forget_progress(js)
    say(f"finished: {progress['subjects']} subjects re-published under {partitions} partitions, "
        f"template events before stream sequence {progress['cut']} purged")  # fmt: skip
    return new


async def finish_cli(nats_url: str, wait_s: float, say=print) -> int:
    """``tanu partitions finish``; returns an exit code."""
    nc = await bus.connect(nats_url, "tanu-rebalance")
    try:
        await finish(nc.jetstream(), StoreClient(nc, STORE_TIMEOUT_S), wait_s, say=say)
        say("Now restart every searcher as an ordinary replica (TANU_SEARCHER_STAGING=false, its "
            "own searcher-p<k> credentials) and stop the staging ones.")  # fmt: skip
        return 0
    except errors.TanuError as exc:
        say(f"error: {exc.message}")
        return 2
    finally:
        await nc.close()


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
            f"Now restart the store and every gateway with TANU_PARTITIONS={partitions}, stop the "
            f"old searchers (they have left their queue groups), and run `tanu partitions finish`.")  # fmt: skip
        return 0
    except errors.TanuError as exc:
        say(f"error: {exc.message}")
        return 2
    finally:
        await nc.close()
