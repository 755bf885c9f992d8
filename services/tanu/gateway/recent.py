"""The de-duplication window: the enrolments this gateway accepted moments
ago, which enrolment compares with besides the gallery."""

from __future__ import annotations

import asyncio

import numpy as np

from tanu.core import ids, vectors
from tanu.core.config import Layout
from tanu.v1 import common_pb2

# How long this gateway remembers the enrolments it accepted, for de-duplicating
# against those not yet searchable (normally milliseconds; minutes under lag).
RECENT_S = 120.0


class RecentEnrolments:
    """The enrolments this gateway accepted in the last RECENT_S seconds:
    they may not be searchable yet (store → stream → searcher), and two
    enrolments of one face arriving together must not both pass
    de-duplication. (Across gateways the window remains; see the README.)
    Hold ``lock`` to check and record atomically."""

    def __init__(self, layout: Layout) -> None:
        self.layout = layout
        self.lock = asyncio.Lock()
        self._entries: list[tuple[object, str, np.ndarray, float]] = []

    def best_match(self, probe: np.ndarray, threshold: float) -> common_pb2.Candidate | None:
        """The best recent enrolment that ``probe`` matches, if any."""
        now = asyncio.get_running_loop().time()
        self._entries = [r for r in self._entries if now - r[3] < RECENT_S]
        if not self._entries:
            return None
        metric = self.layout.metric
        gallery = np.concatenate([r[2] for r in self._entries], axis=0)
        scores = vectors.scores(probe, gallery, metric)
        i = int(np.argmax(scores) if vectors.best_first(metric) else np.argmin(scores))
        if not vectors.is_match(float(scores[i]), threshold, metric):
            return None
        sid = self._entries[i][1]
        return common_pb2.Candidate(
            subject_id=sid,
            score=float(scores[i]),
            partition=ids.partition_of(sid, self.layout.partitions),
        )

    def add(self, subject_id: str, probe: np.ndarray) -> object:
        """Records an accepted enrolment; the token that ``forget`` takes."""
        token = object()
        self._entries.append((token, subject_id, probe, asyncio.get_running_loop().time()))
        return token

    def forget(self, token: object) -> None:
        """Drops an enrolment that was not stored after all."""
        self._entries = [r for r in self._entries if r[0] is not token]
