"""Encounters through the Identity API on a real cluster (SQLite and
PostgreSQL stores): a person with two encounters in two galleries, listed
and read; another encounter of the same person is added, one matching
another person refused; an erased encounter leaves the searchers and the
event stream with a signed receipt; moves and merges (a held enrolment's
case included) with audit on both subjects; identify by a stored person;
and hostile input refused with the rule it broke."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import grpc
import pytest
from pg import store_env
from tenancy import code_of, token, write_tenants

from tanu.core import auth, bus, natsnames, secrets, signing
from tanu.policy import access
from tanu.v1 import (
    cases_pb2,
    common_pb2,
    encounters_pb2,
    identity_pb2,
    identity_pb2_grpc,
    store_pb2,
)  # fmt: skip

from conftest import Cluster, env_for, nats_url_as, near, unit_vectors
from helpers import consent, enroll, identify, sample

ADDED = store_pb2.TemplateEvent.KIND_ADDED
MEMBERSHIP = store_pb2.TemplateEvent.KIND_MEMBERSHIP


@pytest.fixture(params=["sqlite", "postgres"])
async def enc(request, nats_server, tmp_path):
    """A cluster; stubs of the operator, agency gov-a and an adjudicator."""
    with store_env(request.param) as extra:
        c = Cluster(env_for(nats_server.url, tmp_path, **extra))
        write_tenants(c.env)
        _add_adjudicator(c.env)
        channels = []
        try:
            await c.start_all()
            stubs = {"operator": c.stub}
            ch = secrets.aio_channel(f"127.0.0.1:{c.gateway.port}", _adjudicator_token(c.env),
                                     "adjudication")  # fmt: skip
            channels.append(ch)
            stubs["adj"] = identity_pb2_grpc.IdentityStub(ch)
            for name, scopes in (("gov-a", None), ("gov-b", None)):
                kw = {"scopes": scopes} if scopes else {}
                ch = secrets.aio_channel(f"127.0.0.1:{c.gateway.port}",
                                         token(c.env, name, **kw), "kyc")  # fmt: skip
                channels.append(ch)
                stubs[name] = identity_pb2_grpc.IdentityStub(ch)
            yield c, stubs
        finally:
            for ch in channels:
                await ch.close()
            await c.stop()


def _add_adjudicator(env: dict[str, str]) -> None:
    path = Path(env["TANU_TENANTS_FILE"])
    doc = json.loads(path.read_text())
    doc["tenants"].append({"id": "adj", "kind": "adjudicator", "purposes": []})
    path.write_text(json.dumps(doc))


def _adjudicator_token(env: dict[str, str]) -> str:
    key = signing.load_signing_key(Path(env["TANU_TENANTS_FILE"]).parent / "issuer.pem")
    return auth.issue_token(key, "adj", "desk-1", ["adjudicate"])


def _fields(**kw) -> encounters_pb2.EncounterFields:
    return encounters_pb2.EncounterFields(**kw)


async def _stream_events(c: Cluster) -> list[tuple[int, store_pb2.TemplateEvent]]:
    """Every template event on the stream now (deleted messages are gone)."""
    await c.store.relay.wait_idle(15)
    nc = await bus.connect(nats_url_as(c.env), "test")
    try:
        js = nc.jetstream()
        info = await js.stream_info(natsnames.EVENTS_STREAM)
        out = []
        for seq in range(info.state.first_seq, info.state.last_seq + 1):
            try:
                m = await js.get_msg(natsnames.EVENTS_STREAM, seq)
            except Exception:  # noqa: BLE001 - deleted
                continue
            if m.subject.startswith("tanu.events.templates"):
                out.append((seq, store_pb2.TemplateEvent.FromString(m.data)))
        return out
    finally:
        await nc.close()


async def _stream_settled(c: Cluster, timeout: float = 15.0) -> None:
    """Until the relay has deleted every stream message queued for deletion."""
    end = asyncio.get_running_loop().time() + timeout
    while await c.store.db.run(c.store.db.pending_stream_erasures):
        assert asyncio.get_running_loop().time() < end, "stream deletions still pending"
        c.store.relay.wake()
        await asyncio.sleep(0.05)


async def _tids(c: Cluster, sid: str) -> dict[str, int]:
    """encounter id -> template id, as the store holds them (tests only)."""
    got = await c.store.db.run(c.store.db.list_encounters, sid)
    return {e.encounter_id: e.template_id for e in got.encounters}


async def _history(stub, sid: str) -> list[str]:
    h = await stub.GetAccessHistory(common_pb2.AccessHistoryRequest(subject_id=sid))
    return [e.operation for e in h.entries]


async def test_a_person_with_two_encounters_in_two_galleries(enc):
    c, s = enc
    v = unit_vectors(1, seed=21)[0]
    data = {"biographicData": {"gender": "F"}, "contextualData": {"site": "desk-3"}}
    r = await s["gov-a"].Enroll(enroll("p1", v, encounter_id="enc-1", galleries=["ADULTS"],
                                       encounter_type="civil", encounter_data_json=json.dumps(data)))  # fmt: skip
    assert r.enrolled
    add = await s["gov-a"].AddEncounter(identity_pb2.AddEncounterRequest(
        subject_id="p1", sample=sample(near(v, seed=2)), wait_indexed=True,
        encounter=_fields(encounter_id="enc-2", galleries=["WATCHLIST"], encounter_type="border"),
    ))  # fmt: skip
    # The same person's second encounter is expected to match them: added.
    assert add.outcome == "added" and add.indexed and not add.duplicate_of.subject_id
    assert add.encounter.encounter_id == "enc-2" and add.encounter.galleries == ["WATCHLIST"]
    listed = await s["gov-a"].ListEncounters(encounters_pb2.ListEncountersRequest(subject_id="p1"))
    by_id = {e.encounter_id: e for e in listed.encounters}
    assert set(by_id) == {"enc-1", "enc-2"}
    assert json.loads(by_id["enc-1"].data_json) == data and by_id["enc-1"].galleries == ["ADULTS"]
    assert all(e.template_id == 0 and e.status == "ACTIVE" for e in listed.encounters)
    got = await s["gov-a"].GetEncounter(
        encounters_pb2.GetEncounterRequest(subject_id="p1", encounter_id="enc-2")
    )
    assert got.encounter_type == "border" and got == by_id["enc-2"]
    # A duplicate encounter id is refused, whatever the sample.
    code, _ = await code_of(s["gov-a"].AddEncounter(identity_pb2.AddEncounterRequest(
        subject_id="p1", sample=sample(near(v, seed=3)), encounter=_fields(encounter_id="enc-2"))))  # fmt: skip
    assert code == grpc.StatusCode.ALREADY_EXISTS
    # The galleries travelled with the templates' events.
    tids = await _tids(c, "p1")
    events = [ev for _, ev in await _stream_events(c) if ev.subject_id == "p1"]
    carried = {t: list(ev.galleries) for ev in events if ev.kind == ADDED for t in ev.template_ids}
    assert carried == {tids["enc-1"]: ["ADULTS"], tids["enc-2"]: ["WATCHLIST"]}
    # Status and galleries: one membership event each, with the full new state.
    st = await s["gov-a"].SetEncounterStatus(identity_pb2.SetEncounterStatusRequest(
        subject_id="p1", encounter_id="enc-2", status="INACTIVE"))  # fmt: skip
    assert st.status == "INACTIVE"
    g = await s["gov-a"].SetEncounterGalleries(identity_pb2.SetEncounterGalleriesRequest(
        subject_id="p1", encounter_id="enc-2", galleries=["WATCHLIST", "PARTNER"]))  # fmt: skip
    assert g.galleries == ["PARTNER", "WATCHLIST"] and g.status == "INACTIVE"
    memb = [ev for _, ev in await _stream_events(c) if ev.kind == MEMBERSHIP]
    assert [(list(ev.template_ids), list(ev.galleries), ev.inactive) for ev in memb] == [
        ([tids["enc-2"]], ["WATCHLIST"], True), ([tids["enc-2"]], ["PARTNER", "WATCHLIST"], True)]  # fmt: skip
    # Update: new data only; then a new sample (a new template, same encounter).
    u = await s["gov-a"].UpdateEncounter(identity_pb2.UpdateEncounterRequest(
        subject_id="p1", encounter_id="enc-1", update_fields=["data_json"],
        encounter=_fields(data_json='{"clientData": "x"}', encounter_type="ignored")))  # fmt: skip
    assert json.loads(u.data_json) == {"clientData": "x"} and u.encounter_type == "civil"
    # A new sample with new fields (none named: every field is replaced).
    u2 = await s["gov-a"].UpdateEncounter(
        identity_pb2.UpdateEncounterRequest(
            subject_id="p1", encounter_id="enc-1", sample=sample(near(v, seed=4)),
            encounter=_fields(encounter_type="civil-2", galleries=["ADULTS"]),
        )
    )  # fmt: skip
    assert u2.encounter_id == "enc-1" and u2.galleries == ["ADULTS"]
    assert u2.encounter_type == "civil-2" and u2.data_json == ""
    assert (await _tids(c, "p1"))["enc-1"] != tids["enc-1"]
    galleries = await s["gov-a"].ListGalleries(identity_pb2.ListGalleriesRequest())
    counts = {x.name: (x.encounters, x.active_encounters, x.subjects) for x in galleries.galleries}
    assert counts == {"ALL": (2, 1, 1), "ADULTS": (1, 1, 1), "PARTNER": (1, 0, 1),
                      "WATCHLIST": (1, 0, 1)}  # fmt: skip
    # The subject's erasure takes its galleries out of the stream with its vectors.
    await s["gov-a"].Delete(identity_pb2.DeleteRequest(subject_id="p1", reason="test"))
    await _stream_settled(c)
    left = [ev.kind for _, ev in await _stream_events(c) if ev.subject_id == "p1"]
    assert ADDED not in left and MEMBERSHIP not in left and left


async def test_an_encounter_matching_another_person_is_refused(enc):
    c, s = enc
    v = unit_vectors(2, seed=22)
    assert (await s["gov-a"].Enroll(enroll("q1", v[0]))).enrolled
    assert (await s["gov-a"].Enroll(enroll("q2", v[1], wait_indexed=True))).indexed
    r = await s["gov-a"].AddEncounter(identity_pb2.AddEncounterRequest(
        subject_id="q1", sample=sample(near(v[1], seed=5))))  # fmt: skip
    assert r.outcome == "refused" and r.duplicate_of.subject_id == "q2"
    assert len(await _tids(c, "q1")) == 1 and "dedup_hit" in await _history(c.stub, "q2")
    r = await s["gov-a"].AddEncounter(identity_pb2.AddEncounterRequest(
        subject_id="q1", sample=sample(near(v[1], seed=5)), allow_duplicate=True))  # fmt: skip
    assert r.outcome == "added" and len(await _tids(c, "q1")) == 2


async def test_an_erased_encounter_leaves_the_searchers_and_the_stream(enc):
    c, s = enc
    v = unit_vectors(2, seed=23)
    assert (await s["gov-a"].Enroll(enroll("d1", v[0], encounter_id="keep"))).enrolled
    add = await s["gov-a"].AddEncounter(identity_pb2.AddEncounterRequest(
        subject_id="d1", sample=sample(v[1]), encounter=_fields(encounter_id="drop"),
        wait_indexed=True))  # fmt: skip
    assert add.indexed
    tids = await _tids(c, "d1")
    before = await s["gov-a"].Identify(identify(v[1]))
    assert before.candidates[0].subject_id == "d1" and before.candidates[0].is_match
    d = await s["gov-a"].DeleteEncounter(identity_pb2.DeleteEncounterRequest(
        subject_id="d1", encounter_id="drop", reason="wrong capture"))  # fmt: skip
    assert d.receipt.complete and d.receipt.subject_id == "d1"
    body = json.loads(d.receipt.body_json)
    assert body["store"]["templates_removed"] == [tids["drop"]]
    assert body["store"]["encounter_id"] == "drop"
    after = await s["gov-a"].Identify(identify(v[1]))
    assert not any(x.subject_id == "d1" and x.is_match for x in after.candidates)
    assert (await s["gov-a"].Identify(identify(v[0]))).candidates[0].subject_id == "d1"
    await _stream_settled(c)
    events = await _stream_events(c)
    carried = {t for _, ev in events if ev.kind == ADDED for t in ev.template_ids}
    assert tids["drop"] not in carried  # no stream message holds its vector any more
    assert tids["keep"] in carried  # the stream still rebuilds the kept one
    r = await s["gov-a"].GetErasureReceipt(identity_pb2.GetErasureReceiptRequest(
        receipt_id=d.receipt.receipt_id, subject_id="d1"))  # fmt: skip
    assert r.receipt_id == d.receipt.receipt_id
    # The last encounter is not erased this way: Delete erases the subject.
    code, msg = await code_of(s["gov-a"].DeleteEncounter(identity_pb2.DeleteEncounterRequest(
        subject_id="d1", encounter_id="keep")))  # fmt: skip
    assert code == grpc.StatusCode.FAILED_PRECONDITION and "Delete" in msg
    code, _ = await code_of(s["gov-a"].GetEncounter(
        encounters_pb2.GetEncounterRequest(subject_id="d1", encounter_id="drop")))  # fmt: skip
    assert code == grpc.StatusCode.NOT_FOUND
    assert "DeleteEncounter" in await _history(c.stub, "d1")


async def test_move_and_merge_are_audited_on_both_subjects(enc):
    c, s = enc
    v = unit_vectors(3, seed=24)
    assert (await s["gov-a"].Enroll(enroll("ma", v[0], encounter_id="a1"))).enrolled
    assert (await s["gov-a"].Enroll(enroll("mb", v[1], encounter_id="b1"))).enrolled
    assert (await s["gov-a"].AddEncounter(identity_pb2.AddEncounterRequest(
        subject_id="mb", sample=sample(v[2]), encounter=_fields(encounter_id="b2",
                                                                 galleries=["G1"])))).outcome == "added"  # fmt: skip
    mv = await s["gov-a"].MoveEncounter(identity_pb2.MoveEncounterRequest(
        subject_id="ma", source_subject_id="mb", encounter_id="b2", reason="misfiled"))  # fmt: skip
    assert mv.encounter.subject_id == "ma" and mv.encounter.galleries == ["G1"]
    assert not mv.source_erased
    assert set(await _tids(c, "ma")) == {"a1", "b2"} and set(await _tids(c, "mb")) == {"b1"}
    found = await s["gov-a"].Identify(identify(v[2]))
    assert found.candidates[0].subject_id == "ma"
    mg = await s["gov-a"].MergeSubjects(identity_pb2.MergeSubjectsRequest(
        subject_id="ma", source_subject_id="mb", reason="same person"))  # fmt: skip
    assert mg.source_erased and mg.source_receipt.complete and mg.subject.template_count == 3
    assert [e.encounter_id for e in mg.moved] == ["b1"]
    assert (await s["gov-a"].Identify(identify(v[1]))).candidates[0].subject_id == "ma"
    code, _ = await code_of(s["gov-a"].ListEncounters(
        encounters_pb2.ListEncountersRequest(subject_id="mb")))  # fmt: skip
    assert code == grpc.StatusCode.NOT_FOUND
    a, b = await _history(c.stub, "ma"), await _history(c.stub, "mb")
    assert {"MoveEncounter", "MergeSubjects"} <= set(a)
    assert {"MoveEncounter", "MergeSubjects", "erase"} <= set(b)


async def test_merging_a_held_enrolment_decides_its_case(enc):
    c, s = enc
    v = unit_vectors(1, seed=25)[0]
    assert (await s["gov-a"].Enroll(enroll("h-orig", v))).enrolled
    held = await s["gov-a"].Enroll(enroll("h-held", near(v, seed=6), encounter_id="osia-7",
                                          galleries=["G"], encounter_data_json='{"a": 1}'))  # fmt: skip
    assert held.outcome == "referred"
    # An agency without the adjudication scope cannot see the held record.
    code, _ = await code_of(s["gov-a"].MergeSubjects(identity_pb2.MergeSubjectsRequest(
        subject_id="h-orig", source_subject_id="h-held")))  # fmt: skip
    assert code == grpc.StatusCode.NOT_FOUND
    # The adjudicator decides it by the merge, as DecideCase would.
    mg = await s["adj"].MergeSubjects(identity_pb2.MergeSubjectsRequest(
        subject_id="h-orig", source_subject_id="h-held", reason="same"))  # fmt: skip
    assert mg.case_id == held.case_id and mg.subject.template_count == 2 and len(mg.moved) == 1
    # The held enrolment's encounter is what the target holds now.
    m = mg.moved[0]
    assert (m.encounter_id, list(m.galleries), json.loads(m.data_json)) == (
        "osia-7",
        ["G"],
        {"a": 1},
    )
    case = await c.stub.GetCase(cases_pb2.GetCaseRequest(case_id=held.case_id))
    assert case.state == "merged" and case.decided_by == "adj/desk-1"
    # No held case pairs these two: nothing to merge.
    code, _ = await code_of(s["adj"].MergeSubjects(identity_pb2.MergeSubjectsRequest(
        subject_id="h-orig", source_subject_id="h-held")))  # fmt: skip
    assert code == grpc.StatusCode.NOT_FOUND
    # An adjudicator has no rights on enrolled subjects themselves.
    assert (await s["gov-a"].Enroll(enroll("h-other", unit_vectors(1, seed=99)[0]))).enrolled
    code, msg = await code_of(s["adj"].MergeSubjects(identity_pb2.MergeSubjectsRequest(
        subject_id="h-orig", source_subject_id="h-other")))  # fmt: skip
    assert (code, msg) == (grpc.StatusCode.NOT_FOUND, access.NO_RIGHTS_MESSAGE)


async def test_identify_by_a_stored_person_leaves_the_person_out(enc):
    c, s = enc
    v = unit_vectors(2, seed=26)
    assert (await s["gov-a"].Enroll(enroll("i1", v[0], encounter_id="x"))).enrolled
    assert (await s["gov-a"].Enroll(enroll("i2", near(v[0], seed=7), allow_duplicate=True,
                                           wait_indexed=True))).indexed  # fmt: skip
    r = await s["gov-a"].Identify(identity_pb2.IdentifyRequest(probe_subject_id="i1"))
    assert r.candidates and r.candidates[0].subject_id == "i2" and r.candidates[0].is_match
    assert all(x.subject_id != "i1" for x in r.candidates)
    r = await s["gov-a"].Identify(identity_pb2.IdentifyRequest(
        probe_subject_id="i1", probe_encounter_id="x", top_k=1))  # fmt: skip
    assert [x.subject_id for x in r.candidates] == ["i2"]
    code, _ = await code_of(s["gov-a"].Identify(identity_pb2.IdentifyRequest(
        probe_subject_id="i1", probe_encounter_id="nope")))  # fmt: skip
    assert code == grpc.StatusCode.NOT_FOUND
    assert "Identify" in await _history(c.stub, "i1")  # the probe's use is in its history
    # Rights on the probe subject: another agency learns nothing.
    code, msg = await code_of(
        s["gov-b"].Identify(identity_pb2.IdentifyRequest(probe_subject_id="i1"))
    )
    assert code == grpc.StatusCode.NOT_FOUND and msg == access.NO_RIGHTS_MESSAGE


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_hostile_encounter_input_is_refused_with_its_rule(backend, nats_server, tmp_path):
    c = Cluster(env_for(nats_server.url, tmp_path))
    try:
        await c.start_all()
        v = unit_vectors(2, seed=27)
        assert (await c.stub.Enroll(enroll("x1", v[0]))).enrolled
        bad = [
            _fields(galleries=["no spaces"]),
            _fields(galleries=["g"] * 33),
            _fields(galleries=["x" * 65]),
            _fields(data_json="[]"),
            _fields(data_json="nope"),
            _fields(data_json=json.dumps({"k": "é" * 9000})),
            _fields(status="GONE"),
            _fields(encounter_id="../etc"),
            _fields(encounter_id="x" * 65),
        ]
        for f in bad:
            code, msg = await code_of(c.stub.AddEncounter(identity_pb2.AddEncounterRequest(
                subject_id="x1", sample=sample(v[1]), encounter=f)))  # fmt: skip
            assert code == grpc.StatusCode.INVALID_ARGUMENT, (f, msg)
        code, _ = await code_of(c.stub.Enroll(enroll("x2", v[1], galleries=["bad/name"])))
        assert code == grpc.StatusCode.INVALID_ARGUMENT
        code, _ = await code_of(c.stub.Identify(identify(v[0], gallery="no such!")))
        assert code == grpc.StatusCode.INVALID_ARGUMENT
        code, _ = await code_of(c.stub.UpdateEncounter(identity_pb2.UpdateEncounterRequest(
            subject_id="x1", encounter_id="e1", update_fields=["template"])))  # fmt: skip
        assert code == grpc.StatusCode.INVALID_ARGUMENT
        code, _ = await code_of(c.stub.GetGalleryContent(
            identity_pb2.GetGalleryContentRequest(gallery="ALL", page_size=5000)))  # fmt: skip
        assert code == grpc.StatusCode.INVALID_ARGUMENT
        code, _ = await code_of(c.stub.MergeSubjects(
            identity_pb2.MergeSubjectsRequest(subject_id="x1", source_subject_id="x1")))  # fmt: skip
        assert code == grpc.StatusCode.INVALID_ARGUMENT
        # Nothing was written; the service still serves.
        got = await c.stub.ListEncounters(encounters_pb2.ListEncountersRequest(subject_id="x1"))
        assert len(got.encounters) == 1
    finally:
        await c.stop()


NEW_METHODS = {
    "AddEncounter": identity_pb2.AddEncounterRequest,
    "ListEncounters": encounters_pb2.ListEncountersRequest,
    "GetEncounter": encounters_pb2.GetEncounterRequest,
    "UpdateEncounter": identity_pb2.UpdateEncounterRequest,
    "DeleteEncounter": identity_pb2.DeleteEncounterRequest,
    "SetEncounterStatus": identity_pb2.SetEncounterStatusRequest,
    "SetEncounterGalleries": identity_pb2.SetEncounterGalleriesRequest,
    "MoveEncounter": identity_pb2.MoveEncounterRequest,
    "MergeSubjects": identity_pb2.MergeSubjectsRequest,
    "ListGalleries": identity_pb2.ListGalleriesRequest,
    "GetGalleryContent": identity_pb2.GetGalleryContentRequest,
    "Identify": identity_pb2.IdentifyRequest,
}


def _hostile(cls, r):
    """A request of ``cls`` with every string field hostile (or a known id),
    repeated strings, and sometimes a hostile sample or encounter."""
    from fuzzcases import sample as fuzz_sample
    from fuzzcases import text

    def s():
        return r.choice(("f1", "f2", "e1", "ALL", "G", "")) if r.random() < 0.5 else text(r)

    m = cls()
    for f in m.DESCRIPTOR.fields:
        if f.type == f.TYPE_STRING:
            if f.is_repeated:
                getattr(m, f.name).extend(s() for _ in range(r.randint(0, 40)))
            else:
                setattr(m, f.name, s())
        elif f.type in (f.TYPE_UINT32,):
            setattr(m, f.name, r.choice((0, 1, 1000, 1001, 2**32 - 1)))
        elif f.message_type is not None and f.message_type.name == "BiometricSample":
            if r.random() < 0.7:
                getattr(m, f.name).CopyFrom(fuzz_sample(r, images=False))
        elif f.message_type is not None and f.message_type.name == "EncounterFields":
            e = getattr(m, f.name)
            e.encounter_id, e.encounter_type, e.status = s(), s(), s()
            e.galleries.extend(s() for _ in range(r.randint(0, 40)))
            e.data_json = r.choice(("", "{}", "[]", '{"a":', "null", '{"k": "v"}', s()))
    return m


async def test_no_hostile_encounter_request_is_an_internal_error(nats_server, tmp_path):
    import random

    c = Cluster(env_for(nats_server.url, tmp_path))
    try:
        await c.start_all()
        v = unit_vectors(2, seed=28)
        for sid, vec in (("f1", v[0]), ("f2", v[1])):
            assert (await c.stub.Enroll(enroll(sid, vec, encounter_id="e1",
                                               galleries=["G"]))).enrolled  # fmt: skip
        r = random.Random(2026)
        seen: dict[str, set] = {}
        for i in range(400):
            name = list(NEW_METHODS)[i % len(NEW_METHODS)]
            req = _hostile(NEW_METHODS[name], r)
            code, msg = await code_of(getattr(c.stub, name)(req))
            assert code not in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN), (name, msg)
            seen.setdefault(name, set()).add(code)
        # Most methods were reached beyond their input checks too.
        beyond = [n for n, codes in seen.items() if codes - {grpc.StatusCode.INVALID_ARGUMENT}]
        assert len(beyond) >= len(NEW_METHODS) // 2, seen
        still = await c.stub.ListGalleries(identity_pb2.ListGalleriesRequest())
        assert still.galleries[0].name == "ALL"
    finally:
        await c.stop()


async def test_consent_lock_and_idempotency_hold_for_encounters(enc):
    c, s = enc
    v = unit_vectors(2, seed=29)
    idv = [("x-tanu-purpose", "identity_verification")]
    only_idv = enroll("k1", v[0], consent=consent(purposes=["identity_verification"]))
    assert (await s["gov-a"].Enroll(only_idv, metadata=idv)).enrolled
    add = identity_pb2.AddEncounterRequest(subject_id="k1", sample=sample(near(v[0], seed=8)))
    # kyc was never consented to: no encounter is collected for it.
    code, _ = await code_of(s["gov-a"].AddEncounter(add))
    assert code == grpc.StatusCode.PERMISSION_DENIED
    # A retry with the same key is the same encounter, not a second one.
    key = [*idv, ("idempotency-key", "add-k1-1")]
    first = await s["gov-a"].AddEncounter(add, metadata=key)
    again = await s["gov-a"].AddEncounter(add, metadata=key)
    assert first.outcome == again.outcome == "added"
    assert first.encounter.encounter_id == again.encounter.encounter_id
    assert len(await _tids(c, "k1")) == 2
    # Locked: the person's face is not used as a probe.
    await c.stub.SetBiometricLock(identity_pb2.SetBiometricLockRequest(
        subject_id="k1", locked=True, sample=sample(v[0])))  # fmt: skip
    code, _ = await code_of(s["gov-a"].Identify(
        identity_pb2.IdentifyRequest(probe_subject_id="k1"), metadata=idv))  # fmt: skip
    assert code == grpc.StatusCode.PERMISSION_DENIED
