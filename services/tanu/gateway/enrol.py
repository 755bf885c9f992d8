"""Enrol: the consent established, the probe made (one face of enrolment
quality), searched against the indexed gallery, and sent to the store with
the best candidate. The store decides, serialised across gateways and store
processes (``tanu.store.dedup``): it compares exactly with the enrolments
not yet searchable, then enrols, refers the enrolment to adjudication (a
case) or refuses it. The reply names the matched subject only to a caller
with rights to it (``tanu.policy.disclosure``). Optionally waits until the
subject's partition finds it."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import numpy as np

from tanu.core import errors, ids, logs, vectors
from tanu.policy import consent, disclosure
from tanu.policy.subjects import parse_dob
from tanu.v1 import common_pb2, encounters_pb2, identity_pb2, searcher_pb2, store_pb2

from . import idempotency
from .citizen import consent_record

if TYPE_CHECKING:
    from .gateway import Gateway
    from .guard import Call

log = logs.get(__name__)

# Gallery candidates sent to the store: the best still enrolled decides.
DEDUP_CANDIDATES = 4


async def enroll(
    gw: Gateway, req: identity_pb2.EnrollRequest, call: Call
) -> identity_pb2.EnrollResponse:
    subject_id = ids.check_subject_id(req.subject_id)
    if not req.date_of_birth:
        raise errors.InvalidArgument("date_of_birth is required (YYYY-MM-DD)")
    parse_dob(req.date_of_birth)
    if not req.HasField("consent"):
        raise errors.PermissionDenied(
            "enrolment needs a consent record (consent); none was given", "consent"
        )
    consent.check_purposes_held(
        req.consent.purposes, call.principal.tenant.purposes, call.principal.tenant_id
    )
    record = await consent_record(gw, subject_id, req.date_of_birth, req.consent, call, None)
    consent.check_enrolment_purpose(record.purposes, call.purpose)
    probe = await gw.samples.template(req.sample, enrol=True)
    threshold, source = gw.threshold("dedup", None)
    res = await gw.search.find(probe, DEDUP_CANDIDATES, bulk=True)
    if res.missing:
        raise errors.Unavailable(
            f"cannot de-duplicate: partitions {res.missing} did not answer; nothing was enrolled"
        )
    p = call.principal
    put = store_pb2.PutSubjectRequest(
        subject_id=subject_id,
        date_of_birth=req.date_of_birth,
        consent=record,
        templates=[
            common_pb2.Template(vector=vectors.to_bytes(probe), model_id=gw.layout.model_id)
        ],
        dedup=store_pb2.DedupCheck(
            candidates=res.candidates, threshold=threshold,
            certain_threshold=gw.config.dedup_certain_threshold,
            allow_duplicate=req.allow_duplicate, tenant=p.tenant_id, client=p.client,
            purpose=call.purpose, searched_sequences=res.applied,
        ),
        idempotency=idempotency.for_call(call, req),
    )  # fmt: skip
    if req.encounter_id or req.galleries or req.encounter_type or req.encounter_data_json:
        put.encounter.CopyFrom(encounters_pb2.EncounterFields(
            encounter_id=req.encounter_id, galleries=req.galleries,
            encounter_type=req.encounter_type, data_json=req.encounter_data_json,
        ))  # fmt: skip
    out = await gw.store.enrol(put)
    reply = identity_pb2.EnrollResponse(
        threshold=threshold, threshold_source=source, outcome=out.outcome, case_id=out.case_id
    )
    if out.match.subject_id:
        if disclosure.may_name_match(
            p.tenant_id, p.scopes, call.purpose, out.match_tenants, out.match_status
        ):
            reply.duplicate_of.CopyFrom(out.match)
        else:
            reply.duplicate_withheld = True
        call.detail = {"outcome": out.outcome, "case_id": out.case_id}
    if out.outcome != "enrolled":
        log.info("enrol_duplicate", outcome=out.outcome)
        return reply
    reply.enrolled = True
    reply.subject.CopyFrom(out.subject)
    if req.wait_indexed:
        reply.indexed = await wait_indexed(gw, out.subject, probe, call.deadline_s)
    return reply


async def wait_indexed(
    gw: Gateway, subject: common_pb2.Subject, probe: np.ndarray, deadline_s: float | None
) -> bool:
    """Polls the subject's partition until its searchers return it. Gives up
    (False) before the caller's deadline, so a committed enrolment is never
    reported as a failure."""
    loop = asyncio.get_running_loop()
    budget = (deadline_s - 0.25) if deadline_s is not None else 10.0
    end = loop.time() + max(0.0, budget)
    req = searcher_pb2.SearchRequest(
        queries=vectors.to_bytes(probe), count=1, top_k=64, model_id=gw.layout.model_id
    )
    delay = 0.005
    while (left := end - loop.time()) > 0:
        try:
            r = await gw.searchers.search(
                subject.partition, req, timeout=min(left, gw.config.common.request_timeout_s)
            )
            if any(c.subject_id == subject.subject_id for c in r.results[0].candidates):
                return True
        except errors.TanuError:
            pass
        await asyncio.sleep(min(delay, max(0.0, end - loop.time())))
        delay = min(delay * 2, 0.1)
    return False
