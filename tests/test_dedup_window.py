"""The store's de-duplication window holds only what the gateway's search
may not have seen: right after a bulk import (``put.batch``) the imported
templates leave it once the searchers have applied them, while a template
the search had not applied, or an inactive one, still stops a duplicate."""

from __future__ import annotations

import asyncio

import numpy as np

from tanu.clients.store import StoreClient
from tanu.core import bus, natsroles, vectors
from tanu.v1 import common_pb2, store_pb2

from conftest import nats_url_as, near, unit_vectors
from helpers import enroll

IMPORTED = 400


def _batch(faces: np.ndarray, prefix: str) -> store_pb2.PutSubjectsRequest:
    consent = common_pb2.Consent(purposes=["kyc"], evidence_ref="f", tenant="operator")
    return store_pb2.PutSubjectsRequest(subjects=[
        store_pb2.PutSubjectRequest(
            subject_id=f"{prefix}-{i}", date_of_birth="1980-01-01", consent=consent,
            templates=[common_pb2.Template(vector=vectors.to_bytes(f))],
        )
        for i, f in enumerate(faces)
    ])  # fmt: skip


async def _import(env, faces: np.ndarray, prefix: str) -> None:
    nc = await bus.connect(nats_url_as(env, natsroles.OPERATOR), "op")
    try:
        reply = await StoreClient(nc, 30).put_batch(_batch(faces, prefix))
        assert reply.stored == len(faces)
    finally:
        await nc.close()


async def _applied(cluster) -> dict[int, int]:
    """Waits until every searcher has applied everything published."""
    db = cluster.store.db
    for _ in range(500):
        if db.outbox_pending() == 0:
            (top,) = db._one("SELECT COALESCE(MAX(stream_seq), 0) FROM templates")
            seqs = {p: s.applied_sequence for (p, _r), s in cluster.searchers.items()}
            last = {p: db._one(
                "SELECT COALESCE(MAX(t.stream_seq), 0) FROM templates t JOIN subjects s "
                "ON s.subject_id = t.subject_id WHERE s.partition = ?", (p,))[0]
                for p in seqs}  # fmt: skip
            if top and all(seqs[p] >= last[p] for p in seqs):
                return seqs
        await asyncio.sleep(0.02)
    raise AssertionError("the searchers did not apply the import")


async def test_an_applied_import_leaves_the_window_and_its_duplicates_are_still_found(cluster):
    faces = unit_vectors(IMPORTED, seed=301)
    await _import(cluster.env, faces, "IMP")
    await _applied(cluster)
    db = cluster.store.db
    # A distinct face: the store compares it with what the search had not seen,
    # not with the 400 imported templates (all applied by the searchers).
    first = await cluster.stub.Enroll(enroll("new-0", unit_vectors(1, seed=302)[0]))
    assert first.enrolled
    assert len(db._recent) < 5, len(db._recent)
    # A duplicate of an imported subject: the indexed gallery finds it (the
    # import's consent is another tenant's, so the reply withholds the name).
    dup = await cluster.stub.Enroll(enroll("twin-7", near(faces[7], seed=3)))
    assert dup.outcome == "referred" and dup.duplicate_withheld


async def test_what_the_search_had_not_applied_stays_in_the_window(cluster):
    faces = unit_vectors(20, seed=311)
    await _import(cluster.env, faces, "W")
    applied = await _applied(cluster)
    db = cluster.store.db
    # As if the searchers had answered before applying the import: every
    # imported template is compared, and the duplicate is held.
    before = {p: 0 for p in applied}
    found = db._window_best(near(faces[3], seed=5)[None, :], searched=before)
    assert found is not None and found[0] == "W-3"
    assert len(db._recent) == len(faces)
    # Having applied it: none of them is in the window.
    assert db._window_best(near(faces[3], seed=5)[None, :], searched=applied) is None
    # A partition the gateway did not report: its templates stay.
    only_0 = {0: applied[0]}
    db._window_best(faces[:1], searched=only_0)
    on_1 = db._one("SELECT COUNT(*) FROM subjects WHERE subject_id LIKE 'W-%' AND partition = 1")[0]
    assert len(db._recent) == on_1 > 0
    # A template whose latest event is not yet published stays too.
    (tid,) = db._one("SELECT t.template_id FROM templates t WHERE t.subject_id = 'W-4'")
    db._tx(lambda _c: db._x("UPDATE templates SET stream_seq = 0 WHERE template_id = ?", (tid,)))
    found = db._window_best(near(faces[4], seed=6)[None, :], searched=applied)
    assert found is not None and found[0] == "W-4"
