"""Answering a partition's searches: requests are checked, and concurrent
ones are micro-batched into one FAISS call per gallery on the index thread
(the gallery restriction happens inside the index search).

Two lanes, each its own batcher with one batch at a time on the index
thread: interactive searches and bulk ones (``SearchRequest.bulk``:
enrolment de-duplication). The index thread takes jobs in order, so an
interactive search waits for at most the one bulk search running, not for
the bulk queue behind it, and is never batched with hundreds of bulk
queries. With ``TANU_SEARCH_BULK_CHUNK`` a bulk batch goes to the thread a
chunk of queries at a time, and an interactive search waits for at most
one chunk (at the cost of smaller, slower bulk searches)."""

from __future__ import annotations

import functools
import time
from collections.abc import Awaitable, Callable

import numpy as np

from tanu.core import errors
from tanu.core.batching import MicroBatcher
from tanu.core.config import SearcherConfig
from tanu.core.metrics import Metrics
from tanu.index import PartitionIndex
from tanu.index.galleries import ALL, is_name
from tanu.v1 import searcher_pb2

MAX_TOP_K = 2048
MAX_QUERIES = 4096


class Searches:
    """Checks search requests and runs them, batched, against the index."""

    def __init__(
        self,
        config: SearcherConfig,
        index: PartitionIndex,
        in_index_thread: Callable[..., Awaitable],
        applied_sequence: Callable[[], int],
        metrics: Metrics,
    ) -> None:
        self.config = config
        self.layout = config.common.layout
        self._index = index
        self._in_index_thread = in_index_thread
        self._applied_sequence = applied_sequence  # reported with each answer
        self._metrics = metrics
        self._lanes = {
            bulk: MicroBatcher(
                functools.partial(
                    self._search_batch, chunk=max(0, config.bulk_chunk) if bulk else 0
                ),
                name=f"search-{'bulk-' if bulk else ''}p{config.partition}",
                max_batch=config.batch_max,
                max_wait_s=config.batch_wait_ms / 1000,
                metrics=metrics,
            )
            for bulk in (False, True)
        }

    async def close(self) -> None:
        """Answers what is queued and takes no more."""
        for lane in self._lanes.values():
            await lane.close()

    async def search(self, req: searcher_pb2.SearchRequest) -> searcher_pb2.SearchResponse:
        lay = self.layout
        if req.model_id and req.model_id != lay.model_id:
            raise errors.InvalidArgument(
                f"queries are {req.model_id!r} templates; partition holds {lay.model_id!r} templates"
            )
        if not 1 <= req.count <= MAX_QUERIES:
            raise errors.InvalidArgument(f"count must be 1..{MAX_QUERIES}, got {req.count}")
        if len(req.queries) != req.count * lay.dimension * 4:
            raise errors.InvalidArgument(
                f"queries are {len(req.queries)} bytes; {req.count} x {lay.dimension} float32 needs "
                f"{req.count * lay.dimension * 4}"
            )
        if not 1 <= req.top_k <= MAX_TOP_K:
            raise errors.InvalidArgument(f"top_k must be 1..{MAX_TOP_K}, got {req.top_k}")
        if req.gallery and not is_name(req.gallery):
            raise errors.InvalidArgument(
                "gallery must be 1-64 characters of letters, digits, '_', '.' or '-'"
            )
        q = np.frombuffer(req.queries, dtype="<f4").reshape(req.count, lay.dimension)
        if not np.isfinite(q).all():
            raise errors.InvalidArgument("queries contain NaN or infinity")
        gallery = "" if req.gallery == ALL else req.gallery
        # Read before searching: every event up to it is in the index searched
        # (one applied meanwhile may or may not be, so it is not claimed).
        applied = self._applied_sequence()
        lane = self._lanes[req.bulk]
        scores, subs, size = await lane.submit((q, int(req.top_k), gallery))
        part = self.config.partition
        reply = searcher_pb2.SearchResponse(
            partition=part, gallery_size=size, applied_sequence=applied
        )
        for row_scores, row_subs in zip(scores.tolist(), subs, strict=True):
            hits = reply.results.add()
            seen: set[str] = set()
            for s, sid in zip(row_scores, row_subs, strict=False):
                if sid in seen:  # another template of a listed subject
                    continue
                seen.add(sid)
                hits.candidates.add(subject_id=sid, score=s, partition=part)
        return reply

    async def _search_batch(self, items: list[tuple[np.ndarray, int, str]], chunk: int = 0):
        # one index search per gallery in the batch
        by_gallery: dict[str, list[int]] = {}
        for i, (_, _, g) in enumerate(items):
            by_gallery.setdefault(g, []).append(i)
        jobs = [
            (np.concatenate([items[i][0] for i in idx], axis=0), max(items[i][1] for i in idx), g)
            for g, idx in by_gallery.items()
        ]
        start = time.perf_counter()
        if chunk:
            results, size = await self._in_chunks(jobs, chunk)
        else:
            results, size = await self._in_index_thread(self._run_searches, jobs)
        self._metrics.faiss_search_duration.labels(str(self.config.partition)).observe(
            time.perf_counter() - start
        )
        out: list = [None] * len(items)
        for idx, (scores, subs) in zip(by_gallery.values(), results, strict=True):
            row = 0
            for i in idx:
                n, kk = len(items[i][0]), items[i][1]
                out[i] = (scores[row : row + n, :kk], [r[:kk] for r in subs[row : row + n]], size)
                row += n
        return out

    async def _in_chunks(self, jobs: list[tuple[np.ndarray, int, str]], chunk: int):
        """``_run_searches`` a chunk of queries at a time, each chunk its own
        turn on the index thread: an interactive search sent meanwhile runs
        between two chunks, not after the whole bulk batch (TANU_SEARCH_BULK_CHUNK)."""
        results, size = [], 0
        for queries, k, gallery in jobs:
            parts = []
            for a in range(0, len(queries), chunk):
                (part,), size = await self._in_index_thread(
                    self._run_searches, [(queries[a : a + chunk], k, gallery)]
                )
                parts.append(part)
            width = min(p[0].shape[1] for p in parts)  # (0 while the partition was empty)
            results.append((np.concatenate([p[0][:, :width] for p in parts], axis=0),
                            [r for p in parts for r in p[1]]))  # fmt: skip
        return results, size

    def _run_searches(self, jobs: list[tuple[np.ndarray, int, str]]):
        """Scores and subject ids of each (queries, k, gallery), mapped in
        the same cut as the searches, and the partition's size."""
        index = self._index
        if len(index) == 0:
            empty = [(np.zeros((len(q), 0), np.float32), [[] for _ in q]) for q, _, _ in jobs]
            return empty, 0
        out = []
        for queries, k, gallery in jobs:
            scores, _, subs = index.search_subjects(queries, k, gallery)
            out.append((scores, subs))
        return out, len(index)
