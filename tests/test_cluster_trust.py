"""Zero trust inside the cluster, against a real nats-server with one
identity per service role: anonymous and wrong-role clients are refused,
and a service whose connection is closed comes back, saying NOT_SERVING
(gRPC health and REST /healthz) while it is down."""

from __future__ import annotations

import asyncio

import aiohttp
import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tanu.clients.store import StoreClient
from tanu.core import bus, errors, natsnames, natsroles
from tanu.v1 import identity_pb2, store_pb2

from conftest import Cluster, env_for

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


async def _received(nats_server, subject: str, publisher: str, listener: str) -> list[bytes]:
    """What ``listener`` (subscribing to ``subject``) gets of one message
    ``publisher`` sends there; the test role checks that the message itself
    was delivered when the publisher may send it."""
    got: list[bytes] = []
    pub = await bus.connect(nats_server.url_for(publisher), "pub")
    sub = await bus.connect(nats_server.url_for(listener), "sub")
    try:

        async def keep(msg):
            got.append(msg.data)

        await sub.subscribe(subject, cb=keep)
        await sub.flush()
        await pub.publish(subject, b"forged")
        await pub.flush()
        await asyncio.sleep(0.3)
    finally:
        await pub.close()
        await sub.close()
    return got


async def test_an_anonymous_client_is_refused(nats_server):
    with pytest.raises(errors.Unavailable, match="(?i)authoriz"):
        await bus.connect(nats_server.url, "anonymous")


async def test_a_wrong_password_is_refused(nats_server):
    url = nats_server.url.replace("://", "://gateway:not-the-password@")
    with pytest.raises(errors.Unavailable, match="(?i)authoriz"):
        await bus.connect(url, "guess")


async def test_only_the_store_publishes_template_events(nats_server):
    subject = natsnames.template_events(0)
    assert await _received(nats_server, subject, "store", "test") == [b"forged"]
    for role in ("gateway", "searcher-p0", "detector", "operator"):
        assert await _received(nats_server, subject, role, "test") == [], role


async def test_only_a_partitions_searcher_answers_its_searches(nats_server):
    subject = natsnames.search(0)
    assert await _received(nats_server, subject, "gateway", "searcher-p0") == [b"forged"]
    for role in ("gateway", "store", "detector", "searcher-p1", "operator"):
        assert await _received(nats_server, subject, "test", role) == [], role


async def test_nobody_but_the_store_answers_store_requests(nats_server):
    subject = natsnames.store("templates")
    for role in ("gateway", "searcher-p0", "embedder", "operator"):
        assert await _received(nats_server, subject, "test", role) == [], role


async def test_only_gateways_read_templates_from_the_store(nats_server, tmp_path):
    c = Cluster(env_for(nats_server.url, tmp_path))
    await c.start_store()
    clients = {}
    try:
        for role in ("gateway", "searcher-p0", "detector", "operator"):
            clients[role] = await bus.connect(nats_server.url_for(role), role)
        ask = store_pb2.GetTemplatesRequest(subject_id="nobody")
        with pytest.raises(errors.NotFound):  # answered: the subject is unknown
            await StoreClient(clients["gateway"], 2.0).templates(ask)
        for role in ("searcher-p0", "detector", "operator"):
            with pytest.raises(errors.DeadlineExceeded):  # dropped by the server
                await StoreClient(clients[role], 0.5).templates(ask)
        # the operator's own admin operations are answered
        page = await StoreClient(clients["operator"], 2.0).list_templates(
            store_pb2.ListTemplatesRequest(limit=1)
        )
        assert list(page.subjects) == []
    finally:
        for nc in clients.values():
            await nc.close()
        await c.stop()


async def test_only_searchers_consume_template_events(nats_server, tmp_path):
    c = Cluster(env_for(nats_server.url, tmp_path))
    await c.start_store()  # creates the event stream
    clients = {}
    try:
        for role in ("searcher-p0", "gateway", "detector", "operator"):
            clients[role] = await bus.connect(nats_server.url_for(role), role)
        filt = natsnames.template_events(0)
        await bus.reset_durable_consumer(
            clients["searcher-p0"].jetstream(), natsnames.EVENTS_STREAM, "searcher-p0-r0", filt
        )
        for role in ("gateway", "detector", "operator"):
            with pytest.raises(Exception):  # noqa: B017 - refused: the request never arrives
                await asyncio.wait_for(
                    bus.reset_durable_consumer(
                        clients[role].jetstream(), natsnames.EVENTS_STREAM, role, filt
                    ),
                    2,
                )
    finally:
        for nc in clients.values():
            await nc.close()
        await c.stop()


async def _consumer_as(nats_server, role: str, durable: str, filt: str) -> list[str]:
    """Asks, as ``role``, for a durable consumer of the event stream with
    filter ``filt``; returns the server's permission errors (empty: created)."""
    import nats
    from nats.js import api

    refusals: list[str] = []

    async def on_error(exc: Exception) -> None:
        if "permissions violation" in str(exc).lower():
            refusals.append(str(exc))

    nc = await nats.connect(nats_server.url_for(role), error_cb=on_error,
                            inbox_prefix=natsroles.inbox(role).encode(), allow_reconnect=False)  # fmt: skip
    try:
        js = nc.jetstream(timeout=1.0)
        config = api.ConsumerConfig(name=durable, durable_name=durable, filter_subject=filt,
                                    ack_policy=api.AckPolicy.ALL)  # fmt: skip
        try:
            await js.add_consumer(natsnames.EVENTS_STREAM, config)
        except Exception:  # noqa: BLE001 - refused: the server drops the request and says why
            await nc.flush()
            await asyncio.sleep(0.2)
            assert refusals, f"{role}: consumer on {filt} neither created nor refused"
    finally:
        await nc.close()
    return refusals


async def _publish_as(nats_server, role: str, subject: str) -> list[str]:
    """Publishes one message to ``subject`` as ``role``; the server's
    permission errors (empty: delivered)."""
    import nats

    refusals: list[str] = []

    async def on_error(exc: Exception) -> None:
        if "permissions violation" in str(exc).lower():
            refusals.append(str(exc))

    nc = await nats.connect(nats_server.url_for(role), error_cb=on_error,
                            inbox_prefix=natsroles.inbox(role).encode(), allow_reconnect=False)  # fmt: skip
    try:
        await nc.publish(subject, b"{}")
        await nc.flush()
        await asyncio.sleep(0.3)
    finally:
        await nc.close()
    return refusals


async def test_a_partitions_searcher_reads_only_its_own_partitions_events(nats_server, tmp_path):
    c = Cluster(env_for(nats_server.url, tmp_path))
    await c.start_store()  # creates the event stream
    try:
        own = natsnames.template_events(0)
        assert await _consumer_as(nats_server, "searcher-p0", "searcher-p0-r0", own) == []
        for filt in (natsnames.template_events(1), natsnames.ALL_TEMPLATE_EVENTS,
                     natsnames.EVENTS_WILDCARD, ">"):  # fmt: skip
            refused = await _consumer_as(nats_server, "searcher-p0", "searcher-p0-r0", filt)
            assert refused and f"consumer.create.{natsnames.EVENTS_STREAM}".lower() in refused[0], (
                filt
            )
        # Its consumers are its own replicas' (named by replica), with its filter.
        for name in ("mine", "searcher-p1-r0", "searcher-p0-x"):
            refused = await _consumer_as(nats_server, "searcher-p0", name, own)
            assert refused and name in refused[0], name
        # It cannot pull from, acknowledge or delete another partition's consumer.
        other = await _consumer_as(nats_server, "searcher-p1", "searcher-p1-r0",
                                   natsnames.template_events(1))  # fmt: skip
        assert other == []
        for subject in (f"$JS.API.CONSUMER.MSG.NEXT.{natsnames.EVENTS_STREAM}.searcher-p1-r0",
                        f"$JS.API.CONSUMER.DELETE.{natsnames.EVENTS_STREAM}.searcher-p1-r0",
                        f"$JS.ACK.{natsnames.EVENTS_STREAM}.searcher-p1-r0.1.1.1.0.0"):  # fmt: skip
            refused = await _publish_as(nats_server, "searcher-p0", subject)
            assert refused and subject.lower() in refused[0].lower(), subject
        # Only the staging replica of a rebalance reads every partition's events.
        all_events = natsnames.ALL_TEMPLATE_EVENTS
        assert (
            await _consumer_as(nats_server, natsroles.STAGING, "searcher-n4-p0-r0", all_events)
            == []
        )
    finally:
        await c.stop()


async def _health(port: int) -> int:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as ch:
        return (await health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest())).status


async def _until(predicate, tries: int = 300) -> bool:
    for _ in range(tries):
        if await predicate():
            return True
        await asyncio.sleep(0.05)
    return False


async def test_the_gateway_comes_back_after_nats_drops_it(nats_server, tmp_path):
    c = Cluster(env_for(nats_server.url, tmp_path, TANU_REST_PORT="0"))
    await c.start_all()
    http = aiohttp.ClientSession()
    url = f"http://127.0.0.1:{c.gateway.rest.port}/healthz"

    async def rest_status() -> int:
        async with http.get(url) as r:
            return r.status

    async def unknown_subject_answered() -> bool:
        try:
            await c.stub.GetSubject(identity_pb2.GetSubjectRequest(subject_id="nobody"))
        except grpc.aio.AioRpcError as exc:
            return exc.code() == grpc.StatusCode.NOT_FOUND
        return False

    try:
        assert await _health(c.gateway.port) == SERVING and await rest_status() == 200
        # The server goes away: health and /healthz say so until it is back.
        nats_server.stop()
        assert await _until(lambda: _is(_health(c.gateway.port), NOT_SERVING))
        assert await rest_status() == 503
        nats_server.start()
        assert await _until(lambda: _is(_health(c.gateway.port), SERVING))
        assert await rest_status() == 200
        assert await unknown_subject_answered()
        # The server closes the connection for good (a message over its
        # payload limit: nats-py checks the payload, not the headers): a
        # fresh connection replaces it and the gateway serves again.
        renewed = c.gateway.nc.renewals
        limit = c.gateway.nc.max_payload
        await c.gateway.nc.publish("tanu.nowhere", b"x" * (limit - 10), headers={"H": "y" * 64})
        assert await _until(lambda: _true(c.gateway.nc.renewals > renewed))
        assert await _until(unknown_subject_answered)
        assert await _health(c.gateway.port) == SERVING and await rest_status() == 200
    finally:
        await http.close()
        await c.stop()


async def _is(status, want: int) -> bool:
    try:
        return await status == want
    except grpc.aio.AioRpcError:
        return False


async def _true(value: bool) -> bool:
    return value


async def test_a_store_whose_connection_is_closed_goes_not_serving_and_asks_for_a_restart(
    nats_server, tmp_path
):
    c = Cluster(env_for(nats_server.url, tmp_path))
    store = await c.start_store()
    try:
        assert await _health(store.port) == SERVING and not store.failed.is_set()
        limit = store.nc.max_payload
        await store.nc.publish("tanu.nowhere", b"x" * (limit - 10), headers={"H": "y" * 64})
        # its relay is bound to the closed client: it cannot renew in place
        await asyncio.wait_for(store.failed.wait(), 10)
        assert await _health(store.port) == NOT_SERVING
    finally:
        await c.stop()


async def test_the_gateway_may_not_call_the_operators_store_operations(nats_server, tmp_path):
    c = Cluster(env_for(nats_server.url, tmp_path))
    await c.start_store()
    nc = await bus.connect(nats_server.url_for("gateway"), "gw")
    try:
        with pytest.raises(errors.DeadlineExceeded):  # dropped by the server
            await StoreClient(nc, 0.5).list_templates(store_pb2.ListTemplatesRequest(limit=1))
        with pytest.raises(errors.DeadlineExceeded):
            await StoreClient(nc, 0.5).rewrap(store_pb2.RewrapKeysRequest())
    finally:
        await nc.close()
        await c.stop()


async def test_the_gateway_may_read_each_partitions_last_event_sequence(nats_server, tmp_path):
    # Read-your-writes asks the stream for each partition's last sequence
    # on every search batch; a refusal would cost every search a timeout
    # and leave the mark unknown.
    from tanu.core import ids, vectors
    from tanu.core.metrics import Metrics
    from tanu.gateway.freshness import Freshness
    from tanu.v1 import common_pb2

    from conftest import unit_vectors
    from helpers import ADULT_DOB

    c = Cluster(env_for(nats_server.url, tmp_path))
    await c.start_store()
    op = await bus.connect(nats_server.url_for("operator"), "op")
    nc = await bus.connect(nats_server.url_for("gateway"), "gw")
    other = await bus.connect(nats_server.url_for("detector"), "det")
    try:
        vec = unit_vectors(1, seed=3)[0]
        await StoreClient(op, 5).put(store_pb2.PutSubjectRequest(
            subject_id="fresh-1", date_of_birth=ADULT_DOB,
            consent=common_pb2.Consent(purposes=["kyc"], evidence_ref="f"),
            templates=[common_pb2.Template(vector=vectors.to_bytes(vec))],
        ))  # fmt: skip
        k = ids.partition_of("fresh-1", c.layout.partitions)
        marks = await Freshness(nc, 0.1, Metrics.create()).marks([k])
        assert marks[k] > 0, "the gateway read the partition's last event sequence"
        with pytest.raises(Exception):  # noqa: B017 - the detector role may not ask
            await other.jetstream(timeout=0.5).get_last_msg(
                natsnames.EVENTS_STREAM, natsnames.template_events(k)
            )
    finally:
        for conn in (op, nc, other):
            await conn.close()
        await c.stop()
