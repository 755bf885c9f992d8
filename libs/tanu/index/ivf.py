"""IVF-PQ for very large partitions (the ``ivf`` kind): training the
index once the partition holds enough templates, searching it with an
exact re-rank of its candidates against the fp16 copy, and the search
restricted to a gallery's members by an id selector.

``IvfSearch`` is a mixin of ``PartitionIndex`` (``partition``), which owns
the state it reads: ``dimension``, ``metric``, ``nlist``, ``nprobe``,
``rerank``, ``_fmetric``, ``_index`` (the exact CPU index), ``_ivf`` (None
until trained), ``_map`` (positions to ids), ``_halves_finite``, and the
exact kernel's ``_gallery`` and ``_kernel_search``.
"""

from __future__ import annotations

import faiss
import numpy as np

from . import kernel
from .idmap import IdMap


class IvfSearch:
    """Training and searching the IVF-PQ index, re-ranked exactly."""

    dimension: int
    metric: str
    nlist: int
    nprobe: int
    rerank: int
    _fmetric: int
    _index: faiss.Index
    _ivf: faiss.Index | None
    _map: IdMap
    _halves_finite: bool

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
        x = self._index.reconstruct_n(0, self._index.ntotal)
        ids = self._map.ids.copy()
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

    def _search_ivf(
        self, q: np.ndarray, k: int, params=None, kk: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """IVF-PQ candidates (``kk``; restricted by ``params``' selector),
        re-ranked exactly against the fp16 copy (raw FAISS scores: squared
        L2 or inner product); positions, -1 for none."""
        kk = min(k * self.rerank, len(self)) if kk is None else kk
        _, cand = self._ivf.search(q, kk, params=params)
        pos = np.full(cand.shape, -1, np.int64)
        valid = cand >= 0
        p, found = self._map.positions(cand[valid])
        pos[valid] = np.where(found, p, -1)
        valid = pos >= 0
        if valid.any():
            # Every candidate's stored halves, gathered and widened straight
            # into place (FAISS's reconstruct_batch costs about 4 µs a
            # vector); a missing one reads row 0 and is ranked out below.
            vecs = np.empty((*cand.shape, self.dimension), dtype=np.float32)
            kernel.widen(self._gallery()[np.maximum(pos, 0)], vecs, self._halves_finite)
        else:
            vecs = np.zeros((*cand.shape, self.dimension), dtype=np.float32)
        if self.metric == "cosine":
            exact = np.einsum("nkd,nd->nk", vecs, q)
            exact[~valid] = -np.inf
            order = np.argsort(-exact, axis=1)[:, :k]
        else:
            exact = ((vecs - q[:, None, :]) ** 2).sum(-1)
            exact[~valid] = np.inf
            order = np.argsort(exact, axis=1)[:, :k]
        scores = np.take_along_axis(exact, order, 1).astype(np.float32)
        out = np.where(np.take_along_axis(valid, order, 1), np.take_along_axis(pos, order, 1), -1)
        return scores, out

    def _search_ivf_allowed(self, q: np.ndarray, k: int, bits: np.ndarray, members: int):
        """IVF restricted by an id selector, re-ranked; exact over the
        members when they are few or IVF finds fewer than k for a query."""
        n = len(self)
        if members <= max(4 * k * self.rerank, n * self.nprobe // max(self.nlist, 1)):
            return self._exact_members(q, k, bits)
        allowed = np.unpackbits(bits, count=n, bitorder="little").view(bool)
        ids = self._map.ids
        # the smaller of the two id sets goes into the selector's hash set
        if members <= n - members:
            inner = faiss.IDSelectorBatch(np.ascontiguousarray(ids[allowed]))
            sel = inner
        else:
            inner = faiss.IDSelectorBatch(np.ascontiguousarray(ids[~allowed]))
            sel = faiss.IDSelectorNot(inner)
        # As many lists again per share of members: about as many member
        # candidates as an unrestricted search scans.
        nprobe = min(self.nlist, int(np.ceil(self.nprobe * n / members)))
        params = faiss.SearchParametersIVF(sel=sel, nprobe=nprobe)
        scores, pos = self._search_ivf(q, k, params, min(k * self.rerank, members))
        del inner
        short = (pos >= 0).sum(1) < k
        if short.any():
            es, ep = self._exact_members(q[short], k, bits)
            scores[short], pos[short] = es, ep
        return scores, pos

    def _exact_members(self, q: np.ndarray, k: int, bits: np.ndarray):
        """Exact search over the fp16 copy, restricted to ``bits``."""
        allowed = np.unpackbits(bits, count=len(self), bitorder="little").view(bool)
        return self._kernel_search(q, k, allowed)
