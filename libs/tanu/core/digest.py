"""Reconciliation digests of sets of template ids: order-independent and
incremental (count, XOR and sum mod 2^64 of a 64-bit mix of each id), so
the store and every searcher replica compare what they hold per partition
and per id range without sending id lists (``tanu reconcile``)."""

from __future__ import annotations

import numpy as np

from tanu.v1 import common_pb2

MAX_LIST = 1000  # the most ids one range may list
MAX_RANGES = 256  # ranges per request
TOP = 2**63 - 1  # the exclusive upper bound of "no upper bound"


def mix(ids: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser of each id (uint64), vectorised."""
    z = np.asarray(ids, dtype=np.int64).astype(np.uint64)
    with np.errstate(over="ignore"):
        z = z + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def check_request(req: common_pb2.DigestRequest) -> list[tuple[int, int]]:
    """The request's ranges as (lo, hi) with hi exclusive; raises on bad input."""
    from tanu.core import errors

    if len(req.ranges) > MAX_RANGES:
        raise errors.InvalidArgument(f"at most {MAX_RANGES} ranges per digest request")
    if req.list_below > MAX_LIST:
        raise errors.InvalidArgument(f"list_below is at most {MAX_LIST}")
    out = [(r.lo, r.hi or TOP) for r in req.ranges] or [(0, TOP)]
    for lo, hi in out:
        if lo < 0 or hi <= lo:
            raise errors.InvalidArgument(f"bad id range [{lo}, {hi})")
    return out


def ranges(ids: np.ndarray, bounds: list[tuple[int, int]], list_below: int) -> list:
    """The RangeDigest of each range over the sorted int64 ``ids``."""
    ids = np.sort(np.asarray(ids, dtype=np.int64))
    out = []
    for lo, hi in bounds:
        a, b = np.searchsorted(ids, lo), np.searchsorted(ids, hi)
        part = ids[a:b]
        m = mix(part)
        xor = int(np.bitwise_xor.reduce(m)) if len(m) else 0
        total = int(m.sum(dtype=np.uint64)) if len(m) else 0
        listed = part.tolist() if 0 < len(part) <= list_below else []
        out.append(common_pb2.RangeDigest(lo=lo, hi=hi, count=len(part), xor=xor, sum=total,
                                          template_ids=listed,
                                          max_id=int(part[-1]) if len(part) else 0))  # fmt: skip
    return out


def same(a: common_pb2.RangeDigest, b: common_pb2.RangeDigest) -> bool:
    return (a.count, a.xor, a.sum) == (b.count, b.xor, b.sum)


def split(lo: int, hi: int, parts: int = 16) -> list[tuple[int, int]]:
    """``[lo, hi)`` cut into up to ``parts`` ranges."""
    step = max(1, -(-(hi - lo) // parts))
    return [(a, min(a + step, hi)) for a in range(lo, hi, step)]
