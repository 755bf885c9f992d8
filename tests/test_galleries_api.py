"""Galleries through the Identity API on a real cluster: identify in a
gallery searches only its active members inside the searchers (top_k
filled from the gallery, not a post-filter of the global top-k); an
INACTIVE encounter is never returned; a gallery change takes effect at
once; galleries are counted and listed over the caller's own subjects;
and every encounter operation keeps tenants apart (the uniform NOT_FOUND,
PERMISSION_DENIED by scope)."""

from __future__ import annotations

import grpc
import pytest
import pytest_asyncio
from tenancy import code_of, start_cluster, token

from tanu.core import secrets
from tanu.policy import access
from tanu.v1 import encounters_pb2, identity_pb2, identity_pb2_grpc

from conftest import near, unit_vectors
from helpers import enroll, identify, sample


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def gal(tmp_path_factory):
    c, nats, _stub, ch0 = await start_cluster(tmp_path_factory.mktemp("gal"), partitions=2)
    channels = [ch0]
    try:
        stubs = {"operator": c.stub}
        for name, purpose in (("gov-a", "kyc"), ("gov-b", "kyc"), ("bank", "kyc"),
                              ("portal", "identity_verification")):  # fmt: skip
            ch = secrets.aio_channel(f"127.0.0.1:{c.gateway.port}", token(c.env, name), purpose)
            channels.append(ch)
            stubs[name] = identity_pb2_grpc.IdentityStub(ch)
        yield c, stubs
    finally:
        for ch in channels:
            await ch.close()
        await c.stop()
        nats.stop()


def _ids(r: identity_pb2.IdentifyResponse) -> list[str]:
    return [x.subject_id for x in r.candidates]


@pytest.mark.asyncio(loop_scope="module")
async def test_identify_in_a_gallery_returns_only_its_active_members(gal):
    c, s = gal
    v = unit_vectors(24, seed=31)
    for i in range(20):  # the crowd: ALL only
        assert (await s["gov-a"].Enroll(enroll(f"crowd{i}", v[i]))).enrolled
    for i in range(20, 24):
        assert (await s["gov-a"].Enroll(enroll(f"watch{i}", v[i], galleries=["WATCHLIST"],
                                               encounter_id="w"))).enrolled  # fmt: skip
    probe = near(v[0], seed=3)  # the face of a crowd member, not on the watchlist
    every = await s["gov-a"].Identify(identify(probe, top_k=4))
    assert _ids(every)[0] == "crowd0"
    r = await s["gov-a"].Identify(identify(probe, top_k=4, gallery="WATCHLIST"))
    # Exactly the gallery's members, all four of them: filtered in the index.
    assert sorted(_ids(r)) == [f"watch{i}" for i in range(20, 24)] and r.complete
    assert not any(x.is_match for x in r.candidates)
    assert _ids(await s["gov-a"].Identify(identify(v[21], gallery="WATCHLIST")))[0] == "watch21"
    assert _ids(await s["gov-a"].Identify(identify(v[21], gallery="ALL")))[0] == "watch21"
    assert not _ids(await s["gov-a"].Identify(identify(v[21], gallery="NOBODY")))
    # INACTIVE: never returned, in any gallery; ACTIVE again: back.
    await s["gov-a"].SetEncounterStatus(identity_pb2.SetEncounterStatusRequest(
        subject_id="watch21", encounter_id="w", status="INACTIVE"))  # fmt: skip
    for g in ("", "WATCHLIST"):
        r = await s["gov-a"].Identify(identify(v[21], gallery=g, top_k=30))
        assert "watch21" not in _ids(r)
    await s["gov-a"].SetEncounterStatus(identity_pb2.SetEncounterStatusRequest(
        subject_id="watch21", encounter_id="w", status="ACTIVE"))  # fmt: skip
    assert _ids(await s["gov-a"].Identify(identify(v[21], gallery="WATCHLIST")))[0] == "watch21"
    # Out of the gallery: no longer found there, still in ALL.
    await s["gov-a"].SetEncounterGalleries(identity_pb2.SetEncounterGalleriesRequest(
        subject_id="watch22", encounter_id="w", galleries=["ADULTS"]))  # fmt: skip
    r = await s["gov-a"].Identify(identify(v[22], gallery="WATCHLIST", top_k=10))
    assert "watch22" not in _ids(r) and len(r.candidates) == 3
    assert _ids(await s["gov-a"].Identify(identify(v[22], gallery="ADULTS")))[0] == "watch22"
    assert _ids(await s["gov-a"].Identify(identify(v[22])))[0] == "watch22"
    # Identify by a stored person, in a gallery.
    r = await s["gov-a"].Identify(identity_pb2.IdentifyRequest(
        probe_subject_id="crowd0", gallery="WATCHLIST", top_k=10))  # fmt: skip
    assert sorted(_ids(r)) == ["watch20", "watch21", "watch23"]


@pytest.mark.asyncio(loop_scope="module")
async def test_galleries_are_counted_and_listed_over_the_callers_own_subjects(gal):
    c, s = gal
    v = unit_vectors(3, seed=32)
    assert (await s["gov-b"].Enroll(enroll("b-own", v[0], galleries=["PARTNER-B"]))).enrolled
    assert (
        await s["gov-a"].Enroll(enroll("a-own", v[1], galleries=["PARTNER-B", "SHARED"]))
    ).enrolled
    b = {
        g.name: g
        for g in (await s["gov-b"].ListGalleries(identity_pb2.ListGalleriesRequest())).galleries
    }
    assert set(b) == {"ALL", "PARTNER-B"} and b["ALL"].encounters == 1
    assert b["PARTNER-B"].subjects == 1
    content = await s["gov-b"].GetGalleryContent(
        identity_pb2.GetGalleryContentRequest(gallery="PARTNER-B")
    )
    assert [(m.subject_id, m.status) for m in content.members] == [("b-own", "ACTIVE")]
    # Another agency's gallery: as if it did not exist.
    code, _ = await code_of(s["gov-b"].GetGalleryContent(
        identity_pb2.GetGalleryContentRequest(gallery="SHARED")))  # fmt: skip
    assert code == grpc.StatusCode.NOT_FOUND
    # The operator sees every subject; pages follow each other without overlap.
    op = {
        g.name: g
        for g in (await c.stub.ListGalleries(identity_pb2.ListGalleriesRequest())).galleries
    }
    assert op["PARTNER-B"].subjects == 2 and op["SHARED"].encounters == 1
    seen, tok = [], ""
    while True:
        page = await c.stub.GetGalleryContent(identity_pb2.GetGalleryContentRequest(
            gallery="ALL", page_size=7, page_token=tok))  # fmt: skip
        assert len(page.members) <= 7
        seen += [m.subject_id for m in page.members]
        if not (tok := page.next_page_token):
            break
    assert len(seen) == len(set(seen)) == op["ALL"].encounters


@pytest.mark.asyncio(loop_scope="module")
async def test_every_encounter_operation_keeps_tenants_apart(gal):
    c, s = gal
    v = unit_vectors(2, seed=33)
    assert (await s["gov-a"].Enroll(enroll("iso-a", v[0], encounter_id="e1"))).enrolled
    assert (await s["gov-b"].Enroll(enroll("iso-b", v[1], encounter_id="e1"))).enrolled
    enc = encounters_pb2.EncounterFields
    calls = {
        "AddEncounter": identity_pb2.AddEncounterRequest(
            subject_id="iso-a", sample=sample(near(v[0], seed=4)), encounter=enc(encounter_id="e9")),
        "ListEncounters": encounters_pb2.ListEncountersRequest(subject_id="iso-a"),
        "GetEncounter": encounters_pb2.GetEncounterRequest(subject_id="iso-a", encounter_id="e1"),
        "UpdateEncounter": identity_pb2.UpdateEncounterRequest(
            subject_id="iso-a", encounter_id="e1", update_fields=["data_json"],
            encounter=enc(data_json='{"x": 1}')),
        "DeleteEncounter": identity_pb2.DeleteEncounterRequest(subject_id="iso-a", encounter_id="e1"),
        "SetEncounterStatus": identity_pb2.SetEncounterStatusRequest(
            subject_id="iso-a", encounter_id="e1", status="INACTIVE"),
        "SetEncounterGalleries": identity_pb2.SetEncounterGalleriesRequest(
            subject_id="iso-a", encounter_id="e1", galleries=["X"]),
        # Into another agency's subject, and out of it.
        "MoveEncounter": identity_pb2.MoveEncounterRequest(
            subject_id="iso-b", source_subject_id="iso-a", encounter_id="e1"),
        "MergeSubjects": identity_pb2.MergeSubjectsRequest(
            subject_id="iso-b", source_subject_id="iso-a"),
        "Identify": identity_pb2.IdentifyRequest(probe_subject_id="iso-a"),
    }  # fmt: skip
    reverse = {
        "MoveEncounter": identity_pb2.MoveEncounterRequest(
            subject_id="iso-a", source_subject_id="iso-b", encounter_id="e1"),
        "MergeSubjects": identity_pb2.MergeSubjectsRequest(
            subject_id="iso-a", source_subject_id="iso-b"),
    }  # fmt: skip
    for name, req in calls.items():
        code, msg = await code_of(getattr(s["gov-b"], name)(req))
        assert (code, msg) == (grpc.StatusCode.NOT_FOUND, access.NO_RIGHTS_MESSAGE), name
        # Unknown subjects get the very same answer: nothing to tell them apart.
        unknown = type(req)()
        unknown.CopyFrom(req)
        for f in ("subject_id", "probe_subject_id"):
            if getattr(unknown, f, "") == "iso-a":
                setattr(unknown, f, "nobody-here")
        if name not in ("MoveEncounter", "MergeSubjects"):
            assert await code_of(getattr(s["gov-b"], name)(unknown)) == (code, msg), name
    for name, req in reverse.items():
        code, msg = await code_of(getattr(s["gov-b"], name)(req))
        assert (code, msg) == (grpc.StatusCode.NOT_FOUND, access.NO_RIGHTS_MESSAGE), name
    # Scopes: a bank and the citizen portal may not touch encounters at all.
    for who in ("bank", "portal"):
        for name in ("AddEncounter", "UpdateEncounter", "DeleteEncounter", "MergeSubjects",
                     "SetEncounterGalleries", "MoveEncounter"):  # fmt: skip
            code, _ = await code_of(getattr(s[who], name)(calls[name]))
            assert code == grpc.StatusCode.PERMISSION_DENIED, (who, name)
    code, _ = await code_of(s["bank"].ListGalleries(identity_pb2.ListGalleriesRequest()))
    assert code == grpc.StatusCode.PERMISSION_DENIED
    # Nothing changed for gov-a's subject, which its owner still reads.
    got = await s["gov-a"].ListEncounters(encounters_pb2.ListEncountersRequest(subject_id="iso-a"))
    assert [(e.encounter_id, e.status, list(e.galleries), e.data_json) for e in got.encounters] == [
        ("e1", "ACTIVE", [], "")]  # fmt: skip
