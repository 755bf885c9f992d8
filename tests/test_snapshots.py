"""Searcher snapshots: a snapshot plus the stream tail equals a full rebuild;
snapshots are encrypted at rest; a tampered or foreign one is refused and
the searcher rebuilds from the stream instead."""

from __future__ import annotations

import asyncio
import base64
import fcntl
import io
import os
import shutil

import numpy as np
from test_event_stream import bulk_enrol, settle, stats, store_ids

from tanu.core import logs
from tanu.index import snapshot
from tanu.searcher.snapshots import WRITING_LOCK

from conftest import Cluster, env_for, unit_vectors


async def _cluster(nats_server, tmp_path, **extra) -> Cluster:
    key = base64.b64encode(os.urandom(32)).decode()
    env = env_for(nats_server.url, tmp_path, TANU_SNAPSHOT_DIR=str(tmp_path / "snaps"), TANU_SNAPSHOT_KEY=key,
                  TANU_SNAPSHOT_INTERVAL_S="3600", **extra)  # fmt: skip
    c = Cluster(env)
    await c.start_store()
    for p in (0, 1):
        await c.start_searcher(p)
    return c


async def _enrolled(c: Cluster, prefix: str, n: int, seed: int) -> dict[int, set]:
    """``n`` subjects written to the store and applied by both partitions'
    searchers; returns each partition's template ids."""
    vecs = unit_vectors(n, seed=seed)
    await c.store.db.run(c.store.db.put_many, [(f"{prefix}{i}", vecs[i : i + 1]) for i in range(n)])
    c.store.relay.wake()
    await c.store.relay.wait_idle(15)
    expect = {p: store_ids(c, p) for p in (0, 1)}
    await settle(c, expect)
    return expect


async def test_a_snapshot_plus_the_stream_tail_equals_a_full_rebuild(nats_server, tmp_path):
    c = await _cluster(nats_server, tmp_path)
    try:
        await bulk_enrol(c, "a", 300, seed=1)
        await c.store.relay.wait_idle(15)
        await settle(c, {p: store_ids(c, p) for p in (0, 1)})
        s0 = c.searchers[(0, "r0")]
        assert await s0.take_snapshot()
        taken_at = s0.index_sequence
        older = tmp_path / "older.snap"
        shutil.copy(s0.snapshot_path, older)
        # The gallery moves on after the snapshot: more enrolments, and
        # deletions of subjects the snapshot holds.
        await bulk_enrol(c, "b", 120, seed=2)
        for i in range(0, 60, 3):
            await c.store.db.run(c.store.db.delete_subject, f"a{i}", "test")
        c.store.relay.wake()
        await c.store.relay.wait_idle(15)
        expect = {p: store_ids(c, p) for p in (0, 1)}
        await settle(c, expect)

        await c.stop_searcher(0)  # (a graceful stop writes a fresh snapshot ...)
        shutil.copy(
            older, s0.snapshot_path
        )  # (... replaced by the older one: the tail must be replayed)
        restored = await c.start_searcher(0)
        assert restored.restored_sequence == taken_at > 0
        tail_and_snapshot = set((await stats(restored)).template_ids)
        assert tail_and_snapshot == expect[0]

        await c.stop_searcher(0)
        c.env["TANU_SNAPSHOT_DIR"] = ""
        rebuilt = await c.start_searcher(0)
        assert rebuilt.restored_sequence == 0
        assert set((await stats(rebuilt)).template_ids) == tail_and_snapshot
    finally:
        await c.stop()


async def test_snapshots_hold_no_plaintext_and_bad_ones_are_refused(nats_server, tmp_path):
    c = await _cluster(nats_server, tmp_path)
    try:
        vecs = unit_vectors(50, seed=3)
        expect = await _enrolled(c, "v", 50, seed=3)
        s0 = c.searchers[(0, "r0")]
        await s0.take_snapshot()
        blob = s0.snapshot_path.read_bytes()
        for v in vecs:
            raw = v.astype("<f4").tobytes()
            assert raw[:16] not in blob and raw[-16:] not in blob, (
                "a template is in the snapshot in the clear"
            )
            assert v.astype(np.float16).tobytes()[:16] not in blob
        assert b"v1\n" not in blob, "subject ids are encrypted too"

        await c.stop_searcher(0)
        damaged = bytearray(s0.snapshot_path.read_bytes())
        damaged[len(damaged) // 2] ^= 0x01
        s0.snapshot_path.write_bytes(bytes(damaged))
        s = await c.start_searcher(0)
        assert s.restored_sequence == 0, "a tampered snapshot must not be loaded"
        assert set((await stats(s)).template_ids) == expect[0], "the stream rebuilds what it held"

        await c.stop_searcher(0)  # writes a good snapshot with this key ...
        c.env["TANU_SNAPSHOT_KEY"] = base64.b64encode(os.urandom(32)).decode()
        s = await c.start_searcher(0)  # ... which another key cannot read
        assert s.restored_sequence == 0
        assert set((await stats(s)).template_ids) == expect[0]
    finally:
        await c.stop()


async def test_a_changed_index_kind_rebuilds_from_the_stream_and_says_why(nats_server, tmp_path):
    """After an operator changes TANU_INDEX_KIND, the old kind's snapshot is
    not loaded; the log names the kind (a warning), not tampering (an error),
    and the searcher rebuilds from the stream and writes its own snapshot."""
    c = await _cluster(nats_server, tmp_path)
    try:
        expect = await _enrolled(c, "k", 40, seed=5)
        await c.stop_searcher(0)  # writes a flat snapshot
        c.env["TANU_INDEX_KIND"] = "fp16"
        buf = io.StringIO()
        logs.configure("tests", "info", stream=buf)
        try:
            s = await c.start_searcher(0)
        finally:
            logs.configure("tests", "warning")
        assert s.restored_sequence == 0
        assert set((await stats(s)).template_ids) == expect[0]
        said = buf.getvalue()
        assert (
            "snapshot_not_for_this_searcher" in said and "kind flat (this searcher: fp16)" in said
        )
        assert "snapshot_refused" not in said and "does not decrypt" not in said
        await s.take_snapshot()
        await c.stop_searcher(0)
        s = await c.start_searcher(0)  # its own fp16 snapshot is loaded
        assert s.restored_sequence > 0
        assert set((await stats(s)).template_ids) == expect[0]
    finally:
        await c.stop()


async def test_a_snapshot_whose_index_does_not_match_its_ids_is_rebuilt_not_a_crash(
    nats_server, tmp_path
):
    """A snapshot that decrypts but whose index holds more vectors than its
    id map (written by an older searcher while its index grew) is refused:
    the searcher starts and rebuilds from the stream instead of failing to
    start again and again."""
    c = await _cluster(nats_server, tmp_path)
    try:
        expect = await _enrolled(c, "m", 30, seed=9)
        s0 = c.searchers[(0, "r0")]
        keeper = s0.snapshots
        await c.stop_searcher(0)  # writes a good snapshot
        snap = snapshot.read(keeper.path, keeper._key, keeper.binding)
        n = len(snap.template_ids)
        assert n >= 2
        snap.template_ids, snap.codes = snap.template_ids[: n - 1], snap.codes[: n - 1]
        snap.inactive = snap.gallery_bits = None
        snapshot.write(keeper.path, keeper._key, keeper.binding, snap)
        s = await c.start_searcher(0)
        assert s.restored_sequence == 0
        assert set((await stats(s)).template_ids) == expect[0]
    finally:
        await c.stop()


async def test_searchers_sharing_a_snapshot_folder_write_one_at_a_time(nats_server, tmp_path):
    """Replicas on one machine (``tanu up``) share its memory: each holds a
    copy of its partition while it writes its snapshot, so they take turns
    (at 20M in 4 partitions on 23 GB, coinciding writes were OOM-killed).
    While another writer holds the folder's lock, no searcher writes; once
    it lets go, each writes in turn."""
    c = await _cluster(nats_server, tmp_path)
    try:
        await _enrolled(c, "w", 80, seed=9)
        both = [c.searchers[(p, "r0")] for p in (0, 1)]
        written = [s.snapshots.sequence for s in both]
        (tmp_path / "snaps").mkdir(exist_ok=True)
        fd = os.open(tmp_path / "snaps" / WRITING_LOCK, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)  # as a searcher of another process writing
            takes = [asyncio.create_task(s.take_snapshot()) for s in both]
            await asyncio.sleep(0.6)
            assert not any(t.done() for t in takes)
            assert [s.snapshots.sequence for s in both] == written
        finally:
            os.close(fd)
        assert await asyncio.gather(*takes) == [True, True]
        for s in both:
            assert s.snapshots.sequence == s.index_sequence > 0
            assert len(s.snapshots.read_back().template_ids) == len(s.index)
    finally:
        await c.stop()
