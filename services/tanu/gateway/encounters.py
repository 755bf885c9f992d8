"""Encounters (the OSIA data model: a person is a subject, an encounter one
of its templates with its metadata and data): add, list, read, update,
erase, status and galleries, moves and merges between subjects, and the
1:N search with a subject's stored templates as the probe.

Who may: the subject's owning agency and the operator (``tanu.policy.access``,
rows ``AddEncounter`` ... ``MergeSubjects``, ``IdentifyByPerson``); anyone
else gets the uniform NOT_FOUND before anything is looked at. A merge whose
source is an enrolment held for adjudication needs the scope ``adjudicate``
(it decides the case). The store checks what an encounter may hold
(``tanu.policy.encounters``) and writes each change with its template
events (``tanu.store.encounters``); an encounter's erasure gets a signed
receipt like a subject's (``erasure.confirm``)."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import numpy as np

from tanu.core import errors, ids, vectors
from tanu.policy import access, consent, disclosure
from tanu.policy.encounters import FIELDS, INACTIVE, search_gallery
from tanu.v1 import common_pb2, encounters_pb2, identity_pb2, searcher_pb2, store_pb2

from . import erasure, idempotency
from .search import SearchResult

if TYPE_CHECKING:
    from .gateway import Gateway
    from .guard import Call

# Gallery candidates for an added encounter's de-duplication besides the
# subject's own templates (expected among them).
DEDUP_CANDIDATES = 4


async def _status(
    gw: Gateway, call: Call, operation: str, subject_id: str
) -> tuple[str, store_pb2.SubjectStatus]:
    """The subject id and status, once the caller may run ``operation`` on it."""
    sid = ids.check_subject_id(subject_id)
    st = (await gw.statuses([sid]))[sid]
    access.check(operation, call.principal, st)
    if not st.enrolled:  # the operator, who may be told a subject is absent
        raise access.refused()
    return sid, st


async def _check(gw: Gateway, call: Call, operation: str, subject_id: str) -> str:
    return (await _status(gw, call, operation, subject_id))[0]


def _encounter_id(encounter_id: str) -> str:
    if not encounter_id:
        raise errors.InvalidArgument("encounter_id is required")
    return encounter_id


def _public(e: encounters_pb2.Encounter) -> encounters_pb2.Encounter:
    e.ClearField("template_id")  # the store's internal id
    return e


async def add_encounter(
    gw: Gateway, req: identity_pb2.AddEncounterRequest, call: Call
) -> identity_pb2.AddEncounterResponse:
    sid, st = await _status(gw, call, "AddEncounter", req.subject_id)
    # Collected for a purpose the subject consented to, like an enrolment.
    consent.check_enrolment_purpose(st.purposes, call.purpose)
    probe = await gw.samples.template(req.sample, enrol=True)
    threshold, _source = gw.threshold("dedup", None)
    held = await gw.store.get(store_pb2.GetSubjectRecordRequest(subject_id=sid))
    # Room for every template of the subject itself among the candidates.
    res = await gw.search.find(probe, DEDUP_CANDIDATES + held.template_count, bulk=True)
    if res.missing:
        raise errors.Unavailable(
            f"cannot de-duplicate: partitions {res.missing} did not answer; nothing was added"
        )
    p = call.principal
    out = await gw.store.add_encounter(store_pb2.AddEncounterRecord(
        subject_id=sid, encounter=req.encounter,
        template=common_pb2.Template(vector=vectors.to_bytes(probe), model_id=gw.layout.model_id),
        dedup=store_pb2.DedupCheck(
            candidates=[c for c in res.candidates if c.subject_id != sid], threshold=threshold,
            allow_duplicate=req.allow_duplicate, tenant=p.tenant_id, client=p.client,
            purpose=call.purpose, searched_sequences=res.applied,
        ),
        idempotency=idempotency.for_call(call, req),
    ))  # fmt: skip
    reply = identity_pb2.AddEncounterResponse(outcome=out.outcome, threshold=threshold)
    if out.match.subject_id:
        if disclosure.may_name_match(
            p.tenant_id, p.scopes, call.purpose, out.match_tenants, out.match_status
        ):
            reply.duplicate_of.CopyFrom(out.match)
            if not p.sees_scores:
                reply.duplicate_of.ClearField("score")
        else:
            reply.duplicate_withheld = True
    call.detail = {"outcome": out.outcome, "encounter_id": out.encounter.encounter_id}
    if out.outcome != "added":
        return reply
    reply.encounter.CopyFrom(_public(out.encounter))
    if req.wait_indexed and out.encounter.status != INACTIVE:
        reply.indexed = await wait_indexed(gw, sid, out.encounter, probe, call.deadline_s)
    return reply


async def wait_indexed(gw: Gateway, subject_id: str, encounter: encounters_pb2.Encounter,
                       probe: np.ndarray, deadline_s: float | None) -> bool:  # fmt: skip
    """Polls the subject's partition until its searchers return the subject
    with the probe's own score (the new template, not an older one)."""
    lay = gw.layout
    subject = await gw.store.get(store_pb2.GetSubjectRecordRequest(subject_id=subject_id))
    self_score = float(vectors.scores(probe, probe, lay.metric)[0])
    loop = asyncio.get_running_loop()
    end = loop.time() + max(0.0, (deadline_s - 0.25) if deadline_s is not None else 10.0)
    req = searcher_pb2.SearchRequest(
        queries=vectors.to_bytes(probe), count=1, top_k=64, model_id=lay.model_id
    )
    delay = 0.005
    while (left := end - loop.time()) > 0:
        try:
            r = await gw.searchers.search(
                subject.partition, req, timeout=min(left, gw.config.common.request_timeout_s)
            )
            if any(c.subject_id == subject_id and abs(c.score - self_score) < 1e-3
                   for c in r.results[0].candidates):  # fmt: skip
                return True
        except errors.TanuError:
            pass
        await asyncio.sleep(min(delay, max(0.0, end - loop.time())))
        delay = min(delay * 2, 0.1)
    return False


async def list_encounters(
    gw: Gateway, req: encounters_pb2.ListEncountersRequest, call: Call
) -> encounters_pb2.ListEncountersResponse:
    sid = await _check(gw, call, "ListEncounters", req.subject_id)
    out = await gw.store.list_encounters(encounters_pb2.ListEncountersRequest(subject_id=sid))
    for e in out.encounters:
        _public(e)
    call.detail = {"encounters": len(out.encounters)}
    return out


async def get_encounter(
    gw: Gateway, req: encounters_pb2.GetEncounterRequest, call: Call
) -> encounters_pb2.Encounter:
    sid = await _check(gw, call, "GetEncounter", req.subject_id)
    q = encounters_pb2.GetEncounterRequest(
        subject_id=sid, encounter_id=_encounter_id(req.encounter_id)
    )
    return _public(await gw.store.get_encounter(q))


async def _change(gw: Gateway, call: Call, req, change: store_pb2.EncounterChange):
    change.tenant, change.client = call.principal.tenant_id, call.principal.client
    change.operation = call.operation
    idem = idempotency.for_call(call, req)
    if idem is not None:
        change.idempotency.CopyFrom(idem)
    out = await gw.store.update_encounter(change)
    call.detail = {"encounter_id": out.encounter_id}
    return _public(out)


async def update_encounter(
    gw: Gateway, req: identity_pb2.UpdateEncounterRequest, call: Call
) -> encounters_pb2.Encounter:
    """New field values, and/or a new sample (a new template replaces the
    old one; the sample is not de-duplicated again: it is the same encounter)."""
    sid = await _check(gw, call, "UpdateEncounter", req.subject_id)
    change = store_pb2.EncounterChange(
        subject_id=sid, encounter_id=_encounter_id(req.encounter_id), encounter=req.encounter,
        update_fields=req.update_fields,
    )  # fmt: skip
    if req.HasField("sample"):
        probe = await gw.samples.template(req.sample, enrol=True)
        change.template.CopyFrom(
            common_pb2.Template(vector=vectors.to_bytes(probe), model_id=gw.layout.model_id)
        )
        if not req.update_fields and req.HasField("encounter"):
            change.update_fields.extend(FIELDS)  # the sample and every field, as documented
    elif not req.update_fields and not req.HasField("encounter"):
        raise errors.InvalidArgument("nothing to update: give a sample or encounter fields")
    return await _change(gw, call, req, change)


async def set_status(
    gw: Gateway, req: identity_pb2.SetEncounterStatusRequest, call: Call
) -> encounters_pb2.Encounter:
    sid = await _check(gw, call, "SetEncounterStatus", req.subject_id)
    if not req.status:
        raise errors.InvalidArgument("status is required (ACTIVE or INACTIVE)")
    change = store_pb2.EncounterChange(
        subject_id=sid, encounter_id=_encounter_id(req.encounter_id), update_fields=["status"],
        encounter=encounters_pb2.EncounterFields(status=req.status),
    )  # fmt: skip
    return await _change(gw, call, req, change)


async def set_galleries(
    gw: Gateway, req: identity_pb2.SetEncounterGalleriesRequest, call: Call
) -> encounters_pb2.Encounter:
    sid = await _check(gw, call, "SetEncounterGalleries", req.subject_id)
    change = store_pb2.EncounterChange(
        subject_id=sid, encounter_id=_encounter_id(req.encounter_id), update_fields=["galleries"],
        encounter=encounters_pb2.EncounterFields(galleries=req.galleries),
    )  # fmt: skip
    return await _change(gw, call, req, change)


async def delete_encounter(
    gw: Gateway, req: identity_pb2.DeleteEncounterRequest, call: Call
) -> identity_pb2.DeleteEncounterResponse:
    """Erases one encounter everywhere, with a signed receipt."""
    sid = await _check(gw, call, "DeleteEncounter", req.subject_id)
    r = await gw.store.delete_encounter(store_pb2.EncounterErasureRequest(
        subject_id=sid, encounter_id=_encounter_id(req.encounter_id),
        reason="encounter_delete: " + req.reason[:180], tenant=call.principal.tenant_id,
        client=call.principal.client, idempotency=idempotency.for_call(call, req),
    ))  # fmt: skip
    receipt = await erasure.confirm(gw, r.receipt_id, r.partitions or gw.layout.partitions,
                                    r.partition, list(r.template_ids), gw.config.erasure_wait_s,
                                    index_only=True)  # fmt: skip
    call.detail = {"receipt_id": r.receipt_id, "complete": receipt.complete,
                   "encounter_id": r.encounter.encounter_id}  # fmt: skip
    return identity_pb2.DeleteEncounterResponse(
        subject_id=sid, encounter_id=r.encounter.encounter_id, deleted_at_ms=r.deleted_at_ms,
        receipt=receipt,
    )  # fmt: skip


async def _move(gw: Gateway, call: Call, req, operation: str, encounter_id: str):
    target = ids.check_subject_id(req.subject_id)
    source = ids.check_subject_id(req.source_subject_id)
    st = await gw.statuses(sorted({target, source}))
    # A merge of an enrolment held for adjudication decides its case: for a
    # caller with the scope `adjudicate`, as DecideCase would (the store
    # finds the open case pairing the two, else NOT_FOUND).
    held = not encounter_id and not st[source].enrolled and "adjudicate" in call.principal.scopes
    if not held:
        access.check(operation, call.principal, st[target])
        access.check(operation, call.principal, st[source])
    out = await gw.store.move_encounters(store_pb2.MoveEncountersRequest(
        subject_id=target, source_subject_id=source, encounter_id=encounter_id,
        reason=req.reason[:200], tenant=call.principal.tenant_id, client=call.principal.client,
        idempotency=idempotency.for_call(call, req), operation=operation,
    ))  # fmt: skip
    call.extra = [(source, "erased" if out.source_erased else "moved_from")]
    receipt = common_pb2.ErasureReceipt()
    if out.source_erased:
        e = out.source_erasure
        receipt = await erasure.confirm(gw, e.receipt_id, e.partitions or gw.layout.partitions,
                                        e.subject.partition, list(e.template_ids),
                                        gw.config.erasure_wait_s, index_only=True)  # fmt: skip
    call.detail = {"source_subject_id": source, "moved": len(out.moved),
                   "source_erased": out.source_erased, "case_id": out.case_id}  # fmt: skip
    return out, receipt


async def move_encounter(
    gw: Gateway, req: identity_pb2.MoveEncounterRequest, call: Call
) -> identity_pb2.MoveEncounterResponse:
    out, receipt = await _move(gw, call, req, "MoveEncounter", _encounter_id(req.encounter_id))
    reply = identity_pb2.MoveEncounterResponse(source_erased=out.source_erased)
    if out.moved:
        reply.encounter.CopyFrom(_public(out.moved[0]))
    if out.source_erased:
        reply.source_receipt.CopyFrom(receipt)
    return reply


async def merge_subjects(
    gw: Gateway, req: identity_pb2.MergeSubjectsRequest, call: Call
) -> identity_pb2.MergeSubjectsResponse:
    out, receipt = await _move(gw, call, req, "MergeSubjects", "")
    reply = identity_pb2.MergeSubjectsResponse(
        subject=out.subject, moved=[_public(e) for e in out.moved],
        source_erased=out.source_erased, case_id=out.case_id,
    )  # fmt: skip
    if out.source_erased:
        reply.source_receipt.CopyFrom(receipt)
    return reply


async def search_stored(
    gw: Gateway, req: identity_pb2.IdentifyRequest, call: Call, top_k: int
) -> SearchResult:
    """Identify with a subject's stored templates (its active encounters, or
    ``probe_encounter_id``): the store hands them to this gateway only, each
    is searched, and the best score per candidate subject is kept; the
    probe subject is left out of its own candidates."""
    if req.HasField("sample"):
        raise errors.InvalidArgument("give either sample or probe_subject_id, not both")
    if not req.probe_subject_id:
        raise errors.InvalidArgument("probe_encounter_id needs probe_subject_id")
    sid, st = await _status(gw, call, "IdentifyByPerson", req.probe_subject_id)
    # Matching with the person's face is a use of it: their lock and consent hold.
    consent.check_not_locked(st, sid)
    consent.check_enrolment_purpose(st.purposes, call.purpose)
    held = await gw.store.templates(store_pb2.GetTemplatesRequest(subject_id=sid))
    chosen = [t for t in held.templates
              if (t.encounter_id == req.probe_encounter_id if req.probe_encounter_id
                  else not t.inactive)]  # fmt: skip
    if not chosen:
        raise errors.NotFound(
            f"subject {sid!r} has no encounter {req.probe_encounter_id!r}"
            if req.probe_encounter_id
            else f"subject {sid!r} has no active encounter"
        )
    lay = gw.layout
    gallery = search_gallery(req.gallery)
    probes = [vectors.from_bytes(t.template.vector, lay.dimension) for t in chosen]
    k = top_k + len(held.templates)  # room for the subject's own templates
    results = await asyncio.gather(*(gw.search.find(p, k, gallery=gallery) for p in probes))
    first = vectors.best_first(lay.metric)
    best: dict[str, common_pb2.Candidate] = {}
    for res in results:
        for c in res.candidates:
            have = best.get(c.subject_id)
            if c.subject_id != sid and (
                have is None or (c.score > have.score if first else c.score < have.score)
            ):
                best[c.subject_id] = c
    cands = sorted(best.values(), key=lambda c: c.score, reverse=first)
    call.extra.append((sid, "probe"))
    missing = sorted({p for r in results for p in r.missing})
    return SearchResult(cands[:top_k], missing, max(r.gallery_size for r in results))
