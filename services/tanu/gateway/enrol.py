"""Enrol: the consent established, the probe made (one face of enrolment
quality), de-duplicated against the gallery and against the enrolments this
gateway accepted moments ago (``RecentEnrolments``), stored, and optionally
waited for until the subject's partition finds it."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import numpy as np

from tanu.core import errors, ids, logs, vectors
from tanu.policy import consent
from tanu.policy.subjects import parse_dob
from tanu.v1 import common_pb2, identity_pb2, searcher_pb2, store_pb2

from .citizen import consent_record

if TYPE_CHECKING:
    from .gateway import Gateway
    from .guard import Call

log = logs.get(__name__)


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
    res = await gw.search.find(probe, 1)
    if res.missing:
        raise errors.Unavailable(
            f"cannot de-duplicate: partitions {res.missing} did not answer; nothing was enrolled"
        )
    reply = identity_pb2.EnrollResponse(threshold=threshold, threshold_source=source)
    metric = gw.layout.metric
    async with gw.recent.lock:  # check and record atomically: concurrent enrolments see each other
        dup = gw.recent.best_match(probe, threshold)
        if (
            dup is None
            and res.candidates
            and vectors.is_match(res.candidates[0].score, threshold, metric)
        ):
            dup = res.candidates[0]
        if dup is not None:
            if dup.subject_id == subject_id:
                raise errors.AlreadyExists(f"subject {subject_id!r} is already enrolled")
            dup.is_match = True
            reply.duplicate_of.CopyFrom(dup)
            if not req.allow_duplicate:
                log.info("enrol_duplicate_refused", partition=dup.partition)
                return reply
        token = gw.recent.add(subject_id, probe)
    put = store_pb2.PutSubjectRequest(
        subject_id=subject_id,
        date_of_birth=req.date_of_birth,
        consent=record,
        templates=[
            common_pb2.Template(vector=vectors.to_bytes(probe), model_id=gw.layout.model_id)
        ],
    )
    try:
        subject = await gw.store.put(put)
    except BaseException:
        gw.recent.forget(token)
        raise
    reply.enrolled = True
    reply.subject.CopyFrom(subject)
    if req.wait_indexed:
        reply.indexed = await wait_indexed(gw, subject, probe, call.deadline_s)
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
