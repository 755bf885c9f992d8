"""The de-duplication window's opened templates, kept by one store process
so that an enrolment opens only the templates committed since the last one
(each opened once, not once per enrolment).

What the database holds decides: before every use, ``sync`` is given the
ids of the templates now in the window (read in the enrolment's own
transaction, under its lock) and drops every entry not among them, so a
template erased by any store process, or aged out, is never compared and
leaves this memory at the next enrolment or prune (the store prunes on its
audit-checkpoint timer, and drops its own erasures at once).
"""

from __future__ import annotations

import numpy as np

from tanu.core import vectors


class RecentWindow:
    """Template ids, subject ids and vectors of the window, as arrays."""

    def __init__(self, dimension: int) -> None:
        self.ids = np.zeros(0, dtype=np.int64)
        self.subjects = np.zeros(0, dtype=object)
        self.vectors = np.zeros((0, dimension), dtype=np.float32)

    def __len__(self) -> int:
        return len(self.ids)

    def sync(self, ids_now: np.ndarray) -> np.ndarray:
        """Keeps only the entries whose ids are in ``ids_now``; returns the
        ids of ``ids_now`` not held yet (to open and ``add``)."""
        keep = np.isin(self.ids, ids_now, assume_unique=True)
        if not keep.all():
            self.ids, self.subjects = self.ids[keep], self.subjects[keep]
            self.vectors = self.vectors[keep]
        return np.setdiff1d(ids_now, self.ids, assume_unique=True)

    def add(self, ids: list[int], subjects: list[str], vecs: np.ndarray) -> None:
        self.ids = np.concatenate([self.ids, np.asarray(ids, dtype=np.int64)])
        self.subjects = np.concatenate([self.subjects, np.asarray(subjects, dtype=object)])
        self.vectors = np.concatenate([self.vectors, vecs], axis=0)

    def forget_subject(self, subject_id: str) -> None:
        """Drops a subject's entries at once (its erasure in this process)."""
        keep = self.subjects != subject_id
        self.ids, self.subjects, self.vectors = (
            self.ids[keep],
            self.subjects[keep],
            self.vectors[keep],
        )

    def best(self, probes: np.ndarray, metric: str, exclude: str = "") -> tuple[str, float] | None:
        """The best (subject, score) of any probe row against the window
        (leaving out the templates of subject ``exclude``)."""
        if not len(self.ids):
            return None
        if exclude:
            keep = self.subjects != exclude
            if not keep.any():
                return None
            others = RecentWindow.__new__(RecentWindow)
            others.ids, others.subjects, others.vectors = (
                self.ids[keep], self.subjects[keep], self.vectors[keep])  # fmt: skip
            return others.best(probes, metric)
        best: tuple[str, float] | None = None
        for probe in probes:
            s = vectors.scores(probe[None, :], self.vectors, metric)
            i = int(np.argmax(s) if vectors.best_first(metric) else np.argmin(s))
            if best is None or better(float(s[i]), best[1], metric):
                best = (str(self.subjects[i]), float(s[i]))
        return best


def better(a: float, b: float, metric: str) -> bool:
    """Whether score ``a`` is better than ``b`` under ``metric``."""
    return a > b if vectors.best_first(metric) else a < b
