"""Gallery membership and the active flag of each position of a partition's
index, as packed bitmaps rather than Python objects.

Every template is in the implicit gallery "ALL" (never stored). Each other
gallery the partition has seen gets a slot (a name → slot dictionary) and a
bitmap of one bit per position; one more bitmap marks inactive templates
(an encounter whose status is INACTIVE), which no search returns. Bits are
packed LSB-first (position i is bit ``i & 7`` of byte ``i >> 3``), the
layout FAISS's ``IDSelectorBitmap`` reads, so a search's allowed set is one
AND of two byte arrays with no conversion.

Memory: (galleries + 1) / 8 bytes a template: at 20 million templates, 2.5
MB per gallery plus 2.5 MB for the inactive bitmap (8 galleries: 22.5 MB,
about 1.1 bytes a template, against 256 B of fp16 vector at 128-d).

Names from events are bounded here too (the store validates them; junk is
dropped, never trusted): 1-64 characters of ``[A-Za-z0-9_.-]``, at most
``MAX_PER_TEMPLATE`` per template, at most ``MAX_GALLERIES`` slots per
partition (slots of galleries left empty are reused).

Not thread-safe: the partition index calls it from one thread only.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from tanu.core import ids, logs

log = logs.get(__name__)

ALL = ids.ALL_GALLERY
NAME = ids.GALLERY_NAME
MAX_PER_TEMPLATE = ids.MAX_GALLERIES_PER_ENCOUNTER
MAX_GALLERIES = 1024  # distinct named galleries per partition (n/8 bytes each)


is_name = ids.is_gallery_name


def clean(names: Iterable[str]) -> tuple[str, ...]:
    """Well-formed, distinct, sorted gallery names without "ALL", at most
    ``MAX_PER_TEMPLATE`` (junk from an event is dropped, and logged without
    the names)."""
    raw = list(names)
    out = sorted({n for n in raw if isinstance(n, str) and n != ALL and NAME.fullmatch(n)})
    dropped = len(set(raw)) - len(out) - (ALL in raw)
    if len(out) > MAX_PER_TEMPLATE:
        dropped += len(out) - MAX_PER_TEMPLATE
        out = out[:MAX_PER_TEMPLATE]
    if dropped > 0:
        log.error("gallery_names_dropped", count=dropped)
    return tuple(out)


@dataclass(frozen=True)
class Memberships:
    """The galleries and active flag of a batch of templates: a few distinct
    (galleries, inactive) sets and, for each row, which set it has."""

    sets: tuple[tuple[tuple[str, ...], bool], ...]
    row_set: np.ndarray  # intp, one per row: an index into sets

    @classmethod
    def uniform(cls, rows: int, galleries: Sequence[str] = (), inactive: bool = False):
        """Every row in the same galleries with the same flag."""
        return cls(((clean(galleries), bool(inactive)),), np.zeros(rows, np.intp))

    @classmethod
    def of_runs(cls, runs: Sequence[tuple[int, Sequence[str], bool]]):
        """Consecutive runs of rows (count, galleries, inactive): one per
        event, each event's templates sharing its galleries."""
        sets: dict[tuple[tuple[str, ...], bool], int] = {}
        idx = [sets.setdefault((clean(g), bool(i)), len(sets)) for _, g, i in runs]
        counts = np.fromiter((c for c, _, _ in runs), np.intp, len(runs))
        return cls(tuple(sets), np.repeat(np.asarray(idx, np.intp), counts))

    def take(self, rows: np.ndarray) -> Memberships:
        return Memberships(self.sets, self.row_set[rows])

    @property
    def trivial(self) -> bool:
        """Only "ALL" and active: nothing to record."""
        return all(not g and not i for g, i in self.sets)


class PackedBits:
    """A bitmap of n bits, packed LSB-first, grown by doubling; bits past n
    are always 0."""

    def __init__(self, n: int = 0, packed: np.ndarray | None = None) -> None:
        nbytes = (n + 7) // 8
        self._buf = np.zeros(max(16, nbytes), np.uint8)
        if packed is not None:
            self._buf[:nbytes] = np.asarray(packed, np.uint8)[:nbytes]
            if n % 8:
                self._buf[nbytes - 1] &= (1 << (n % 8)) - 1
        self.n = n

    @property
    def packed(self) -> np.ndarray:
        """The bytes holding the n bits (a view)."""
        return self._buf[: (self.n + 7) // 8]

    def count(self) -> int:
        return int(np.bitwise_count(self.packed).sum(dtype=np.int64))

    def grow(self, rows: int) -> None:
        """Adds ``rows`` positions, all 0."""
        need = (self.n + rows + 7) // 8
        if need > len(self._buf):
            buf = np.zeros(max(need, 2 * len(self._buf)), np.uint8)
            buf[: len(self._buf)] = self._buf
            self._buf = buf
        self.n += rows

    def get(self, positions: np.ndarray) -> np.ndarray:
        p = np.asarray(positions, np.int64)
        return ((self._buf[p >> 3] >> (p & 7).astype(np.uint8)) & 1).astype(bool)

    def set(self, positions: np.ndarray, value: bool) -> None:
        p = np.asarray(positions, np.int64)
        if not len(p):
            return
        bit = np.left_shift(1, p & 7).astype(np.uint8)
        if value:
            np.bitwise_or.at(self._buf, p >> 3, bit)
        else:
            np.bitwise_and.at(self._buf, p >> 3, ~bit)

    def bools(self) -> np.ndarray:
        return np.unpackbits(self.packed, count=self.n, bitorder="little").astype(bool)

    def delete(self, positions: np.ndarray) -> None:
        """Drops positions (later ones move up)."""
        keep = np.ones(self.n, bool)
        keep[positions] = False
        bits = self.bools()[keep]
        self._buf[:] = 0
        self.n = len(bits)
        self._buf[: (self.n + 7) // 8] = np.packbits(bits, bitorder="little")


class Galleries:
    """Per-position gallery bits and inactive flag, kept in step with the
    index's positions (``grow`` on add, ``delete`` on remove)."""

    def __init__(self, n: int = 0) -> None:
        self.n = n
        self._slot: dict[str, int] = {}  # gallery name → slot
        self._bits: list[PackedBits | None] = []  # per slot (None: free)
        self._members: list[int] = []  # per slot: positions in the gallery
        self._inactive = PackedBits(n)
        self.inactive_count = 0

    # --- what searches read -------------------------------------------------

    @property
    def names(self) -> list[str]:
        return sorted(self._slot)

    def members(self, gallery: str) -> int:
        """Positions in ``gallery`` (active or not); "ALL"/"": all of them."""
        if gallery in ("", ALL):
            return self.n
        s = self._slot.get(gallery)
        return 0 if s is None else self._members[s]

    def allowed(self, gallery: str) -> tuple[np.ndarray | None, int]:
        """(packed bitmap of the positions a search of ``gallery`` may return,
        how many) — the gallery's active members; bitmap None when every
        position is allowed (no mask work), and a gallery never seen allows
        none."""
        if gallery in ("", ALL):
            if not self.inactive_count:
                return None, self.n
            bits = ~self._inactive.packed
            if self.n % 8:
                bits[-1] &= (1 << (self.n % 8)) - 1
            return bits, self.n - self.inactive_count
        s = self._slot.get(gallery)
        if s is None or not self._members[s]:
            return np.zeros((self.n + 7) // 8, np.uint8), 0
        bits = self._bits[s].packed
        bits = bits & ~self._inactive.packed if self.inactive_count else bits.copy()
        return bits, int(np.bitwise_count(bits).sum(dtype=np.int64))

    def galleries_at(self, position: int) -> list[str]:
        """The named galleries of one position (for inspection and tests)."""
        p = np.array([position])
        return sorted(n for n, s in self._slot.items() if self._bits[s].get(p)[0])

    def inactive_at(self, positions: np.ndarray) -> np.ndarray:
        return self._inactive.get(positions)

    # --- changes --------------------------------------------------------------

    def grow(self, rows: int, memberships: Memberships | None = None) -> None:
        """Appends ``rows`` positions with their memberships (None: ALL, active)."""
        first = self.n
        self.n += rows
        self._inactive.grow(rows)
        for b in self._bits:
            if b is not None:
                b.grow(rows)
        if memberships is not None and not memberships.trivial:
            self._assign(first + np.arange(rows, dtype=np.int64), memberships, fresh=True)

    def update(self, positions: np.ndarray, memberships: Memberships) -> None:
        """Gives existing positions (distinct) their new full gallery sets and flags."""
        if len(positions):
            self._assign(np.asarray(positions, np.int64), memberships, fresh=False)

    def _assign(self, pos: np.ndarray, m: Memberships, fresh: bool) -> None:
        if not fresh:  # clear what they had: one vectorised pass per slot holding any of them
            for s, b in enumerate(self._bits):
                if b is not None and self._members[s]:
                    had = b.get(pos)
                    if had.any():
                        b.set(pos[had], False)
                        self._members[s] -= int(had.sum())
            was = self._inactive.get(pos)
            self._inactive.set(pos[was], False)
            self.inactive_count -= int(was.sum())
        for i, (names, inactive) in enumerate(m.sets):
            rows = pos[m.row_set == i]
            if not len(rows):
                continue
            if inactive:
                self._inactive.set(rows, True)
                self.inactive_count += len(rows)
            for name in names:
                s = self._slot_for(name)
                if s is None:
                    continue
                self._bits[s].set(rows, True)
                self._members[s] += len(rows)

    def _slot_for(self, name: str) -> int | None:
        s = self._slot.get(name)
        if s is not None:
            return s
        free = [i for i, b in enumerate(self._bits) if b is None or not self._members[i]]
        if free:
            s = free[0]
            stale = [n for n, i in self._slot.items() if i == s]
            for n in stale:  # an emptied gallery's slot is reused
                del self._slot[n]
            self._bits[s] = PackedBits(self.n)
            self._members[s] = 0
        elif len(self._bits) < MAX_GALLERIES:
            s = len(self._bits)
            self._bits.append(PackedBits(self.n))
            self._members.append(0)
        else:
            log.error("gallery_limit_reached", limit=MAX_GALLERIES)
            return None
        self._slot[name] = s
        return s

    def delete(self, positions: np.ndarray) -> None:
        """Drops positions (later ones move up, as in the index)."""
        pos = np.unique(np.asarray(positions, np.int64))
        if not len(pos):
            return
        for s, b in enumerate(self._bits):
            if b is None:
                continue
            if self._members[s]:
                self._members[s] -= int(b.get(pos).sum())
                b.delete(pos)
            else:
                b.n -= len(pos)
                b.packed[:] = 0
        if self.inactive_count:
            self.inactive_count -= int(self._inactive.get(pos).sum())
            self._inactive.delete(pos)
        else:
            self._inactive.n -= len(pos)
        self.n -= len(pos)

    # --- snapshots -----------------------------------------------------------

    def arrays(self) -> tuple[list[str], np.ndarray, np.ndarray]:
        """(gallery names, their packed bitmaps (galleries x bytes), the
        packed inactive bitmap): copies, non-empty galleries only."""
        names = [n for n in self.names if self._members[self._slot[n]]]
        nbytes = (self.n + 7) // 8
        bits = np.zeros((len(names), nbytes), np.uint8)
        for i, n in enumerate(names):
            bits[i] = self._bits[self._slot[n]].packed
        return names, bits, self._inactive.packed.copy()

    @classmethod
    def from_arrays(cls, n: int, names: Sequence[str], bits: np.ndarray, inactive: np.ndarray):
        """Restores ``arrays()`` output (names assumed checked by the reader)."""
        g = cls(n)
        g._inactive = PackedBits(n, inactive)
        g.inactive_count = g._inactive.count()
        for i, name in enumerate(names[:MAX_GALLERIES]):
            b = PackedBits(n, bits[i])
            g._slot[name] = len(g._bits)
            g._bits.append(b)
            g._members.append(b.count())
        return g

    def memory_bytes(self) -> int:
        return sum(len(b._buf) for b in self._bits if b is not None) + len(self._inactive._buf)
