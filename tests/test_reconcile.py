"""`tanu reconcile`: the store and every searcher replica compared by
per-partition digest. Equal on a healthy cluster; a replica rebuilt from a
stream that lost an event (a message deleted from the stream), and a
template no subject of the store holds (an event forged onto the stream),
are found, narrowed down to their ids, and repaired through the stream."""

from __future__ import annotations

import asyncio
import uuid

import numpy as np
from test_event_stream import bulk_enrol, settle, stats, store_ids

from tanu.clients.store import StoreClient
from tanu.core import bus, natsnames, vectors
from tanu.core.ids import partition_of
from tanu.ops import reconcile
from tanu.ops.cli import main as tanu
from tanu.v1 import store_pb2

from conftest import DIM, Cluster, env_for, unit_vectors

GHOST_ID = 0  # a template id the store never issued (its ids start at 1)


async def cli(url: str, *extra: str) -> int:
    return await asyncio.to_thread(tanu, ["reconcile", "--nats", url, *extra])


async def test_reconcile_finds_and_repairs_missing_and_foreign_templates(
    nats_server, tmp_path, capsys
):
    c = Cluster(env_for(nats_server.url, tmp_path))
    nc = await bus.connect(nats_server.url_for("test"), "test")
    js = nc.jetstream()
    try:
        await c.start_store()
        for p in (0, 1):
            await c.start_searcher(p)
        await bulk_enrol(c, "g", 40, seed=81)
        await c.store.relay.wait_idle(15)
        await settle(c, {p: store_ids(c, p) for p in (0, 1)})
        assert await cli(nats_server.url_for("operator")) == 0
        out = capsys.readouterr().out
        assert "equal" in out and "40 templates in 2 partitions" in out

        # The stream loses the last event of one partition; a replica
        # rebuilt from the stream then lacks that subject.
        k = partition_of("g39", 2)
        await bulk_enrol(c, "late", 1, seed=82)
        await c.store.relay.wait_idle(15)
        kl = partition_of("late0", 2)
        last = await js.get_last_msg(natsnames.EVENTS_STREAM, natsnames.template_events(kl))
        await settle(c, {p: store_ids(c, p) for p in (0, 1)})
        await js.delete_msg(natsnames.EVENTS_STREAM, last.seq)
        fresh = await c.start_searcher(kl, "r1")
        assert len((await stats(fresh)).template_ids) == len(store_ids(c, kl)) - 1
        # A template no subject of the store holds is forged onto the stream.
        ghost = store_pb2.TemplateEvent(
            event_id=uuid.uuid4().hex, kind=store_pb2.TemplateEvent.KIND_ADDED,
            subject_id=f"ghost-{k}", partition=partition_of(f"ghost-{k}", 2),
            template_ids=[GHOST_ID], vectors=vectors.to_bytes(unit_vectors(1, seed=83)),
            dimension=DIM, model_id=c.layout.model_id,
        )  # fmt: skip
        kg = ghost.partition
        await js.publish(natsnames.template_events(kg), ghost.SerializeToString())

        async def holds_ghost():
            for (p, _), s in list(c.searchers.items()):
                if p == kg and GHOST_ID not in (await stats(s)).template_ids:
                    return False
            return True

        for _ in range(100):
            if await holds_ghost():
                break
            await asyncio.sleep(0.1)
        assert await holds_ghost()

        # Found, down to the ids, without any id list of a whole partition.
        store = StoreClient(nc, 10.0)
        check = await reconcile.compare(nc, store, 2, find_ids=True)
        assert not check.ok
        found = {(d.partition, d.replica): (d.missing, d.extra) for d in check.differences}
        late_ids = [t.template_id for t in
                    (await c.store.db.run(c.store.db.get_templates, "late0")).templates]  # fmt: skip
        assert found[(kl, "r1")][0] == late_ids
        assert found[(kg, "r0")][1] == [GHOST_ID]
        assert await cli(nats_server.url_for("operator")) == 1
        assert "differences found" in capsys.readouterr().out

        # Repaired through the stream: every replica agrees with the store again.
        assert await cli(nats_server.url_for("operator"), "--repair") == 0
        out = capsys.readouterr().out
        assert "equal after repair" in out and "removed 1" in out, out
        assert np.isin(late_ids, (await stats(fresh)).template_ids).all()
        for (p, _), s in c.searchers.items():
            held = set((await stats(s)).template_ids)
            assert GHOST_ID not in held and held == store_ids(c, p)
        assert (await reconcile.compare(nc, store, 2)).ok
        # An id above the store's highest is never tombstoned (it would
        # block that id when the store issues it).
        r = await store.republish(store_pb2.RepublishRequest(remove_template_ids=[10**12]))
        assert r.refused == 1 and r.removed == 0
    finally:
        await nc.close()
        await c.stop()
