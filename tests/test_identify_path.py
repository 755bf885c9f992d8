"""Enrol, identify, verify and delete through the real gateway, store and
searchers over a real nats-server."""

from __future__ import annotations

import pytest

from tanu.v1 import common_pb2, identity_pb2

from conftest import near, unit_vectors
from helpers import enroll, identify, verify


async def test_enrol_then_identify_finds_the_subject_and_delete_removes_it(cluster):
    stub = cluster.stub
    gallery = unit_vectors(20)
    for i, v in enumerate(gallery):
        r = await stub.Enroll(enroll(f"citizen-{i}", v, wait_indexed=True))
        assert r.enrolled and r.indexed
    probe = near(gallery[7])
    r = await stub.Identify(identify(probe, top_k=3))
    assert r.complete and not r.missing_partitions
    assert r.candidates[0].subject_id == "citizen-7"
    assert r.candidates[0].is_match and r.decision == common_pb2.DECISION_MATCH
    assert r.gallery_size == 20
    assert r.metric == common_pb2.METRIC_L2 and r.threshold == pytest.approx(0.6)

    d = await stub.Delete(identity_pb2.DeleteRequest(subject_id="citizen-7", reason="test"))
    assert d.templates_removed == 1
    for _ in range(200):
        r = await stub.Identify(identify(probe, top_k=3))
        if r.gallery_size == 19:
            break
    assert r.gallery_size == 19
    assert all(c.subject_id != "citizen-7" for c in r.candidates)
    assert r.decision == common_pb2.DECISION_NO_MATCH


async def test_verify_matches_own_templates_only(cluster):
    stub = cluster.stub
    a, b = unit_vectors(2, seed=3)
    await stub.Enroll(enroll("alice", a))
    await stub.Enroll(enroll("bob", b))
    same = await stub.Verify(verify("alice", near(a)))
    assert same.decision == common_pb2.DECISION_MATCH and same.score < 0.6
    other = await stub.Verify(verify("bob", near(a)))
    assert other.decision == common_pb2.DECISION_NO_MATCH and other.score > 0.6
    strict = await stub.Verify(verify("alice", near(a, scale=0.05), threshold=0.01))
    assert strict.decision == common_pb2.DECISION_NO_MATCH and strict.threshold == pytest.approx(
        0.01
    )


async def test_enrolment_refuses_a_duplicate_face_unless_asked(cluster):
    stub = cluster.stub
    v = unit_vectors(1, seed=5)[0]
    await stub.Enroll(enroll("first", v, wait_indexed=True))
    dup = await stub.Enroll(enroll("second", near(v)))
    assert not dup.enrolled
    assert dup.duplicate_of.subject_id == "first" and dup.duplicate_of.is_match
    forced = await stub.Enroll(enroll("second", near(v), allow_duplicate=True, wait_indexed=True))
    assert forced.enrolled and forced.duplicate_of.subject_id == "first"
    r = await stub.Identify(identify(v, top_k=5))
    assert {c.subject_id for c in r.candidates} == {"first", "second"}
    s = await stub.GetSubject(identity_pb2.GetSubjectRequest(subject_id="second"))
    assert s.template_count == 1 and s.model_id == "dlib-resnet-v1"


@pytest.mark.parametrize("kind", ["flat", "fp16", "ivf"])
async def test_deletes_are_honoured_by_every_index_kind(nats_server, tmp_path, kind):
    from conftest import Cluster, env_for

    c = Cluster(env_for(nats_server.url, tmp_path, TANU_INDEX_KIND=kind))
    try:
        await c.start_all()
        assert {s.index.kind for s in c.searchers.values()} == {kind}
        gallery = unit_vectors(40, seed=9)
        for i, v in enumerate(gallery):
            await c.stub.Enroll(enroll(f"k{i}", v, wait_indexed=True))
        for i in range(0, 40, 2):
            await c.stub.Delete(identity_pb2.DeleteRequest(subject_id=f"k{i}"))
        for _ in range(200):
            r = await c.stub.Identify(identify(gallery[0], top_k=40))
            if r.gallery_size == 20:
                break
        assert r.gallery_size == 20
        for i, v in enumerate(gallery):
            top = (await c.stub.Identify(identify(v, top_k=3))).candidates
            if i % 2:
                assert top[0].subject_id == f"k{i}" and top[0].is_match
            else:
                assert all(x.subject_id != f"k{i}" for x in top) and not top[0].is_match
    finally:
        await c.stop()


async def test_concurrent_enrolments_of_one_face_enrol_it_once(cluster):
    import asyncio

    v = unit_vectors(1, seed=31)[0]
    replies = await asyncio.gather(
        *(cluster.stub.Enroll(enroll(f"twin-{i}", near(v, seed=i))) for i in range(6))
    )
    enrolled = [r.subject.subject_id for r in replies if r.enrolled]
    assert len(enrolled) == 1, enrolled
    assert all(r.duplicate_of.subject_id == enrolled[0] for r in replies if not r.enrolled)
