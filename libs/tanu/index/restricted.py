"""Searches restricted to some positions (one gallery, or "ALL" while
some templates are inactive), inside the search, so exactly the allowed
positions compete for the top k (never a post-filter of a global top k
that could return fewer than asked):

* the exact kernel scores only the allowed rows, or masks the others to -inf
  (``kernel.topk(allowed=...)``);
* FAISS flat and fp16 take ``SearchParameters(sel=IDSelectorBitmap)`` over
  positions, the bitmap as the id map holds it;
* IVF takes ``SearchParametersIVF(sel=...)`` over template ids (``ivf``),
  probing nprobe / (share of members) lists (as many member candidates as an
  unrestricted search sees); a gallery smaller than what IVF would scan, or
  a query IVF finds fewer than k members for, is searched exactly over the
  members (the fp16 copy), so it still gets min(k, members) hits;
* a device copy (GPU FAISS has no general id selector) is asked for more
  hits (k / share of allowed, within the device's k limit), the disallowed
  dropped; a query left with fewer than k is answered by the CPU index,
  which is exact and always present.

``RestrictedSearch`` is a mixin of ``PartitionIndex`` (``partition``), which
owns the state it reads: ``metric``, ``_index``, ``_device``, ``_map``, and
the exact kernel's ``_kernel_applies`` and ``_kernel_search``.
"""

from __future__ import annotations

import faiss
import numpy as np

from . import kernel
from .device import DeviceCopy
from .idmap import IdMap
from .ivf import IvfSearch

# The most hits a device copy is asked for at once (FAISS GPU's k limit).
DEVICE_MAX_K = 2048
# A restricted device search asks for k / (share of allowed) x this many hits.
DEVICE_OVERFETCH = 2.0


class RestrictedSearch(IvfSearch):
    """The search paths restricted to a packed bitmap of allowed positions."""

    metric: str
    _index: faiss.Index
    _device: DeviceCopy | None
    _map: IdMap

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


def _bit_set(bits: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """Whether each position is set in a packed LSB-first bitmap."""
    return ((bits[positions >> 3] >> (positions & 7).astype(np.uint8)) & 1).astype(bool)
