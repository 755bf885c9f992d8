"""Re-partitioning: a cluster moves from 2 to 3 partitions while it keeps
serving; afterwards every subject is found in its new partition, none is
lost, and deletes and enrolments still reach the right searcher. The
rebalance's last step (re-publishing every subject under the new layout,
purging the old layout's events), interrupted and run again, leaves a
stream whose events are each on their partition's subject, read by
ordinary searchers with their own partition's filter only."""

from __future__ import annotations

import asyncio

import pytest
from test_event_stream import bulk_enrol

from tanu.clients.store import StoreClient
from tanu.core import bus, clusterconfig, errors, natsnames
from tanu.core import config as cfg
from tanu.core.ids import partition_of
from tanu.ops import repartition
from tanu.searcher import SearcherService
from tanu.v1 import store_pb2

from conftest import Cluster, env_for, unit_vectors
from helpers import identify


async def until_verified(nc, store: StoreClient, partitions: int, timeout: float = 30.0):
    end = asyncio.get_running_loop().time() + timeout
    while True:
        check = await repartition.verify(nc, partitions, store)
        if check.ok:
            return check
        if asyncio.get_running_loop().time() > end:
            raise AssertionError(f"not verified: {check.problems}")
        await asyncio.sleep(0.1)


async def until(cond, what: str, timeout: float = 30.0) -> None:
    end = asyncio.get_running_loop().time() + timeout
    while not cond():
        if asyncio.get_running_loop().time() > end:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def test_rebalance_from_two_to_three_partitions_loses_no_subject(nats_server, tmp_path):
    env = env_for(nats_server.url, tmp_path, partitions=2)
    c = Cluster(env)
    staging: list[SearcherService] = []
    nc = await bus.connect(nats_server.url_for("test"), "test")
    js = nc.jetstream()
    store = StoreClient(nc, 10.0)
    try:
        await c.start_store()
        for p in (0, 1):
            await c.start_searcher(p)
        await bulk_enrol(c, "m", 60, seed=11)
        await c.store.relay.wait_idle(15)
        await until_verified(nc, store, 2)

        target = await repartition.begin(js, 3)
        assert target["partitions"] == 3 and target["from_partitions"] == 2
        env3 = {**env, "TANU_PARTITIONS": "3", "TANU_SEARCHER_STAGING": "true"}
        for k in range(3):
            s = await SearcherService(
                cfg.from_env(cfg.SearcherConfig, {**env3, "TANU_PARTITION": str(k)})
            ).start()
            staging.append(s)
        for s in staging:
            await s.caught_up.wait()
            assert not s.in_queue_group, "staging searchers stay out of the queue groups"
        assert all(s.in_queue_group for s in c.searchers.values()), "the old layout keeps serving"

        # The gallery keeps changing during the move (events routed under P=2).
        await bulk_enrol(c, "n", 20, seed=12)
        for sid in ("m0", "m1", "m2"):
            await c.store.db.run(c.store.db.delete_subject, sid, "test")
        c.store.relay.wake()
        await c.store.relay.wait_idle(15)
        check = await until_verified(nc, store, 3)
        assert check.templates == 77 and check.replicas == {0: 1, 1: 1, 2: 1}

        await repartition.switch(js, 3)
        await until(lambda: all(s.in_queue_group for s in staging), "staging searchers to join")
        await until(
            lambda: not any(s.in_queue_group for s in c.searchers.values()), "old ones to leave"
        )
        for p in (0, 1):
            await c.stop_searcher(p)
        # The store migrates its record of the layout, then it and the
        # gateway restart with the new partition count.
        moved = await repartition.migrate_store(store, 3)
        held = await repartition.store_templates(store)
        # Re-publishing needs a store running with the new count: this one
        # still enrols under 2 partitions.
        try:
            await repartition.finish(js, store, 5, say=noop)
            raise AssertionError("finish must wait for a store running with 3 partitions")
        except errors.FailedPrecondition as exc:
            assert "restart the store" in exc.message
        await c.store.stop()
        assert moved == sum(partition_of(s, 2) != partition_of(s, 3) for s in held) > 0
        c.env["TANU_PARTITIONS"] = "3"
        await c.start_store()
        await c.start_gateway()

        vecs = {**{f"m{i}": v for i, v in enumerate(unit_vectors(60, seed=11))},
                **{f"n{i}": v for i, v in enumerate(unit_vectors(20, seed=12))}}  # fmt: skip
        for sid in held:
            r = await c.stub.Identify(identify(vecs[sid]))
            assert r.complete and r.gallery_size == 77
            top = r.candidates[0]
            assert top.subject_id == sid and top.partition == partition_of(sid, 3), sid
        r = await c.stub.Identify(identify(vecs["m0"]))
        assert "m0" not in [x.subject_id for x in r.candidates], "deleted before the move"

        # After the move: deletes and enrolments reach the new partitions.
        await c.store.db.run(c.store.db.delete_subject, "m5", "test")
        await bulk_enrol(c, "after", 5, seed=13)
        await c.store.relay.wait_idle(15)
        await until_verified(nc, store, 3)
        r = await c.stub.Identify(identify(vecs["m5"]))
        assert "m5" not in [x.subject_id for x in r.candidates]
        r = await c.stub.Identify(identify(unit_vectors(5, seed=13)[2]))
        assert r.candidates[0].subject_id == "after2"
        assert r.candidates[0].partition == partition_of("after2", 3)

        # Until the rebalance is finished the stream holds events routed
        # under 2 partitions: an ordinary searcher (whose credentials read
        # its own partition's events only) refuses to start.
        env_k = {**c.env, "TANU_PARTITION": str(partition_of("m7", 3)), "TANU_REPLICA": "r1"}
        ordinary = SearcherService(cfg.from_env(cfg.SearcherConfig, env_k))
        try:
            await ordinary.start()
            raise AssertionError("an ordinary searcher must refuse while the stream is re-routed")
        except errors.FailedPrecondition as exc:
            assert "partitions finish" in exc.message
        finally:
            await ordinary.stop()

        # The last step, killed part-way and run again: every subject's
        # events re-published under 3 partitions, the old ones purged.
        expected = await per_partition(store, 3)
        held = await repartition.store_templates(store)  # m5 erased, after0..4 enrolled
        vecs.update({f"after{i}": v for i, v in enumerate(unit_vectors(5, seed=13))})
        # Killed after the check and two pages: the real store client, whose
        # third Republish never reaches the store.
        with pytest.raises(errors.Unavailable, match="killed"):
            await repartition.finish(js, KilledAfter(store, 3), 30, batch_subjects=7, say=noop)
        record, _ = await clusterconfig.read_layout(js, repartition.REPUBLISH_KEY)
        assert record["after"] and not record["done"] and record["subjects"] == 14
        layout, _ = await clusterconfig.read_layout(js)
        assert clusterconfig.rerouted(layout, 3), "interrupted: not finished"
        layout = await repartition.finish(js, store, 30, batch_subjects=7, say=noop)
        assert not clusterconfig.rerouted(layout, 3) and "routed" not in layout
        assert await repartition.finish(js, store, 30, say=noop) == layout  # a no-op now

        # The stream holds only events routed under 3 partitions, each on its
        # partition's subject, and no erased subject's event.
        routed = await stream_events(js)
        assert routed, "the re-published events are on the stream"
        for subject, ev in routed:
            assert subject == natsnames.template_events(partition_of(ev.subject_id, 3))
            assert ev.subject_id in held, "an erased subject's event survived"
        assert {ev.subject_id for _, ev in routed} == set(held)

        # The promoted staging searchers applied the re-published events
        # (some twice) without a duplicate or a loss.
        await until_verified(nc, store, 3)
        for s in staging:
            st = await s.stats(True)
            assert list(st.template_ids) == expected[s.config.partition]
            assert st.gallery_size == len(expected[s.config.partition])

        # Ordinary searchers, each reading its own partition's events only,
        # rebuild from the stream exactly what the store holds.
        for s in staging:
            await s.stop()
        staging.clear()
        fresh = [await c.start_searcher(p) for p in range(3)]
        for s in fresh:
            assert not s.reads_every_partition
            st = await s.stats(True)
            assert list(st.template_ids) == expected[s.config.partition]
        check = await until_verified(nc, store, 3)
        assert check.replicas == {0: 1, 1: 1, 2: 1}
        for sid in held:
            r = await c.stub.Identify(identify(vecs[sid]))
            assert r.complete and r.candidates[0].subject_id == sid, sid
        # An erasure after the move deletes the subject's re-published copy too.
        await c.store.db.run(c.store.db.delete_subject, "m9", "test")
        await c.store.relay.wait_idle(15)
        await until_erased_on_stream(js, "m9")
    finally:
        await nc.close()
        for s in staging:
            await s.stop()
        await c.stop()


def noop(*_a) -> None:
    pass


async def per_partition(store: StoreClient, partitions: int) -> dict[int, list[int]]:
    """partition -> the template ids the store holds there, ascending."""
    out: dict[int, list[int]] = {k: [] for k in range(partitions)}
    for sid, tids in (await repartition.store_templates(store)).items():
        out[partition_of(sid, partitions)] += tids
    return {k: sorted(v) for k, v in out.items()}


class KilledAfter:
    """A real store client whose Republish calls fail from the
    ``calls + 1``-th on, as if ``finish`` were killed there; everything
    else goes to the store as it is."""

    def __init__(self, store: StoreClient, calls: int) -> None:
        self._store, self._left = store, calls

    def __getattr__(self, name: str):
        return getattr(self._store, name)

    async def republish(self, request):
        if self._left == 0:
            raise errors.Unavailable("killed before this Republish")
        self._left -= 1
        return await self._store.republish(request)


async def stream_events(js) -> list[tuple[str, store_pb2.TemplateEvent]]:
    """Every template event on the stream: (its subject, the event)."""
    sub = await js.subscribe(natsnames.ALL_TEMPLATE_EVENTS, ordered_consumer=True)
    info = await js.stream_info(natsnames.EVENTS_STREAM)
    out = []
    try:
        for _ in range(info.state.messages):
            m = await sub.next_msg(timeout=5)
            ev = store_pb2.TemplateEvent()
            ev.ParseFromString(m.data)
            out.append((m.subject, ev))
    finally:
        await sub.unsubscribe()
    return out


async def until_erased_on_stream(js, sid: str, timeout: float = 30.0) -> None:
    end = asyncio.get_running_loop().time() + timeout
    while any(
        ev.subject_id == sid and ev.kind == ev.KIND_ADDED for _, ev in await stream_events(js)
    ):
        assert asyncio.get_running_loop().time() < end, f"{sid}'s events stay on the stream"
        await asyncio.sleep(0.2)


async def test_rebalance_refuses_a_no_op_and_a_second_target(nats_server, tmp_path):
    c = Cluster(env_for(nats_server.url, tmp_path, partitions=2))
    nc = await bus.connect(nats_server.url_for("test"), "test")
    try:
        await c.start_store()
        js = nc.jetstream()
        try:
            await repartition.begin(js, 2)
            raise AssertionError("a rebalance to the same count must be refused")
        except errors.InvalidArgument:
            pass
        await repartition.begin(js, 4)
        try:
            await repartition.begin(js, 3)
            raise AssertionError("a second target must be refused")
        except errors.FailedPrecondition:
            pass
        # A staging searcher for a layout nobody asked for refuses to start.
        env = {**c.env, "TANU_PARTITIONS": "3", "TANU_SEARCHER_STAGING": "true"}
        s = SearcherService(cfg.from_env(cfg.SearcherConfig, env))
        try:
            await s.start()
            raise AssertionError("must refuse")
        except errors.FailedPrecondition as exc:
            assert "no rebalance" in exc.message
        finally:
            await s.stop()
        await repartition.abort(js)
        await repartition.begin(js, 3)
    finally:
        await nc.close()
        await c.stop()
