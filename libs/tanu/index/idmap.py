"""The template id and subject id of each position of a partition's FAISS
index, as arrays rather than Python objects, so that tens of millions of
templates fit.

``ids[i]`` is the template id at position i (ascending while the store hands
out ids in order, which it does; otherwise an argsort is kept beside it),
``codes[i]`` an int32 index into the subject ids, kept as one UTF-8 blob
with offsets (``starts``), and ``galleries`` each position's gallery
membership and active flag (packed bitmaps, see ``galleries``). About 8 + 4
+ 8 + len(subject id) bytes a template, plus (galleries + 1) / 8, against
about 100 for a Python dict.

Not thread-safe: the partition index calls it from one thread only.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .galleries import Galleries, Memberships


class GrowingArray:
    """A numpy array that grows by doubling (amortised O(1) appends)."""

    def __init__(self, dtype, data: np.ndarray | None = None) -> None:
        data = np.zeros(0, dtype) if data is None else np.asarray(data, dtype)
        self._buf = np.empty(max(16, len(data)), dtype)
        self._buf[: len(data)] = data
        self.n = len(data)

    @property
    def a(self) -> np.ndarray:
        return self._buf[: self.n]

    def extend(self, x: np.ndarray) -> None:
        need = self.n + len(x)
        if need > len(self._buf):
            buf = np.empty(max(need, 2 * len(self._buf)), self._buf.dtype)
            buf[: self.n] = self._buf[: self.n]
            self._buf = buf
        self._buf[self.n : need] = x
        self.n = need

    def delete(self, positions: np.ndarray) -> None:
        keep = np.ones(self.n, bool)
        keep[positions] = False
        kept = self._buf[: self.n][keep]
        self._buf[: len(kept)] = kept
        self.n = len(kept)


class Appendix(NamedTuple):
    """Entries ready to append (``IdMap.prepare``), for new positions at the end."""

    ids: np.ndarray  # int64 template ids
    codes: np.ndarray  # int32 subject codes
    chunk: bytes  # the new subject ids, each followed by "\n"
    ends: np.ndarray  # int64 blob offsets after each new subject id
    ascending: bool  # the ids stay ascending after these
    memberships: Memberships | None = None  # their galleries (None: ALL, active)


class IdMap:
    """Positions → template ids and subject ids."""

    def __init__(
        self,
        template_ids: np.ndarray | None = None,
        codes: np.ndarray | None = None,
        blob: bytes = b"",
        starts: np.ndarray | None = None,
        galleries: Galleries | None = None,
    ) -> None:
        self._ids = GrowingArray(np.int64, template_ids)  # template id at each FAISS position
        self._codes = GrowingArray(np.int32, codes)  # its subject: an index into _starts
        self._blob = bytearray(blob)  # subject ids, UTF-8, each followed by "\n"
        # subject i: blob[starts[i]:starts[i+1]-1]
        self._starts = GrowingArray(np.int64, np.zeros(1, np.int64) if starts is None else starts)
        ids = self._ids.a
        # argsort of ids when they are not ascending
        self._order = None if bool(np.all(ids[1:] > ids[:-1])) else np.argsort(ids, kind="stable")
        self._dead_subjects = False  # the blob may hold ids of removed subjects
        # gallery bits and inactive flag of each position
        self.galleries = Galleries(len(ids)) if galleries is None else galleries
        if self.galleries.n != len(ids):
            raise ValueError("gallery membership does not fit the id map")

    def __len__(self) -> int:
        return self._ids.n

    @property
    def ids(self) -> np.ndarray:
        """The template id at each position (a view: copy to keep it)."""
        return self._ids.a

    @property
    def subject_entries(self) -> int:
        """Subject ids held in the blob, live or dead."""
        return self._starts.n - 1

    def positions(self, template_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(FAISS positions, found mask) of template ids, vectorised."""
        ids = self._ids.a
        if not len(ids) or not len(template_ids):
            return np.zeros(len(template_ids), np.int64), np.zeros(len(template_ids), bool)
        if self._order is None:
            i = np.minimum(np.searchsorted(ids, template_ids), len(ids) - 1)
            return i, ids[i] == template_ids
        srt = ids[self._order]
        i = np.minimum(np.searchsorted(srt, template_ids), len(ids) - 1)
        return self._order[i], srt[i] == template_ids

    def subjects_at(self, positions: np.ndarray) -> list[str]:
        """Subject ids of FAISS positions (one decode per hit, never per template)."""
        codes = self._codes.a[positions]
        starts = self._starts.a
        a, b = starts[codes].tolist(), (starts[codes + 1] - 1).tolist()
        blob = self._blob
        return [blob[i:j].decode() for i, j in zip(a, b, strict=True)]

    def prepare(
        self, ids: np.ndarray, subs: np.ndarray, memberships: Memberships | None = None
    ) -> Appendix:
        """Entries for new templates (``subs``: their subject ids, an object
        array); one subject entry per run of equal subject ids (an event's
        templates). Raises OverflowError, changing nothing, when full."""
        new = np.ones(len(subs), bool)
        new[1:] = subs[1:] != subs[:-1]
        uniq = subs[new]
        chunk = ("\n".join(uniq.tolist()) + "\n").encode("utf-8")
        ends = np.flatnonzero(np.frombuffer(chunk, np.uint8) == 10) + 1 + len(self._blob)
        codes = (np.cumsum(new) - 1 + (self._starts.n - 1)).astype(np.int32)
        if self._starts.n - 1 + len(uniq) >= 2**31:
            raise OverflowError("more than 2^31 subject entries in one partition")
        ascending = self._order is None and (not self._ids.n or ids[0] > self._ids.a[-1])
        return Appendix(ids, codes, chunk, ends, ascending, memberships)

    def append(self, entries: Appendix) -> None:
        """Appends prepared entries (prepared against the map as it is)."""
        self._blob += entries.chunk
        self._starts.extend(entries.ends)
        self._codes.extend(entries.codes)
        self._ids.extend(entries.ids)
        self.galleries.grow(len(entries.ids), entries.memberships)
        self._order = None if entries.ascending else np.argsort(self._ids.a, kind="stable")

    def delete(self, positions: np.ndarray) -> None:
        """Drops positions (later ones move up, as in the FAISS index)."""
        self._ids.delete(positions)
        self._codes.delete(positions)
        self.galleries.delete(positions)
        if self._order is not None:
            self._order = np.argsort(self._ids.a, kind="stable")
        self._dead_subjects = True

    def compact(self) -> None:
        """Keeps only the live subjects' ids in the blob (codes renumbered)."""
        self._dead_subjects = False
        live, codes = np.unique(self._codes.a, return_inverse=True)
        if not len(live):
            self._blob, self._starts = bytearray(), GrowingArray(np.int64, np.zeros(1, np.int64))
            self._codes = GrowingArray(np.int32)
            return
        starts = self._starts.a
        a, b = starts[live], starts[live + 1]
        lens = b - a
        blob = np.frombuffer(bytes(self._blob), np.uint8)
        # gather the live byte ranges in one numpy operation
        idx = np.repeat(a - np.r_[0, np.cumsum(lens)[:-1]], lens) + np.arange(lens.sum())
        self._blob = bytearray(blob[idx].tobytes())
        self._starts = GrowingArray(np.int64, np.r_[0, np.cumsum(lens)])
        self._codes = GrowingArray(np.int32, codes.astype(np.int32))

    def arrays(self) -> tuple[np.ndarray, np.ndarray, bytes, np.ndarray]:
        """Copies of (template ids, codes, blob, starts) holding only live
        subjects' ids (for a snapshot)."""
        if self._dead_subjects:
            self.compact()
        return self._ids.a.copy(), self._codes.a.copy(), bytes(self._blob), self._starts.a.copy()

    def memory_bytes(self) -> int:
        return (self._ids.n * 8 + self._codes.n * 4 + self._starts.n * 8 + len(self._blob)
                + self.galleries.memory_bytes())  # fmt: skip
