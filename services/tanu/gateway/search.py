"""1:N search over every partition: concurrent searches are micro-batched,
so one scatter to the partitions carries many queries and each searcher
runs one FAISS call for all of them; the partitions' candidates are merged
best first.

Two lanes, each its own micro-batcher with its own scatters in flight:
interactive searches (Identify, searches of a stored person) and bulk ones
(``bulk``: enrolment de-duplication, marked so in the request, which the
searchers batch apart too). A wave of enrolments then never holds an
Identify behind its scatter, nor makes it ride in a batch of hundreds.
"""

from __future__ import annotations

import asyncio
import functools

import numpy as np

from tanu.clients.search import SearchClient
from tanu.core import errors, logs, vectors
from tanu.core.batching import MicroBatcher
from tanu.core.config import GatewayConfig
from tanu.core.metrics import Metrics
from tanu.v1 import common_pb2, searcher_pb2

from .freshness import Freshness
from .layout_watch import LayoutWatch

log = logs.get(__name__)

# ~40 bytes a candidate on the wire: 16,384 of them stay far below 1 MiB.
MAX_CANDIDATES_PER_SCATTER = 16_384


class SearchResult:
    """Merged candidates of one query across the partitions that answered."""

    __slots__ = ("candidates", "missing", "gallery_size", "applied")

    def __init__(
        self,
        candidates: list[common_pb2.Candidate],
        missing: list[int],
        gallery_size: int,
        applied: dict[int, int] | None = None,
    ) -> None:
        self.candidates = candidates
        self.missing = missing
        self.gallery_size = gallery_size
        # Per partition that answered, the stream sequence its searcher had
        # applied (the store's de-duplication window: ``tanu.store.dedup``).
        self.applied = applied or {}


class Search:
    """The gallery search of a gateway: refused while the layout watch
    reports a problem."""

    def __init__(
        self,
        searchers: SearchClient,
        config: GatewayConfig,
        metrics: Metrics,
        watch: LayoutWatch,
        freshness: Freshness | None = None,
    ) -> None:
        self.config = config
        self.layout = config.common.layout
        self.metrics = metrics
        self._searchers = searchers
        self._watch = watch
        self._freshness = freshness
        self._lanes = {
            bulk: MicroBatcher(
                functools.partial(self._search_batch, bulk=bulk),
                name="dedup" if bulk else "identify",
                max_batch=config.batch_max,
                max_wait_s=config.batch_wait_ms / 1000,
                max_in_flight=config.batch_in_flight,
                metrics=metrics,
            )
            for bulk in (False, True)
        }

    async def close(self) -> None:
        for lane in self._lanes.values():
            await lane.close()

    def top_k(self, requested: int) -> int:
        """The number of candidates to return for a request's ``top_k``
        (0: the configured default); InvalidArgument past the maximum."""
        if requested == 0:
            return self.config.default_top_k
        if requested > self.config.max_top_k:
            raise errors.InvalidArgument(
                f"top_k is {requested}; the most allowed is {self.config.max_top_k}"
            )
        return requested

    async def find(
        self, probe: np.ndarray, top_k: int, gallery: str = "", bulk: bool = False
    ) -> SearchResult:
        """Searches every partition (micro-batched with concurrent searches
        of its lane: ``bulk`` for enrolment de-duplication), in one gallery
        ("": every active template)."""
        if self._watch.problem:
            raise errors.Unavailable(self._watch.problem)
        return await self._lanes[bulk].submit((probe, top_k, gallery))

    async def _search_batch(
        self, items: list[tuple[np.ndarray, int, str]], bulk: bool
    ) -> list[SearchResult]:
        # One scatter searches one gallery: a batch of several is split by gallery.
        if len({g for *_, g in items}) > 1:
            order = sorted(range(len(items)), key=lambda i: items[i][2])
            groups: dict[str, list[int]] = {}
            for i in order:
                groups.setdefault(items[i][2], []).append(i)
            parts = await asyncio.gather(
                *(self._search_batch([items[i] for i in g], bulk) for g in groups.values())
            )
            out: list[SearchResult | None] = [None] * len(items)
            for g, res in zip(groups.values(), parts, strict=True):
                for i, r in zip(g, res, strict=True):
                    out[i] = r
            return out  # type: ignore[return-value]
        # Every query of one scatter shares the largest top_k; keep each
        # partition's reply (queries x top_k candidates) well inside the NATS
        # message limit by splitting a batch that would exceed the budget.
        k = max(it[1] for it in items)
        per_scatter = max(1, MAX_CANDIDATES_PER_SCATTER // k)
        if len(items) > per_scatter:
            chunks = await asyncio.gather(
                *(
                    self._search_batch(items[i : i + per_scatter], bulk)
                    for i in range(0, len(items), per_scatter)
                )
            )
            return [r for chunk in chunks for r in chunk]
        lay = self.layout
        req = searcher_pb2.SearchRequest(
            queries=vectors.to_bytes(np.concatenate([it[0] for it in items], axis=0)),
            count=len(items),
            top_k=k,
            model_id=lay.model_id,
            gallery=items[0][2],
            bulk=bulk,
        )
        parts = list(range(lay.partitions))
        fresh = self._freshness
        marks = asyncio.create_task(fresh.marks(parts)) if fresh else None
        replies = await self._searchers.scatter(req, parts)
        if fresh and marks:  # read-your-writes: no partition behind an acknowledged write
            replies = await fresh.settle(replies, parts, await marks,
                                         lambda ps: self._searchers.scatter(req, ps))  # fmt: skip
        ok = [r for r in replies if isinstance(r, searcher_pb2.SearchResponse)]
        missing = [
            p
            for p, r in zip(parts, replies, strict=True)
            if not isinstance(r, searcher_pb2.SearchResponse)
        ]
        if missing:
            self.metrics.search_partial.inc()
            for p, r in zip(parts, replies, strict=True):
                if isinstance(r, errors.TanuError):
                    log.warning("partition_missing", partition=p, reason=r.message)
        size = sum(r.gallery_size for r in ok)
        applied = {p: r.applied_sequence for p, r in zip(parts, replies, strict=True)
                   if isinstance(r, searcher_pb2.SearchResponse)}  # fmt: skip
        reverse = vectors.best_first(lay.metric)
        out = []
        for i, (_, kk, _g) in enumerate(items):
            cands = [c for r in ok for c in r.results[i].candidates]
            cands.sort(key=lambda c: c.score, reverse=reverse)
            out.append(SearchResult(cands[:kk], missing, size, applied))
        return out
