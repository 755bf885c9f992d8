"""A search copy of a partition on an accelerator, with tombstones and
compaction.

The CPU index stays the system of record inside the searcher (snapshots,
removals, the id map). The device copy serves the searches: it is built
from the CPU index, takes every addition, but does not remove anything
(FAISS GPU flat indexes cannot remove, and removing would shift positions
under concurrent searches). A removal only tombstones the template id; a
search asks the device for k plus the number of tombstones, drops the
tombstoned hits, and keeps the best k. When tombstones pass
``compact_at`` (a share of the copy, at least a floor), the copy is rebuilt
from the CPU index, which never held them (compaction).

``device="gpu"`` puts the copy on every visible GPU (``index_cpu_to_all_gpus``;
fp16 kinds keep fp16 on the device). ``device="cpu-copy"`` builds the same
copy as a second CPU index: the identical algorithm, for machines without a
GPU (the tests) and for comparing the two.
"""

from __future__ import annotations

import faiss
import numpy as np

DEVICES = ("cpu", "cpu-copy", "gpu")


def gpus() -> int:
    """GPUs FAISS can use (0 with faiss-cpu)."""
    get = getattr(faiss, "get_num_gpus", None)
    return int(get()) if get else 0


class DeviceCopy:
    def __init__(
        self,
        device: str,
        dimension: int,
        fmetric: int,
        fp16: bool,
        compact_share: float = 0.05,
        compact_floor: int = 4096,
    ) -> None:
        if device not in ("cpu-copy", "gpu"):
            raise ValueError(f"no device copy for {device!r}")
        if device == "gpu" and gpus() == 0:
            raise RuntimeError(
                "TANU_INDEX_DEVICE=gpu, but FAISS sees no GPU (install faiss-gpu on a GPU host, "
                "or use cpu)"
            )
        self.device = device
        self.dimension, self.fmetric, self.fp16 = dimension, fmetric, fp16
        self.compact_share, self.compact_floor = compact_share, compact_floor
        self._index: faiss.Index | None = None
        self._ids = np.zeros(0, np.int64)  # template id at each device position
        self._n = 0
        self._dead = np.zeros(0, np.int64)  # tombstoned template ids, sorted
        self.rebuilds = 0

    def __len__(self) -> int:
        return self._n

    @property
    def tombstones(self) -> int:
        return len(self._dead)

    def rebuild(self, vectors: np.ndarray, template_ids: np.ndarray) -> None:
        """A fresh copy of the live templates (drops every tombstone)."""
        cpu = faiss.IndexFlat(self.dimension, self.fmetric)
        if len(vectors):
            cpu.add(np.ascontiguousarray(vectors, dtype=np.float32))
        if self.device == "gpu":
            opts = faiss.GpuMultipleClonerOptions()
            opts.useFloat16 = self.fp16
            opts.shard = True
            self._index = faiss.index_cpu_to_all_gpus(cpu, opts)
        else:
            self._index = cpu
        self._ids = np.array(template_ids, dtype=np.int64)
        self._n = len(self._ids)
        self._dead = np.zeros(0, np.int64)
        self.rebuilds += 1

    def add(self, vectors: np.ndarray, template_ids: np.ndarray) -> None:
        x = np.ascontiguousarray(vectors, dtype=np.float32)
        if self.device == "cpu-copy" and self.fp16:  # the same rounding a GPU fp16 copy applies
            x = x.astype(np.float16).astype(np.float32)
        self._index.add(x)
        need = self._n + len(template_ids)
        if need > len(self._ids):
            grown = np.empty(max(need, 2 * len(self._ids), 16), np.int64)
            grown[: self._n] = self._ids[: self._n]
            self._ids = grown
        self._ids[self._n : need] = template_ids
        self._n = need

    def remove(self, template_ids: np.ndarray) -> bool:
        """Tombstones the ids; True when the copy should now be compacted."""
        self._dead = np.union1d(self._dead, np.asarray(template_ids, np.int64))
        return len(self._dead) > max(self.compact_floor, int(self.compact_share * max(self._n, 1)))

    def search(self, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Raw FAISS scores and template ids (-1 for none) of the best k live hits."""
        live = self._n - len(self._dead)
        k = max(1, min(k, max(live, 1)))
        kk = min(self._n, k + len(self._dead)) or 1
        scores, pos = self._index.search(q, kk)
        ids = np.where(pos >= 0, self._ids[np.maximum(pos, 0)], -1)
        if len(self._dead):
            i = np.minimum(np.searchsorted(self._dead, ids), len(self._dead) - 1)
            ids = np.where(self._dead[i] == ids, -1, ids)
        # live hits first, in score order (FAISS returns rows sorted by score)
        order = np.argsort(ids < 0, axis=1, kind="stable")[:, :k]
        return np.take_along_axis(scores, order, 1), np.take_along_axis(ids, order, 1)
