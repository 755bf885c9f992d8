"""One partition's gallery in an exact FAISS index, keyed by template id.

Applying events is idempotent: adding a template id that is already present,
or removing one that is absent, changes nothing; and removed ids are kept as
tombstones (the store never reuses a template id), so a replayed or
redelivered "added" event can never bring a deleted vector back.

Not thread-safe: the searcher calls it from one thread only.
"""

from __future__ import annotations

import faiss
import numpy as np

from tanu.core import vectors

KINDS = {
    # exhaustive search over fp32 vectors: 4 bytes per value (512 B per 128-d template)
    "flat": None,
    # exhaustive search over fp16 vectors: half the memory (256 B per 128-d
    # template), scores within fp16 rounding of the exact ones
    "fp16": faiss.ScalarQuantizer.QT_fp16,
    # for very large partitions: an IVF-PQ index (d/8 bytes per template)
    # proposes rerank x k candidates from nprobe of nlist lists, and they are
    # re-ranked exactly against the fp16 copy (256 B per 128-d template).
    # Until the partition holds enough templates to train it, search is
    # exhaustive over the fp16 copy.
    "ivf": faiss.ScalarQuantizer.QT_fp16,
}


class PartitionIndex:
    """Exhaustive search over one partition's templates, fp32 or fp16."""

    def __init__(
        self,
        dimension: int,
        metric: str,
        kind: str = "flat",
        nlist: int = 1024,
        nprobe: int = 16,
        rerank: int = 4,
    ) -> None:
        if kind not in KINDS:
            raise ValueError(f"unknown index kind {kind!r}; known: {sorted(KINDS)}")
        self.dimension = dimension
        self.metric = metric
        self.kind = kind
        self.nlist, self.nprobe, self.rerank = nlist, nprobe, max(1, rerank)
        self._fmetric = fmetric = (
            faiss.METRIC_INNER_PRODUCT if metric == "cosine" else faiss.METRIC_L2
        )
        self._ivf: faiss.Index | None = None  # kind "ivf", once trained
        if KINDS[kind] is None:
            base = faiss.IndexFlat(dimension, fmetric)
        else:
            base = faiss.IndexScalarQuantizer(dimension, KINDS[kind], fmetric)
        self._index = faiss.IndexIDMap2(base)
        self._subject_of: dict[int, str] = {}
        self._removed: set[int] = set()
        # Templates removed since the last export: the last snapshot may still hold them.
        self._erased: set[int] = set()

    def __len__(self) -> int:
        return int(self._index.ntotal)

    def add(self, template_ids: np.ndarray, subject_ids: list[str], vecs: np.ndarray) -> int:
        """Adds the templates not already present; returns how many were added."""
        keep = np.fromiter(
            (int(t) not in self._subject_of and int(t) not in self._removed for t in template_ids),
            dtype=bool,
            count=len(template_ids),
        )
        if not keep.any():
            return 0
        ids = np.ascontiguousarray(template_ids[keep], dtype=np.int64)
        x = np.ascontiguousarray(vecs[keep], dtype=np.float32)
        if self.metric == "cosine":
            x = vectors.normalise(x).astype(np.float32)
        # A batch may carry one id twice (duplicate delivery inside one fetch).
        ids, first = np.unique(ids, return_index=True)
        x = x[first]
        kept_subjects = [s for s, k in zip(subject_ids, keep, strict=True) if k]
        self._index.add_with_ids(x, ids)
        if self._ivf is not None:
            self._ivf.add_with_ids(x, ids)
        elif self.kind == "ivf" and len(self) >= self.train_size:
            self._train()
        for i, tid in zip(first, ids, strict=True):
            self._subject_of[int(tid)] = kept_subjects[i]
        return len(ids)

    def remove(self, template_ids: np.ndarray) -> int:
        """Removes the given templates (and tombstones them); returns how many were present."""
        self._removed.update(template_ids.tolist())
        present = np.array(
            [t for t in template_ids.tolist() if t in self._subject_of], dtype=np.int64
        )
        if not len(present):
            return 0
        removed = int(self._index.remove_ids(faiss.IDSelectorBatch(present)))
        if self._ivf is not None:
            self._ivf.remove_ids(faiss.IDSelectorBatch(present))
        for t in present.tolist():
            self._subject_of.pop(t, None)
        self._erased.update(present.tolist())
        return removed

    def tombstoned(self, template_ids: np.ndarray) -> np.ndarray:
        """Whether each id's removal has been applied (a bool mask)."""
        return np.fromiter((int(t) in self._removed for t in template_ids), dtype=bool,
                           count=len(template_ids))  # fmt: skip

    def erased_since_export(self, template_ids: np.ndarray) -> np.ndarray:
        """Whether each id was removed after the last export (a bool mask)."""
        return np.fromiter((int(t) in self._erased for t in template_ids), dtype=bool,
                           count=len(template_ids))  # fmt: skip

    @property
    def has_erasures_since_export(self) -> bool:
        return bool(self._erased)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-k scores (L2 distance or cosine similarity) and template ids
        for a (n, d) float32 batch; missing hits have id -1."""
        k = max(1, min(k, len(self) or 1))
        q = np.ascontiguousarray(queries, dtype=np.float32)
        if self.metric == "cosine":  # similarities of unit vectors, whatever the caller sent
            q = vectors.normalise(q).astype(np.float32)
        if self._ivf is not None:
            scores, ids = self._search_ivf(q, k)
        else:
            scores, ids = self._index.search(q, k)
        if self.metric == "l2":
            np.sqrt(np.maximum(scores, 0, out=scores), out=scores)
        return scores, ids

    @property
    def train_size(self) -> int:
        """Templates needed before the IVF index is trained: 39 per inverted
        list, and at least 39 per PQ centroid (256 of them)."""
        return max(self.nlist, 256) * 39

    @property
    def trained(self) -> bool:
        return self._ivf is not None

    def _train(self) -> None:
        """Trains IVF-PQ on (a sample of) the partition and fills it."""
        base = faiss.downcast_index(self._index.index)
        x = base.reconstruct_n(0, self._index.ntotal)
        ids = faiss.vector_to_array(self._index.id_map)
        sample = (
            x
            if len(x) <= 200_000
            else x[np.random.default_rng(0).choice(len(x), 200_000, replace=False)]
        )
        m = self.dimension // 8 if self.dimension % 8 == 0 else self.dimension
        ivf = faiss.IndexIVFPQ(faiss.IndexFlat(self.dimension, self._fmetric), self.dimension, self.nlist, m, 8,
                               self._fmetric)  # fmt: skip
        ivf.train(sample)
        ivf.add_with_ids(x, ids)
        ivf.nprobe = self.nprobe
        self._ivf = ivf

    def _search_ivf(self, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """IVF-PQ candidates, re-ranked exactly against the fp16 copy (raw
        FAISS scores: squared L2 or inner product)."""
        kk = min(k * self.rerank, len(self))
        _, cand = self._ivf.search(q, kk)
        valid = cand >= 0
        vecs = np.zeros((*cand.shape, self.dimension), dtype=np.float32)
        if valid.any():
            vecs[valid] = self._index.reconstruct_batch(cand[valid])
        if self.metric == "cosine":
            exact = np.einsum("nkd,nd->nk", vecs, q)
            exact[~valid] = -np.inf
            order = np.argsort(-exact, axis=1)[:, :k]
        else:
            exact = ((vecs - q[:, None, :]) ** 2).sum(-1)
            exact[~valid] = np.inf
            order = np.argsort(exact, axis=1)[:, :k]
        scores = np.take_along_axis(exact, order, 1).astype(np.float32)
        ids = np.where(np.take_along_axis(valid, order, 1), np.take_along_axis(cand, order, 1), -1)
        return scores, ids

    def subject(self, template_id: int) -> str | None:
        return self._subject_of.get(template_id)

    def template_ids(self) -> list[int]:
        return sorted(self._subject_of)

    def export(self, sequence: int):
        """The index's state as a snapshot (call on the index's own thread)."""
        from .snapshot import Snapshot

        ids = np.fromiter(self._subject_of.keys(), dtype=np.int64, count=len(self._subject_of))
        subjects = list(self._subject_of.values())
        removed = np.fromiter(self._removed, dtype=np.int64, count=len(self._removed))
        return Snapshot(self._index, ids, subjects, removed, sequence, self._ivf)

    def take_erased(self) -> set[int]:
        """The ids removed since the last call (call together with export:
        the previous export still held them, this one does not)."""
        erased, self._erased = self._erased, set()
        return erased

    def restore(self, snap) -> None:
        """Replaces this index's state with a snapshot's."""
        if snap.index.d != self.dimension or int(snap.index.ntotal) != len(snap.template_ids):
            raise ValueError("snapshot does not fit this index")
        self._index = snap.index
        self._ivf = snap.extra
        if self._ivf is not None:
            faiss.downcast_index(self._ivf).nprobe = self.nprobe
        self._subject_of = dict(zip(snap.template_ids.tolist(), snap.subjects, strict=True))
        self._removed = set(snap.removed.tolist())
        self._erased = set()
