"""Erasure receipts: complete when Delete returns on a healthy cluster
(every replica of the subject's partition, in the current layout, has the
removal in its index), the final one (every snapshot purged too) fetched
later with GetErasureReceipt and `tanu receipt`, always signed by the
store over a body it builds from its own erasure record; replicas of
another layout (staging) do not count; SealReceipt signs no caller body."""

from __future__ import annotations

import asyncio
import json

import grpc
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from test_store import keyring, store, target  # noqa: F401 (fixtures: SQLite and PostgreSQL)

from tanu.clients.store import StoreClient
from tanu.core import bus, errors, natsnames, signing
from tanu.core import config as cfg
from tanu.core.ids import partition_of
from tanu.ops import repartition
from tanu.ops.cli import main as tanu
from tanu.searcher import SearcherService
from tanu.v1 import common_pb2, identity_pb2, store_pb2

from conftest import Cluster, env_for, operator_token, unit_vectors
from helpers import enroll


async def final_receipt(stub, rid: str, sid: str, timeout: float = 30.0):
    end = asyncio.get_running_loop().time() + timeout
    while True:
        r = await stub.GetErasureReceipt(
            identity_pb2.GetErasureReceiptRequest(receipt_id=rid, subject_id=sid)
        )
        if r.snapshots_purged or asyncio.get_running_loop().time() > end:
            return r
        await asyncio.sleep(0.3)


@pytest.fixture
async def two_replicas(nats_server, tmp_path):
    env = env_for(nats_server.url, tmp_path, TANU_SNAPSHOT_DIR=str(tmp_path / "snaps"),
                  TANU_SNAPSHOT_INTERVAL_S="3600", TANU_SNAPSHOT_ERASURE_DELAY_S="1")  # fmt: skip
    c = Cluster(env)
    try:
        await c.start_store()
        for p in (0, 1):
            for rep in ("r0", "r1"):
                await c.start_searcher(p, rep)
        await c.start_gateway()
        yield c
    finally:
        await c.stop()


async def test_receipts_are_complete_on_return_and_final_later(two_replicas, tmp_path, capsys):
    c = two_replicas
    public = signing.load_public_key(c.env["TANU_AUDIT_KEY_FILE"] + ".pub")
    gallery = unit_vectors(6, seed=71)
    for i, v in enumerate(gallery):
        assert (await c.stub.Enroll(enroll(f"rc{i}", v, wait_indexed=True))).indexed
    for s in c.searchers.values():
        await s.take_snapshot()  # every snapshot holds the subjects
    receipts = []
    for i in range(6):
        d = await c.stub.Delete(identity_pb2.DeleteRequest(subject_id=f"rc{i}", reason="test"))
        rec = d.receipt
        body = json.loads(rec.body_json)
        assert rec.complete and rec.index_removed, rec.body_json
        assert signing.verify_signature(public, rec.signature, rec.body_json.encode())
        assert body["complete"] and body["subject_id"] == f"rc{i}"
        assert sorted(x["replica"] for x in body["searchers"]) == ["r0", "r1"]
        assert all(x["index_removed"] for x in body["searchers"])
        stream = body["event_stream"]
        assert stream["template_messages_deleted"] == stream["template_messages_queued"] == 1
        assert body["partitions"] == 2 and body["partition"] == d.partition
        receipts.append((rec, f"rc{i}"))

    for rec, sid in receipts:
        final = await final_receipt(c.stub, rec.receipt_id, sid)
        assert final.snapshots_purged and final.complete, final.body_json
        assert signing.verify_signature(public, final.signature, final.body_json.encode())
        body = json.loads(final.body_json)
        assert all(x["snapshot_purged"] for x in body["searchers"]) and body["snapshots_purged"]
        if not rec.snapshots_purged:
            assert final.audit_seq > rec.audit_seq, "signed again, and audited"
        again = await c.stub.GetErasureReceipt(identity_pb2.GetErasureReceiptRequest(
            receipt_id=rec.receipt_id, subject_id=sid))  # fmt: skip
        assert again == final, "the final receipt is never signed again"

    # Another subject's id, or an unknown receipt: the same NOT_FOUND.
    rec, sid = receipts[0]
    for rid, who in ((rec.receipt_id, "rc1"), ("er-0000", sid)):
        with pytest.raises(grpc.aio.AioRpcError) as exc:
            await c.stub.GetErasureReceipt(
                identity_pb2.GetErasureReceiptRequest(receipt_id=rid, subject_id=who)
            )
        assert exc.value.code() == grpc.StatusCode.NOT_FOUND
        assert exc.value.details() == "no such erasure receipt"

    # `tanu receipt ID --subject S` prints the final receipt, its signature checked.
    gw = f"127.0.0.1:{c.gateway.port}"
    code = await asyncio.to_thread(
        tanu, ["--var", str(tmp_path / "var"), "receipt", rec.receipt_id, "--subject", sid,
               "--gateway", gw, "--token", operator_token(c.env),
               "--public-key", c.env["TANU_AUDIT_KEY_FILE"] + ".pub"],
    )  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0 and "snapshots purged: True" in out and "signature" in out and "valid" in out


async def test_a_staging_replica_does_not_count_and_the_store_signs_no_caller_body(
    nats_server, tmp_path
):
    env = env_for(nats_server.url, tmp_path, TANU_ERASURE_WAIT_S="1")
    c = Cluster(env)
    staging = None
    nc = await bus.connect(nats_server.url_for("test"), "test")
    try:
        await c.start_all()
        # A staging searcher of a 3-partition layout reads every event.
        env3 = {**env, "TANU_PARTITIONS": "3", "TANU_SEARCHER_STAGING": "true",
                "TANU_REPLICA": "staging"}  # fmt: skip
        sid = "stg-subject"
        r = await c.stub.Enroll(enroll(sid, unit_vectors(1, seed=72)[0], wait_indexed=True))
        await repartition.begin(nc.jetstream(), 3)
        staging = await SearcherService(cfg.from_env(
            cfg.SearcherConfig, {**env3, "TANU_PARTITION": str(partition_of(sid, 3))})).start()  # fmt: skip
        await staging.caught_up.wait()
        # Stop the current layout's replica of the subject's partition: only
        # the staging one could answer now, and it must not count.
        await c.stop_searcher(r.subject.partition)
        d = await c.stub.Delete(identity_pb2.DeleteRequest(subject_id=sid))
        body = json.loads(d.receipt.body_json)
        assert not d.receipt.complete and body["searchers"] == [], body

        store = StoreClient(nc, 10.0)
        rid = d.receipt.receipt_id
        # A confirmation of another layout's replica is refused.
        bad = store_pb2.ReplicaConfirmation(replica="staging", partition=body["partition"],
                                            partitions=3, index_removed=True, snapshot_purged=True)  # fmt: skip
        with pytest.raises(errors.InvalidArgument):
            await store.seal_receipt(store_pb2.SealReceiptRequest(receipt_id=rid, replicas=[bad]))
        # An unknown receipt id signs nothing.
        with pytest.raises(errors.NotFound):
            await store.seal_receipt(store_pb2.SealReceiptRequest(receipt_id="er-forged"))
        # The old form (a body in field 3) is ignored: the store signs its own.
        forged = b'{"complete":true,"subject_id":"someone-else"}'
        raw = store_pb2.SealReceiptRequest(receipt_id=rid).SerializeToString()
        raw += b"\x1a" + bytes([len(forged)]) + forged
        reply = await bus.request(nc, natsnames.store("receipt"), raw, type(d.receipt), 10.0)
        assert (
            reply.body_json != forged.decode() and json.loads(reply.body_json)["subject_id"] == sid
        )
        assert not reply.complete
    finally:
        await nc.close()
        if staging:
            await staging.stop()
        await c.stop()


def test_the_store_signs_only_its_own_record_and_counts_stream_deletions(store):  # noqa: F811
    """On SQLite and PostgreSQL: the erasure record is written with the
    erasure; the receipt counts stream messages as deleted only once the
    relay has deleted them; confirmations are merged, never withdrawn."""
    key = Ed25519PrivateKey.generate()
    store.put_subject("s1", unit_vectors(2, seed=90))
    rows = store.outbox_batch(10)
    store.outbox_done(rows, [101])  # the relay published its event at stream sequence 101
    part = store.get_subject("s1").partition
    before = store.digest(common_pb2.DigestRequest(partitions=2, partition=part)).ranges[0]
    assert before.count == 2
    d = store.delete_subject("s1", "test", "gov", "clerk")
    assert store.digest(common_pb2.DigestRequest(partitions=2, partition=part)).ranges[0].count == 0
    conf = store_pb2.ReplicaConfirmation(replica="r0", partition=part, partitions=2,
                                         index_removed=True)  # fmt: skip
    r = store.seal_receipt(d.receipt_id, [conf], key)
    body = json.loads(r.body_json)
    assert body["requested_by"] == {"tenant": "gov", "client": "clerk"}
    assert body["event_stream"]["template_messages_queued"] == 1
    assert body["event_stream"]["template_messages_deleted"] == 0
    assert not r.complete and r.index_removed, "the stream still holds the message"
    store.outbox_done(store.outbox_batch(10), [102])  # the removal event
    store.stream_erasures_done(store.pending_stream_erasures(10))
    r = store.seal_receipt(d.receipt_id, [], key)  # r0's confirmation is kept
    body = json.loads(r.body_json)
    assert body["event_stream"]["template_messages_deleted"] == 1 and r.complete
    assert [x["replica"] for x in body["searchers"]] == ["r0"] and not r.snapshots_purged
    assert store.get_receipt(d.receipt_id) == r
    conf.snapshot_purged = True
    final = store.seal_receipt(d.receipt_id, [conf], key)
    assert final.snapshots_purged and final.audit_seq > r.audit_seq
    assert signing.verify_signature(key.public_key(), final.signature, final.body_json.encode())
    assert store.seal_receipt(d.receipt_id, [], key) == final
    for bad in ([store_pb2.ReplicaConfirmation(replica="r 0", partition=part, partitions=2)],
                [conf, conf]):  # fmt: skip
        with pytest.raises(errors.InvalidArgument):
            store.seal_receipt(d.receipt_id, bad, key)


def test_an_event_in_flight_at_the_erasure_keeps_the_receipt_incomplete_until_deleted(store):  # noqa: F811
    """The relay read the subject's event, the subject is erased, then the
    relay's publication is acknowledged: that stream message must go too
    before the receipt says complete."""
    key = Ed25519PrivateKey.generate()
    store.put_subject("s2", unit_vectors(1, seed=91))
    in_flight = store.outbox_batch(10)  # the relay is publishing it
    d = store.delete_subject("s2", "test")
    store.outbox_done(in_flight, [301])  # acknowledged after the erasure: queued for deletion
    store.outbox_done(store.outbox_batch(10), [302])  # the removal event
    conf = store_pb2.ReplicaConfirmation(replica="r0", partition=d.subject.partition,
                                         partitions=2, index_removed=True)  # fmt: skip
    r = store.seal_receipt(d.receipt_id, [conf], key)
    body = json.loads(r.body_json)["event_stream"]
    assert not r.complete and body["stream_deletions_pending"] == 1
    assert body["unpublished_events_dropped"] == 1
    store.stream_erasures_done(store.pending_stream_erasures(10))
    assert store.seal_receipt(d.receipt_id, [], key).complete
