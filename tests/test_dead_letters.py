"""Dead letters (template events JetStream refused for good, set aside by
the relay): an operator lists them with ``tanu deadletters list`` (no
subject id shown) and requeues them once the cause is fixed; a requeue
publishes what the store holds now, never the stale event; an erased
subject's set-aside events are erased with it and can never come back."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from nats.js import api
from test_encounters_store import _add, _consent
from test_store import keyring, store, target  # noqa: F401 (fixtures: SQLite and PostgreSQL)

from tanu.core import bus, errors, natsnames
from tanu.v1 import common_pb2, store_pb2

import helpers
from conftest import Cluster, env_for, unit_vectors
from helpers import identify

ADDED = store_pb2.TemplateEvent.KIND_ADDED


def set_aside(store, reason: str = "maximum message payload exceeded") -> list[int]:  # noqa: F811
    """Everything in the outbox dead-lettered, as the relay does with an
    event JetStream refuses for good; the seqs."""
    rows = store.outbox_batch(100)
    for r in rows:
        store.dead_letter(r.seq, reason)
    return [r.seq for r in rows]


def test_an_erased_subjects_dead_letters_are_erased_with_it_and_the_receipt_says_so(store):  # noqa: F811
    store.put_subject("kept", unit_vectors(1, seed=1))
    store.put_subject("erased", unit_vectors(2, seed=2))
    assert len(set_aside(store)) == 2
    d = store.delete_subject("erased", "the subject asked")
    listed = store.list_dead_letters()
    assert listed.total == 1 and [x.kind for x in listed.letters] == [ADDED]
    body = json.loads(store.seal_receipt(d.receipt_id, [], Ed25519PrivateKey.generate()).body_json)
    assert body["event_stream"]["dead_letters_dropped"] == 1
    # What is left requeues only the subject still held.
    out = store.requeue_dead_letters([], True)
    assert (out.requeued, out.subjects, out.templates, out.dropped) == (1, 1, 1, 0)
    queued = store.outbox_batch(100)
    assert {r.subject_id for r in queued} == {
        "erased",
        "kept",
    }  # the removal, and kept's fresh event
    assert {r.subject_id for r in queued if r.kind == ADDED} == {"kept"}
    assert store.list_dead_letters().total == 0


def test_a_requeue_publishes_the_subject_as_held_now_and_refuses_bad_requests(store):  # noqa: F811
    store.put_subject("moved", unit_vectors(1, seed=3))
    (seq,) = set_aside(store)
    with pytest.raises(errors.InvalidArgument):
        store.requeue_dead_letters([], False)  # neither seqs nor all
    with pytest.raises(errors.InvalidArgument):
        store.requeue_dead_letters([seq], True)
    with pytest.raises(errors.NotFound):
        store.requeue_dead_letters([seq, seq + 100], False)
    assert store.list_dead_letters().total == 1  # a refused request changed nothing
    with pytest.raises(errors.InvalidArgument):
        store.list_dead_letters(5000)
    stale = store.list_dead_letters().letters[0].event_id
    out = store.requeue_dead_letters([seq], False)
    assert (out.requeued, out.subjects, out.templates) == (1, 1, 1)
    (row,) = store.outbox_batch(100)
    event = store_pb2.TemplateEvent.FromString(row.payload)
    # a fresh event built from the store's rows, not the set-aside one
    assert event.subject_id == "moved" and event.event_id != stale
    entries = [e for e in store.audit_entries() if e.operation == "requeue_dead_letters"]
    assert len(entries) == 1 and json.loads(entries[0].detail)["requeued"] == 1


async def tanu_deadletters(nats_server, *args: str) -> subprocess.CompletedProcess:
    """The operator's command line, against the running cluster (in a
    thread: the cluster answers from this event loop)."""
    cmd = [sys.executable, "-m", "tanu.ops.cli", "deadletters", *args,
           "--nats", nats_server.url_for("operator")]  # fmt: skip
    return await asyncio.to_thread(subprocess.run, cmd, capture_output=True, text=True, timeout=60)


async def max_msg_size(nc, size: int) -> None:
    js = nc.jetstream()
    info = await js.stream_info(natsnames.EVENTS_STREAM)
    config = api.StreamConfig.from_response(info.config.as_dict())
    config.max_msg_size = size
    await js.update_stream(config)


async def top_subject(c: Cluster, vec) -> str:
    found = await c.stub.Identify(identify(vec))
    return found.candidates[0].subject_id if found.candidates else ""


async def test_the_operator_lists_and_requeues_dead_letters_into_the_indexes(nats_server, tmp_path):
    c = Cluster(env_for(nats_server.url, tmp_path))
    await c.start_all()
    nc = await bus.connect(nats_server.url_for("test"), "test")
    try:
        await max_msg_size(nc, 200)  # an added-template event is larger
        v = unit_vectors(2, seed=5)
        db = c.store.db
        consent = common_pb2.Consent(purposes=list(helpers.PURPOSES), evidence_ref="form-1")
        await db.run(db.put_many, [("refused-0", v[0:1]), ("refused-1", v[1:2])],
                     helpers.ADULT_DOB, consent)  # fmt: skip
        c.store.relay.wake()
        for _ in range(400):  # the relay retries a refused event for 10 s first
            if await db.run(db.dead_letters_count) == 2:
                break
            await asyncio.sleep(0.1)
        assert await db.run(db.dead_letters_count) == 2
        assert await top_subject(c, v[0]) != "refused-0"  # not in any index

        listed = await tanu_deadletters(nats_server, "list", "--json")
        assert listed.returncode == 0, listed.stdout + listed.stderr
        letters = json.loads(listed.stdout)
        assert letters["total"] == 2 and {x["kind"] for x in letters["letters"]} == {"added"}
        assert "refused-" not in listed.stdout  # no subject id for the operator's screen

        await max_msg_size(nc, -1)  # the cause fixed
        out = await tanu_deadletters(nats_server, "requeue", "--all")
        assert out.returncode == 0 and "requeued 2 dead letter(s): 2 subject(s)" in out.stdout, out
        for _ in range(100):
            if await top_subject(c, v[0]) == "refused-0":
                break
            await asyncio.sleep(0.1)
        assert await top_subject(c, v[0]) == "refused-0"
        assert await top_subject(c, v[1]) == "refused-1"
        assert "0 dead letter(s)" in (await tanu_deadletters(nats_server, "list")).stdout

        missing = await tanu_deadletters(nats_server, "requeue", "12345")
        assert missing.returncode == 1 and "NOT_FOUND" in missing.stdout
        assert (await tanu_deadletters(nats_server, "requeue")).returncode == 2
    finally:
        await nc.close()
        await c.stop()


def test_an_erased_encounters_vector_leaves_the_dead_letters(store):  # noqa: F811
    """A subject's set-aside events may carry an encounter's template: when
    that encounter is erased they go, and only the kept template is queued
    again (fresh, from the store), so no requeue can bring it back."""
    v = unit_vectors(2, seed=6)
    store.put_subject("two", v[:1], helpers.ADULT_DOB, _consent())
    second = _add(store, "two", v[1], encounter_id="second").encounter
    assert len(set_aside(store)) == 2
    gone = store.delete_encounter(store_pb2.EncounterErasureRequest(
        subject_id="two", encounter_id="second", reason="the subject asked"))  # fmt: skip
    assert store.list_dead_letters().total == 0
    receipt = store.seal_receipt(gone.receipt_id, [], Ed25519PrivateKey.generate())
    assert json.loads(receipt.body_json)["event_stream"]["dead_letters_dropped"] == 2
    added = [store_pb2.TemplateEvent.FromString(r.payload) for r in store.outbox_batch(100)
             if r.kind == ADDED]  # fmt: skip
    carried = {t for ev in added for t in ev.template_ids}
    assert second.template_id not in carried and len(carried) == 1
