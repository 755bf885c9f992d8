"""Which threshold decides a match: the one calibrated for the model
(``tanu eval --apply``) or the configured default, which a request may only
make stricter; and what a threshold decides, in the metric's direction
(``tanu.core.vectors.is_match``).

Decisions belong to the system: a caller that could loosen the threshold
could declare any face a match. A requested threshold must be a finite
number inside the metric's score range (L2 distance of unit vectors: 0..2;
cosine: -1..1) and at least as strict as the system's: not above it for L2
(lower is stricter), not below it for cosine (higher is stricter).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from tanu.core import errors, vectors

# The calibration each kind decides with: de-duplication is a 1:N search.
CALIBRATION_OF = {"identify": "identify", "verify": "verify", "dedup": "identify"}


def in_metric(calibrations: Mapping[str, dict], metric: str) -> dict[str, dict]:
    """The calibrations made in ``metric``'s score space (one without a
    metric is taken as made in it): a distance is never used as a similarity."""
    return {k: v for k, v in calibrations.items() if v.get("metric", metric) == metric}


# The score range of each metric (unit vectors): a threshold outside it is a mistake.
RANGE = {"l2": (0.0, 2.0), "cosine": (-1.0, 1.0)}


def stricter_or_equal(requested: float, system: float, metric: str) -> bool:
    """Whether ``requested`` decides no more matches than ``system``
    (compared as the float32 the contracts carry, so the system's own value
    sent back is accepted)."""
    requested, system = float(np.float32(requested)), float(np.float32(system))
    return requested >= system if vectors.best_first(metric) else requested <= system


def system_threshold(
    kind: str, calibrated: Mapping[str, dict], defaults: Mapping[str, float]
) -> tuple[float, str]:
    """The system's threshold of a ``kind`` decision: calibrated, else the default."""
    found = calibrated.get(CALIBRATION_OF[kind])
    if found is not None:
        return float(found["threshold"]), "calibrated"
    return float(defaults[kind]), "default"


def choose(
    kind: str,
    requested: float | None,
    calibrated: Mapping[str, dict],
    defaults: Mapping[str, float],
    metric: str = "l2",
) -> tuple[float, str]:
    """The threshold of a ``kind`` decision and where it came from:
    ``request`` (only ever stricter than the system's), ``calibrated`` or
    ``default``. A looser, non-finite or out-of-range request is
    ``InvalidArgument`` naming the limit."""
    system, source = system_threshold(kind, calibrated, defaults)
    if requested is None:
        return system, source
    lo, hi = RANGE[metric]
    if not math.isfinite(requested) or not lo <= requested <= hi:
        raise errors.InvalidArgument(
            f"threshold {requested!r} is not a finite {metric} score in [{lo:g}, {hi:g}]"
        )
    if not stricter_or_equal(requested, system, metric):
        way = "at least" if vectors.best_first(metric) else "at most"
        raise errors.InvalidArgument(
            f"threshold {requested:g} is looser than the system's ({system:g}, {source}); "
            f"a request may only make it stricter ({way} {system:g} for {metric})"
        )
    return float(requested), "request"


def mark_matches(candidates: Iterable[Any], threshold: float, metric: str) -> bool:
    """Sets each candidate's ``is_match``; whether any matched."""
    matched = False
    for c in candidates:
        c.is_match = vectors.is_match(c.score, threshold, metric)
        matched |= c.is_match
    return matched
