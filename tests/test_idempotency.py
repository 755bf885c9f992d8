"""Idempotent writes: a retry with the same idempotency key and body gets
the first outcome (also when the first reply was lost after the store had
committed), the same key with another body is refused (FAILED_PRECONDITION,
REST 409), keys are per tenant, expire, and the audit shows the replay."""

from __future__ import annotations

import json

import aiohttp
import grpc
import pytest
from pg import store_env

from tanu.clients.store import StoreClient
from tanu.core import bus, envelope, secrets, vectors
from tanu.core import config as cfg
from tanu.gateway.idempotency import request_digest
from tanu.store.db import Store
from tanu.v1 import common_pb2, identity_pb2, store_pb2

from conftest import Cluster, env_for, nats_url_as, near, unit_vectors
from helpers import enroll


@pytest.fixture(params=["sqlite", "postgres"])
async def idem(request, nats_server, tmp_path):
    with store_env(request.param) as extra:
        c = Cluster(env_for(nats_server.url, tmp_path, TANU_REST_PORT="0", **extra))
        try:
            await c.start_all()
            yield c
        finally:
            await c.stop()


def key(k: str):
    return [("idempotency-key", k)]


async def _history(c: Cluster, subject_id: str) -> list[tuple[str, str]]:
    h = await c.stub.GetAccessHistory(common_pb2.AccessHistoryRequest(subject_id=subject_id))
    return [(e.operation, e.result) for e in h.entries]


async def test_a_retried_enrolment_returns_the_first_outcome(idem):
    c = idem
    v = unit_vectors(2, seed=21)
    req = enroll("idem-1", v[0])
    first = await c.stub.Enroll(req, metadata=key("enrol-0001"))
    again = await c.stub.Enroll(req, metadata=key("enrol-0001"))
    assert first.enrolled and again.enrolled and again.subject == first.subject
    # Without a key, the retry cannot tell its success from a conflict.
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await c.stub.Enroll(req)
    assert e.value.code() == grpc.StatusCode.ALREADY_EXISTS
    # The same key with another body is refused, and changes nothing.
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await c.stub.Enroll(enroll("idem-2", v[1]), metadata=key("enrol-0001"))
    assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "idempotency key" in e.value.details()
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await c.stub.GetSubject(identity_pb2.GetSubjectRequest(subject_id="idem-2"))
    assert e.value.code() == grpc.StatusCode.NOT_FOUND
    assert ("Enroll", "replayed") in await _history(c, "idem-1")
    # A malformed key is named as such.
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await c.stub.Enroll(enroll("idem-3", v[1]), metadata=key("bad key with spaces"))
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_a_commit_whose_reply_was_lost_is_replayed_not_refused(idem):
    """The store commits an enrolment keyed as the gateway keys it (asked
    over NATS directly: the gateway never saw the reply); the client's
    retry through the gateway with the same key gets that enrolment."""
    c = idem
    v = unit_vectors(1, seed=22)
    req = enroll("lost-reply", v[0])
    put = store_pb2.PutSubjectRequest(
        subject_id="lost-reply", date_of_birth=req.date_of_birth,
        consent=common_pb2.Consent(purposes=list(req.consent.purposes), given_by="self",
                                   evidence_ref="form-0001", tenant=secrets.OPERATOR, client="cli"),
        templates=[common_pb2.Template(vector=vectors.to_bytes(v[:1]))],
        dedup=store_pb2.DedupCheck(threshold=0.6, tenant=secrets.OPERATOR, client="cli"),
        idempotency=store_pb2.Idempotency(tenant=secrets.OPERATOR, client="cli", key="lost-1",
                                          operation="Enroll", request_sha256=request_digest(req)),
    )  # fmt: skip
    nc = await bus.connect(nats_url_as(c.env, "gateway"), "gw")  # as a gateway calls the store
    try:
        committed = await StoreClient(nc, 10.0).enrol(put)
    finally:
        await nc.close()
    assert committed.outcome == "enrolled"
    retry = await c.stub.Enroll(req, metadata=key("lost-1"))
    assert retry.enrolled and retry.subject == committed.subject
    assert ("Enroll", "replayed") in await _history(c, "lost-reply")


async def test_delete_lock_and_consent_retries_return_the_first_outcome(idem):
    c = idem
    v = unit_vectors(1, seed=23)
    assert (await c.stub.Enroll(enroll("w-1", v[0]))).enrolled
    sample = enroll("w-1", near(v[0], scale=0.001)).sample
    lock = identity_pb2.SetBiometricLockRequest(subject_id="w-1", locked=True, sample=sample)
    a = await c.stub.SetBiometricLock(lock, metadata=key("lock-1"))
    b = await c.stub.SetBiometricLock(lock, metadata=key("lock-1"))
    assert a == b and a.locked
    unlock = identity_pb2.SetBiometricLockRequest(subject_id="w-1", locked=False, sample=sample)
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await c.stub.SetBiometricLock(unlock, metadata=key("lock-1"))
    assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert (await c.stub.SetBiometricLock(unlock, metadata=key("lock-2"))).locked is False
    revoke = identity_pb2.RevokeConsentRequest(subject_id="w-1", purposes=["kyc"],
                                               revoker_sample=sample)  # fmt: skip
    r1 = await c.stub.RevokeConsent(revoke, metadata=key("rev-1"))
    r2 = await c.stub.RevokeConsent(revoke, metadata=key("rev-1"))
    assert r1 == r2 and list(r1.purposes) == ["identity_verification"]
    delete = identity_pb2.DeleteRequest(subject_id="w-1", reason="lawful")
    d1 = await c.stub.Delete(delete, metadata=key("del-1"))
    d2 = await c.stub.Delete(delete, metadata=key("del-1"))  # not NOT_FOUND: the first outcome
    assert (d2.subject_id, d2.templates_removed, d2.deleted_at_ms) == (
        d1.subject_id, d1.templates_removed, d1.deleted_at_ms)  # fmt: skip
    # The retry's receipt (signed afresh) states the same erasure.
    assert d2.receipt.erased_at_ms == d1.receipt.erased_at_ms
    first, second = json.loads(d1.receipt.body_json), json.loads(d2.receipt.body_json)
    assert first["store"] == second["store"] and first["event_stream"] == second["event_stream"]


async def test_rest_delete_is_idempotent_by_header_and_409_on_another_body(idem):
    """(And by the OSIA transactionId: tests/test_osia.py.)"""
    c = idem
    v = unit_vectors(1, seed=24)
    assert (await c.stub.Enroll(enroll("rest-1", v[0]))).enrolled
    base = f"http://127.0.0.1:{c.gateway.rest.port}/v1/persons/rest-1"
    tok = (c.env["TANU_TENANTS_FILE"].rsplit("/", 1)[0]) + "/operator.token"
    with open(tok) as f:  # noqa: ASYNC230 - a few bytes
        hdr = {"Authorization": f"Bearer {f.read().strip()}", "Idempotency-Key": "rest-del-1"}
    async with aiohttp.ClientSession() as http:
        async with http.delete(base + "?transactionId=t1&reason=a", headers=hdr) as r1:
            b1 = r1.headers.get("X-Tanu-Receipt-Id")
        async with http.delete(base + "?transactionId=t2&reason=a", headers=hdr) as r2:
            b2 = r2.headers.get("X-Tanu-Receipt-Id")
        async with http.delete(base + "?transactionId=t3&reason=b", headers=hdr) as r3:
            b3 = await r3.json()
    assert r1.status == r2.status == 204 and b1 and b1 == b2
    assert r3.status == 409 and "idempotency key" in b3["message"]


def test_keys_are_per_tenant_and_expire(tmp_path):
    s = Store(str(tmp_path / "s.sqlite3"), cfg.Layout(partitions=2, dimension=128),
              envelope.LocalKeyProvider({"k": envelope.new_data_key()}, "k"))  # fmt: skip
    try:
        v = unit_vectors(2, seed=25)

        def put(sid, vec, tenant):
            idem = store_pb2.Idempotency(tenant=tenant, key="same-key", operation="Enroll",
                                         request_sha256=sid.encode().hex().ljust(64, "0"))  # fmt: skip
            return s.idempotent(idem, sid, common_pb2.Subject, s.put_subject, sid, vec[None, :],
                                "1990-01-01", common_pb2.Consent(purposes=["kyc"], evidence_ref="e"))  # fmt: skip

        assert put("t-a", v[0], "tenant-a").subject_id == "t-a"
        assert put("t-b", v[1], "tenant-b").subject_id == "t-b"  # another tenant's key space
        s.idempotency_ttl_ms = -1
        assert put("t-c", v[1], "tenant-c").subject_id == "t-c"
        assert s.purge_idempotency() == 1  # expired at once, purged
    finally:
        s.close()


async def test_a_retried_referral_returns_the_same_case(idem):
    c = idem
    v = unit_vectors(1, seed=26)[0]
    assert (await c.stub.Enroll(enroll("r-orig", v))).enrolled
    req = enroll("r-twin", near(v, seed=3))
    first = await c.stub.Enroll(req, metadata=key("refer-1"))
    again = await c.stub.Enroll(req, metadata=key("refer-1"))
    assert first.outcome == again.outcome == "referred" and again.case_id == first.case_id
