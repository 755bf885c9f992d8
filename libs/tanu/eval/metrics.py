"""Biometric error rates from comparison scores, in ISO/IEC 19795-1 and
NIST FRVT terms. Scores are handled as "distances" internally (lower is
closer): L2 distances as they are, cosine similarities negated, so every
rule below reads the same for both metrics.

Verification (1:1): FMR(t) = impostor comparisons with score passing t;
FNMR(t) = genuine comparisons failing t.
Identification (1:N, gallery of N): FPIR(t) = non-mated searches returning
any candidate passing t; FNIR(t) = mated searches whose mate is not among
the top-L candidates with a score passing t; rank-1 = mated searches whose
mate is the first candidate, whatever its score.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


def as_distance(scores: np.ndarray, metric: str) -> np.ndarray:
    """Scores in lower-is-closer form."""
    s = np.asarray(scores, dtype=np.float64)
    return -s if metric == "cosine" else s


def from_distance(d: float, metric: str) -> float:
    return -d if metric == "cosine" else d


def rate_at_or_below(sorted_values: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Fraction of values <= t (values sorted ascending)."""
    if len(sorted_values) == 0:
        return np.full(np.shape(t), np.nan)
    return np.searchsorted(sorted_values, t, side="right") / len(sorted_values)


def threshold_for_rate(negatives: np.ndarray, target: float) -> tuple[float, bool]:
    """The largest distance threshold t with rate(negatives <= t) <= target,
    and whether the data can resolve the target (target x count >= 1: at
    least one negative allowed through; else t sits below every negative and
    the real rate is unknown, not zero)."""
    if not 0 < target < 1:
        raise ValueError(f"a target rate must be between 0 and 1, got {target}")
    neg = np.sort(np.asarray(negatives, dtype=np.float64))
    if len(neg) == 0:
        raise ValueError("no negative comparisons to calibrate on")
    allowed = int(np.floor(target * len(neg)))
    resolved = allowed >= 1
    if allowed >= len(neg):
        return float(neg[-1]), resolved
    return float(np.nextafter(neg[allowed], -np.inf)), resolved


def sweep(genuine_d: np.ndarray, impostor_d: np.ndarray, points: int = 400) -> np.ndarray:
    """Thresholds spanning both distributions, plus the impostor tail at
    log-spaced ranks, so the curve is resolved down to the lowest false
    match rate the data can show (1 / impostor comparisons)."""
    both = np.concatenate([genuine_d, impostor_d])
    both = both[np.isfinite(both)]
    qs = np.quantile(both, np.linspace(0, 1, points))
    imp = np.sort(impostor_d[np.isfinite(impostor_d)])
    ranks = np.unique(np.geomspace(1, max(len(imp), 1), points).astype(np.int64)) - 1
    tail = imp[ranks] if len(imp) else np.empty(0)
    t = np.unique(np.concatenate([qs, tail, np.nextafter(tail, -np.inf)]))
    return np.concatenate([[t[0] - 1e-9], t])


@dataclass
class VerificationResult:
    genuine: int
    impostor: int
    thresholds: np.ndarray  # distance form
    fmr: np.ndarray
    fnmr: np.ndarray
    eer: float
    eer_threshold: float  # distance form
    genuine_sorted: np.ndarray = field(repr=False)
    impostor_sorted: np.ndarray = field(repr=False)

    def at(self, t: float) -> tuple[float, float]:
        """(FMR, FNMR) at distance threshold t."""
        return (
            float(rate_at_or_below(self.impostor_sorted, t)),
            float(1.0 - rate_at_or_below(self.genuine_sorted, t)),
        )


def verification(genuine_d: np.ndarray, impostor_d: np.ndarray) -> VerificationResult:
    gen = np.sort(np.asarray(genuine_d, dtype=np.float64))
    imp = np.sort(np.asarray(impostor_d, dtype=np.float64))
    if len(gen) == 0 or len(imp) == 0:
        raise ValueError(f"need genuine and impostor comparisons (have {len(gen)} and {len(imp)})")
    t = sweep(gen, imp, 1000)
    fmr = rate_at_or_below(imp, t)
    fnmr = 1.0 - rate_at_or_below(gen, t)
    i = int(np.argmin(np.abs(fmr - fnmr)))
    return VerificationResult(
        len(gen), len(imp), t, fmr, fnmr, float((fmr[i] + fnmr[i]) / 2), float(t[i]), gen, imp
    )


@dataclass
class IdentificationResult:
    gallery_size: int
    mated: int
    nonmated: int
    candidates: int  # L, the candidate list length searched
    rank1: float
    thresholds: np.ndarray  # distance form
    fpir: np.ndarray
    fnir: np.ndarray
    mate_sorted: np.ndarray = field(repr=False)  # inf where the mate was not in the top L
    nonmated_sorted: np.ndarray = field(repr=False)

    def at(self, t: float) -> tuple[float, float]:
        """(FPIR, FNIR) at distance threshold t."""
        fpir = float(rate_at_or_below(self.nonmated_sorted, t))
        fnir = float(1.0 - rate_at_or_below(self.mate_sorted, t))
        return fpir, fnir


def identification(
    mate_d: np.ndarray,
    mate_rank: np.ndarray,
    nonmated_best_d: np.ndarray,
    gallery_size: int,
    candidates: int,
) -> IdentificationResult:
    """``mate_d``/``mate_rank``: per mated search, the mate's distance and
    1-based rank among the top-L candidates (inf / 0 when not among them).
    ``nonmated_best_d``: per non-mated search, the best candidate's distance."""
    mate_d = np.asarray(mate_d, dtype=np.float64)
    mate_rank = np.asarray(mate_rank)
    found = np.where(mate_rank > 0, mate_d, np.inf)
    mate_sorted = np.sort(found)
    non = np.sort(np.asarray(nonmated_best_d, dtype=np.float64))
    if len(found) == 0 or len(non) == 0:
        raise ValueError(f"need mated and non-mated searches (have {len(found)} and {len(non)})")
    t = sweep(found[np.isfinite(found)] if np.isfinite(found).any() else non, non, 1000)
    fpir = rate_at_or_below(non, t)
    fnir = 1.0 - rate_at_or_below(mate_sorted, t)
    return IdentificationResult(gallery_size, len(found), len(non), candidates, float(np.mean(mate_rank == 1)),
                                t, fpir, fnir, mate_sorted, non)  # fmt: skip


def fmr_for_fpir(fpir: float, gallery_size: int) -> float:
    """The per-comparison FMR that gives ``fpir`` over ``gallery_size``."""
    if not 0 < fpir < 1:
        raise ValueError(f"the target FPIR must be between 0 and 1, got {fpir}")
    if gallery_size < 1:
        raise ValueError(f"the gallery size must be at least 1, got {gallery_size}")
    return float(-np.expm1(np.log1p(-fpir) / gallery_size))
