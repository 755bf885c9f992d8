"""Erasure in the searcher: CheckErasure says which erased template ids a replica
still keeps (in its index, or in the snapshot file on disk); a removal makes
the searcher rewrite its snapshot within TANU_SNAPSHOT_ERASURE_DELAY_S, after
which no snapshot file holds the erased vectors and a restart from it does
not bring them back."""

from __future__ import annotations

import asyncio
import base64
import os
import shutil
from dataclasses import dataclass

import grpc
import numpy as np
from test_event_stream import bulk_enrol, settle, store_ids

from tanu.core import bus, natsnames, vectors
from tanu.core.ids import partition_of
from tanu.searcher.snapshots import WRITING_LOCK
from tanu.v1 import searcher_pb2, searcher_pb2_grpc

from conftest import Cluster, env_for, unit_vectors


@dataclass
class ErasureState:
    pending_template_ids: list[int]  # of the asked ids, those the replica still keeps
    snapshot_sequence: int
    template_ids: list[int]  # every template id in the index


async def erasure_stats(searcher, ids) -> ErasureState:
    """The replica's erasure check of ``ids``, then its template ids (in
    that order: once an id is no longer pending, it is out of the index)."""
    async with grpc.aio.insecure_channel(f"127.0.0.1:{searcher.port}") as ch:
        stub = searcher_pb2_grpc.SearcherStub(ch)
        check = await stub.CheckErasure(searcher_pb2.ErasureCheckRequest(template_ids=ids))
        stats = await stub.Stats(searcher_pb2.StatsRequest(include_template_ids=True))
    return ErasureState(
        list(check.pending_template_ids), check.snapshot_sequence, list(stats.template_ids)
    )


async def wait_until(check, what: str, timeout: float = 30.0):
    end = asyncio.get_running_loop().time() + timeout
    while True:
        out = await check()
        if out:
            return out
        if asyncio.get_running_loop().time() > end:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def plaintext(searcher) -> bytes:
    return searcher.snapshots.plaintext()


async def test_erasure_reaches_the_index_and_the_snapshot_file(nats_server, tmp_path):
    key = base64.b64encode(os.urandom(32)).decode()
    snaps = tmp_path / "snaps"
    env = env_for(nats_server.url, tmp_path, TANU_SNAPSHOT_DIR=str(snaps), TANU_SNAPSHOT_KEY=key,
                  TANU_SNAPSHOT_INTERVAL_S="3600", TANU_SNAPSHOT_ERASURE_DELAY_S="3600")  # fmt: skip
    c = Cluster(env)
    try:
        await c.start_store()
        for p in (0, 1):
            await c.start_searcher(p)
        await bulk_enrol(c, "e", 40, seed=5)
        await c.store.relay.wait_idle(15)
        await settle(c, {p: store_ids(c, p) for p in (0, 1)})
        gallery = unit_vectors(40, seed=5)
        s0 = c.searchers[(0, "r0")]
        victim = next(i for i in range(40) if partition_of(f"e{i}", 2) == 0)
        sid, vec = f"e{victim}", gallery[victim]
        ids = [
            t.template_id for t in (await c.store.db.run(c.store.db.get_templates, sid)).templates
        ]
        raw = vec.astype("<f4").tobytes()

        assert await s0.take_snapshot()
        first_sequence = s0.index_sequence
        assert raw in plaintext(s0), "the snapshot holds the template before the erasure"
        s = await erasure_stats(s0, ids)
        assert list(s.pending_template_ids) == ids, "not yet removed from the index"
        assert s.snapshot_sequence == first_sequence

        # The store erases the subject; the removal event reaches the searcher.
        await c.store.db.run(c.store.db.delete_subject, sid, "erasure")
        c.store.relay.wake()
        await c.store.relay.wait_idle(15)
        await settle(c, {p: store_ids(c, p) for p in (0, 1)})
        s = await erasure_stats(s0, ids)
        assert not set(ids) & set(s.template_ids), "gone from the index"
        assert list(s.pending_template_ids) == ids, "but the snapshot on disk holds it"
        assert s.snapshot_sequence == first_sequence
        assert raw in plaintext(s0)
        # The gateway asks every replica of the partition over NATS.
        nc = await bus.connect(nats_server.url_for("test"), "test")
        try:
            check = searcher_pb2.ErasureCheckRequest(template_ids=ids).SerializeToString()
            replies = await bus.gather_all(nc, natsnames.erasure_check(2, 0), check, 0.25)
            answers = [searcher_pb2.ErasureCheckResponse.FromString(r) for r in replies]
            assert [(a.replica, list(a.pending_template_ids)) for a in answers] == [("r0", ids)]
            assert answers[0].caught_up and answers[0].snapshot_sequence == first_sequence
        finally:
            await nc.close()
        # Another partition's replica never sees this subject's removal: callers
        # ask the replicas of the subject's own partition.
        s1 = c.searchers[(1, "r0")]
        assert list((await erasure_stats(s1, ids)).pending_template_ids) == ids
        older = tmp_path / "older.snap"
        shutil.copy(s0.snapshot_path, older)

        # Restart with a short erasure delay from the snapshot that still
        # holds the template: the tail replays the removal, and the searcher
        # rewrites its snapshot on its own, without waiting for the interval.
        await c.stop_searcher(0)
        shutil.copy(older, s0.snapshot_path)
        c.env["TANU_SNAPSHOT_ERASURE_DELAY_S"] = "0.5"
        s0 = await c.start_searcher(0)
        assert s0.restored_sequence == first_sequence

        async def erased():
            s = await erasure_stats(s0, ids)
            return s if not s.pending_template_ids else None

        s = await wait_until(erased, "the snapshot to be rewritten without the erased template")
        assert s.snapshot_sequence > first_sequence and not set(ids) & set(s.template_ids)
        plain = plaintext(s0)
        assert raw not in plain and raw[:16] not in plain, "the rewritten snapshot holds no trace"
        snap = s0.snapshots.read_back()
        assert sid not in snap.subjects and not np.isin(ids, snap.template_ids).any()
        on_disk = sorted(p.name for p in snaps.iterdir() if p.name != WRITING_LOCK)  # (empty)
        assert on_disk == [s0.snapshot_path.name], f"no temporary or older file: {on_disk}"
        assert raw not in s0.snapshot_path.read_bytes()

        # A restart from that snapshot does not bring it back.
        await c.stop_searcher(0)
        s0 = await c.start_searcher(0)
        assert s0.restored_sequence >= s.snapshot_sequence > 0
        s = await erasure_stats(s0, ids)
        assert not s.pending_template_ids and not set(ids) & set(s.template_ids)
        reply = await s0.search(
            searcher_pb2.SearchRequest(queries=vectors.to_bytes(vec[None]), count=1, top_k=5)
        )
        assert sid not in [h.subject_id for h in reply.results[0].candidates]
        # Searching still finds the others.
        other = next(i for i in range(40) if i != victim and partition_of(f"e{i}", 2) == 0)
        reply = await s0.search(
            searcher_pb2.SearchRequest(
                queries=vectors.to_bytes(gallery[other][None]), count=1, top_k=1
            )
        )
        assert reply.results[0].candidates[0].subject_id == f"e{other}"
    finally:
        await c.stop()


async def test_a_refused_snapshot_counts_as_holding_every_erasure_until_replaced(
    nats_server, tmp_path
):
    key = base64.b64encode(os.urandom(32)).decode()
    env = env_for(nats_server.url, tmp_path, TANU_SNAPSHOT_DIR=str(tmp_path / "snaps"), TANU_SNAPSHOT_KEY=key,
                  TANU_SNAPSHOT_INTERVAL_S="3600", TANU_SNAPSHOT_ERASURE_DELAY_S="0.5")  # fmt: skip
    c = Cluster(env)
    try:
        await c.start_store()
        await c.start_searcher(0)
        await bulk_enrol(c, "r", 20, seed=6)
        sid = next(f"r{i}" for i in range(20) if partition_of(f"r{i}", 2) == 0)
        ids = [
            t.template_id for t in (await c.store.db.run(c.store.db.get_templates, sid)).templates
        ]
        await c.store.db.run(c.store.db.delete_subject, sid, "erasure")
        c.store.relay.wake()
        await c.store.relay.wait_idle(15)
        await settle(c, {0: store_ids(c, 0)})
        s0 = c.searchers[(0, "r0")]

        async def erased():
            s = await erasure_stats(s0, ids)
            return s if not s.pending_template_ids else None

        await wait_until(erased, "the first snapshot")
        await c.stop_searcher(0)
        # A snapshot written under another key cannot be read (nor checked):
        # until this searcher replaces it, every erasure counts as pending.
        c.env["TANU_SNAPSHOT_KEY"] = base64.b64encode(os.urandom(32)).decode()
        c.env["TANU_SNAPSHOT_ERASURE_DELAY_S"] = "3600"
        s0 = await c.start_searcher(0)
        assert s0.restored_sequence == 0
        s = await erasure_stats(s0, ids)
        assert list(s.pending_template_ids) == ids and s.snapshot_sequence == 0
        assert await s0.take_snapshot()
        s = await erasure_stats(s0, ids)
        assert not s.pending_template_ids and s.snapshot_sequence > 0
        assert np.isin(ids, list(s.template_ids)).sum() == 0
    finally:
        await c.stop()
