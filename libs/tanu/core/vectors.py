"""Templates as raw little-endian float32 bytes: validation and scoring.
Vectors never become Python lists."""

from __future__ import annotations

import numpy as np

from tanu.core import errors
from tanu.core.config import Layout
from tanu.v1 import common_pb2

F32 = np.dtype("<f4")
# The largest magnitude a template value may have: the largest half, so that
# every template fits the fp16 index exactly as a number (no infinity), and
# squares and doubled products stay far inside float32. Face templates are
# small numbers (the dlib model's are within ±1).
MAX_ABS_VALUE = 65504.0
# The contracts' Metric of each metric name (config.METRICS).
METRIC_PROTO = {"l2": common_pb2.METRIC_L2, "cosine": common_pb2.METRIC_COSINE}


def to_bytes(vectors: np.ndarray) -> bytes:
    """Row-major little-endian float32 bytes of a vector or matrix."""
    return np.ascontiguousarray(vectors, dtype=F32).tobytes()


def from_bytes(raw: bytes, dimension: int) -> np.ndarray:
    """A (n, dimension) float32 view of trusted bytes (e.g. from the store)."""
    return np.frombuffer(raw, dtype=F32).reshape(-1, dimension)


def normalise(vectors: np.ndarray) -> np.ndarray:
    """Unit-length rows (for the cosine metric)."""
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


def parse_template(
    raw: bytes, model_id: str, layout: Layout, field: str = "template"
) -> np.ndarray:
    """Validates an untrusted template and returns it as a (1, d) float32 row,
    normalised when the metric is cosine. Every refusal names the problem."""
    if model_id and model_id != layout.model_id:
        raise errors.InvalidArgument(
            f"{field} was made by model {model_id!r}, but this gallery holds {layout.model_id!r} "
            "templates; templates of different models cannot be compared"
        )
    if not raw:
        raise errors.InvalidArgument(
            f"{field} is empty: expected {layout.dimension} float32 values"
        )
    if len(raw) % 4:
        raise errors.InvalidArgument(
            f"{field} is {len(raw)} bytes, not a whole number of float32 values "
            f"(expected {layout.dimension * 4} bytes)"
        )
    n = len(raw) // 4
    if n != layout.dimension:
        raise errors.InvalidArgument(
            f"{field} has dimension {n}; model {layout.model_id!r} templates have dimension {layout.dimension}"
        )
    vec = np.frombuffer(raw, dtype=F32).reshape(1, n)
    finite = np.isfinite(vec)
    if not finite.all():
        bad = int(np.argmin(finite[0]))
        raise errors.InvalidArgument(f"{field} contains NaN or infinity (first at index {bad})")
    big = np.abs(vec[0]) > MAX_ABS_VALUE
    if big.any():
        raise errors.InvalidArgument(
            f"{field} has a value beyond ±{MAX_ABS_VALUE:g} (first at index {int(np.argmax(big))}); "
            "template values are small numbers"
        )
    if layout.metric == "cosine":
        if not np.any(vec):
            raise errors.InvalidArgument(f"{field} is all zeros and has no direction")
        vec = normalise(vec)
    return vec


def scores(probe: np.ndarray, gallery: np.ndarray, metric: str) -> np.ndarray:
    """Scores of one probe (1, d) against gallery rows (n, d): Euclidean
    distance for l2, dot product of unit vectors for cosine."""
    if metric == "cosine":
        return (normalise(gallery) @ probe[0]).astype(np.float32)
    return np.linalg.norm(gallery - probe, axis=1).astype(np.float32)


def is_match(score: float, threshold: float, metric: str) -> bool:
    """Whether ``score`` passes ``threshold`` under ``metric``."""
    return score >= threshold if metric == "cosine" else score <= threshold


def best_first(metric: str) -> bool:
    """True when higher scores are better (cosine), False when lower (l2)."""
    return metric == "cosine"
