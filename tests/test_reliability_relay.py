"""The outbox relay under faults: it never dies on a database error, two
relays on one PostgreSQL database never drop an unpublished event (not even
one whose transaction took a lower sequence number and committed late), and
a poison event goes to the dead-letter table instead of blocking the stream."""

from __future__ import annotations

import asyncio
import sqlite3
import time
import uuid
from pathlib import Path

import pytest
from nats.js import api
from pg import schema_dsn

from tanu.core import bus, natsnames
from tanu.core.metrics import Metrics
from tanu.store import MSG_ID, OutboxRelay
from tanu.v1 import common_pb2, store_pb2

import helpers
from conftest import Cluster, env_for, unit_vectors


def consent() -> common_pb2.Consent:
    return common_pb2.Consent(purposes=list(helpers.PURPOSES), evidence_ref="import-1")


async def put(store, prefix: str, n: int, seed: int) -> None:
    vecs = unit_vectors(n, seed=seed)
    items = [(f"{prefix}{i}", vecs[i : i + 1]) for i in range(n)]
    await store.db.run(store.db.put_many, items, helpers.ADULT_DOB, consent())
    if store.relay:
        store.relay.wake()


async def stream_event_ids(nc) -> list[str]:
    """The Nats-Msg-Id of every message in the event stream, in order."""
    js = nc.jetstream()
    info = await js.stream_info(natsnames.EVENTS_STREAM)
    out = []
    for seq in range(info.state.first_seq, info.state.last_seq + 1):
        try:
            msg = await js.get_msg(natsnames.EVENTS_STREAM, seq)
        except Exception:  # noqa: BLE001 - deleted
            continue
        out.append(msg.headers[MSG_ID])
    return out


async def until(check, timeout: float = 20.0, what: str = "condition") -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if await check():
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def pg_dsn():
    with schema_dsn() as dsn:
        yield dsn


async def test_two_relays_on_one_postgres_publish_every_event_even_a_late_commit(
    nats_server, tmp_path, pg_dsn
):
    import psycopg

    env = env_for(nats_server.url, tmp_path, TANU_STORE_DSN=pg_dsn)
    a, b = Cluster(env), Cluster(env)
    await a.start_store()
    await b.start_store()
    nc = await bus.connect(nats_server.url_for("test"), "test")
    held = psycopg.connect(pg_dsn)  # a transaction of its own, left open
    try:
        # A writer takes a sequence number now and commits only later.
        late = store_pb2.TemplateEvent(
            event_id=str(uuid.uuid4()), kind=store_pb2.TemplateEvent.KIND_REMOVED,
            subject_id="late-1", partition=0, occurred_at_ms=1,
        )  # fmt: skip
        held.execute(
            "INSERT INTO outbox(event_id, subject, subject_id, kind, payload, created_at_ms) "
            "VALUES (%s, %s, %s, %s, %s, %s)",
            (late.event_id, natsnames.template_events(0), late.subject_id, late.kind,
             late.SerializeToString(), 1),
        )  # fmt: skip
        # Both stores enrol, concurrently; both relays publish the shared outbox.
        await asyncio.gather(
            *[put(s, f"{tag}{k}-", 10, seed=k * 2 + i)
              for k in range(3) for i, (tag, s) in enumerate((("a", a.store), ("b", b.store)))]
        )  # fmt: skip

        async def sixty() -> bool:
            return len(await stream_event_ids(nc)) >= 60

        await until(sixty, what="60 events on the stream")
        await a.store.relay.wait_idle(20)
        await b.store.relay.wait_idle(20)
        published = await stream_event_ids(nc)
        assert len(published) == 60 and len(set(published)) == 60
        assert late.event_id not in published

        held.commit()  # the lower sequence number commits last
        a.store.relay.wake()
        b.store.relay.wake()

        async def late_published() -> bool:
            return late.event_id in await stream_event_ids(nc)

        await until(late_published, what="the late event on the stream")
        assert len(await stream_event_ids(nc)) == 61
        assert await a.store.db.run(a.store.db.outbox_pending) == 0
        assert await a.store.db.run(a.store.db.dead_letters_count) == 0
        for s in (a.store, b.store):
            assert s.metrics.registry.get_sample_value("tanu_relay_dead_letters_total") == 0
    finally:
        held.close()
        await nc.close()
        await a.stop()
        await b.stop()


async def test_a_poison_event_goes_to_dead_letters_and_the_stream_moves_on(nats_server, tmp_path):
    c = Cluster(env_for(nats_server.url, tmp_path))
    await c.start_store()
    nc = await bus.connect(nats_server.url_for("test"), "test")
    js = nc.jetstream()
    try:
        info = await js.stream_info(natsnames.EVENTS_STREAM)
        small = api.StreamConfig.from_response(info.config.as_dict())
        small.max_msg_size = 200  # an added-template event is larger
        await js.update_stream(small)
        await put(c.store, "big", 3, seed=1)
        db, m = c.store.db, c.store.metrics

        async def three_dead() -> bool:
            return await db.run(db.dead_letters_count) == 3

        await until(three_dead, what="three dead letters")
        assert await db.run(db.outbox_pending) == 0
        letters = await db.run(db.dead_letters)
        assert all("10054" in r[3] or "size" in r[3].lower() for r in letters), letters
        assert m.registry.get_sample_value("tanu_relay_dead_letters_total") == 3
        assert m.registry.get_sample_value("tanu_relay_dead_letters_held") == 3

        small.max_msg_size = -1
        await js.update_stream(small)
        await put(c.store, "ok", 2, seed=2)
        await c.store.relay.wait_idle(20)
        assert len(await stream_event_ids(nc)) == 2
        assert await db.run(db.dead_letters_count) == 3
    finally:
        await nc.close()
        await c.stop()


async def test_a_database_error_is_counted_and_retried_not_fatal(nats_server, tmp_path):
    c = Cluster(env_for(nats_server.url, tmp_path))
    await c.start_store(TANU_RELAY_ENABLED="false")
    nc = await bus.connect(nats_server.url_for("test"), "test")
    lock = sqlite3.connect(Path(c.env["TANU_STORE_DB"]), isolation_level=None)
    metrics = Metrics.create()
    relay = OutboxRelay(c.store.db, nc.jetstream(), batch=10, poll_s=0.2, metrics=metrics)
    try:
        await put(c.store, "s", 5, seed=3)
        lock.execute("BEGIN EXCLUSIVE")  # the relay can read but not forget
        relay.start()

        async def failed() -> bool:
            return (metrics.registry.get_sample_value("tanu_relay_errors_total",
                                                      {"kind": "database"}) or 0) >= 1  # fmt: skip

        await until(failed, 30, "a counted database error")
        lock.execute("ROLLBACK")
        await relay.wait_idle(30)  # the relay lived on and finished the job
        assert await c.store.db.run(c.store.db.outbox_pending) == 0
        assert len(await stream_event_ids(nc)) == 5  # re-published ones were de-duplicated
    finally:
        await relay.stop()
        lock.close()
        await nc.close()
        await c.stop()


async def test_an_event_that_cannot_be_opened_is_dead_lettered_not_blocking(nats_server, tmp_path):
    c = Cluster(env_for(nats_server.url, tmp_path))
    await c.start_store(TANU_RELAY_ENABLED="false")
    nc = await bus.connect(nats_server.url_for("test"), "test")
    metrics = Metrics.create()
    relay = OutboxRelay(c.store.db, nc.jetstream(), batch=10, poll_s=0.2, metrics=metrics)
    try:
        await put(c.store, "s", 4, seed=4)
        # Damage one sealed event in the database (disk corruption, a bad restore).
        with sqlite3.connect(Path(c.env["TANU_STORE_DB"]), isolation_level=None) as raw:
            raw.execute("UPDATE outbox SET payload = X'00112233445566778899aabbccddeeff00' "
                        "WHERE subject_id = 's2'")  # fmt: skip
        relay.start()
        await relay.wait_idle(20)
        letters = await c.store.db.run(c.store.db.dead_letters)
        assert len(letters) == 1 and "cannot be opened" in letters[0][3], letters
        assert len(await stream_event_ids(nc)) == 3  # the other three went out
        assert metrics.registry.get_sample_value("tanu_relay_dead_letters_total") == 1
    finally:
        await relay.stop()
        await nc.close()
        await c.stop()


async def test_a_flush_is_answered_once_its_own_events_are_out_not_the_whole_backlog(
    nats_server, tmp_path
):
    """An acknowledgement waits for the caller's events to be on the stream
    (read-your-writes), not for every event committed after them: with a
    busy outbox (an import sending its next batches), the flush of the
    first events ends while later ones are still queued."""
    c = Cluster(env_for(nats_server.url, tmp_path))
    await c.start_store(TANU_RELAY_ENABLED="false")
    nc = await bus.connect(nats_server.url_for("test"), "test")
    metrics = Metrics.create()
    relay = OutboxRelay(c.store.db, nc.jetstream(), batch=4, poll_s=0.2, metrics=metrics)
    db = c.store.db

    def late() -> float | None:
        return metrics.registry.get_sample_value("tanu_relay_flush_late_total")

    try:
        await put(c.store, "first", 4, seed=5)
        # With the relay not running, a flush ends at its bound and is counted.
        assert await relay.flush(timeout=0.2) is False and late() == 1
        flushed = asyncio.ensure_future(relay.flush(timeout=30))
        await asyncio.sleep(0)  # asked now: it waits for these 4 events
        await put(c.store, "later", 40, seed=6)  # committed after the flush was asked
        relay.start()
        assert await flushed is True and late() == 1
        assert await db.run(db.outbox_pending) >= 30, "it waited for the later events too"
        assert len(await stream_event_ids(nc)) >= 4
        await relay.wait_idle(30)
        assert await db.run(db.outbox_pending) == 0
        assert len(await stream_event_ids(nc)) == 44
    finally:
        await relay.stop()
        await nc.close()
        await c.stop()
