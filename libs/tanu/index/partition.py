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
the allowed positions, so exactly they compete for the top k
(``restricted``). An unrestricted search (ALL, nothing inactive) does no
mask work at all.

This module holds the index's state, its events (add, remove, memberships),
the unrestricted search and the exact kernel's use, and snapshots; the
gallery-restricted search paths are the ``restricted.RestrictedSearch``
mixin, the IVF-PQ index (training, re-ranked search) the ``ivf.IvfSearch``
mixin.

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
from .restricted import RestrictedSearch

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


class PartitionIndex(RestrictedSearch):
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
        only live subjects' ids are written (erased ones are left out). The
        FAISS indexes are serialised here, with the id map: the snapshot is
        written on another thread while this one goes on adding, and an
        index serialised there would hold vectors the id map does not."""
        from .snapshot import Snapshot, pieces

        ids, codes, blob, starts = self._map.arrays()
        names, bits, inactive = self._map.galleries.arrays()
        ivf = pieces(self._ivf) if self._ivf is not None else None
        return Snapshot(self._index, ids, codes, blob, starts, self._removed.copy(), sequence,
                        self._ivf, names, bits, inactive,
                        serialized=(pieces(self._index), ivf))  # fmt: skip

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
