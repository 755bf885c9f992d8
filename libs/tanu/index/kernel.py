"""Exact batched top-k over a gallery matrix, faster than FAISS's flat scan
on the CPU for batches of queries.

FAISS's exact search keeps a heap per query and pushes every score through
it; at batch 256 its top-k reduction, not the matrix product, dominates
(about 6% of the machine's matmul peak here). This kernel lets BLAS do the
product in large blocks and then selects with a threshold: after the first
block, each query's k-th best score so far is known, and only the scores
above it (a few per block) are merged into the running top-k. The merge is
vectorised across every query (one lexsort over the candidates), so no
Python loop runs per query or per gallery row.

Scores are exact: inner products (cosine on unit vectors) or squared L2
distances computed as ``|q|² + |x|² - 2 q·x`` (with the gallery's squared
norms given by the caller), so they agree with FAISS within float rounding.
Ties are broken towards the lower gallery position, so a result is
deterministic. A float16 gallery is converted block by block to float32
(``widen``): by integer bit operations, about 5x faster than numpy's cast
on this machine, and exact for every finite half.

A search restricted to some rows (a gallery's active members: ``allowed``)
competes exactly those rows: when they are a small share of the gallery
(under ``GATHER_SHARE``) only they are gathered, block by block, and
scored; otherwise every block is scored, and the excluded rows are dropped
from the few candidates that pass the threshold (and set to -inf before a
block's own k-th best is taken), so they never enter the top-k.
"""

from __future__ import annotations

import numpy as np

# Gallery rows per matrix product: large enough for BLAS to run near its
# peak, small enough that a block of scores (rows x queries) stays in cache
# levels that matter (at batch 256 over 1M x 128: 8,192 rows 116 GFLOP/s,
# 16,384 rows 105). A block that is written first (widened from halves, or
# gathered) is smaller still, so that the product reads it from cache
# (fp16: 4,096 rows 111 GFLOP/s, 16,384 rows 94). The first block is
# smaller, so the first threshold is set cheaply.
BLOCK_ROWS = 8_192
WRITTEN_BLOCK_ROWS = 4_096
FIRST_BLOCK_ROWS = 4_096  # at most the two above
# From this many queries a call the kernel beats FAISS's own scan, per
# index kind (benchmarks/search/exact_kernel.py, benchmarks/RESULTS.md): on
# fp32 at every batch size; on fp16, whose gallery is widened block by block
# while FAISS computes on halves directly, from about 64 (1.2x there, 0.55x
# at 16).
MIN_BATCH = {"flat": 1, "fp16": 64}
# The same for searches restricted to a gallery (``allowed``), where FAISS
# with a bitmap selector scores only the members in place, while the kernel
# gathers their rows first (benchmarks/search/galleries.py, 1M x 128, a 10%
# gallery: FAISS 4-5x faster at batch 1, the kernel 1.1-1.3x at 16).
MIN_BATCH_RESTRICTED = {"flat": 8, "fp16": 8}
# Above this share of a block passing the threshold (adversarial or sorted
# galleries), the block is reduced by a partition instead of a merge.
MAX_PASS_SHARE = 1 / 16
# Below this share of allowed rows, a restricted search gathers them (less
# work than scoring every row); from it, it scores every row and masks.
GATHER_SHARE = 0.5


def topk(
    gallery: np.ndarray,
    queries: np.ndarray,
    k: int,
    metric: str,
    sq_norms: np.ndarray | None = None,
    allowed: np.ndarray | None = None,
    finite_halves: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """The k best gallery rows for each query: (scores, positions), best
    first; positions are row indices of ``gallery`` (-1 where the gallery has
    fewer than k rows). ``metric`` "l2" returns squared distances (ascending)
    and needs ``sq_norms`` (the gallery rows' squared norms); "ip" returns
    inner products (descending). ``allowed`` (a bool per row), when given,
    restricts the search to those rows. ``finite_halves``: a float16
    gallery is known to hold no infinity or NaN (``widen``'s fast path)."""
    n, d = gallery.shape
    q = np.ascontiguousarray(queries, dtype=np.float32)
    nq = len(q)
    rows_in = None  # the allowed rows, when gathered
    keep = None  # the allowed rows, when masked
    members = n
    if allowed is not None:
        allowed = np.asarray(allowed, bool)
        members = int(np.count_nonzero(allowed))
        if members < GATHER_SHARE * n:
            rows_in = np.flatnonzero(allowed)
        elif members < n:
            keep = allowed
    k_eff = min(k, members)
    best_v = np.full((nq, k), -np.inf, np.float32)  # internal: higher is better
    best_p = np.full((nq, k), -1, np.int64)
    if members and k_eff:
        l2 = metric == "l2"
        if l2 and sq_norms is None:
            raise ValueError("the l2 metric needs the gallery's squared norms")
        qm = 2 * q if l2 else q
        total = n if rows_in is None else len(rows_in)
        start = 0
        size = FIRST_BLOCK_ROWS
        # A half-precision or gathered block is written into one buffer.
        written = gallery.dtype != np.float32 or rows_in is not None
        block_rows = min(BLOCK_ROWS, WRITTEN_BLOCK_ROWS) if written else BLOCK_ROWS
        wide = np.empty((max(block_rows, size), d), np.float32) if written else None
        # The products are written into one buffer too: a fresh score block
        # each time would cost the kernel page faults on every block.
        products = np.empty(nq * min(max(block_rows, size), total), np.float32)
        while start < total:
            stop = min(total, start + size)
            if rows_in is None:
                block, where = gallery[start:stop], start
                if wide is not None:
                    block = wide[: stop - start]
                    widen(gallery[start:stop], block, finite_halves)
                norms = sq_norms[start:stop] if l2 else None
            else:
                where = rows_in[start:stop]
                block = wide[: stop - start]
                if gallery.dtype == np.float32:
                    np.take(gallery, where, axis=0, out=block)
                else:
                    widen(gallery[where], block, finite_halves)
                norms = sq_norms[where] if l2 else None
            s = products[: nq * len(block)].reshape(nq, len(block))  # C-contiguous
            np.matmul(qm, block.T, out=s)  # 2 q·x for l2, q·x for ip
            if not finite_halves and gallery.dtype == np.float16:
                # An infinite half (a template past ±65504) makes NaN
                # scores, which would poison a block's k-th best: last.
                with np.errstate(invalid="ignore"):
                    if l2:
                        s -= norms
                s[np.isnan(s)] = -np.inf
            elif l2:
                s -= norms  # 2 q·x - |x|²: higher is closer
            _reduce(s, where, best_v, best_p, k_eff, None if keep is None else keep[start:stop])
            start, size = stop, block_rows
    scores = best_v
    if metric == "l2":
        scores = np.einsum("ij,ij->i", q, q)[:, None] - best_v
        scores[best_p < 0] = np.inf
        np.maximum(scores, 0, out=scores)
    else:
        scores = best_v.copy()
        scores[best_p < 0] = -np.inf
    return scores.astype(np.float32, copy=False), best_p


# (sign, exponent, mantissa) of a half moved to a float32's bit positions
# (sign-extended int16 shifted left by 13, bits 28-30 cleared) read as a
# float32 is the half's value times 2^-112, subnormals included; one
# multiply restores the scale.
_SIGN_AND_HALF_BITS = np.int32(-0x70000001)  # 0x8FFFFFFF
_HALF_SCALE = np.float32(2.0**112)
# Rows widened per pass: the intermediate stays in the core's cache.
_WIDEN_ROWS = 4_096


def widen(src: np.ndarray, out: np.ndarray, finite: bool = False) -> None:
    """Writes the float16 rows ``src`` into the float32 rows ``out`` (same
    shape; any float32 ``src`` is copied). With ``finite`` (the caller
    knows ``src`` holds no infinity or NaN) by bit operations, exact for
    every finite half, subnormals and signed zeros included; otherwise by
    numpy's cast, which also carries infinities and NaNs."""
    if src.dtype != np.float16 or not finite:
        np.copyto(out, src)
        return
    bits = out.view(np.int32)
    halves = src.view(np.int16)
    for a in range(0, len(src), _WIDEN_ROWS):
        o = bits[a : a + _WIDEN_ROWS]
        np.copyto(o, halves[a : a + _WIDEN_ROWS])  # sign-extends
        np.left_shift(o, 13, out=o)
        np.bitwise_and(o, _SIGN_AND_HALF_BITS, out=o)
        f = out[a : a + _WIDEN_ROWS]
        np.multiply(f, _HALF_SCALE, out=f)


def _reduce(
    s: np.ndarray,
    where: int | np.ndarray,
    best_v: np.ndarray,
    best_p: np.ndarray,
    k: int,
    keep: np.ndarray | None = None,
) -> None:
    """Merges one block's scores ``s`` (queries x rows, C-contiguous) into
    the running top-k, in place; ``where``: the block's first gallery row,
    or the gallery row of each of its columns (a gathered block); ``keep``:
    which columns may enter (None: all)."""
    nq, rows = s.shape
    thr = best_v[:, k - 1]
    flat = np.flatnonzero(s > thr[:, None])
    if not len(flat):
        return
    if len(flat) > MAX_PASS_SHARE * nq * rows:
        # Many pass (the first block, or an adversarial order): raise each
        # query's bar to the block's own k-th best first. Scores equal to
        # that bar all stay candidates, so the merge can prefer the lower
        # positions among ties.
        if keep is not None:  # excluded rows must not set the bar
            s[:, ~keep] = -np.inf
            keep = None
        kk = min(k, rows)
        kth = np.partition(s, rows - kk, axis=1)[:, rows - kk]
        flat = np.flatnonzero(s >= np.maximum(kth, np.nextafter(thr, np.float32(np.inf)))[:, None])
    r, c = np.divmod(flat, rows)
    if keep is not None:
        ok = keep[c]
        flat, r, c = flat[ok], r[ok], c[ok]
        if not len(flat):
            return
    _merge(best_v, best_p, r, s.ravel()[flat], c + where if isinstance(where, int) else where[c])


def _merge(
    best_v: np.ndarray, best_p: np.ndarray, r: np.ndarray, v: np.ndarray, p: np.ndarray
) -> None:
    """Merges candidates (query row ``r``, score ``v``, position ``p``) with
    the current top-k of their queries: best score first, then lower position."""
    kk = best_v.shape[1]
    touched = np.unique(r)
    cur_r = np.repeat(touched, kk)
    all_r = np.concatenate([cur_r, r])
    all_v = np.concatenate([best_v[touched].ravel(), v.astype(np.float32, copy=False)])
    all_p = np.concatenate([best_p[touched].ravel(), p])
    # Empty slots (-inf, -1) sort last among equal scores via the position key.
    pos_key = np.where(all_p < 0, np.iinfo(np.int64).max, all_p)
    order = np.lexsort((pos_key, -all_v, all_r))
    all_r, all_v, all_p = all_r[order], all_v[order], all_p[order]
    starts = np.searchsorted(all_r, touched)
    rank = np.arange(len(all_r)) - np.repeat(starts, np.diff(np.append(starts, len(all_r))))
    keep = rank < kk
    rows = all_r[keep]
    cols = rank[keep]
    best_v[rows, cols] = all_v[keep]
    best_p[rows, cols] = all_p[keep]
