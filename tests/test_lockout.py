"""The lockout covers every face confirmation (Verify, SetBiometricLock,
consent by face, a guardian's confirmation at enrolment), and the store
admits and counts each attempt in one step: N concurrent wrong attempts
count N, none slips past the delay, and an attempt whose outcome never
comes counts as a failure. A real cluster (one per module) and the store
on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import threading
import time

import grpc
import pytest
import pytest_asyncio
from tenancy import code_of, md, start_cluster, token
from test_store import LAYOUT, target  # noqa: F401  (the sqlite/postgres fixture)

from tanu.core import envelope
from tanu.policy.lockout import Lockout
from tanu.store.db import Store
from tanu.v1 import common_pb2, identity_pb2

from conftest import near, unit_vectors
from helpers import consent, enroll, sample, verify

DELAY_MS = 4000  # long enough that every concurrent attempt lands inside the first delay


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def lk(tmp_path_factory):
    c, nats, raw, ch = await start_cluster(
        tmp_path_factory.mktemp("lockout"), TANU_LOCKOUT_DELAY_MS=str(DELAY_MS)
    )
    try:
        c.raw = raw
        yield c
    finally:
        await ch.close()
        await c.stop()
        nats.stop()


async def enrolled(c, subject_id: str, seed: int, **kw):
    v = unit_vectors(1, seed=seed)[0]
    await c.stub.Enroll(enroll(subject_id, v, **kw))
    return v


async def failures(c, subject_id: str) -> int:
    rep = await c.stub.GetSubjectReport(identity_pb2.GetSubjectRequest(subject_id=subject_id))
    return rep.failed_verifications


@pytest.mark.asyncio(loop_scope="module")
async def test_n_concurrent_wrong_attempts_count_n_and_none_slips_past_the_delay(lk):
    v = await enrolled(lk, "conc", 700)
    impostor = unit_vectors(1, seed=701)[0]
    bank = md(token(lk.env, "bank"), "kyc")
    n = 12
    got = await asyncio.gather(
        *(code_of(lk.raw.Verify(verify("conc", near(impostor, seed=i)), metadata=bank))
          for i in range(n))
    )  # fmt: skip
    admitted = [g for g in got if g[0] == grpc.StatusCode.OK]
    delayed = [g for g in got if g[0] == grpc.StatusCode.RESOURCE_EXHAUSTED]
    assert len(admitted) == 5 and len(delayed) == n - 5, got
    assert all("retry in" in msg for _, msg in delayed)
    assert await failures(lk, "conc") == 5
    # the genuine face waits too: the delay holds for everyone
    code, msg = await code_of(lk.raw.Verify(verify("conc", v), metadata=bank))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and "retry in" in msg


@pytest.mark.asyncio(loop_scope="module")
async def test_a_match_clears_the_count_and_a_loose_threshold_cannot(lk):
    v = await enrolled(lk, "clr", 710)
    impostor = unit_vectors(1, seed=711)[0]
    for _ in range(3):
        r = await lk.stub.Verify(verify("clr", impostor))
        assert r.decision == common_pb2.DECISION_NO_MATCH
    code, _ = await code_of(lk.stub.Verify(verify("clr", impostor, threshold=2.0)))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert await failures(lk, "clr") == 3
    assert (await lk.stub.Verify(verify("clr", v))).decision == common_pb2.DECISION_MATCH
    assert await failures(lk, "clr") == 0


@pytest.mark.asyncio(loop_scope="module")
async def test_an_attempt_whose_outcome_never_comes_counts_as_a_failure(lk):
    await enrolled(lk, "crash", 715)
    db = lk.store.db
    adm = await db.run(db.admit_attempt, "crash", False)  # admitted; the gateway then "crashes"
    assert adm.admitted and adm.status.failed_verifications == 1
    assert await failures(lk, "crash") == 1


async def five_wrong_then_refused(c, subject_id: str, attempt) -> None:
    """Five wrong faces are each refused as not matching; the sixth attempt,
    even with the right face, is refused by the delay."""
    for i in range(5):
        code, msg = await attempt(wrong=True, seed=i)
        assert code == grpc.StatusCode.PERMISSION_DENIED and "does not match" in msg, (i, msg)
    code, msg = await attempt(wrong=False, seed=99)
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and "retry in" in msg, msg
    assert await failures(c, subject_id) == 5


@pytest.mark.asyncio(loop_scope="module")
async def test_set_biometric_lock_is_under_the_lockout(lk):
    v = await enrolled(lk, "lockme", 720)
    other = unit_vectors(1, seed=721)[0]

    async def attempt(wrong: bool, seed: int):
        face = near(other, seed=seed) if wrong else v
        return await code_of(lk.stub.SetBiometricLock(identity_pb2.SetBiometricLockRequest(
            subject_id="lockme", locked=True, sample=sample(face))))  # fmt: skip

    await five_wrong_then_refused(lk, "lockme", attempt)


@pytest.mark.asyncio(loop_scope="module")
async def test_consent_by_face_is_under_the_lockout(lk):
    g = await enrolled(lk, "grant", 730)
    r = await enrolled(lk, "revoke", 731)
    other = unit_vectors(1, seed=732)[0]

    async def grant(wrong: bool, seed: int):
        face = near(other, seed=seed) if wrong else g
        return await code_of(lk.stub.GrantConsent(identity_pb2.GrantConsentRequest(
            subject_id="grant", consent=consent(("social_services",)), sample=sample(face))))  # fmt: skip

    async def revoke(wrong: bool, seed: int):
        face = near(other, seed=seed) if wrong else r
        return await code_of(lk.stub.RevokeConsent(identity_pb2.RevokeConsentRequest(
            subject_id="revoke", purposes=["kyc"], revoker_sample=sample(face))))  # fmt: skip

    await five_wrong_then_refused(lk, "grant", grant)
    await five_wrong_then_refused(lk, "revoke", revoke)


@pytest.mark.asyncio(loop_scope="module")
async def test_a_guardians_confirmation_at_enrolment_is_under_the_lockout(lk):
    gv = await enrolled(lk, "guardian", 740)
    kid = unit_vectors(1, seed=741)[0]
    other = unit_vectors(1, seed=742)[0]

    async def attempt(wrong: bool, seed: int):
        face = near(other, seed=seed) if wrong else gv
        grant = consent(guardian_subject_id="guardian", relationship="parent",
                        guardian_sample=sample(face))  # fmt: skip
        return await code_of(lk.stub.Enroll(
            enroll("ward", kid, date_of_birth="2016-05-05", consent=grant)))  # fmt: skip

    await five_wrong_then_refused(lk, "guardian", attempt)


# --- the store's admission, on SQLite and PostgreSQL ---------------------------------


def test_admission_is_atomic_across_store_connections(target, tmp_path):  # noqa: F811
    path = tmp_path / "master.keyring"
    envelope.init_keyring(path)
    keys = envelope.LocalKeyProvider.from_file(path)
    lock = Lockout(5, 10, 60_000)
    # Four stores, four connections to one database, as four store replicas.
    stores = [Store(target, LAYOUT, keys, lock) for _ in range(4)]
    try:
        stores[0].put_subject("race", unit_vectors(1, seed=750), "1980-01-01", consent_record())
        results: list = []
        go = threading.Barrier(len(stores))

        def worker(s: Store) -> None:
            go.wait()
            for _ in range(4):
                results.append(s.admit_attempt("race"))

        threads = [threading.Thread(target=worker, args=(s,)) for s in stores]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        admitted = [r for r in results if r.admitted]
        assert len(results) == 16 and len(admitted) == 5
        assert {r.refusal for r in results if not r.admitted} == {"delayed"}
        assert stores[0].status(["race"]).statuses[0].failed_verifications == 5
    finally:
        for s in stores:
            s.close()


def test_only_the_subjects_unlock_is_admitted_while_locked_and_it_is_delayed(target, tmp_path):  # noqa: F811
    path = tmp_path / "master.keyring"
    envelope.init_keyring(path)
    s = Store(target, LAYOUT, envelope.LocalKeyProvider.from_file(path), Lockout(2, 3, 1))
    try:
        s.put_subject("lk", unit_vectors(1, seed=760), "1980-01-01", consent_record())
        seen = set()
        while not s.status(["lk"]).statuses[0].verification_locked:
            r = s.admit_attempt("lk")
            seen.add(r.refusal)
            time.sleep(0.002)  # past the 1 ms delays
        assert "" in seen and s.status(["lk"]).statuses[0].failed_verifications == 3
        assert s.admit_attempt("lk").refusal == "locked"
        r = s.admit_attempt("lk", unlocking=True)
        while r.refusal == "delayed":
            time.sleep(0.002)
            r = s.admit_attempt("lk", unlocking=True)
        assert r.admitted and r.status.failed_verifications == 4
        assert r.status.retry_after_ms > 0  # a failed unlock is delayed again
    finally:
        s.close()


def consent_record() -> common_pb2.Consent:
    return common_pb2.Consent(purposes=["kyc"], given_by="self", evidence_ref="form-1",
                              tenant="gov-a", client="app")  # fmt: skip
