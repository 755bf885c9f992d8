"""Encounters in the system of record, on both backends: a database created
before encounters is migrated (each template one encounter, with a unique
id per subject); what an encounter may hold is checked by the store; every
change queues its template events (ADDED with galleries and status,
MEMBERSHIP, REMOVED) and takes the vectors of templates a subject no
longer holds out of the outbox; a move re-seals under the target's key."""

from __future__ import annotations

import json

import numpy as np
import pytest
from test_store import LAYOUT, Raw, keyring, target  # noqa: F401 (fixtures: SQLite and PostgreSQL)

from tanu.core import envelope, errors, vectors
from tanu.store import Store
from tanu.v1 import common_pb2, encounters_pb2, store_pb2

from conftest import unit_vectors

ADDED = store_pb2.TemplateEvent.KIND_ADDED
REMOVED = store_pb2.TemplateEvent.KIND_REMOVED
MEMBERSHIP = store_pb2.TemplateEvent.KIND_MEMBERSHIP


def _consent(tenant: str = "gov-a") -> common_pb2.Consent:
    return common_pb2.Consent(purposes=["kyc"], evidence_ref="form-1", tenant=tenant)


def _open(target, keyring) -> Store:  # noqa: F811
    return Store(target, LAYOUT, envelope.LocalKeyProvider.from_file(keyring))


def _events(s: Store, subject_id: str) -> list[store_pb2.TemplateEvent]:
    """The subject's events waiting in the outbox, opened as the relay opens them."""
    return [store_pb2.TemplateEvent.FromString(r.payload) for r in s.outbox_batch(10_000)
            if r.subject_id == subject_id]  # fmt: skip


def _add(s: Store, sid: str, vec, **fields) -> store_pb2.AddEncounterOutcome:
    return s.add_encounter(store_pb2.AddEncounterRecord(
        subject_id=sid, encounter=encounters_pb2.EncounterFields(**fields),
        dedup=store_pb2.DedupCheck(threshold=0.6),
    ), vec[None, :])  # fmt: skip


def test_a_database_from_before_encounters_is_migrated(target, keyring):  # noqa: F811
    s = _open(target, keyring)
    s.put_subject("old", unit_vectors(2, seed=1), "1990-01-01", _consent())
    s.close()
    # The database as an earlier release left it: no encounter columns.
    raw = Raw(target)
    raw.rows("DROP INDEX templates_by_encounter")
    for col in ("encounter_id", "encounter_type", "inactive", "updated_at_ms", "encounter_data"):
        raw.rows(f"ALTER TABLE templates DROP COLUMN {col}")
    raw.conn.close()
    s = _open(target, keyring)
    try:
        got = s.list_encounters("old").encounters
        assert len(got) == 2 and len({e.encounter_id for e in got}) == 2
        assert all(e.status == "ACTIVE" and e.updated_at_ms == e.created_at_ms for e in got)
        assert [e.encounter_id for e in got] == [f"e{e.template_id}" for e in got]
        # The unique index holds from now on.
        with pytest.raises(errors.AlreadyExists):
            _add(s, "old", unit_vectors(1, seed=2)[0], encounter_id=got[0].encounter_id)
    finally:
        s.close()


def test_encounter_data_is_sealed_and_events_carry_galleries_and_status(target, keyring):  # noqa: F811
    s = _open(target, keyring)
    try:
        v = unit_vectors(2, seed=3)
        s.put_subject("p", v[:1], "1990-01-01", _consent())
        secret = "Zanzibar-Tolstoy-42"
        out = _add(s, "p", v[1], encounter_id="enc-2", galleries=["WATCHLIST", "ADULTS", "ALL"],
                   encounter_type="border", data_json=json.dumps({"name": secret}),
                   status="INACTIVE")  # fmt: skip
        e = out.encounter
        assert out.outcome == "added" and e.galleries == ["ADULTS", "WATCHLIST"]
        assert e.status == "INACTIVE" and json.loads(e.data_json) == {"name": secret}
        # Sealed: the database never holds the encounter data in the clear.
        raw = Raw(target)
        blobs = raw.rows("SELECT encounter_data FROM templates WHERE encounter_data IS NOT NULL")
        assert blobs and all(secret.encode() not in bytes(b[0]) for b in blobs)
        added = [ev for ev in _events(s, "p") if ev.kind == ADDED]
        mine = [ev for ev in added if e.template_id in ev.template_ids]
        assert len(mine) == 1 and list(mine[0].galleries) == ["ADULTS", "WATCHLIST"]
        assert mine[0].inactive and list(mine[0].template_ids) == [e.template_id]
        # A gallery or status change is one MEMBERSHIP event with the full new set.
        s.update_encounter(store_pb2.EncounterChange(
            subject_id="p", encounter_id="enc-2", update_fields=["galleries", "status"],
            encounter=encounters_pb2.EncounterFields(galleries=["PARTNER"], status="ACTIVE"),
        ), None)  # fmt: skip
        m = [ev for ev in _events(s, "p") if ev.kind == MEMBERSHIP]
        assert len(m) == 1 and list(m[0].template_ids) == [e.template_id]
        assert list(m[0].galleries) == ["PARTNER"] and not m[0].inactive and not m[0].vectors
        raw.conn.close()
    finally:
        s.close()


def test_a_replaced_sample_leaves_no_vector_of_the_old_template_in_the_outbox(target, keyring):  # noqa: F811
    s = _open(target, keyring)
    try:
        v = unit_vectors(3, seed=4)
        s.put_subject("r", v[:1], "1990-01-01", _consent())
        old = _add(s, "r", v[1], encounter_id="two").encounter
        new = s.update_encounter(store_pb2.EncounterChange(
            subject_id="r", encounter_id="two", template=common_pb2.Template(
                vector=vectors.to_bytes(v[2:3]), model_id=LAYOUT.model_id)), v[2:3])  # fmt: skip
        assert new.template_id != old.template_id and new.encounter_id == "two"
        evs = _events(s, "r")
        carried = {t for ev in evs if ev.kind == ADDED for t in ev.template_ids}
        assert old.template_id not in carried  # the old vector is gone from the outbox
        assert new.template_id in carried and len(carried) == 2  # the kept one queued again
        assert any(ev.kind == REMOVED and old.template_id in ev.template_ids for ev in evs)
        for ev in evs:  # no event holds the old vector under any id
            if ev.kind == ADDED:
                rows = vectors.from_bytes(ev.vectors, LAYOUT.dimension)
                assert not np.any(np.all(np.isclose(rows, v[1]), axis=1))
    finally:
        s.close()


def test_a_merge_re_seals_under_the_target_and_erases_the_source(target, keyring):  # noqa: F811
    s = _open(target, keyring)
    try:
        v = unit_vectors(3, seed=5)
        s.put_subject("a", v[:1], "1990-01-01", _consent())
        s.put_subject("b", v[1:3], "1990-01-01", _consent())
        out = s.move_encounters(store_pb2.MoveEncountersRequest(
            subject_id="a", source_subject_id="b", reason="same person", tenant="gov-a"))  # fmt: skip
        assert out.source_erased and out.source_erasure.receipt_id and len(out.moved) == 2
        got = s.get_templates("a")
        assert len(got.templates) == 3
        back = vectors.from_bytes(
            b"".join(t.template.vector for t in got.templates), LAYOUT.dimension
        )
        assert np.allclose(np.sort(back, axis=0), np.sort(v, axis=0), atol=1e-6)
        with pytest.raises(errors.NotFound):
            s.list_encounters("b")
        ops = {(r[0], r[1]) for r in Raw(target).rows(
            "SELECT subject_id, operation FROM audit WHERE operation IN ('MergeSubjects', 'erase')")}  # fmt: skip
        assert {("a", "MergeSubjects"), ("b", "MergeSubjects"), ("b", "erase")} <= ops
    finally:
        s.close()


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ({"galleries": ["bad name"]}, "gallery name"),
        ({"galleries": ["x" * 65]}, "gallery name"),
        ({"galleries": [""]}, "gallery name"),
        ({"galleries": [f"g{i}" for i in range(33)]}, "at most 32"),
        ({"data_json": "[1, 2]"}, "JSON object"),
        ({"data_json": "3"}, "JSON object"),
        ({"data_json": "{not json"}, "not valid JSON"),
        ({"data_json": json.dumps({"x": "a" * 17000})}, "the limit is 16384"),
        ({"data_json": "[" * 5000 + "]" * 5000}, "not valid JSON"),
        ({"status": "DELETED"}, "ACTIVE or INACTIVE"),
        ({"encounter_id": "has space"}, "encounter_id"),
        ({"encounter_id": "é"}, "encounter_id"),
        ({"encounter_type": "t" * 65}, "encounter_type"),
    ],
)
def test_what_an_encounter_may_hold_is_checked(tmp_path, fields, words):
    s = Store(tmp_path / "s.sqlite3", LAYOUT)
    try:
        v = unit_vectors(2, seed=6)
        s.put_subject("h", v[:1], "1990-01-01", _consent())
        with pytest.raises(errors.InvalidArgument) as e:
            _add(s, "h", v[1], **fields)
        assert words in e.value.message
        assert len(s.list_encounters("h").encounters) == 1  # nothing written
    finally:
        s.close()


def test_republished_events_keep_galleries_and_status(target, keyring):  # noqa: F811
    s = _open(target, keyring)
    try:
        v = unit_vectors(2, seed=7)
        s.put_subject("rp", v[:1], "1990-01-01", _consent())
        e = _add(s, "rp", v[1], galleries=["G"], status="INACTIVE").encounter
        s.outbox_done(s.outbox_batch(10_000), list(range(1, 1 + s.outbox_pending())))
        s.republish(store_pb2.RepublishRequest(template_ids=[e.template_id]))
        added = [ev for ev in _events(s, "rp") if ev.kind == ADDED]
        got = {t: (list(ev.galleries), ev.inactive) for ev in added for t in ev.template_ids}
        assert got[e.template_id] == (["G"], True) and len(got) == 2
        assert [g for (g, _i) in got.values()].count([]) == 1
    finally:
        s.close()


def test_a_tenant_without_subjects_sees_an_empty_all_and_no_named_gallery(tmp_path):
    s = Store(tmp_path / "s.sqlite3", LAYOUT)
    try:
        s.put_subject("o", unit_vectors(1, seed=8), "1990-01-01", _consent())
        s.update_encounter(store_pb2.EncounterChange(
            subject_id="o", encounter_id=s.list_encounters("o").encounters[0].encounter_id,
            update_fields=["galleries"], encounter=encounters_pb2.EncounterFields(galleries=["G"]),
        ), None)  # fmt: skip
        q = store_pb2.GalleryQuery(owner="gov-new")
        assert [(g.name, g.encounters) for g in s.list_galleries(q).galleries] == [("ALL", 0)]
        assert not s.gallery_content(store_pb2.GalleryQuery(owner="gov-new", gallery="ALL")).members
        with pytest.raises(errors.NotFound):
            s.gallery_content(store_pb2.GalleryQuery(owner="gov-new", gallery="G"))
        assert (
            len(s.gallery_content(store_pb2.GalleryQuery(owner="gov-a", gallery="G")).members) == 1
        )
        # Withdrawn events are remembered for a while, then forgotten.
        s._x("INSERT INTO withdrawn_events(event_id, withdrawn_at_ms) VALUES ('old', 0)")
        assert s.purge_withdrawn() == 1 and s.purge_withdrawn() == 0
    finally:
        s.close()


def test_a_held_enrolment_keeps_its_encounter_sealed_until_decided(target, keyring):  # noqa: F811
    from tanu.v1 import cases_pb2

    s = _open(target, keyring)
    try:
        v = unit_vectors(1, seed=9)
        s.put_subject("orig", v, "1990-01-01", _consent())
        secret = "Ouagadougou-77"
        req = store_pb2.PutSubjectRequest(
            subject_id="twin", date_of_birth="1990-01-01", consent=_consent(),
            dedup=store_pb2.DedupCheck(threshold=0.6, tenant="gov-a"),
            encounter=encounters_pb2.EncounterFields(
                encounter_id="osia-1", galleries=["G"], data_json=json.dumps({"n": secret})),
        )  # fmt: skip
        from tanu.store.encounters import encounters_of

        out = s.enrol_subject(req, v, encounters_of(req, 1))
        assert out.outcome == "referred"
        raw = Raw(target)
        (held,) = raw.one("SELECT encounter FROM cases WHERE case_id = ?", (out.case_id,))
        assert held and secret.encode() not in bytes(held)
        d = s.decide_case(cases_pb2.DecideCaseRequest(case_id=out.case_id, decision="distinct"))
        assert d.subject.subject_id == "twin"
        (e,) = s.list_encounters("twin").encounters
        assert (e.encounter_id, list(e.galleries)) == ("osia-1", ["G"])
        assert json.loads(e.data_json) == {"n": secret}
        assert raw.one("SELECT encounter FROM cases WHERE case_id = ?", (out.case_id,))[0] is None
        raw.conn.close()
    finally:
        s.close()
