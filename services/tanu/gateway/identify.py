"""Identify (1:N): the probe searched in every partition, the candidates
that may not be used for the caller's purpose withheld, the rest decided
against the threshold (the system's, or a stricter one the caller asks
for); the raw scores only for tenants that may see them."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tanu.core import errors
from tanu.core.vectors import METRIC_PROTO
from tanu.policy import thresholds
from tanu.policy.encounters import search_gallery
from tanu.v1 import common_pb2, identity_pb2

from . import encounters

if TYPE_CHECKING:
    from .gateway import Gateway
    from .guard import Call


async def usable(candidates: list[common_pb2.Candidate], call: Call) -> list[common_pb2.Candidate]:
    """The candidates that may be matched for the call's purpose
    (``tanu.policy.consent.may_use``): not those without consent to it,
    with a biometric lock, or erased meanwhile. Each must have its
    ``is_match`` set: the screening writes the request's audit in the same
    store transaction (``Guard.record_screened``): its own entry with the
    counts returned and withheld, and one per candidate returned, a use of
    that subject's data that their access history shows."""
    uses = [(c.subject_id, "match" if c.is_match else "candidate") for c in candidates]
    keep = await call.record_screened(uses)
    return [c for c, ok in zip(candidates, keep, strict=True) if ok]


async def identify(
    gw: Gateway, req: identity_pb2.IdentifyRequest, call: Call
) -> identity_pb2.IdentifyResponse:
    top_k = gw.search.top_k(req.top_k)
    threshold, source = gw.threshold(
        "identify", req.threshold if req.HasField("threshold") else None
    )
    if req.probe_subject_id or req.probe_encounter_id:  # a stored person's templates
        res = await encounters.search_stored(gw, req, call, top_k)
    else:
        probe = await gw.samples.template(req.sample)
        res = await gw.search.find(probe, top_k, gallery=search_gallery(req.gallery))
    if res.missing and req.require_complete:
        raise errors.Unavailable(
            f"partitions {res.missing} did not answer in time; the search would not cover the whole gallery"
        )
    thresholds.mark_matches(res.candidates, threshold, gw.layout.metric)
    cands = await usable(res.candidates, call)
    matched = any(c.is_match for c in cands)
    if cands:
        gw.metrics.match_score.labels("identify").observe(cands[0].score)
    if not call.principal.sees_scores:  # a relying party gets decisions, not scores
        for c in cands:
            c.ClearField("score")
    return identity_pb2.IdentifyResponse(
        candidates=cands,
        decision=common_pb2.DECISION_MATCH if matched else common_pb2.DECISION_NO_MATCH,
        threshold=threshold,
        threshold_source=source,
        metric=METRIC_PROTO[gw.layout.metric],
        complete=not res.missing,
        missing_partitions=res.missing,
        gallery_size=res.gallery_size,
        model_id=gw.layout.model_id,
    )
