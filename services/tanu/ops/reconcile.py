"""``tanu reconcile``: the store and every searcher replica compared by
per-partition digest (``tanu.core.digest``: count, XOR and sum of a mix of
each template id), with no id list over NATS; the rebalance's verification
uses the same comparison.

A difference is narrowed down by id ranges: both sides give the digests of
16 sub-ranges of a differing range, and a range is listed (its ids sent)
only once it holds at most ``LIST_BELOW`` ids. ``--repair`` then fixes what
it found through the event stream, so every replica and every later
rebuild agrees: the store re-publishes the ADDED events of the subjects
holding templates a replica lacks (``Republish``; applying is idempotent,
replicas that have them ignore them), and publishes one subject-less
REMOVED event for templates a replica holds that the store does not (only
ids up to the store's highest: removing a higher id would block it when the
store issues it; those are reported, not removed).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from tanu.clients.search import SearchClient
from tanu.clients.store import StoreClient
from tanu.core import bus, digest
from tanu.v1 import common_pb2, store_pb2

WINDOW_S = 0.5  # how long every replica of a partition has to answer
LIST_BELOW = 64  # ids per range before a range is listed (a reply lists 16k ids at most)
MAX_FOUND = 10_000  # ids one narrowing collects at most (repair in rounds beyond)


@dataclass
class Difference:
    partition: int
    replica: str
    problem: str  # "no replica", "not caught up", "digest"
    store_count: int = 0
    replica_count: int = 0
    missing: list[int] = field(default_factory=list)  # the store holds, the replica lacks
    extra: list[int] = field(default_factory=list)  # the replica holds, the store does not

    def line(self) -> str:
        where = f"partition {self.partition}" + (f" replica {self.replica}" if self.replica else "")
        if self.problem != "digest":
            return f"{where}: {self.problem}"
        return (f"{where}: {self.replica_count} templates, the store {self.store_count}"
                f" ({len(self.missing)} missing, {len(self.extra)} not the store's)")  # fmt: skip


@dataclass
class Check:
    ok: bool
    partitions: int
    templates: int = 0
    replicas: dict[int, int] = field(default_factory=dict)
    differences: list[Difference] = field(default_factory=list)

    @property
    def problems(self) -> list[str]:
        return [d.line() for d in self.differences]


def _whole(partitions: int, k: int, ranges=(), list_below: int = 0) -> common_pb2.DigestRequest:
    return common_pb2.DigestRequest(partitions=partitions, partition=k, list_below=list_below,
                                    ranges=[common_pb2.IdRange(lo=a, hi=b) for a, b in ranges])  # fmt: skip


async def _replica(searchers: SearchClient, req, name: str) -> common_pb2.DigestResponse | None:
    for r in await searchers.digests(req, WINDOW_S):
        if r.replica == name:
            return r
    return None


async def narrow(store: StoreClient, searchers: SearchClient, partitions: int, k: int,
                 name: str, hi: int) -> tuple[list[int], list[int]]:  # fmt: skip
    """The ids the store holds and replica ``name`` lacks, and the reverse,
    found by range digests below ``hi``."""
    missing: list[int] = []
    extra: list[int] = []
    todo = [(0, hi)]
    while todo and len(missing) + len(extra) < MAX_FOUND:
        batch, todo = todo[: digest.MAX_RANGES // 16], todo[digest.MAX_RANGES // 16 :]
        sub = [r for lo, h in batch for r in digest.split(lo, h)]
        req = _whole(partitions, k, sub, LIST_BELOW)
        mine = await store.digest(req)
        theirs = await _replica(searchers, req, name)
        if theirs is None:
            break
        for a, b in zip(mine.ranges, theirs.ranges, strict=True):
            if digest.same(a, b):
                continue
            listed_a = a.count == 0 or len(a.template_ids) == a.count
            listed_b = b.count == 0 or len(b.template_ids) == b.count
            if listed_a and listed_b:
                missing += sorted(set(a.template_ids) - set(b.template_ids))
                extra += sorted(set(b.template_ids) - set(a.template_ids))
            else:
                todo.append((a.lo, a.hi))
    return missing, extra


async def compare(nc, store: StoreClient, partitions: int, find_ids: bool = False) -> Check:
    """Every partition's digest in the store against every replica's
    answering for it under ``partitions``; with ``find_ids`` each
    difference is narrowed down to the ids."""
    searchers = SearchClient(nc, WINDOW_S)
    check = Check(True, partitions)
    for k in range(partitions):
        mine = (await store.digest(_whole(partitions, k))).ranges[0]
        check.templates += mine.count
        replicas = await searchers.digests(_whole(partitions, k), WINDOW_S)
        check.replicas[k] = len(replicas)
        if not replicas:
            check.differences.append(Difference(k, "", "no searcher answers"))
        for r in sorted(replicas, key=lambda r: r.replica):
            theirs = r.ranges[0]
            if not r.caught_up:
                check.differences.append(Difference(k, r.replica, "not caught up"))
            elif not digest.same(mine, theirs):
                d = Difference(k, r.replica, "digest", mine.count, theirs.count)
                if find_ids:
                    hi = max(mine.max_id, theirs.max_id) + 1
                    d.missing, d.extra = await narrow(
                        store, searchers, partitions, k, r.replica, hi
                    )
                check.differences.append(d)
    check.ok = not check.differences
    return check


async def repair(store: StoreClient, check: Check) -> store_pb2.RepublishResponse:
    """Re-publishes what the differences found lack, and removes what they
    hold that the store does not (through the stream, for every replica)."""
    total = store_pb2.RepublishResponse()
    by_part: dict[int, tuple[set[int], set[int]]] = {}
    for d in check.differences:
        m, e = by_part.setdefault(d.partition, (set(), set()))
        m.update(d.missing)
        e.update(d.extra)
    for k, (missing, extra) in sorted(by_part.items()):
        ms, es = sorted(missing), sorted(extra)
        for i in range(0, max(len(ms), len(es)), 500):
            r = await store.republish(store_pb2.RepublishRequest(
                template_ids=ms[i:i + 500], remove_template_ids=es[i:i + 500], partition=k))  # fmt: skip
            total.subjects += r.subjects
            total.templates += r.templates
            total.removed += r.removed
            total.refused += r.refused
    return total


async def run(nats_url: str, partitions: int, do_repair: bool, wait_s: float, say=print) -> int:
    """The CLI: report, and with ``do_repair`` repair then check again until
    equal or ``wait_s`` passes. Exit code 0: equal; 1: differences left."""
    nc = await bus.connect(nats_url, "tanu-reconcile")
    store = StoreClient(nc, 60.0)
    try:
        check = await compare(nc, store, partitions, find_ids=do_repair)
        say(f"{check.templates} templates in {partitions} partitions; replicas: {check.replicas}")
        for line in check.problems:
            say("  " + line)
        if check.ok:
            say("equal: every replica holds exactly its partition of the store")
            return 0
        if not do_repair:
            say("differences found; run with --repair to repair them")
            return 1
        r = await repair(store, check)
        say(f"repair: re-published {r.templates} templates of {r.subjects} subjects, "
            f"removed {r.removed} the store does not hold")  # fmt: skip
        if r.refused:
            say(f"  {r.refused} foreign templates have ids above the store's highest and were not "
                "removed (a removal would block those ids when the store issues them): find the "
                "forged events in the stream, delete them, and restart the replicas that hold them")  # fmt: skip
        end = asyncio.get_running_loop().time() + wait_s
        while True:
            await asyncio.sleep(0.5)
            check = await compare(nc, store, partitions)
            if check.ok or asyncio.get_running_loop().time() > end:
                break
        say("equal after repair" if check.ok else "still: " + "; ".join(check.problems[:8]))
        return 0 if check.ok else 1
    finally:
        await nc.close()
