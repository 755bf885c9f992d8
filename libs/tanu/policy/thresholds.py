"""Which threshold decides a match: the request's own, the one calibrated
for the model (``tanu eval --apply``), or the configured default; and what a
threshold decides, in the metric's direction (``tanu.core.vectors.is_match``)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from tanu.core import vectors

# The calibration each kind decides with: de-duplication is a 1:N search.
CALIBRATION_OF = {"identify": "identify", "verify": "verify", "dedup": "identify"}


def in_metric(calibrations: Mapping[str, dict], metric: str) -> dict[str, dict]:
    """The calibrations made in ``metric``'s score space (one without a
    metric is taken as made in it): a distance is never used as a similarity."""
    return {k: v for k, v in calibrations.items() if v.get("metric", metric) == metric}


def choose(
    kind: str,
    requested: float | None,
    calibrated: Mapping[str, dict],
    defaults: Mapping[str, float],
) -> tuple[float, str]:
    """The threshold of a ``kind`` decision and where it came from:
    ``request``, ``calibrated`` or ``default``."""
    if requested is not None:
        return requested, "request"
    found = calibrated.get(CALIBRATION_OF[kind])
    if found is not None:
        return float(found["threshold"]), "calibrated"
    return defaults[kind], "default"


def mark_matches(candidates: Iterable[Any], threshold: float, metric: str) -> bool:
    """Sets each candidate's ``is_match``; whether any matched."""
    matched = False
    for c in candidates:
        c.is_match = vectors.is_match(c.score, threshold, metric)
        matched |= c.is_match
    return matched
