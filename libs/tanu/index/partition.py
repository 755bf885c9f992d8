"""One partition's gallery in an exact FAISS index, keyed by template id.

Applying events is idempotent: adding a template id that is already present,
or removing one that is absent, changes nothing; and removed ids are kept as
tombstones (the store never reuses a template id), so a replayed or
redelivered "added" event can never bring a deleted vector back.

The FAISS index holds the vectors by position (no FAISS id map); the
``IdMap`` (arrays, see ``idmap``) gives each position's template id and
subject id; tombstones are a sorted int64 array.

Galleries: the id map also holds each position's gallery membership and
active flag (packed bitmaps, ``galleries``). A search of one gallery, or of
"ALL" while some templates are inactive, is restricted inside the search to
the allowed positions, so exactly they compete for the top k (never a
post-filter of a global top k that could return fewer than asked):

* the exact kernel scores only the allowed rows, or masks the others to -inf
  (``kernel.topk(allowed=...)``);
* FAISS flat and fp16 take ``SearchParameters(sel=IDSelectorBitmap)`` over
  positions, the bitmap as the id map holds it;
* IVF takes ``SearchParametersIVF(sel=...)`` over template ids, probing
  nprobe / (share of members) lists (as many member candidates as an
  unrestricted search sees); a gallery smaller than what IVF would scan, or
  a query IVF finds fewer than k members for, is searched exactly over the
  members (the fp16 copy), so it still gets min(k, members) hits;
* a device copy (GPU FAISS has no general id selector) is asked for more
  hits (k / share of allowed, within the device's k limit), the disallowed
  dropped; a query left with fewer than k is answered by the CPU index,
  which is exact and always present.

An unrestricted search (ALL, nothing inactive) does no mask work at all.

Not thread-safe: the searcher calls it from one thread only.
"""

from __future__ import annotations

import faiss
import numpy as np

from tanu.core import vectors

from . import kernel
from .device import DEVICES, DeviceCopy
from .galleries import Galleries, Memberships
from .idmap import GrowingArray, IdMap

# The most hits a device copy is asked for at once (FAISS GPU's k limit).
DEVICE_MAX_K = 2048
# A restricted device search asks for k / (share of allowed) x this many hits.
DEVICE_OVERFETCH = 2.0

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
        nprobe: int = 64,
        rerank: int = 150,
        device: str = "cpu",
        compact_share: float = 0.05,
        compact_floor: int = 4096,
        kernel_min_batch: int | None = None,
        kernel_min_batch_restricted: int | None = None,
    ) -> None:
        if kind not in KINDS:
            raise ValueError(f"unknown index kind {kind!r}; known: {sorted(KINDS)}")
        if device not in DEVICES:
            raise ValueError(f"unknown index device {device!r}; known: {list(DEVICES)}")
        if device != "cpu" and kind == "ivf":
            raise ValueError("the ivf kind searches on the CPU; use flat or fp16 on a device")
        self.dimension = dimension
        self.metric = metric
        self.kind = kind
        self.nlist, self.nprobe, self.rerank = nlist, nprobe, max(1, rerank)
        self._fmetric = faiss.METRIC_INNER_PRODUCT if metric == "cosine" else faiss.METRIC_L2
        self._ivf: faiss.Index | None = None  # kind "ivf", once trained
        self._index = self._new_base()
        self._map = IdMap()  # template id and subject id of each FAISS position
        self._removed = np.zeros(0, np.int64)  # tombstones, sorted
        # Templates removed since the last export: the last snapshot may still hold them.
        self._erased: set[int] = set()
        # Searches run on a tombstoned copy (GPU, or a CPU copy) when asked to.
        self._device: DeviceCopy | None = None
        # Batches of at least this many queries go to Tanu's exact kernel
        # (flat and fp16 kinds on the CPU); smaller ones to FAISS. 0: never.
        self.kernel_min_batch = (
            kernel.MIN_BATCH.get(kind, 0) if kernel_min_batch is None else kernel_min_batch
        )
        # The same for searches restricted to a gallery (0: never the kernel).
        self.kernel_min_batch_restricted = (
            kernel.MIN_BATCH_RESTRICTED.get(kind, 0)
            if kernel_min_batch_restricted is None
            else kernel_min_batch_restricted
        )
        # Squared norms of the vectors by position, for the kernel's L2
        # scores; None until the first kernel search after a restore.
        self._sq_norms: GrowingArray | None = None
        # Whether an fp16 gallery holds only finite halves (a template past
        # the half range, ±65504, is stored as infinity): the kernel widens
        # finite halves by its fast path.
        self._halves_finite = True
        if device != "cpu":
            self._device = DeviceCopy(device, dimension, self._fmetric, KINDS[kind] is not None,
                                      compact_share, compact_floor)  # fmt: skip
            self._device.rebuild(np.zeros((0, dimension), np.float32), np.zeros(0, np.int64))

    def _new_base(self) -> faiss.Index:
        if KINDS[self.kind] is None:
            return faiss.IndexFlat(self.dimension, self._fmetric)
        return faiss.IndexScalarQuantizer(self.dimension, KINDS[self.kind], self._fmetric)

    def __len__(self) -> int:
        return int(self._index.ntotal)

    # --- id lookups -------------------------------------------------------

    def tombstoned(self, template_ids: np.ndarray) -> np.ndarray:
        """Whether each id's removal has been applied (a bool mask)."""
        t = self._removed
        if not len(t):
            return np.zeros(len(template_ids), bool)
        i = np.minimum(np.searchsorted(t, template_ids), len(t) - 1)
        return t[i] == template_ids

    def subjects_at(self, positions: np.ndarray) -> list[str]:
        """Subject ids of FAISS positions (one decode per hit, never per template)."""
        return self._map.subjects_at(positions)

    # --- events -----------------------------------------------------------

    def add(
        self,
        template_ids: np.ndarray,
        subject_ids,
        vecs: np.ndarray,
        memberships: Memberships | None = None,
    ) -> int:
        """Adds the templates not already present, with their galleries and
        active flag (``memberships``, one row per template; None: only ALL,
        active); returns how many were added. A template already present
        keeps its membership (a replayed event changes nothing)."""
        ids = np.asarray(template_ids, dtype=np.int64)
        if not len(ids):
            return 0
        # A batch may carry one id twice (duplicate delivery inside one fetch).
        ids, first = np.unique(ids, return_index=True)
        _, present = self._map.positions(ids)
        keep = ~present & ~self.tombstoned(ids)
        if not keep.any():
            return 0
        ids, first = ids[keep], first[keep]
        x = np.ascontiguousarray(np.asarray(vecs)[first], dtype=np.float32)
        if self.metric == "cosine":
            x = vectors.normalise(x).astype(np.float32)
        entries = self._map.prepare(ids, np.asarray(subject_ids, dtype=object)[first],
                                    None if memberships is None else memberships.take(first))  # fmt: skip
        self._index.add(x)
        if self.kind == "fp16" and self._halves_finite:
            self._halves_finite = bool(np.isfinite(self._gallery()[-len(x) :]).all())
        if self._sq_norms is not None:
            self._sq_norms.extend(_squared_norms(self._gallery()[-len(x) :]))
        if self._ivf is not None:
            self._ivf.add_with_ids(x, ids)
        if self._device is not None:
            self._device.add(x, ids)
        self._map.append(entries)
        if self._ivf is None and self.kind == "ivf" and len(self) >= self.train_size:
            self._train()
        return len(ids)

    def set_memberships(self, template_ids: np.ndarray, memberships: Memberships) -> int:
        """Gives templates already present their new full gallery set and
        active flag (one row per id; an id given twice takes its last row;
        absent or removed ids are ignored); returns how many were present."""
        ids = np.asarray(template_ids, dtype=np.int64)
        if not len(ids):
            return 0
        u, idx = np.unique(ids[::-1], return_index=True)
        last = len(ids) - 1 - idx
        pos, found = self._map.positions(u)
        if not found.any():
            return 0
        self._map.galleries.update(pos[found], memberships.take(last[found]))
        return int(found.sum())

    @property
    def galleries(self) -> Galleries:
        """Each position's gallery bits and active flag (read-only use)."""
        return self._map.galleries

    def remove(self, template_ids: np.ndarray) -> int:
        """Removes the given templates (and tombstones them); returns how many were present."""
        ids = np.unique(np.asarray(template_ids, dtype=np.int64))
        self._removed = np.union1d(self._removed, ids)
        pos, found = self._map.positions(ids)
        pos, present = pos[found], ids[found]
        if not len(present):
            return 0
        removed = int(self._index.remove_ids(faiss.IDSelectorBatch(pos.astype(np.int64))))
        if self._sq_norms is not None:
            self._sq_norms.delete(pos)
        if self._ivf is not None:
            self._ivf.remove_ids(faiss.IDSelectorBatch(present))
        self._map.delete(pos)
        if self._map.subject_entries > 2 * len(self) + 4096:
            self._map.compact()  # most subject entries are dead: drop their ids from memory
        self._erased.update(present.tolist())
        if self._device is not None and self._device.remove(present):
            self.compact_device()
        return removed

    def compact_device(self) -> None:
        """Rebuilds the device copy from the CPU index: no tombstones left."""
        if self._device is None:
            return
        x = (self._index.reconstruct_n(0, len(self)) if len(self)
             else np.zeros((0, self.dimension), np.float32))  # fmt: skip
        self._device.rebuild(x, self._map.ids.copy())

    @property
    def device_tombstones(self) -> int:
        """Removed templates the device copy still holds (0 without one)."""
        return self._device.tombstones if self._device is not None else 0

    @property
    def device_rebuilds(self) -> int:
        """How many times the device copy was built from the CPU index (the
        first build and every compaction; 0 without a copy)."""
        return self._device.rebuilds if self._device is not None else 0

    def erased_since_export(self, template_ids: np.ndarray) -> np.ndarray:
        """Whether each id was removed after the last export (a bool mask)."""
        if not self._erased:
            return np.zeros(len(template_ids), bool)
        return np.isin(template_ids, np.fromiter(self._erased, np.int64, len(self._erased)))

    @property
    def has_erasures_since_export(self) -> bool:
        return bool(self._erased)

    # --- search -----------------------------------------------------------

    def search(
        self, queries: np.ndarray, k: int, gallery: str = ""
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k scores (L2 distance or cosine similarity) and template ids
        for a (n, d) float32 batch, among the active templates of ``gallery``
        ("" or "ALL": every active template); missing hits have id -1."""
        scores, pos = self.search_positions(queries, k, gallery)
        ids = np.where(pos >= 0, self._map.ids[np.maximum(pos, 0)] if len(self._map) else -1, -1)
        return scores, ids

    def search_positions(
        self, queries: np.ndarray, k: int, gallery: str = ""
    ) -> tuple[np.ndarray, np.ndarray]:
        """Like search, with FAISS positions (for subjects_at) instead of ids."""
        q = np.ascontiguousarray(queries, dtype=np.float32)
        if self.metric == "cosine":  # similarities of unit vectors, whatever the caller sent
            q = vectors.normalise(q).astype(np.float32)
        bits, members = self._map.galleries.allowed(gallery)
        if bits is not None:  # restricted to some positions
            scores, pos = self._search_allowed(q, max(1, min(k, members)), bits, members)
        else:
            scores, pos = self._search_all(q, max(1, min(k, len(self) or 1)))
        if self.metric == "l2":
            np.sqrt(np.maximum(scores, 0, out=scores), out=scores)
        return scores, pos

    def _search_all(self, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Every position may be returned (raw FAISS scores)."""
        if self._ivf is not None:
            scores, pos = self._search_ivf(q, k)
        elif self._device is not None:
            scores, tids = self._device.search(q, k)
            p, found = self._map.positions(tids.ravel())
            pos = np.where(found & (tids.ravel() >= 0), p, -1).reshape(tids.shape)
        elif self.uses_kernel(len(q)):
            scores, pos = self._kernel_search(q, k)
        else:
            scores, pos = self._index.search(q, k)
        return scores, pos

    def _missing(self, nq: int, k: int) -> tuple[np.ndarray, np.ndarray]:
        worst = np.inf if self.metric == "l2" else -np.inf
        return np.full((nq, k), worst, np.float32), np.full((nq, k), -1, np.int64)

    def _search_allowed(
        self, q: np.ndarray, k: int, bits: np.ndarray, members: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Only the positions set in ``bits`` (packed LSB-first, ``members``
        of them) may be returned; k <= members unless there are none."""
        if not members:
            return self._missing(len(q), k)
        if self._ivf is not None:
            return self._search_ivf_allowed(q, k, bits, members)
        if self._device is not None:
            return self._search_device_allowed(q, k, bits, members)
        return self._search_cpu_allowed(q, k, bits, members)

    def _search_cpu_allowed(self, q: np.ndarray, k: int, bits: np.ndarray, members: int):
        """Exact search over the CPU index, restricted to ``bits``."""
        # A few members are gathered by the kernel (its own batch threshold);
        # many are masked, at the unrestricted threshold.
        gathered = members < kernel.GATHER_SHARE * len(self)
        if self._kernel_applies(len(q), restricted=gathered):
            allowed = np.unpackbits(bits, count=len(self), bitorder="little").view(bool)
            return self._kernel_search(q, k, allowed)
        sel = faiss.IDSelectorBitmap(len(bits), faiss.swig_ptr(bits))
        return self._index.search(q, k, params=faiss.SearchParameters(sel=sel))

    def _search_device_allowed(self, q: np.ndarray, k: int, bits: np.ndarray, members: int):
        """Over-fetch from the device copy and drop what is not allowed; a
        query left with fewer than k is answered by the CPU index (exact)."""
        n = len(self)
        scores, pos = self._missing(len(q), k)
        short = np.ones(len(q), bool)
        want = min(int(np.ceil(k * n / members * DEVICE_OVERFETCH)), n,
                   DEVICE_MAX_K - self._device.tombstones)  # fmt: skip
        if want >= k:
            raw, tids = self._device.search(q, want)
            p, found = self._map.positions(tids.ravel())
            p = np.where(found & (tids.ravel() >= 0), p, 0)
            ok = (found & (tids.ravel() >= 0) & _bit_set(bits, p)).reshape(tids.shape)
            order = np.argsort(~ok, axis=1, kind="stable")[:, :k]  # allowed first, in score order
            got = np.take_along_axis(ok, order, 1)
            scores = np.where(got, np.take_along_axis(raw, order, 1), scores[:, : order.shape[1]])
            pos = np.where(got, np.take_along_axis(p.reshape(tids.shape), order, 1), -1)
            if scores.shape[1] < k:
                pad_s, pad_p = self._missing(len(q), k - scores.shape[1])
                scores, pos = np.hstack([scores, pad_s]), np.hstack([pos, pad_p])
            short = got.sum(1) < k
        if short.any():
            cs, cp = self._search_cpu_allowed(q[short], k, bits, members)
            scores[short], pos[short] = cs, cp
        return scores.astype(np.float32, copy=False), pos

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

    def uses_kernel(self, batch: int) -> bool:
        """Whether a batch of this many queries is searched by Tanu's exact
        kernel (``kernel.topk``) rather than by FAISS."""
        return self._device is None and self._kernel_applies(batch)

    def _kernel_applies(self, batch: int, restricted: bool = False) -> bool:
        """Whether the CPU index's exact search of such a batch (restricted
        to a gallery or not) is the kernel's."""
        least = self.kernel_min_batch_restricted if restricted else self.kernel_min_batch
        return (
            0 < least <= batch and self._ivf is None
            and self.kind in ("flat", "fp16") and len(self) > 0
        )  # fmt: skip

    def _gallery(self) -> np.ndarray:
        """The stored vectors by position, without a copy: float32 for the
        flat kind, float16 for fp16 (FAISS's QT_fp16 codes are IEEE halves).
        Valid until the next add or remove."""
        n, d = len(self), self.dimension
        if KINDS[self.kind] is None:
            return faiss.rev_swig_ptr(self._index.get_xb(), n * d).reshape(n, d)
        codes = faiss.downcast_index(self._index).codes
        return faiss.rev_swig_ptr(codes.data(), n * d * 2).view(np.float16).reshape(n, d)

    def _kernel_search(
        self, q: np.ndarray, k: int, allowed: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        gallery = self._gallery()
        if self.metric == "l2":
            if self._sq_norms is None:
                self._sq_norms = GrowingArray(np.float32, _squared_norms(gallery))
            return kernel.topk(gallery, q, k, "l2", self._sq_norms.a, allowed=allowed,
                               finite_halves=self._halves_finite)  # fmt: skip
        return kernel.topk(gallery, q, k, "ip", allowed=allowed, finite_halves=self._halves_finite)

    def search_subjects(self, queries: np.ndarray, k: int, gallery: str = ""):
        """(scores, template ids, subject ids per hit row) in one consistent cut."""
        scores, pos = self.search_positions(queries, k, gallery)
        valid = pos >= 0
        ids = np.full(pos.shape, -1, np.int64)
        ids[valid] = self._map.ids[pos[valid]]
        flat = self.subjects_at(pos[valid]) if valid.any() else []
        counts = valid.sum(1).tolist()
        rows, i = [], 0
        for c in counts:  # hits are a prefix of each row (FAISS pads with -1)
            rows.append(flat[i : i + c])
            i += c
        return scores, ids, rows

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
        vecs = np.zeros((*cand.shape, self.dimension), dtype=np.float32)
        if valid.any():
            # Gathered from the stored codes and widened here: FAISS's
            # reconstruct_batch costs about 4 µs a vector.
            rows = self._gallery()[pos[valid]]
            wide = np.empty(rows.shape, np.float32)
            kernel.widen(rows, wide, self._halves_finite)
            vecs[valid] = wide
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

    # --- inspection and snapshots -----------------------------------------

    def subject(self, template_id: int) -> str | None:
        pos, found = self._map.positions(np.array([template_id], np.int64))
        return self.subjects_at(pos[:1])[0] if found[0] else None

    def template_ids(self) -> list[int]:
        return np.sort(self._map.ids).tolist()

    def memory_bytes(self) -> dict[str, int]:
        """Bytes held per structure (vectors in FAISS, the id map, tombstones)."""
        ntotal = len(self)
        per = self.dimension * (4 if KINDS[self.kind] is None else 2)
        return {
            "vectors": ntotal * per,
            "id_map": self._map.memory_bytes() - self._map.galleries.memory_bytes(),
            "galleries": self._map.galleries.memory_bytes(),
            "tombstones": self._removed.nbytes,
        }

    def export(self, sequence: int):
        """The index's state as a snapshot (call on the index's own thread);
        only live subjects' ids are written (erased ones are left out)."""
        from .snapshot import Snapshot

        ids, codes, blob, starts = self._map.arrays()
        names, bits, inactive = self._map.galleries.arrays()
        return Snapshot(self._index, ids, codes, blob, starts, self._removed.copy(), sequence,
                        self._ivf, names, bits, inactive)  # fmt: skip

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
        n = len(snap.template_ids)
        inactive = snap.inactive if snap.inactive is not None else np.zeros((n + 7) // 8, np.uint8)
        bits = snap.gallery_bits if snap.gallery_bits is not None else np.zeros((0, 0), np.uint8)
        galleries = Galleries.from_arrays(n, snap.galleries, bits, inactive)
        self._map = IdMap(snap.template_ids, snap.codes, snap.blob, snap.starts, galleries)
        self._removed = np.unique(np.asarray(snap.removed, np.int64))
        self._erased = set()
        self._sq_norms = None
        self._halves_finite = self.kind != "fp16" or _all_finite(self._gallery())
        self.compact_device()


def _all_finite(x: np.ndarray, rows: int = 65_536) -> bool:
    """Whether every value of ``x`` is finite, a block at a time."""
    return all(np.isfinite(x[a : a + rows]).all() for a in range(0, len(x), rows))


def _squared_norms(x: np.ndarray, rows: int = 65_536) -> np.ndarray:
    """Each row's squared norm in float32, a block at a time (an fp16
    gallery is converted a block at a time, not all at once)."""
    out = np.empty(len(x), np.float32)
    for i in range(0, len(x), rows):
        b = x[i : i + rows].astype(np.float32, copy=False)
        out[i : i + rows] = np.einsum("ij,ij->i", b, b)
    return out


def _bit_set(bits: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """Whether each position is set in a packed LSB-first bitmap."""
    return ((bits[positions >> 3] >> (positions & 7).astype(np.uint8)) & 1).astype(bool)
