"""The typed client of the partitions' searchers over NATS: one query batch
to every partition at once, one partition alone, and the erasure
confirmations that every replica of a partition gives."""

from __future__ import annotations

import asyncio

from google.protobuf.message import DecodeError
from nats.aio.client import Client as NATS

from tanu.core import bus, errors, natsnames
from tanu.core.metrics import Metrics
from tanu.v1 import common_pb2, searcher_pb2

# A partition with no subscriber at the moment of a search is asked once
# more after this pause: a searcher that has just said SERVING can still be
# missed for a few milliseconds (its subscription not yet known to the
# server that routes the request). A search is read-only, so asking again
# is always safe.
NO_RESPONDERS_RETRY_S = 0.025


class SearchClient:
    """Searches (``tanu.search.p<N>``, one replica of each partition answers)
    and erasure checks and digests (``tanu.erasure.check.n<P>.p<N>``,
    ``tanu.searcher.digest.n<P>.p<N>``: every replica answers)."""

    def __init__(
        self,
        nc: NATS,
        timeout_s: float,
        metrics: Metrics | None = None,
        retry_pause_s: float = NO_RESPONDERS_RETRY_S,
    ) -> None:
        self._nc = nc
        self.timeout_s = timeout_s  # the wait for one partition's search reply
        self._metrics = metrics
        self.retry_pause_s = retry_pause_s

    async def scatter(
        self,
        request: searcher_pb2.SearchRequest,
        partitions: list[int],
        *,
        gallery: str | None = None,
    ) -> list[searcher_pb2.SearchResponse | errors.TanuError]:
        """Sends one request to every partition at once; each partition's
        entry is its reply or the typed error of its failure or silence.
        ``gallery`` (when given) restricts the search to that gallery's
        active templates ("ALL" or "": every active template). A partition
        that nobody answered for is asked once more after ``retry_pause_s``."""
        request = _with_gallery(request, gallery)
        replies = await self._scatter(request, partitions)
        again = [i for i, r in enumerate(replies) if isinstance(r, bus.NoResponders)]
        if again:
            await asyncio.sleep(self.retry_pause_s)
            retried = await self._scatter(request, [partitions[i] for i in again])
            for i, r in zip(again, retried, strict=True):
                replies[i] = r
        return replies

    async def _scatter(
        self, request: searcher_pb2.SearchRequest, partitions: list[int]
    ) -> list[searcher_pb2.SearchResponse | errors.TanuError]:
        return await bus.scatter(
            self._nc, [natsnames.search(p) for p in partitions], request,
            searcher_pb2.SearchResponse, self.timeout_s,
            operation="search", metrics=self._metrics,
        )  # fmt: skip

    async def search(
        self,
        partition: int,
        request: searcher_pb2.SearchRequest,
        timeout: float,
        *,
        gallery: str | None = None,
    ) -> searcher_pb2.SearchResponse:
        """Searches one partition (in ``gallery``, when given), raising its typed error."""
        request = _with_gallery(request, gallery)
        return await bus.request(
            self._nc, natsnames.search(partition), request, searcher_pb2.SearchResponse,
            timeout, operation="search", metrics=self._metrics,
        )  # fmt: skip

    async def erasure_confirmations(
        self,
        partitions: int,
        partition: int,
        template_ids: list[int],
        window_s: float,
        expect: int = 0,
    ) -> list[searcher_pb2.ErasureCheckResponse]:
        """Every reply that the replicas of ``partition`` of the
        ``partitions``-partition layout send within ``window_s`` (or until
        ``expect`` have answered) to the question of which of
        ``template_ids`` each still holds (replicas of any other layout,
        staging or retired, are not asked)."""
        payload = searcher_pb2.ErasureCheckRequest(
            template_ids=template_ids, partitions=partitions
        ).SerializeToString()
        out: list[searcher_pb2.ErasureCheckResponse] = []
        enough = asyncio.Event()

        async def on_reply(msg) -> None:
            if (msg.headers or {}).get(bus.ERROR_CODE):
                return
            try:
                r = searcher_pb2.ErasureCheckResponse.FromString(msg.data)
            except DecodeError:
                return
            if r.partitions == partitions and r.partition == partition:
                out.append(r)
                if expect and len(out) >= expect:
                    enough.set()

        inbox = self._nc.new_inbox()
        sub = await self._nc.subscribe(inbox, cb=on_reply)
        try:
            await self._nc.publish(natsnames.erasure_check(partitions, partition), payload,
                                   reply=inbox)  # fmt: skip
            try:
                await asyncio.wait_for(enough.wait(), window_s)
            except TimeoutError:
                pass
        finally:
            await sub.unsubscribe()
        return list(out)

    async def digests(
        self, request: common_pb2.DigestRequest, window_s: float
    ) -> list[common_pb2.DigestResponse]:
        """Every replica's digest of one partition (``tanu reconcile``)."""
        replies = await bus.gather_all(
            self._nc, natsnames.searcher_digest(request.partitions, request.partition),
            request.SerializeToString(), window_s,
        )  # fmt: skip
        return [common_pb2.DigestResponse.FromString(raw) for raw in replies]


def _with_gallery(
    request: searcher_pb2.SearchRequest, gallery: str | None
) -> searcher_pb2.SearchRequest:
    """The request restricted to ``gallery`` (a copy; None: as it is)."""
    if gallery is None or gallery == request.gallery:
        return request
    out = searcher_pb2.SearchRequest()
    out.CopyFrom(request)
    out.gallery = gallery
    return out
