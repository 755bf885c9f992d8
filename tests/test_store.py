"""The store on both backends: SQLite (the embedded default) and PostgreSQL
(127.0.0.1:5432, database ``test``, a fresh schema per test). The same
tests run on each: records, consent, lockout, envelope encryption and key
rotation, erasure, the layout migration, and the tamper-evident audit log
(verified offline by ``python -m tanu.store.admin``). Tampering goes through
a connection of its own to the database, as an attacker's would."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import grpc
import numpy as np
import pytest
from pg import schema_dsn

from tanu.clients.store import StoreClient
from tanu.core import audit, bus, envelope, errors, ids, signing
from tanu.core.config import Layout
from tanu.store import Store
from tanu.v1 import common_pb2, store_pb2, store_pb2_grpc

from conftest import unit_vectors

LAYOUT = Layout(partitions=2)


@pytest.fixture(params=["sqlite", "postgres"])
def target(request, tmp_path: Path):
    if request.param == "sqlite":
        yield str(tmp_path / "store.sqlite3")
        return
    with schema_dsn() as dsn:
        yield dsn


@pytest.fixture
def keyring(tmp_path: Path) -> Path:
    path = tmp_path / "master.keyring"
    envelope.init_keyring(path)
    return path


@pytest.fixture
def store(target, keyring):
    s = Store(target, LAYOUT, envelope.LocalKeyProvider.from_file(keyring))
    yield s
    s.close()


class Raw:
    """A connection of its own to the store's database (autocommit), as an
    auditor reading it or an attacker with access to it would have."""

    def __init__(self, target: str) -> None:
        if target.startswith("postgresql://"):
            import psycopg

            self.conn = psycopg.connect(target, autocommit=True)
            self.marker = "%s"
        else:
            self.conn = sqlite3.connect(target, isolation_level=None)
            self.marker = "?"

    def rows(self, q: str, args=()) -> list:
        cur = self.conn.execute(q.replace("?", self.marker), tuple(args))
        return cur.fetchall() if cur.description else []

    def one(self, q: str, args=()):
        rows = self.rows(q, args)
        return rows[0] if rows else None

    def close(self) -> None:
        self.conn.close()


@pytest.fixture
def raw(target):
    r = Raw(target)
    yield r
    r.close()


def consent(purposes=("kyc",), **kw) -> common_pb2.Consent:
    return common_pb2.Consent(purposes=list(purposes), evidence_ref="form-7", **kw)


def test_records_round_trip_sealed(store: Store, raw: Raw):
    v = unit_vectors(2, seed=11)
    s = store.put_subject("alice", v, "1990-05-01", consent())
    assert s.template_count == 2 and s.partition in (0, 1)
    held = store.get_templates("alice")
    got = np.frombuffer(b"".join(t.template.vector for t in held.templates), np.float32)
    assert np.array_equal(got.reshape(2, -1), v)
    assert held.status.purposes == ["kyc"] and held.status.date_of_birth == "1990-05-01"
    with pytest.raises(errors.AlreadyExists):
        store.put_subject("alice", v[:1], "1990-05-01", consent())
    # the outbox event opens to the plain event for the relay; the table holds it sealed
    (row,) = store.outbox_batch(10)
    ev = store_pb2.TemplateEvent.FromString(row.payload)
    assert ev.subject_id == "alice" and ev.vectors == v.tobytes()
    sealed_event = raw.one("SELECT payload FROM outbox")[0]
    assert v[0].tobytes()[:32] not in bytes(sealed_event)
    for (blob,) in raw.rows("SELECT sealed FROM templates"):
        assert v[0].tobytes()[:32] not in bytes(blob) and v[1].tobytes()[:32] not in bytes(blob)


def test_a_consent_is_required_to_be_complete(store: Store):
    v = unit_vectors(1, seed=12)
    with pytest.raises(errors.InvalidArgument, match="purpose"):
        store.put_subject("x", v, "1990-01-01", common_pb2.Consent(evidence_ref="e"))
    with pytest.raises(errors.InvalidArgument, match="evidence"):
        store.put_subject("x", v, "1990-01-01", common_pb2.Consent(purposes=["kyc"]))
    with pytest.raises(errors.InvalidArgument, match="relationship"):
        store.put_subject(
            "x", v, "2015-01-01", consent(given_by="guardian", guardian_subject_id="g")
        )
    with pytest.raises(errors.NotFound):  # nothing of the refused enrolments remains
        store.get_subject("x")


def test_consents_grant_and_revoke(store: Store):
    store.put_subject(
        "bob", unit_vectors(1, seed=13), "1980-01-01", consent(("kyc", "border_control"))
    )
    st = store.grant_consent("bob", consent(("social_services",)))
    assert st.purposes == ["border_control", "kyc", "social_services"]
    st = store.revoke_consent("bob", ["kyc"], "self")
    assert st.purposes == ["border_control", "social_services"]
    st = store.revoke_consent("bob", [], "self")
    assert st.purposes == []
    rep = store.report("bob")
    assert all(c.revoked_at_ms and c.revoked_by == "self" for c in rep.consents)
    assert rep.records["consents"] == 2 and rep.records["data_key"] == 1


def test_failed_verifications_delay_then_lock(store: Store):
    store.put_subject("carol", unit_vectors(1, seed=14), "1980-01-01", consent())
    for _ in range(4):
        st = store.record_verification("carol", False)
    assert st.failed_verifications == 4 and st.retry_after_ms == 0
    delays = []
    for _ in range(6):
        st = store.record_verification("carol", False)
        delays.append(st.retry_after_ms)
    grow = delays[:-1]  # growing until the lock; the unlock attempts' delays start again
    assert all(b > a for a, b in zip(grow, grow[1:], strict=False))
    assert 0 < delays[-1] < delays[-2]
    assert st.verification_locked and st.failed_verifications == 10
    st = store.set_biometric_lock("carol", False)  # the subject's unlock lifts the lockout
    assert not st.verification_locked and st.failed_verifications == 0
    store.record_verification("carol", False)
    assert store.record_verification("carol", True).failed_verifications == 0


def test_erasure_destroys_the_data_key_and_queues_stream_deletion(store: Store, raw: Raw):
    v = unit_vectors(1, seed=15)
    store.put_subject("dave", v, "1980-01-01", consent())
    rows = store.outbox_batch(10)
    store.outbox_done(rows, [41])  # the relay published it as stream message 41
    r = store.delete_subject("dave", "consent_revoked", "gov", "c1")
    assert r.data_key_id.startswith("dk-") and r.stream_messages == 1 and r.consents_removed == 1
    assert store.pending_stream_erasures() == [41]
    for table in ("subjects", "templates", "subject_keys", "consents"):
        assert raw.one(f"SELECT COUNT(*) FROM {table}")[0] == 0
    (ev,) = store.outbox_batch(10)
    assert (
        store_pb2.TemplateEvent.FromString(ev.payload).kind == store_pb2.TemplateEvent.KIND_REMOVED
    )
    entries = list(store.audit_entries())
    assert entries[-1].operation == "erase" and entries[-1].subject_id == "dave"
    assert '"data_key_id":"dk-' in entries[-1].detail


def test_an_erasure_before_publishing_drops_the_event(store: Store):
    store.put_subject("erin", unit_vectors(1, seed=16), "1980-01-01", consent())
    store.delete_subject("erin", "delete")
    (only,) = store.outbox_batch(10)  # the addition never leaves the store
    assert only.kind == store_pb2.TemplateEvent.KIND_REMOVED


def test_key_rotation_rewraps_every_data_key(store: Store, keyring: Path):
    vecs = unit_vectors(30, seed=17)
    store.put_many([(f"s{i}", vecs[i : i + 1]) for i in range(30)])
    first = store.keys.active_id()
    old, new = envelope.add_key_version(keyring)
    assert old == first
    store.keys.reload()
    assert store.master_keys_in_use() == [first]
    done = 0
    while n := store.rewrap_batch(7):  # small transactions, as while serving
        done += n
    assert done == 30 and store.master_keys_in_use() == [new]
    envelope.retire_key_versions(keyring, {new})
    store.keys.reload()
    assert store.keys.key_ids() == [new]
    got = store.get_templates("s3").templates[0].template.vector
    assert got == vecs[3].tobytes()


def test_a_wrong_master_key_opens_nothing(target, keyring, tmp_path):
    s = Store(target, LAYOUT, envelope.LocalKeyProvider.from_file(keyring))
    s.put_subject("f", unit_vectors(1, seed=18), "1980-01-01", consent())
    s.close()
    other = tmp_path / "other.keyring"
    envelope.init_keyring(other)
    doc = envelope.LocalKeyProvider.from_file(keyring)
    evil = envelope.LocalKeyProvider({doc.active_id(): envelope.new_data_key()}, doc.active_id())
    s = Store(target, LAYOUT, evil)
    try:
        with pytest.raises(errors.FailedPrecondition, match="cannot be decrypted"):
            s.get_templates("f")
    finally:
        s.close()


def test_the_store_refuses_another_layout(target, keyring):
    Store(target, LAYOUT, envelope.LocalKeyProvider.from_file(keyring)).close()
    with pytest.raises(errors.FailedPrecondition, match="partitions"):
        Store(target, Layout(partitions=3), envelope.LocalKeyProvider.from_file(keyring))


def test_access_history_pages(store: Store):
    recs = [
        store_pb2.AuditRecord(tenant="bank-a", client="app", operation="Verify", purpose="kyc",
                              subject_id="g" if i % 2 == 0 else "h", result="match")
        for i in range(25)
    ]  # fmt: skip
    store.append_audit(recs)
    pages, token = [], ""
    while True:
        page = store.access_history("g", 5, token)
        pages.append(page)
        token = page.next_page_token
        if not token:
            break
    assert [len(p.entries) for p in pages] == [5, 5, 3]
    seqs = [e.seq for p in pages for e in p.entries]
    assert seqs == sorted(seqs) and len(set(seqs)) == 13
    with pytest.raises(errors.InvalidArgument, match="page_token"):
        store.access_history("g", 5, "zz")


def test_templates_are_listed_a_page_at_a_time_in_subject_order(store: Store):
    vecs = unit_vectors(25, seed=20)
    store.put_many([(f"m{i:02d}", vecs[i : i + 1]) for i in range(25)])
    store.put_subject("m99", unit_vectors(2, seed=21), "1980-01-01", consent())
    pages, after = [], ""
    while True:
        page = store.list_templates(after, 10)
        pages.append(page)
        after = page.next_after_subject_id
        if not after:
            break
    assert [len(p.subjects) for p in pages] == [10, 10, 6]
    listed = [s.subject_id for p in pages for s in p.subjects]
    assert listed == sorted(listed) and len(set(listed)) == 26
    held = {s.subject_id: list(s.template_ids) for p in pages for s in p.subjects}
    assert len(held["m99"]) == 2
    assert held == {
        sid: [t.template_id for t in store.get_templates(sid).templates] for sid in held
    }
    assert len(store.list_templates("", 0).subjects) == 26  # 0: the default page size
    with pytest.raises(errors.InvalidArgument, match="limit"):
        store.list_templates("", 10_001)


def test_the_layout_migration_moves_subjects_to_their_new_partitions(store: Store, target, keyring):
    vecs = unit_vectors(40, seed=22)
    sids = [f"r{i}" for i in range(40)]
    store.put_many([(sid, vecs[i : i + 1]) for i, sid in enumerate(sids)])
    moving = sum(ids.partition_of(sid, 2) != ids.partition_of(sid, 5) for sid in sids)
    assert moving > 0
    assert store.migrate_layout(5, batch=7) == moving
    assert store.migrate_layout(5) == 0  # idempotent
    assert all(store.get_subject(sid).partition == ids.partition_of(sid, 5) for sid in sids)
    # the recorded layout is the new one: a store configured with it opens, the old one not
    Store(target, Layout(partitions=5), envelope.LocalKeyProvider.from_file(keyring)).close()
    with pytest.raises(errors.FailedPrecondition, match="partitions"):
        Store(target, LAYOUT, envelope.LocalKeyProvider.from_file(keyring))
    with pytest.raises(errors.InvalidArgument, match="partitions"):
        store.migrate_layout(0)


async def test_the_service_serves_listing_and_migration_over_nats_not_grpc(nats_server, tmp_path):
    from conftest import Cluster, env_for

    c = Cluster(env_for(nats_server.url, tmp_path, TANU_RELAY_ENABLED="false"))
    nc = await bus.connect(nats_server.url_for("operator"), "test")
    try:
        await c.start_store()
        vecs = unit_vectors(12, seed=23)
        sids = [f"n{i:02d}" for i in range(12)]
        await c.store.db.run(
            c.store.db.put_many, [(sid, vecs[i : i + 1]) for i, sid in enumerate(sids)]
        )
        client = StoreClient(nc, 5.0)
        listed, after = [], ""
        while True:
            page = await client.list_templates(
                store_pb2.ListTemplatesRequest(after_subject_id=after, limit=5)
            )
            listed += [s.subject_id for s in page.subjects]
            after = page.next_after_subject_id
            if not after:
                break
        assert listed == sids
        with pytest.raises(errors.InvalidArgument):
            await client.list_templates(store_pb2.ListTemplatesRequest(limit=10_001))
        moving = sum(ids.partition_of(sid, 2) != ids.partition_of(sid, 3) for sid in sids)
        # The store's gRPC port serves health and reflection only: no
        # template, record or write is reachable there.
        async with grpc.aio.insecure_channel(f"127.0.0.1:{c.store.port}") as ch:
            stub = store_pb2_grpc.StoreStub(ch)
            for call in (stub.MigrateLayout(store_pb2.MigrateLayoutRequest(partitions=3)),
                         stub.ListTemplates(store_pb2.ListTemplatesRequest())):  # fmt: skip
                with pytest.raises(grpc.aio.AioRpcError) as refused:
                    await call
                assert refused.value.code() == grpc.StatusCode.UNIMPLEMENTED
        r = await client.migrate_layout(store_pb2.MigrateLayoutRequest(partitions=3))
        assert r.subjects_moved == moving
        with pytest.raises(errors.InvalidArgument):
            await client.migrate_layout(store_pb2.MigrateLayoutRequest(partitions=0))
        again = await client.migrate_layout(store_pb2.MigrateLayoutRequest(partitions=3))
        assert again.subjects_moved == 0
    finally:
        await nc.close()
        await c.stop()


# --- the audit log: every kind of tampering is caught, and located ---------


@pytest.fixture
def sealed(store: Store, tmp_path: Path):
    """A store with 20 audit entries sealed by two checkpoints."""
    signer = signing.init_signing_key(tmp_path / "audit.pem")
    rec = [store_pb2.AuditRecord(tenant="gov", operation="Identify", purpose="border_control",
                                 subject_id=f"p{i}", result="candidate") for i in range(20)]  # fmt: skip
    store.append_audit(rec[:10])
    store.checkpoint(signer)
    store.append_audit(rec[10:])
    store.checkpoint(signer)
    assert store.checkpoint(signer) is None  # nothing new to seal
    return store, signer.public_key()


def check(store: Store, public) -> audit.Report:
    return audit.verify(store.audit_entries(), store.audit_checkpoints(), public)


def test_an_intact_log_verifies(sealed):
    store, public = sealed
    rep = check(store, public)
    assert rep.ok, rep.problems
    assert rep.entries == 20 and rep.checkpoints == 2 and rep.last_sealed_seq == 20


def test_an_edited_entry_is_found(sealed, raw: Raw):
    store, public = sealed
    raw.rows("UPDATE audit SET result = 'no_match' WHERE seq = 7")
    rep = check(store, public)
    assert any("entry 7 was edited" in p for p in rep.problems), rep.problems


def test_a_deleted_entry_is_found(sealed, raw: Raw):
    store, public = sealed
    raw.rows("DELETE FROM audit WHERE seq = 12")
    rep = check(store, public)
    assert any("12..12 are missing" in p for p in rep.problems), rep.problems


def test_an_inserted_entry_is_found(sealed, raw: Raw):
    store, public = sealed
    # squeeze a forged entry in at 5 by renumbering the rest
    raw.rows("UPDATE audit SET seq = seq + 1000 WHERE seq >= 5")
    raw.rows("UPDATE audit SET seq = seq - 999 WHERE seq >= 1000")
    row = list(raw.one("SELECT * FROM audit WHERE seq = 4"))
    row[0] = 5
    row[6] = "forged"
    raw.rows("INSERT INTO audit VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", row)
    rep = check(store, public)
    assert any("entry 5" in p for p in rep.problems), rep.problems


def test_reordered_entries_are_found(sealed, raw: Raw):
    store, public = sealed
    raw.rows("UPDATE audit SET seq = -3 WHERE seq = 3")
    raw.rows("UPDATE audit SET seq = 3 WHERE seq = 4")
    raw.rows("UPDATE audit SET seq = 4 WHERE seq = -3")
    rep = check(store, public)
    assert any("entry 3" in p for p in rep.problems), rep.problems


def test_a_rewritten_chain_is_caught_by_the_signed_checkpoint(sealed, raw: Raw):
    """An attacker who recomputes every hash after editing still cannot
    forge the checkpoint signature."""
    store, public = sealed
    raw.rows("UPDATE audit SET subject_id = 'someone-else' WHERE seq = 2")
    prev = audit.GENESIS
    for e in list(store.audit_entries()):
        fixed = audit.Entry(*[getattr(e, f) for f in audit.FIELDS], prev_hash=prev)
        h = audit.entry_hash(prev, fixed)
        raw.rows("UPDATE audit SET prev_hash = ?, hash = ? WHERE seq = ?", (prev, h, e.seq))
        prev = h
    rep = check(store, public)
    assert not any("edited" in p for p in rep.problems)  # the chain itself is consistent again
    assert any("rewritten" in p and "checkpoint at entry 10" in p for p in rep.problems), (
        rep.problems
    )


def test_a_truncated_log_is_found(sealed, raw: Raw):
    store, public = sealed
    raw.rows("DELETE FROM audit WHERE seq > 15")
    rep = check(store, public)
    assert any("cut off the end" in p for p in rep.problems), rep.problems


def test_a_forged_checkpoint_is_found(sealed, raw: Raw):
    store, public = sealed
    raw.rows("UPDATE audit_checkpoints SET ts_ms = ts_ms + 1 WHERE seq = 10")
    rep = check(store, public)
    assert any("checkpoint at entry 10 has an invalid signature" in p for p in rep.problems)


def audit_verify(target: str, public_key: Path, *flags: str) -> subprocess.CompletedProcess:
    """``python -m tanu.store.admin audit-verify``, as ``tanu audit verify`` runs it."""
    cmd = [sys.executable, "-m", "tanu.store.admin", "audit-verify", "--target", target,
           "--public-key", str(public_key), *flags]  # fmt: skip
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def test_the_offline_verifier_tells_an_intact_log_from_a_tampered_one(
    sealed, target, raw, tmp_path
):
    public_key = tmp_path / "audit.pem.pub"
    intact = audit_verify(target, public_key)
    assert intact.returncode == 0, intact.stderr
    assert (
        "audit log intact: 20 entries, 2 signed checkpoints, sealed up to entry 20" in intact.stdout
    )
    raw.rows("UPDATE audit SET result = 'no_match' WHERE seq = 7")
    tampered = audit_verify(target, public_key)
    assert tampered.returncode == 1 and "audit log TAMPERED" in tampered.stdout
    as_json = audit_verify(target, public_key, "--json")
    assert as_json.returncode == 1
    report = json.loads(as_json.stdout)
    assert not report["ok"] and report["entries"] == 20
    assert any("entry 7 was edited" in p for p in report["problems"]), report["problems"]
    missing = audit_verify(str(tmp_path / "nowhere.sqlite3"), public_key)
    assert missing.returncode == 2 and missing.stderr.startswith("error: no store database")


def test_no_plaintext_template_in_the_sqlite_files(tmp_path, keyring):
    """The at-rest scan: the database, its WAL and any journal hold no
    template bytes, before and after an erasure."""
    path = tmp_path / "scan.sqlite3"
    s = Store(path, LAYOUT, envelope.LocalKeyProvider.from_file(keyring))
    vecs = unit_vectors(20, seed=19)
    s.put_many([(f"z{i}", vecs[i : i + 1]) for i in range(20)])
    s.outbox_done(s.outbox_batch(100), list(range(1, 21)))
    s.delete_subject("z3", "test")
    files = [p for p in tmp_path.iterdir() if p.name.startswith("scan.sqlite3")]
    assert any(p.name.endswith("-wal") for p in files)
    for p in files:
        data = p.read_bytes()
        for v in vecs:
            assert v.tobytes()[:24] not in data, f"plaintext template bytes in {p.name}"
    s.close()
    sqlite3.connect(path).close()
