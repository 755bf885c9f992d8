"""Citizen control and security through the public API, on a real cluster:
the authorisation matrix, bad tokens, consent and guardians, erasure with
signed receipts (store, searchers, snapshots, stream replay), lockout,
biometric lock, rate limits, the subject report and access history, the
at-rest scan, `tanu audit verify` and `tanu keys rotate` while serving."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest
import pytest_asyncio
from tenancy import code_of

from tanu.core import auth, secrets, signing
from tanu.v1 import common_pb2, identity_pb2, identity_pb2_grpc

from conftest import Cluster, env_for, near, unit_vectors
from helpers import consent, enroll, identify, sample, verify

pytestmark = pytest.mark.asyncio(loop_scope="module")

TENANTS = {
    "gov": ("government", ["identity_verification", "kyc", "border_control"]),
    "bank": ("bank", ["kyc"]),
    "portal": ("citizen_portal", ["identity_verification"]),
    "auditor": ("auditor", []),
}
CONSENTED = ("identity_verification", "kyc")  # helpers.consent()
TRIED_PURPOSES = ("kyc", "border_control", "law_enforcement")


def write_tenants(env: dict[str, str], extra: list[dict] | None = None) -> None:
    doc = {"tenants": [
        {"id": "operator", "kind": "operator", "purposes": list(secrets.DEFAULT_PURPOSES),
         "rate_per_s": 10000, "burst": 10000},
        *({"id": t, "kind": k, "purposes": p, "rate_per_s": 10000, "burst": 10000}
          for t, (k, p) in TENANTS.items()),
        {"id": "slow-bank", "kind": "bank", "purposes": ["kyc"], "rate_per_s": 0.2, "burst": 2},
        *(extra or []),
    ]}  # fmt: skip
    Path(env["TANU_TENANTS_FILE"]).write_text(json.dumps(doc))


def issuer(env) -> signing.Ed25519PrivateKey:
    return signing.load_signing_key(Path(env["TANU_TENANTS_FILE"]).parent / "issuer.pem")


def token_for(env, tenant: str, **kw) -> str:
    kind = TENANTS.get(tenant, ("bank", []))[0]
    scopes = kw.pop("scopes", list(auth.DEFAULT_SCOPES[kind]))
    return auth.issue_token(issuer(env), tenant, "test-client", scopes, **kw)


def md(tok: str, purpose: str | None = None):
    out = [("authorization", f"Bearer {tok}")]
    if purpose is not None:
        out.append(("x-tanu-purpose", purpose))
    return out


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def sec(tmp_path_factory):
    from tanu.ops.natsd import NatsServer

    tmp = tmp_path_factory.mktemp("security")
    nats = NatsServer(tmp / "nats", encryption_key="security-test-jetstream-key-0001").start()
    env = env_for(
        nats.url, tmp, TANU_SNAPSHOT_DIR=str(tmp / "snapshots"), TANU_SNAPSHOT_INTERVAL_S="0.5",
        TANU_SNAPSHOT_ERASURE_DELAY_S="0.3", TANU_ERASURE_WAIT_S="10",
    )  # fmt: skip
    write_tenants(env)
    c = Cluster(env)
    try:
        await c.start_all()
        c.tmp, c.nats = tmp, nats
        c.alice = unit_vectors(1, seed=500)[0]
        r = await c.stub.Enroll(enroll("alice", c.alice, wait_indexed=True))
        assert r.enrolled and r.indexed
        yield c
    finally:
        await c.stop()
        nats.stop()


def stub_for(c: Cluster) -> identity_pb2_grpc.IdentityStub:
    return identity_pb2_grpc.IdentityStub(c.raw)


@pytest_asyncio.fixture(loop_scope="module")
async def raw(sec):
    """A channel without default credentials: each call states its own."""
    ch = grpc.aio.insecure_channel(f"127.0.0.1:{sec.gateway.port}")
    yield identity_pb2_grpc.IdentityStub(ch)
    await ch.close()


# --- the authorisation matrix ------------------------------------------------

OPS = ("Enroll", "Verify", "Identify", "Delete", "GetSubject", "GetSubjectReport",
       "GetAccessHistory", "GrantConsent", "RevokeConsent", "SetBiometricLock")  # fmt: skip


def request_for(op: str, c, tenant: str, purpose: str):
    a = c.alice
    return {
        "Enroll": lambda: enroll(f"m-{tenant}-{purpose}", unit_vectors(1, seed=hash((tenant, purpose)) % 9999 + 1000)[0]),
        "Verify": lambda: verify("alice", near(a, seed=3)),
        "Identify": lambda: identify(near(a, seed=4)),
        "Delete": lambda: identity_pb2.DeleteRequest(subject_id="ghost"),
        "GetSubject": lambda: identity_pb2.GetSubjectRequest(subject_id="alice"),
        "GetSubjectReport": lambda: identity_pb2.GetSubjectRequest(subject_id="alice"),
        "GetAccessHistory": lambda: common_pb2.AccessHistoryRequest(subject_id="alice"),
        "GrantConsent": lambda: identity_pb2.GrantConsentRequest(
            subject_id="alice", consent=consent(("kyc",)), sample=sample(a)),
        "RevokeConsent": lambda: identity_pb2.RevokeConsentRequest(
            subject_id="ghost", revoker_sample=sample(a)),
        "SetBiometricLock": lambda: identity_pb2.SetBiometricLockRequest(
            subject_id="alice", locked=False, sample=sample(a)),
    }[op]()  # fmt: skip


def expected(tenant: str, op: str, purpose: str) -> grpc.StatusCode:
    from tanu.gateway import OPERATIONS

    kind, purposes = TENANTS[tenant]
    scopes, needs_purpose = OPERATIONS[op].scopes, OPERATIONS[op].needs_purpose
    if not set(scopes) & set(auth.DEFAULT_SCOPES[kind]):
        return grpc.StatusCode.PERMISSION_DENIED
    if needs_purpose and purpose not in purposes:
        return grpc.StatusCode.PERMISSION_DENIED
    if op == "Enroll" and purpose not in CONSENTED:
        return grpc.StatusCode.PERMISSION_DENIED  # the subject did not consent to it
    if op in ("Enroll", "Identify", "Verify"):
        # Verify for a purpose alice did not consent to: the uniform NO_MATCH
        # of a caller without rights to her (tanu.policy.access), not a refusal.
        return grpc.StatusCode.OK
    if op == "GetAccessHistory" and kind == "auditor":
        return grpc.StatusCode.OK
    # Not alice's owner (the operator enrolled her), nor a portal token bound
    # to her: the uniform NOT_FOUND, like the absent "ghost" of Delete/RevokeConsent.
    return grpc.StatusCode.NOT_FOUND


async def test_authorisation_matrix(sec, raw):
    """Every tenant kind x operation x purpose gets what the registry and the
    subject's consent allow, and nothing more; banks are verify-only."""
    wrong = []
    for tenant in TENANTS:
        tok = token_for(sec.env, tenant)
        for op in OPS:
            for purpose in TRIED_PURPOSES:
                req = request_for(op, sec, tenant, purpose)
                got, details = await code_of(getattr(raw, op)(req, metadata=md(tok, purpose)))
                want = expected(tenant, op, purpose)
                if got != want:
                    wrong.append((tenant, op, purpose, got.name, want.name, details))
                if got == grpc.StatusCode.PERMISSION_DENIED:
                    assert details, (tenant, op, purpose)
    assert not wrong, "\n".join(map(str, wrong))
    assert auth.DEFAULT_SCOPES["bank"] == ("verify",)


async def test_identify_withholds_subjects_who_did_not_consent_to_the_purpose(sec, raw):
    gov = token_for(sec.env, "gov")
    r = await raw.Identify(identify(near(sec.alice, seed=5)), metadata=md(gov, "kyc"))
    assert [c.subject_id for c in r.candidates][:1] == ["alice"]
    r = await raw.Identify(identify(near(sec.alice, seed=5)), metadata=md(gov, "border_control"))
    assert "alice" not in [c.subject_id for c in r.candidates]


async def test_bad_tokens_are_refused_with_a_clear_message(sec, raw):
    req = verify("alice", sec.alice)
    good = token_for(sec.env, "bank")
    other_issuer = signing.Ed25519PrivateKey.generate()
    cases = [
        ([("x-tanu-purpose", "kyc")], grpc.StatusCode.UNAUTHENTICATED, "no credentials"),
        ([("authorization", "Basic abc")], grpc.StatusCode.UNAUTHENTICATED, "Bearer"),
        (md("tanu1.garbage", "kyc"), grpc.StatusCode.UNAUTHENTICATED, "malformed"),
        (md(auth.issue_token(other_issuer, "bank", "x", ["verify"]), "kyc"),
         grpc.StatusCode.UNAUTHENTICATED, "signature"),
        (md(good[:-4] + ("AAAA" if not good.endswith("AAAA") else "BBBB"), "kyc"),
         grpc.StatusCode.UNAUTHENTICATED, "signature"),
        (md(auth.issue_token(issuer(sec.env), "bank", "x", ["verify"], now=time.time() - 7200,
                             ttl_s=600), "kyc"), grpc.StatusCode.UNAUTHENTICATED, "expired"),
        (md(auth.issue_token(issuer(sec.env), "nobody", "x", ["verify"]), "kyc"),
         grpc.StatusCode.PERMISSION_DENIED, "not registered"),
        (md(good), grpc.StatusCode.PERMISSION_DENIED, "no purpose"),
        # a bank's token claiming identify does not get it: its tenant lacks the scope
        (md(auth.issue_token(issuer(sec.env), "bank", "x", ["identify"]), "kyc"),
         grpc.StatusCode.PERMISSION_DENIED, "may not 'verify'"),
    ]  # fmt: skip
    for metadata, code, words in cases:
        got, details = await code_of(raw.Verify(req, metadata=metadata))
        assert got == code and words in details, (metadata[:1], got, details)
    assert (await raw.Verify(req, metadata=md(good, "kyc"))).decision == common_pb2.DECISION_MATCH


async def test_denials_are_audited_and_counted(sec, raw):
    bank = token_for(sec.env, "bank")
    got, _ = await code_of(
        raw.Verify(verify("alice", sec.alice), metadata=md(bank, "border_control"))
    )
    assert got == grpc.StatusCode.PERMISSION_DENIED
    hist = await sec.stub.GetAccessHistory(
        common_pb2.AccessHistoryRequest(subject_id="alice", page_size=500)
    )
    denied = [e for e in hist.entries if e.tenant == "bank" and e.purpose == "border_control"]
    assert denied and denied[-1].result == "PERMISSION_DENIED" and denied[-1].operation == "Verify"
    m, name = sec.gateway.metrics, "tanu_denials_total"
    assert m.sample(name, service="gateway", operation="Verify", reason="purpose") >= 1
    assert m.sample(name, service="gateway", operation="Verify", reason="unauthenticated") >= 1


async def test_rate_limit_per_tenant(sec, raw):
    tok = token_for(sec.env, "slow-bank", scopes=["verify"])
    codes = [(await code_of(raw.Verify(verify("alice", sec.alice), metadata=md(tok, "kyc"))))
             for _ in range(4)]  # fmt: skip
    assert [c for c, _ in codes[:2]] == [grpc.StatusCode.OK] * 2
    assert codes[2][0] == grpc.StatusCode.RESOURCE_EXHAUSTED and "rate limit" in codes[2][1]
    assert sec.gateway.metrics.sample("tanu_rate_limited_total", tenant="slow-bank") >= 1


# --- consent and guardians -----------------------------------------------------


async def test_a_minor_needs_a_verified_adult_guardian(sec):
    s = sec.stub
    kid = unit_vectors(1, seed=501)[0]
    minor = "2016-03-04"

    async def try_enrol(**grant) -> tuple[grpc.StatusCode, str]:
        return await code_of(
            s.Enroll(enroll("kid", kid, date_of_birth=minor, consent=consent(**grant)))
        )

    code, msg = await try_enrol()
    assert code == grpc.StatusCode.PERMISSION_DENIED and "guardian" in msg
    code, msg = await try_enrol(guardian_subject_id="nobody", relationship="parent",
                                guardian_sample=sample(sec.alice))  # fmt: skip
    assert code == grpc.StatusCode.PERMISSION_DENIED and "not enrolled" in msg
    code, msg = await try_enrol(guardian_subject_id="alice", relationship="neighbour",
                                guardian_sample=sample(sec.alice))  # fmt: skip
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "relationship" in msg
    stranger = unit_vectors(1, seed=502)[0]
    code, msg = await try_enrol(guardian_subject_id="alice", relationship="parent",
                                guardian_sample=sample(stranger))  # fmt: skip
    assert code == grpc.StatusCode.PERMISSION_DENIED and "does not match the guardian" in msg
    # another minor cannot be the guardian
    other = unit_vectors(1, seed=503)[0]
    await s.Enroll(
        enroll(
            "teen",
            other,
            date_of_birth="2012-01-01",
            consent=consent(
                guardian_subject_id="alice",
                relationship="parent",
                guardian_sample=sample(sec.alice),
            ),
        )
    )
    code, msg = await try_enrol(guardian_subject_id="teen", relationship="parent",
                                guardian_sample=sample(other))  # fmt: skip
    assert code == grpc.StatusCode.PERMISSION_DENIED and "under 18" in msg
    with pytest.raises(grpc.aio.AioRpcError):
        await s.GetSubjectReport(identity_pb2.GetSubjectRequest(subject_id="kid"))

    r = await s.Enroll(
        enroll(
            "kid",
            kid,
            date_of_birth=minor,
            consent=consent(
                guardian_subject_id="alice",
                relationship="parent",
                guardian_sample=sample(sec.alice),
            ),
        )
    )
    assert r.enrolled
    rep = await s.GetSubjectReport(identity_pb2.GetSubjectRequest(subject_id="kid"))
    assert rep.minor and rep.consents[0].given_by == "guardian"
    assert (
        rep.consents[0].guardian_subject_id == "alice" and rep.consents[0].relationship == "parent"
    )

    # the guardian revokes while the subject is a minor: erased, with a receipt
    r = await s.RevokeConsent(
        identity_pb2.RevokeConsentRequest(
            subject_id="kid", revoker_subject_id="alice", revoker_sample=sample(sec.alice)
        )
    )
    assert r.erased and r.receipt.signature and not r.purposes
    body = json.loads(r.receipt.body_json)
    assert body["reason"].startswith("consent_revoked by guardian:alice")


# --- erasure ------------------------------------------------------------------


def files_under(*folders: Path) -> list[Path]:
    return [p for f in folders for p in f.rglob("*") if p.is_file()]


async def test_revoking_consent_erases_everywhere_with_a_signed_receipt(sec):
    s = sec.stub
    eve = unit_vectors(1, seed=510)[0]
    r = await s.Enroll(enroll("eve", eve, wait_indexed=True))
    part = r.subject.partition
    assert (await s.Identify(identify(near(eve, seed=6)))).candidates[0].subject_id == "eve"
    await asyncio.sleep(1.2)  # a snapshot holding eve is written
    assert list((sec.tmp / "snapshots").glob("*.snap"))

    # revoking one purpose keeps the rest
    r = await s.RevokeConsent(identity_pb2.RevokeConsentRequest(
        subject_id="eve", purposes=["kyc"], revoker_sample=sample(eve)))  # fmt: skip
    assert list(r.purposes) == ["identity_verification"] and not r.erased
    # revoking the last one erases
    r = await s.RevokeConsent(identity_pb2.RevokeConsentRequest(
        subject_id="eve", revoker_sample=sample(eve)))  # fmt: skip
    assert r.erased and r.receipt.complete, r.receipt.body_json

    # the receipt is signed by the audit key and says what went where
    rec = r.receipt
    public = signing.load_public_key(sec.env["TANU_AUDIT_KEY_FILE"] + ".pub")
    assert signing.verify_signature(public, rec.signature, rec.body_json.encode())
    assert not signing.verify_signature(
        public, rec.signature, rec.body_json.replace("eve", "eva").encode()
    )
    body = json.loads(rec.body_json)
    assert body["subject_id"] == "eve" and body["complete"]
    assert body["store"]["data_key_destroyed"]["data_key_id"].startswith("dk-")
    assert body["event_stream"]["template_messages_deleted"] == 1
    assert [x["replica"] for x in body["searchers"]] == ["r0"]
    assert all(x["index_removed"] for x in body["searchers"])
    assert rec.audit_seq > 0
    # the snapshot purge follows: the final receipt says so, signed again
    for _ in range(100):
        final = await s.GetErasureReceipt(identity_pb2.GetErasureReceiptRequest(
            receipt_id=rec.receipt_id, subject_id="eve"))  # fmt: skip
        if final.snapshots_purged:
            break
        await asyncio.sleep(0.2)
    assert signing.verify_signature(public, final.signature, final.body_json.encode())
    assert all(x["snapshot_purged"] for x in json.loads(final.body_json)["searchers"])

    # the same face finds nothing; the store knows nothing
    res = await s.Identify(identify(near(eve, seed=6)))
    assert "eve" not in [c.subject_id for c in res.candidates]
    code, _ = await code_of(s.GetSubjectReport(identity_pb2.GetSubjectRequest(subject_id="eve")))
    assert code == grpc.StatusCode.NOT_FOUND

    # a stream replay: a new replica built from the whole stream never sees eve
    fresh = await sec.start_searcher(part, "r9")
    try:
        stats = await fresh.stats(True)
        assert stats.gallery_size >= 1
        assert not set(body["store"]["templates_removed"]) & set(stats.template_ids)
        res = await s.Identify(identify(near(eve, seed=6)))
        assert "eve" not in [c.subject_id for c in res.candidates]
    finally:
        await sec.stop_searcher(part, "r9")

    # the at-rest scan: no template bytes, of eve (erased) or alice (held), in
    # the store's database, WAL and journal, the snapshots, or the stream's
    # files (JetStream encrypts them at rest)
    await asyncio.sleep(0.5)
    scanned = files_under(sec.tmp / "snapshots", sec.tmp / "nats")
    scanned += list(sec.tmp.glob("store.sqlite3*"))
    assert any(p.suffix == ".blk" for p in scanned) and any(p.suffix == ".snap" for p in scanned)
    for p in scanned:
        data = await asyncio.to_thread(p.read_bytes)
        for who, v in (("eve", eve), ("alice", sec.alice)):
            assert v.tobytes()[:24] not in data, f"{who}'s template in {p}"


# --- abuse limits ------------------------------------------------------------------


async def test_failed_verifications_delay_then_lock_until_the_subject_unlocks(sec):
    s = sec.stub
    frank = unit_vectors(1, seed=520)[0]
    await s.Enroll(enroll("frank", frank))
    impostor = unit_vectors(1, seed=521)[0]
    for _ in range(5):
        r = await s.Verify(verify("frank", impostor))
        assert r.decision == common_pb2.DECISION_NO_MATCH
    code, msg = await code_of(s.Verify(verify("frank", frank)))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and "retry in" in msg
    # five more failures (recorded as the gateway would) lock the subject
    db = sec.store.db
    for _ in range(5):
        await db.run(db.record_verification, "frank", False)
    code, msg = await code_of(s.Verify(verify("frank", frank)))
    assert code == grpc.StatusCode.PERMISSION_DENIED and "locked after 10 failed" in msg
    # the subject proves who they are and unlocks: admitted while locked,
    # once the (restarted, 1 s) delay of the lockout has passed
    unlock = identity_pb2.SetBiometricLockRequest(subject_id="frank", locked=False,
                                                  sample=sample(frank))  # fmt: skip
    code, msg = await code_of(s.SetBiometricLock(unlock))
    for _ in range(50):
        if code != grpc.StatusCode.RESOURCE_EXHAUSTED:
            break
        assert "retry in" in msg
        await asyncio.sleep(0.1)
        code, msg = await code_of(s.SetBiometricLock(unlock))
    assert code == grpc.StatusCode.OK, msg
    assert (await s.Verify(verify("frank", frank))).decision == common_pb2.DECISION_MATCH


async def test_a_biometric_lock_blocks_all_matching_until_lifted(sec):
    s = sec.stub
    gina = unit_vectors(1, seed=530)[0]
    await s.Enroll(enroll("gina", gina, wait_indexed=True))
    code, msg = await code_of(s.SetBiometricLock(identity_pb2.SetBiometricLockRequest(
        subject_id="gina", locked=True, sample=sample(unit_vectors(1, seed=531)[0]))))  # fmt: skip
    assert code == grpc.StatusCode.PERMISSION_DENIED and "does not match" in msg
    r = await s.SetBiometricLock(identity_pb2.SetBiometricLockRequest(
        subject_id="gina", locked=True, sample=sample(gina)))  # fmt: skip
    assert r.locked
    code, msg = await code_of(s.Verify(verify("gina", gina)))
    assert code == grpc.StatusCode.PERMISSION_DENIED and "locked" in msg
    res = await s.Identify(identify(near(gina, seed=7)))
    assert "gina" not in [c.subject_id for c in res.candidates]
    await s.SetBiometricLock(identity_pb2.SetBiometricLockRequest(
        subject_id="gina", locked=False, sample=sample(gina)))  # fmt: skip
    res = await s.Identify(identify(near(gina, seed=7)))
    assert res.candidates[0].subject_id == "gina"
    assert sec.store.metrics.sample("tanu_biometric_lock_changes_total", action="lock") >= 1


# --- transparency -------------------------------------------------------------------


async def test_subject_report_and_access_history(sec, raw):
    s = sec.stub
    hana = unit_vectors(1, seed=540)[0]
    await s.Enroll(enroll("hana", hana))
    bank = token_for(sec.env, "bank")
    for _ in range(3):
        await raw.Verify(verify("hana", hana), metadata=md(bank, "kyc"))
    rep = await s.GetSubjectReport(identity_pb2.GetSubjectRequest(subject_id="hana"))
    assert rep.records["templates"] == 1 and rep.records["data_key"] == 1
    assert rep.data_key_id.startswith("dk-") and rep.master_key_id.startswith("mk-")
    assert list(rep.consents[0].purposes) == list(CONSENTED) and rep.consents[0].evidence_ref
    assert rep.subject.model_id and rep.updated_at_ms >= rep.subject.created_at_ms
    assert not rep.minor and rep.date_of_birth == "1990-01-01"
    # the report never carries a template
    assert hana.tobytes()[:16] not in rep.SerializeToString()

    entries, token = [], ""
    while True:
        page = await s.GetAccessHistory(common_pb2.AccessHistoryRequest(
            subject_id="hana", page_size=2, page_token=token))  # fmt: skip
        assert len(page.entries) <= 2
        entries += page.entries
        token = page.next_page_token
        if not token:
            break
    ops = [(e.tenant, e.operation, e.purpose, e.result) for e in entries]
    assert ops[0][:2] == ("operator", "Enroll")
    assert ops.count(("bank", "Verify", "kyc", "match")) == 3
    assert any(o[:2] == ("operator", "GetSubjectReport") and o[3] == "ok" for o in ops)
    assert all(e.client for e in entries)


# --- operators' tools -------------------------------------------------------------------


def tanu(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tanu.ops.cli", *args], capture_output=True,
                          text=True, timeout=120)  # fmt: skip


async def test_keys_rotate_while_serving_then_audit_verify(sec, tmp_path):
    s = sec.stub
    ivan = unit_vectors(1, seed=550)[0]
    await s.Enroll(enroll("ivan", ivan))
    before = (
        await s.GetSubjectReport(identity_pb2.GetSubjectRequest(subject_id="ivan"))
    ).master_key_id
    # identify keeps answering during the rotation
    load = asyncio.gather(*(s.Identify(identify(near(sec.alice, seed=i))) for i in range(20)))
    rot = await asyncio.to_thread(tanu, "--var", str(sec.tmp), "keys", "rotate", "--retire",
                                  "--nats", sec.env["TANU_NATS_URL"])  # fmt: skip
    assert rot.returncode == 0, rot.stderr
    assert all(r.candidates for r in await load)
    after = (
        await s.GetSubjectReport(identity_pb2.GetSubjectRequest(subject_id="ivan"))
    ).master_key_id
    assert after != before and "retired" in rot.stdout
    ring = json.loads(await asyncio.to_thread(Path(sec.env["TANU_MASTER_KEY_FILE"]).read_text))
    assert list(ring["keys"]) == [after] == [ring["active"]]
    assert (await s.Verify(verify("ivan", ivan))).decision == common_pb2.DECISION_MATCH

    # the audit log verifies; an edit in the database is found and located
    await sec.store.handlers.checkpoint()
    db = str(sec.tmp / "store.sqlite3")
    pub = sec.env["TANU_AUDIT_KEY_FILE"] + ".pub"
    ok = tanu("audit", "verify", "--db", db, "--public-key", pub)
    assert ok.returncode == 0 and "intact" in ok.stdout, ok.stdout + ok.stderr
    copy = tmp_path / "copy.sqlite3"
    import sqlite3

    src = sqlite3.connect(db)
    dst = sqlite3.connect(copy)
    src.backup(dst)
    src.close()
    dst.execute("UPDATE audit SET result = 'ok' WHERE seq = 3")
    dst.commit()
    dst.close()
    bad = tanu("audit", "verify", "--db", str(copy), "--public-key", pub, "--json")
    assert bad.returncode == 1
    report = json.loads(bad.stdout)
    assert not report["ok"] and any("entry 3 was edited" in p for p in report["problems"])


# --- mTLS -----------------------------------------------------------------------------


def _cert(subject: str, issuer_key, issuer_name, key, ca: bool = False, san: bool = False):
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import NameOID

    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    b = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer_name or name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5))
        .not_valid_after(dt.datetime.now(dt.UTC) + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if san:
        import ipaddress

        b = b.add_extension(x509.SubjectAlternativeName(
            [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False)  # fmt: skip
    return b.sign(issuer_key, hashes.SHA256()), name


def _pem(obj) -> bytes:
    from cryptography.hazmat.primitives import serialization

    if hasattr(obj, "private_bytes"):
        return obj.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                 serialization.NoEncryption())  # fmt: skip
    return obj.public_bytes(serialization.Encoding.PEM)


async def test_mutual_tls_between_clients_and_the_gateway(nats_server, tmp_path):
    from cryptography.hazmat.primitives.asymmetric import ec

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca, ca_name = _cert("tanu-test-ca", ca_key, None, ca_key, ca=True)
    srv_key = ec.generate_private_key(ec.SECP256R1())
    srv, _ = _cert("gateway", ca_key, ca_name, srv_key, san=True)
    cli_key = ec.generate_private_key(ec.SECP256R1())
    cli, _ = _cert("government-client", ca_key, ca_name, cli_key)
    files = {}
    for n, obj in {"ca.pem": ca, "srv.pem": srv, "srv.key": srv_key}.items():
        (tmp_path / n).write_bytes(_pem(obj))
        files[n] = str(tmp_path / n)
    env = env_for(nats_server.url, tmp_path, partitions=1, TANU_TLS_CERT_FILE=files["srv.pem"],
                  TANU_TLS_KEY_FILE=files["srv.key"], TANU_TLS_CLIENT_CA_FILE=files["ca.pem"])  # fmt: skip
    c = Cluster(env)
    from tanu.core import config as cfg
    from tanu.gateway import GatewayService

    try:
        await c.start_store()
        await c.start_searcher(0)
        gw = await GatewayService(cfg.from_env(cfg.GatewayConfig, env)).start()
        c.gateway = gw
        token = (Path(env["TANU_TENANTS_FILE"]).parent / "operator.token").read_text()
        req = enroll("tls-1", unit_vectors(1, seed=560)[0])
        addr = f"localhost:{gw.port}"
        good = grpc.ssl_channel_credentials(_pem(ca), _pem(cli_key), _pem(cli))
        async with grpc.aio.secure_channel(addr, good) as ch:
            r = await identity_pb2_grpc.IdentityStub(ch).Enroll(req, metadata=md(token, "kyc"))
            assert r.enrolled
        no_client_cert = grpc.ssl_channel_credentials(_pem(ca))
        async with grpc.aio.secure_channel(addr, no_client_cert) as ch:
            code, _ = await code_of(
                identity_pb2_grpc.IdentityStub(ch).Enroll(req, metadata=md(token, "kyc"), timeout=5)
            )
            assert code == grpc.StatusCode.UNAVAILABLE
        async with grpc.aio.insecure_channel(addr) as ch:
            code, _ = await code_of(
                identity_pb2_grpc.IdentityStub(ch).Enroll(req, metadata=md(token, "kyc"), timeout=5)
            )
            assert code == grpc.StatusCode.UNAVAILABLE
    finally:
        await c.stop()
