"""Galleries through a real searcher: template events published on the real
JetStream stream as the store publishes them (ADDED with galleries and the
inactive flag, MEMBERSHIP changes), searched over NATS with the real
SearchClient and over gRPC; membership survives a snapshot restart."""

from __future__ import annotations

import asyncio
import base64
import os
import uuid

import grpc
import nats
import numpy as np
import pytest

from tanu.clients.search import SearchClient
from tanu.core import errors, natsnames, natsroles
from tanu.store import MSG_ID
from tanu.v1 import searcher_pb2, searcher_pb2_grpc, store_pb2

from conftest import DIM, Cluster, env_for, nats_url_as, unit_vectors

N = 240  # subjects s0..s239, template id 1000 + i


def membership_of(i: int) -> tuple[list[str], bool]:
    """The test's initial gallery plan: every 4th subject on the watchlist,
    every 3rd an adult, every 10th inactive."""
    galleries = (["WATCHLIST"] if i % 4 == 0 else []) + (["ADULTS"] if i % 3 == 0 else [])
    return galleries, i % 10 == 0


async def connect_as(env, role: str):
    """A NATS connection with ``role``'s credentials and inbox prefix."""
    return await nats.connect(nats_url_as(env, role), inbox_prefix=natsroles.inbox(role))


class Publisher:
    """Publishes template events the way the store's relay does (its NATS
    role, the partition's subject, the event id as the message id)."""

    def __init__(self, nc) -> None:
        self.js = nc.jetstream()
        self.last = 0

    async def send(self, ev: store_pb2.TemplateEvent) -> None:
        ev.event_id = ev.event_id or uuid.uuid4().hex
        ack = await self.js.publish(natsnames.template_events(0), ev.SerializeToString(),
                                    headers={MSG_ID: ev.event_id})  # fmt: skip
        self.last = max(self.last, ack.seq)

    async def added(self, i: int, vec: np.ndarray, galleries, inactive) -> None:
        await self.send(store_pb2.TemplateEvent(
            kind=store_pb2.TemplateEvent.KIND_ADDED, subject_id=f"s{i}", partition=0,
            template_ids=[1000 + i], vectors=vec.astype("<f4").tobytes(), dimension=DIM,
            model_id="dlib-resnet-v1", galleries=galleries, inactive=inactive,
        ))  # fmt: skip

    async def membership(self, subjects: list[int], galleries, inactive=False, ids=None) -> None:
        for i in subjects:  # one event per encounter, as the store sends them
            await self.send(store_pb2.TemplateEvent(
                kind=store_pb2.TemplateEvent.KIND_MEMBERSHIP, subject_id=f"s{i}", partition=0,
                template_ids=ids or [1000 + i], galleries=galleries, inactive=inactive,
                model_id="dlib-resnet-v1",
            ))  # fmt: skip


async def applied(searcher, sequence: int, timeout: float = 15.0) -> None:
    end = asyncio.get_running_loop().time() + timeout
    while searcher.applied_sequence < sequence:
        assert asyncio.get_running_loop().time() < end, "the searcher did not apply the events"
        await asyncio.sleep(0.05)


async def answering(client: SearchClient, timeout: float = 10.0) -> None:
    """Waits until partition 0 answers over NATS (a replica says SERVING
    only once the server has its queue subscription, ``bus.Responder.serve``;
    this also covers a reconnecting client)."""
    end = asyncio.get_running_loop().time() + timeout
    while True:
        try:
            await client.search(0, request(np.zeros((1, DIM), np.float32), 1), 5)
            return
        except errors.Unavailable:
            assert asyncio.get_running_loop().time() < end, "the searcher never answered"
            await asyncio.sleep(0.1)


def expected(vecs, members: set[int], q: np.ndarray, k: int) -> list[list[str]]:
    """Brute force: the k nearest (L2) subjects among ``members``."""
    m = np.array(sorted(members))
    d = ((q[:, None, :] - vecs[m][None]) ** 2).sum(-1)
    return [[f"s{m[j]}" for j in np.argsort(row, kind="stable")[:k]] for row in d]


def request(q: np.ndarray, k: int, gallery: str = "") -> searcher_pb2.SearchRequest:
    return searcher_pb2.SearchRequest(queries=q.astype("<f4").tobytes(), count=len(q), top_k=k,
                                      model_id="dlib-resnet-v1", gallery=gallery)  # fmt: skip


async def test_gallery_searches_and_membership_changes_through_a_real_searcher(
    nats_server, tmp_path
):
    env = env_for(nats_server.url, tmp_path, partitions=1, TANU_SNAPSHOT_DIR=str(tmp_path / "snaps"),
                  TANU_SNAPSHOT_KEY=base64.b64encode(os.urandom(32)).decode(),
                  TANU_SNAPSHOT_INTERVAL_S="3600")  # fmt: skip
    c = Cluster(env)
    store_nc = await connect_as(env, "store")
    gw_nc = await connect_as(env, "gateway")
    try:
        await c.start_store()  # (it sets up the cluster's layout and stream)
        s0 = await c.start_searcher(0)
        pub = Publisher(store_nc)
        vecs = unit_vectors(N, seed=21)
        plan = {i: membership_of(i) for i in range(N)}
        for i in range(N):
            await pub.added(i, vecs[i], *plan[i])
        await applied(s0, pub.last)
        client = SearchClient(gw_nc, timeout_s=5)

        def members(gallery: str) -> set[int]:
            return {i for i, (g, off) in plan.items() if not off and (not gallery or gallery in g)}

        q = (vecs[[0, 4, 8, 9, 33]] + 0.05).astype(np.float32)

        async def check(gallery: str, k: int = 12) -> None:
            reply = await client.search(0, request(q, k), 5, gallery=gallery)
            want = expected(vecs, members(gallery), q, k)
            got = [[c.subject_id for c in r.candidates] for r in reply.results]
            assert got == want, gallery
            assert all(len(r) == min(k, len(members(gallery))) for r in got)

        for g in ("WATCHLIST", "ADULTS", ""):
            await check(g)
        # ALL is every active template: the inactive ones (s0, s10, ...) never come back
        reply = await client.search(0, request(vecs[[0, 10]], 5, "ALL"), 5)
        assert not {"s0", "s10"} & {c.subject_id for r in reply.results for c in r.candidates}
        # A gallery this partition never saw: empty results, not an error.
        reply = await client.search(0, request(q, 5), 5, gallery="PARTNER-BANK")
        assert [len(r.candidates) for r in reply.results] == [0] * len(q)
        # A malformed gallery name is refused.
        with pytest.raises(errors.InvalidArgument):
            await client.search(0, request(q, 5), 5, gallery="no spaces/allowed")

        # Membership changes travel as events: s1 joins the watchlist, s4
        # leaves it, s8 is deactivated, s10 is reactivated onto it; an
        # unknown template id and a replay of the same change are harmless.
        await pub.membership([1], ["WATCHLIST"])
        await pub.membership([4], ["ADULTS"])
        await pub.membership([8], ["WATCHLIST"], inactive=True)
        await pub.membership([10], ["WATCHLIST", "ADULTS"])
        await pub.membership([10], ["WATCHLIST", "ADULTS"])
        await pub.membership([77], ["WATCHLIST"], ids=[987_654])
        plan[1], plan[4], plan[8] = (
            (["WATCHLIST"], False),
            (["ADULTS"], False),
            (["WATCHLIST"], True),
        )
        plan[10] = (["WATCHLIST", "ADULTS"], False)
        await applied(s0, pub.last)
        for g in ("WATCHLIST", "ADULTS", ""):
            await check(g)
        top = await client.search(0, request(vecs[[1, 4, 8, 10]], 1), 5, gallery="WATCHLIST")
        assert [r.candidates[0].subject_id for r in top.results][0] == "s1"
        assert [r.candidates[0].subject_id for r in top.results][3] == "s10"
        assert {"s4", "s8"}.isdisjoint(c.subject_id for r in top.results for c in r.candidates)

        # gRPC answers the same
        async with grpc.aio.insecure_channel(f"127.0.0.1:{s0.port}") as ch:
            direct = await searcher_pb2_grpc.SearcherStub(ch).Search(request(q, 12, "WATCHLIST"))
        assert [[c.subject_id for c in r.candidates] for r in direct.results] == expected(
            vecs, members("WATCHLIST"), q, 12
        )

        # A restart from the snapshot keeps every membership and flag.
        assert await s0.take_snapshot()
        await c.stop_searcher(0)
        s0 = await c.start_searcher(0)
        assert s0.restored_sequence == pub.last
        await answering(client)
        for g in ("WATCHLIST", "ADULTS", ""):
            await check(g)
        # A rebuild from the stream alone replays ADDED and MEMBERSHIP events
        # together in large batches, in order: the same galleries again.
        await c.stop_searcher(0)
        c.env["TANU_SNAPSHOT_DIR"] = ""
        s0 = await c.start_searcher(0)
        assert s0.restored_sequence == 0 and s0.applied_sequence == pub.last
        await answering(client)
        for g in ("WATCHLIST", "ADULTS", ""):
            await check(g)
    finally:
        await store_nc.close()
        await gw_nc.close()
        await c.stop()


async def test_concurrent_searches_of_different_galleries_are_answered_each_in_its_own(
    nats_server, tmp_path
):
    """Micro-batched searches of several galleries at once: each answer is
    restricted to its own gallery."""
    env = env_for(nats_server.url, tmp_path, partitions=1, TANU_SEARCH_BATCH_WAIT_MS="20")
    c = Cluster(env)
    store_nc = await connect_as(env, "store")
    gw_nc = await connect_as(env, "gateway")
    try:
        await c.start_store()  # (it sets up the cluster's layout and stream)
        s0 = await c.start_searcher(0)
        pub = Publisher(store_nc)
        vecs = unit_vectors(90, seed=22)
        for i in range(90):
            await pub.added(i, vecs[i], [f"G{i % 3}"], False)
        await applied(s0, pub.last)
        client = SearchClient(gw_nc, timeout_s=5)
        q = vecs[:6] + 0.01
        galleries = ["G0", "G1", "G2", "", "ALL", "G1"]
        replies = await asyncio.gather(*(client.search(0, request(q[j : j + 1], 5), 5, gallery=g)
                                         for j, g in enumerate(galleries)))  # fmt: skip
        for j, (g, r) in enumerate(zip(galleries, replies, strict=True)):
            members = (
                set(range(90)) if g in ("", "ALL") else {i for i in range(90) if f"G{i % 3}" == g}
            )
            want = expected(vecs, members, q[j : j + 1], 5)
            assert [[c.subject_id for c in h.candidates] for h in r.results] == want, g
    finally:
        await store_nc.close()
        await gw_nc.close()
        await c.stop()
