"""Concurrent requests share round trips without weakening what each one
is owed: the gateway's status look-ups (consent, locks) share one store
call per round, each answered with its own subjects as they stand after
it asked; the store commits concurrent audit appends together, each
caller answered only once its own records are committed, and a bad append
in a shared commit fails its caller only. Identify's candidates are
screened (consent, lock, erasure) and its audit written in one store
transaction, committed before the reply, naming exactly what it returned. The store runs on both backends
(SQLite, PostgreSQL) as in ``test_store``; the gateway on a real cluster."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path

import pytest
from pg import schema_dsn
from test_store import LAYOUT, Raw

from tanu.core import audit, envelope, secrets, signing
from tanu.core.metrics import Metrics
from tanu.store import Store
from tanu.store.audit_log import GroupCommit
from tanu.v1 import common_pb2, identity_pb2, store_pb2

from conftest import near, unit_vectors
from helpers import enroll, identify, sample


@pytest.fixture(params=["sqlite", "postgres"])
def target(request, tmp_path: Path):
    if request.param == "sqlite":
        yield str(tmp_path / "store.sqlite3")
        return
    with schema_dsn() as dsn:
        yield dsn


@pytest.fixture
def store(target, tmp_path: Path):
    envelope.init_keyring(tmp_path / "master.keyring")
    s = Store(target, LAYOUT, envelope.LocalKeyProvider.from_file(tmp_path / "master.keyring"))
    yield s
    s.close()


@pytest.fixture
def raw(target):
    r = Raw(target)
    yield r
    r.close()


def records(i: int, n: int) -> list[store_pb2.AuditRecord]:
    """One request's entries: its own, then one per candidate it used."""
    return [store_pb2.AuditRecord(tenant="gov", operation="Identify", purpose="border_control",
                                  subject_id=f"r{i}-{j}", result="ok") for j in range(n)]  # fmt: skip


def commits(m: Metrics) -> float:
    return m.sample("tanu_batch_size_count", batcher="audit_commit") or 0


async def test_concurrent_audit_appends_share_commits_and_each_is_durable_on_return(
    store, raw, tmp_path: Path
):
    m = Metrics.create()
    gc = GroupCommit(store, m)
    groups = [records(i, 1 + i % 4) for i in range(24)]

    async def append(g):
        last = await gc.append(g)
        # Read at once through a connection of its own: committed already.
        row = raw.one("SELECT subject_id FROM audit WHERE seq = ?", (last,))
        return last, row[0] if row else None

    try:
        got = await asyncio.gather(*(append(g) for g in groups))
    finally:
        await gc.close()
    for g, (_, subject) in zip(groups, got, strict=True):
        assert subject == g[-1].subject_id  # this caller's own last entry, at its sequence
    ranges = sorted((last - len(g) + 1, last) for g, (last, _) in zip(groups, got, strict=True))
    assert ranges[0][0] == 1 and all(
        b[0] == a[1] + 1 for a, b in zip(ranges, ranges[1:], strict=False)
    )
    total = sum(len(g) for g in groups)
    assert ranges[-1][1] == total == raw.one("SELECT COUNT(*) FROM audit")[0]
    assert commits(m) < len(groups)  # shared transactions, not one per caller
    signer = signing.init_signing_key(tmp_path / "audit.pem")
    store.checkpoint(signer)
    rep = audit.verify(store.audit_entries(), store.audit_checkpoints(), signer.public_key())
    assert rep.ok, rep.problems
    assert rep.entries == total


async def test_a_bad_append_in_a_shared_commit_fails_its_caller_only(store, raw, tmp_path):
    m = Metrics.create()
    gc = GroupCommit(store, m)
    groups: list[list] = [records(i, 2) for i in range(8)]
    groups[3] = [groups[3][0], object()]  # not an audit record: this append cannot be written
    try:
        got = await asyncio.gather(*(gc.append(g) for g in groups), return_exceptions=True)
    finally:
        await gc.close()
    assert isinstance(got[3], Exception)
    good = [(g, r) for i, (g, r) in enumerate(zip(groups, got, strict=True)) if i != 3]
    assert all(isinstance(r, int) for _, r in good)
    for g, last in good:
        assert raw.one("SELECT subject_id FROM audit WHERE seq = ?", (last,))[0] == g[-1].subject_id
    # Nothing of the failed append was kept, not even its valid first entry.
    assert raw.one("SELECT COUNT(*) FROM audit WHERE subject_id LIKE ?", ("r3-%",))[0] == 0
    assert raw.one("SELECT COUNT(*) FROM audit")[0] == 2 * len(good)
    signer = signing.init_signing_key(tmp_path / "audit.pem")
    store.checkpoint(signer)
    rep = audit.verify(store.audit_entries(), store.audit_checkpoints(), signer.public_key())
    assert rep.ok, rep.problems


async def test_concurrent_status_look_ups_share_a_store_call_each_answered_with_its_own(cluster):
    gallery = unit_vectors(6, seed=71)
    sids = [f"st-{i}" for i in range(6)]
    for sid, v in zip(sids, gallery, strict=True):
        await cluster.stub.Enroll(enroll(sid, v))
    gw, db = cluster.gateway.gateway, cluster.store.db
    await db.run(db.set_biometric_lock, "st-2", True)

    def calls() -> float:
        return gw.metrics.sample("tanu_nats_request_duration_seconds_count",
                                 operation="store.status") or 0  # fmt: skip

    before = calls()
    asks = [[sids[i % 6], sids[(i + 1) % 6], "nobody"] for i in range(20)]
    got = await asyncio.gather(*(gw.statuses(a) for a in asks))
    assert calls() - before < len(asks)  # rounds, not one call per look-up
    for ask, st in zip(asks, got, strict=True):
        assert sorted(st) == sorted(ask)  # its own subjects, no one else's
        assert not st["nobody"].enrolled
        for sid in ask[:2]:
            assert st[sid].enrolled and st[sid].biometric_locked == (sid == "st-2")
    # A lock lifted before a look-up is seen by it.
    await db.run(db.set_biometric_lock, "st-2", False)
    assert not (await gw.statuses(["st-2"]))["st-2"].biometric_locked


async def test_concurrent_identifies_are_each_audited_and_committed_before_the_reply(cluster):
    gallery = unit_vectors(8, seed=72)
    for i, v in enumerate(gallery):
        await cluster.stub.Enroll(enroll(f"au-{i}", v, wait_indexed=True))
    db = sqlite3.connect(cluster.env["TANU_STORE_DB"], isolation_level=None)

    def committed() -> int:  # another connection sees committed entries only
        return db.execute(
            "SELECT COUNT(*) FROM audit WHERE operation = 'Identify' AND subject_id = ''"
        ).fetchone()[0]

    base, seen, returned = committed(), [], []

    async def one(i: int) -> None:
        r = await cluster.stub.Identify(identify(near(gallery[i % 8], seed=i), top_k=3))
        seen.append(committed() - base)  # before anything else runs
        returned.append([c.subject_id for c in r.candidates])

    try:
        await asyncio.gather(*(one(i) for i in range(24)))
        assert committed() - base == 24
        # The k-th reply to arrive found at least k requests' entries committed.
        assert all(n >= k for k, n in enumerate(seen, start=1)), seen
        used = db.execute(
            "SELECT COUNT(*) FROM audit WHERE operation = 'Identify' AND subject_id LIKE 'au-%' "
            "AND result IN ('match', 'candidate')"
        ).fetchone()[0]
        assert used == sum(len(r) for r in returned)  # one entry per candidate returned
    finally:
        db.close()


def screened(i: int, uses: list[tuple[str, str]], purpose: str = "kyc",
             further: list[tuple[str, str]] = ()) -> store_pb2.ScreenedAudit:  # fmt: skip
    """Request ``i``'s audit, its candidates ``uses`` to be screened for ``purpose``."""
    rid = json.dumps({"request_id": f"q{i}"})
    return store_pb2.ScreenedAudit(
        record=store_pb2.AuditRecord(tenant="gov", operation="Identify", purpose=purpose,
                                     result="ok", detail_json=rid),
        purpose=purpose, use_detail_json=rid,
        uses=[store_pb2.ScreenedUse(subject_id=s, result=r) for s, r in uses],
        further=[store_pb2.ScreenedUse(subject_id=s, result=r) for s, r in further],
    )  # fmt: skip


async def test_screening_withholds_what_may_not_be_used_and_audits_what_is_returned(
    store, raw, tmp_path: Path
):
    vecs = unit_vectors(5, seed=73)
    kyc = common_pb2.Consent(purposes=["kyc"], evidence_ref="form")
    other = common_pb2.Consent(purposes=["border_control"], evidence_ref="form")
    store.put_many([("ok", vecs[0:1]), ("locked", vecs[1:2]), ("gone", vecs[2:3])],
                   "1980-01-01", kyc)  # fmt: skip
    store.put_many([("other", vecs[3:4])], "1980-01-01", other)
    store.set_biometric_lock("locked", True)
    store.delete_subject("gone", "test")
    m = Metrics.create()
    gc = GroupCommit(store, m, name="screen_commit", commit=store.screen_audits)
    uses = [("ok", "match"), ("locked", "candidate"), ("gone", "candidate"),
            ("other", "candidate"), ("nobody", "candidate"), ("ok", "candidate")]  # fmt: skip
    groups = [[screened(i, uses, further=[("probe", "probe")] if i == 2 else [])]
              for i in range(6)]  # fmt: skip
    groups[5] = [screened(5, uses[3:4], purpose="border_control"), screened(6, [])]
    try:
        got = await asyncio.gather(*(gc.append(g) for g in groups))
    finally:
        await gc.close()
    for res in got[:5]:
        assert list(res[0].usable) == [True, False, False, False, False, True]
    assert [list(r.usable) for r in got[5]] == [[True], []]
    for i in range(7):
        rows = raw.rows(
            "SELECT seq, subject_id, result, detail FROM audit WHERE detail LIKE ? ORDER BY seq",
            (f'%"q{i}"%',),
        )
        own, named = rows[0], [(r[1], r[2]) for r in rows[1:]]
        want = {5: [("other", "candidate")], 6: []}.get(i, [("ok", "match"), ("ok", "candidate")])
        if i == 2:
            want = [("probe", "probe"), *want]
        assert named == want, i
        n = len(want) - (i == 2)
        assert json.loads(own[3]) == {"request_id": f"q{i}", "candidates": n,
                                      "withheld": {5: 0, 6: 0}.get(i, 4)}  # fmt: skip
        # Answered once committed: the last entry is at the sequence returned.
        last = got[i][0] if i < 5 else got[5][i - 5]
        assert last.last_seq == rows[-1][0]
    signer = signing.init_signing_key(tmp_path / "audit.pem")
    store.checkpoint(signer)
    rep = audit.verify(store.audit_entries(), store.audit_checkpoints(), signer.public_key())
    assert rep.ok, rep.problems


async def test_a_lock_or_consent_withdrawal_acknowledged_before_an_identify_is_seen_by_it(cluster):
    """Through the gateway: every Identify that starts after a lock (or a
    consent withdrawal) is acknowledged withholds the subject, and its
    audit says so; one that starts after the lock is lifted returns it."""
    vec = unit_vectors(1, seed=74)[0]
    s = cluster.stub
    await s.Enroll(enroll("lk", vec, wait_indexed=True))
    probe = identify(near(vec, seed=3), top_k=3)
    db = sqlite3.connect(cluster.env["TANU_STORE_DB"], isolation_level=None)

    def entries() -> list[tuple[str, str]]:
        return db.execute("SELECT subject_id, detail FROM audit WHERE operation = 'Identify' "
                          "ORDER BY seq").fetchall()  # fmt: skip

    async def identify_many() -> list[list[str]]:
        rs = await asyncio.gather(*(s.Identify(probe) for _ in range(8)))
        return [[c.subject_id for c in r.candidates] for r in rs]

    lock = identity_pb2.SetBiometricLockRequest(subject_id="lk", locked=True, sample=sample(vec))
    try:
        assert all(r[:1] == ["lk"] for r in await identify_many())
        await s.SetBiometricLock(lock)
        before = len(entries())
        assert all("lk" not in r for r in await identify_many())
        new = entries()[before:]
        assert not [e for e in new if e[0] == "lk"]  # no use of lk's data recorded
        own = [json.loads(d) for sid, d in new if sid == ""]
        assert len(own) == 8 and all(d["withheld"] >= 1 for d in own)
        lock.locked = False
        await s.SetBiometricLock(lock)
        assert all(r[:1] == ["lk"] for r in await identify_many())
        await s.RevokeConsent(identity_pb2.RevokeConsentRequest(  # the stub's purpose only
            subject_id="lk", purposes=[secrets.DEFAULT_PURPOSE], revoker_sample=sample(vec)))  # fmt: skip
        assert all("lk" not in r for r in await identify_many())
    finally:
        db.close()


def test_the_screenings_one_query_reads_what_the_full_status_says(store):
    """``_usable_statuses`` (one query, what ``may_use`` reads) against the
    full status, for every kind of subject and purpose."""
    from tanu.policy.consent import may_use

    v = unit_vectors(4, seed=77)

    def given(*purposes: str) -> common_pb2.Consent:
        return common_pb2.Consent(purposes=list(purposes), evidence_ref="form-1")

    store.put_subject("one", v[0:1], "1990-01-01", given("kyc"))
    store.put_subject("two", v[1:2], "1990-01-01", given("kyc"))
    store.grant_consent("two", given("border_control"))
    store.revoke_consent("two", ["kyc"], "self")
    store.put_subject("locked", v[2:3], "1990-01-01", given("kyc"))
    store.set_biometric_lock("locked", True)
    store.put_subject("none", v[3:4], "1990-01-01")
    ids = ["one", "two", "locked", "none", "never-enrolled"]
    full, lean = store._statuses(ids), store._usable_statuses(ids)
    for sid in ids:
        for purpose in ("kyc", "border_control", "law_enforcement"):
            assert may_use(lean[sid], purpose) == may_use(full[sid], purpose), (sid, purpose)
    assert may_use(lean["two"], "border_control") and not may_use(lean["two"], "kyc")
    assert may_use(lean["one"], "kyc") and not may_use(lean["locked"], "kyc")
