"""CompareSamples (1:1 between two samples, OSIA verifyFromBio): each
sample becomes a template (``samples``: an image through the face
pipeline, both at once, or a template as given), their score is decided
by the verification threshold (``tanu.policy.thresholds``: calibrated or
the default, a request may only make it stricter). Nothing is stored or
looked up: no subject is involved, so the audit entry names none. A tenant
that gets decisions only (``auth.Tenant.scores``) is not told the score."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import numpy as np

from tanu.core import errors, vectors
from tanu.core.vectors import METRIC_PROTO
from tanu.v1 import common_pb2, identity_pb2

if TYPE_CHECKING:
    from .gateway import Gateway
    from .guard import Call


async def _templates(gw: Gateway, *samples: common_pb2.BiometricSample) -> list[np.ndarray]:
    """The samples' templates, made concurrently; the first failure (in
    the samples' order) is raised once both are done (no orphan work)."""
    made = await asyncio.gather(*(gw.samples.template(s) for s in samples),
                                return_exceptions=True)  # fmt: skip
    for i, m in enumerate(made):
        if isinstance(m, errors.InvalidArgument):
            raise errors.InvalidArgument(f"sample {'ab'[i]}: {m.message}") from None
        if isinstance(m, BaseException):
            raise m
    return list(made)


async def compare_samples(
    gw: Gateway, req: identity_pb2.CompareSamplesRequest, call: Call
) -> identity_pb2.CompareSamplesResponse:
    threshold, source = gw.threshold("verify", req.threshold if req.HasField("threshold") else None)
    if not req.HasField("sample_a") or not req.HasField("sample_b"):
        raise errors.InvalidArgument("two samples are needed: sample_a and sample_b")
    a, b = await _templates(gw, req.sample_a, req.sample_b)
    metric = gw.layout.metric
    score = float(vectors.scores(a, b, metric)[0])
    match = vectors.is_match(score, threshold, metric)
    gw.metrics.match_score.labels("compare").observe(score)
    call.result = "match" if match else "no_match"
    reply = identity_pb2.CompareSamplesResponse(
        decision=common_pb2.DECISION_MATCH if match else common_pb2.DECISION_NO_MATCH,
        threshold=threshold, threshold_source=source,
        metric=METRIC_PROTO[metric], model_id=gw.layout.model_id,
    )  # fmt: skip
    if call.principal.sees_scores:
        reply.score = score
    return reply
