"""Search lanes: enrolment de-duplication is bulk work, Identify is
interactive. The gateway batches and scatters them apart, marking bulk
searches; a searcher batches them apart, so an interactive search waits for
at most the one bulk index search running, never for the bulk queue behind
it (a wave of enrolments must not stall identification)."""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest
from test_event_stream import bulk_enrol, settle, store_ids

from tanu.core import vectors
from tanu.v1 import searcher_pb2

from conftest import Cluster, env_for, unit_vectors
from helpers import enroll, identify


def _query(v: np.ndarray, bulk: bool) -> searcher_pb2.SearchRequest:
    return searcher_pb2.SearchRequest(queries=vectors.to_bytes(v[None]), count=1, top_k=5,
                                      bulk=bulk)  # fmt: skip


@pytest.mark.parametrize(
    "batch_max, chunk, first",
    [
        # Lanes: after the bulk batch already on the index thread, before the rest.
        ("2", "0", ["bulk-0", "bulk-1", "identify"]),
        # And chunks: between two chunks of the bulk batch on the thread.
        ("4", "2", ["identify", "bulk-0", "bulk-1"]),
    ],
)
async def test_an_interactive_search_waits_for_one_bulk_search_not_the_bulk_queue(
    nats_server, tmp_path, batch_max, chunk, first
):
    c = Cluster(env_for(nats_server.url, tmp_path, TANU_SEARCH_BATCH_MAX=batch_max,
                        TANU_SEARCH_BULK_CHUNK=chunk))  # fmt: skip
    await c.start_store()
    for p in (0, 1):
        await c.start_searcher(p)
    release = threading.Event()
    try:
        await bulk_enrol(c, "lane", 40, seed=41)
        await c.store.relay.wait_idle(15)
        await settle(c, {p: store_ids(c, p) for p in (0, 1)})
        s = c.searchers[(0, "r0")]
        probes = unit_vectors(9, seed=42)
        blocked = asyncio.ensure_future(s.on_index_thread(release.wait, 10))  # a long search
        order: list[str] = []

        def sent(name: str, req) -> asyncio.Future:
            f = asyncio.ensure_future(s.searches.search(req))
            f.add_done_callback(lambda _: order.append(name))
            return f

        bulk = [sent(f"bulk-{i}", _query(probes[i], True)) for i in range(8)]
        await asyncio.sleep(0.1)  # one bulk batch (its first chunk) waits on the thread
        interactive = sent("identify", _query(probes[8], False))
        await asyncio.sleep(0.1)
        release.set()
        replies = await asyncio.gather(*bulk, interactive)
        await blocked
        assert all(len(r.results) == 1 and r.results[0].candidates for r in replies)
        assert order[:3] == first, order
        assert order.index("identify") < order.index("bulk-2"), order
        # Chunked or not, each query got its own exact answer.
        alone = [await s.searches.search(_query(probes[i], False)) for i in range(8)]
        for r, a in zip(replies, alone, strict=False):
            assert [x.subject_id for x in r.results[0].candidates] == [
                x.subject_id for x in a.results[0].candidates
            ]
    finally:
        release.set()
        await c.stop()


async def test_enrolment_de_duplication_goes_in_the_bulk_lane_and_identify_does_not(cluster):
    searchers = list(cluster.searchers.values())

    def batches(batcher: str) -> float:
        return sum(s.metrics.registry.get_sample_value(
            "tanu_batch_size_count", {"batcher": f"{batcher}p{s.config.partition}"}) or 0
            for s in searchers)  # fmt: skip

    gw = cluster.gateway.gateway

    def lanes() -> tuple[float, float]:
        """The gateway's (identify, dedup) batches so far."""
        return tuple(gw.metrics.sample("tanu_batch_size_count", batcher=b) or 0
                     for b in ("identify", "dedup"))  # fmt: skip

    faces = unit_vectors(3, seed=43)
    before = (batches("search-"), batches("search-bulk-"), lanes())
    for i, v in enumerate(faces):
        assert (await cluster.stub.Enroll(enroll(f"lane-{i}", v))).enrolled
    after_enrol = (batches("search-"), batches("search-bulk-"), lanes())
    assert after_enrol[0] == before[0], "de-duplication stayed out of the interactive lane"
    assert after_enrol[1] >= before[1] + len(faces) * len(searchers)  # each partition, each
    assert after_enrol[2][1] >= before[2][1] + len(faces) and after_enrol[2][0] == before[2][0]
    got = await cluster.stub.Identify(identify(faces[0]))
    assert got.candidates[0].subject_id == "lane-0"
    after_identify = (batches("search-"), batches("search-bulk-"), lanes())
    assert after_identify[0] > after_enrol[0] and after_identify[1] == after_enrol[1]
    assert after_identify[2][0] == after_enrol[2][0] + 1
