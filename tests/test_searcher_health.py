"""A searcher says SERVING only once it answers searches: restarted again
and again, a search sent over NATS the moment it says SERVING is answered,
never met by "no responders" (its queue subscription is on the server
before its health changes: ``bus.Responder.serve`` flushes). Both as a real
``python -m tanu.searcher`` process and, many times over to catch the
race (before the fix 14 to 57 per cent of restarts met no responders;
a few per cent still do, from nats-server itself), in this process."""

from __future__ import annotations

import asyncio
import os
import sys

import grpc
import numpy as np
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tanu.clients.search import SearchClient
from tanu.core import bus, errors
from tanu.core.metrics import Metrics
from tanu.ops.natsd import free_port
from tanu.v1 import searcher_pb2

from conftest import DIM, Cluster, env_for, nats_url_as

PROCESS_RESTARTS = 2
RESTARTS = 300


def one_query() -> searcher_pb2.SearchRequest:
    """A search of one (zero) query for the best candidate."""
    return searcher_pb2.SearchRequest(queries=np.zeros(DIM, "<f4").tobytes(), count=1, top_k=1,
                                      model_id="dlib-resnet-v1")  # fmt: skip


async def _serving(port: int, proc, timeout: float = 60.0) -> None:
    """Asks the process's health as fast as it answers until SERVING."""
    end = asyncio.get_running_loop().time() + timeout
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as ch:
        stub = health_pb2_grpc.HealthStub(ch)
        while True:
            assert proc.returncode is None, "the searcher exited"
            assert asyncio.get_running_loop().time() < end, "the searcher never said SERVING"
            try:
                r = await stub.Check(health_pb2.HealthCheckRequest(), timeout=1)
                if r.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.aio.AioRpcError:
                await asyncio.sleep(0.01)


async def test_serving_means_answering_over_nats_from_the_first_moment(nats_server, tmp_path):
    env = {**os.environ, **env_for(nats_server.url, tmp_path, partitions=1),
           "TANU_PARTITION": "0", "TANU_REPLICA": "r0"}  # fmt: skip
    cluster = Cluster(env)
    await cluster.start_store()  # it makes the event stream and the cluster's layout
    nc = await bus.connect(nats_url_as(env, "gateway"), "gw")
    client = SearchClient(nc, 5)
    req = one_query()
    try:
        for _ in range(PROCESS_RESTARTS):
            port = free_port()
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "tanu.searcher",
                env={**env, "TANU_GRPC_PORT": str(port), "TANU_METRICS_PORT": str(free_port())},
                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
            )  # fmt: skip
            try:
                await _serving(port, proc)
                reply = await client.search(0, req, 5)  # Unavailable if no one listens yet
                assert reply.partition == 0
            finally:
                proc.terminate()
                await proc.wait()
    finally:
        await nc.close()
        await cluster.stop()


async def test_serving_means_answering_after_every_one_of_many_restarts(nats_server, tmp_path):
    cluster = Cluster(env_for(nats_server.url, tmp_path, partitions=1))
    await cluster.start_store()
    nc = await bus.connect(nats_url_as(cluster.env, "gateway"), "gw")
    client = SearchClient(nc, 5)
    req = one_query()
    unanswered: list[str] = []
    try:
        for _ in range(RESTARTS):
            svc = await cluster.start_searcher(0)  # returns once caught up: SERVING
            try:  # at once, as a gateway would once health says SERVING
                await client.search(0, req, 5)
            except errors.Unavailable as exc:
                unanswered.append(exc.message)
            async with grpc.aio.insecure_channel(f"127.0.0.1:{svc.port}") as ch:
                health = await health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest())
            assert health.status == health_pb2.HealthCheckResponse.SERVING
            await cluster.stop_searcher(0)
        # Before the fix 14 to 57 per cent went unanswered. A few per cent
        # still may: nats-server can answer "no responders" for a moment
        # after a subscription it has confirmed (nats-io/nats-server#2876),
        # which no ordering in the searcher removes.
        assert len(unanswered) <= RESTARTS // 12, (
            f"{len(unanswered)} of {RESTARTS}: {unanswered[:3]}"
        )
    finally:
        await nc.close()
        await cluster.stop()


async def test_a_search_that_nobody_answered_is_asked_once_more(nats_server, tmp_path):
    # The gateway's scatter asks a partition with no responder once more
    # after a pause; a searcher that subscribes meanwhile answers it. The
    # searcher starts only once the first attempt has been refused (seen in
    # the client's request metric), so the retry is what answers.
    cluster = Cluster(env_for(nats_server.url, tmp_path, partitions=1))
    await cluster.start_store()
    nc = await bus.connect(nats_url_as(cluster.env, "gateway"), "gw")
    metrics = Metrics.create()
    client = SearchClient(nc, 5, metrics, retry_pause_s=8)  # ample time to start one
    req = one_query()

    def attempts() -> float:
        return (
            metrics.registry.get_sample_value(
                "tanu_nats_request_duration_seconds_count", {"operation": "search"}
            )
            or 0.0
        )

    try:
        scatter = asyncio.create_task(client.scatter(req, [0]))
        while attempts() < 1:
            assert not scatter.done(), await scatter
            await asyncio.sleep(0.01)
        await cluster.start_searcher(0)
        (reply,) = await scatter
        assert isinstance(reply, searcher_pb2.SearchResponse) and reply.partition == 0
        assert attempts() == 2
        # Nobody at all: the retry is refused too, and says so.
        await cluster.stop_searcher(0)
        client.retry_pause_s = 0.01
        (refused,) = await client.scatter(req, [0])
        assert (
            isinstance(refused, bus.NoResponders) and "no service is answering" in refused.message
        )
    finally:
        await nc.close()
        await cluster.stop()
