"""Identify (1:N): the probe searched in every partition, the candidates
that may not be used for the caller's purpose withheld, the rest decided
against the threshold (the system's, or a stricter one the caller asks
for); the raw scores only for tenants that may see them."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tanu.core import errors
from tanu.core.vectors import METRIC_PROTO
from tanu.policy import consent, thresholds
from tanu.policy.encounters import search_gallery
from tanu.v1 import common_pb2, identity_pb2

from . import encounters

if TYPE_CHECKING:
    from .gateway import Gateway
    from .guard import Call


async def usable(
    gw: Gateway, candidates: list[common_pb2.Candidate], purpose: str
) -> list[common_pb2.Candidate]:
    """The candidates that may be matched for this purpose
    (``tanu.policy.consent.may_use``): not those without consent to it,
    with a biometric lock, or erased meanwhile."""
    st = await gw.statuses(sorted({c.subject_id for c in candidates}))
    return [
        c for c in candidates if c.subject_id in st and consent.may_use(st[c.subject_id], purpose)
    ]


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
    cands = await usable(gw, res.candidates, call.purpose)
    matched = thresholds.mark_matches(cands, threshold, gw.layout.metric)
    if cands:
        gw.metrics.match_score.labels("identify").observe(cands[0].score)
    call.detail = {"candidates": len(cands), "withheld": len(res.candidates) - len(cands)}
    # Each returned candidate is a use of that subject's data: their
    # access history shows it.
    call.extra += [(c.subject_id, "match" if c.is_match else "candidate") for c in cands]
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
