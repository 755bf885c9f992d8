"""The typed client of the partitions' searchers over NATS: one query batch
to every partition at once, one partition alone, and the erasure
confirmations that every replica of a partition gives."""

from __future__ import annotations

from nats.aio.client import Client as NATS

from tanu.core import bus, errors, natsnames
from tanu.core.metrics import Metrics
from tanu.v1 import searcher_pb2


class SearchClient:
    """Searches (``tanu.search.p<N>``, one replica of each partition answers)
    and erasure checks (``tanu.erasure.check.p<N>``, every replica answers)."""

    def __init__(self, nc: NATS, timeout_s: float, metrics: Metrics | None = None) -> None:
        self._nc = nc
        self.timeout_s = timeout_s  # the wait for one partition's search reply
        self._metrics = metrics

    async def scatter(
        self, request: searcher_pb2.SearchRequest, partitions: list[int]
    ) -> list[searcher_pb2.SearchResponse | errors.TanuError]:
        """Sends one request to every partition at once; each partition's
        entry is its reply or the typed error of its failure or silence."""
        return await bus.scatter(
            self._nc, [natsnames.search(p) for p in partitions], request,
            searcher_pb2.SearchResponse, self.timeout_s,
            operation="search", metrics=self._metrics,
        )  # fmt: skip

    async def search(
        self, partition: int, request: searcher_pb2.SearchRequest, timeout: float
    ) -> searcher_pb2.SearchResponse:
        """Searches one partition, raising its typed error."""
        return await bus.request(
            self._nc, natsnames.search(partition), request, searcher_pb2.SearchResponse,
            timeout, operation="search", metrics=self._metrics,
        )  # fmt: skip

    async def erasure_confirmations(
        self, partition: int, template_ids: list[int], window_s: float
    ) -> list[searcher_pb2.ErasureCheckResponse]:
        """Every reply that the partition's replicas send within ``window_s``
        to the question of which of ``template_ids`` each still holds."""
        payload = searcher_pb2.ErasureCheckRequest(template_ids=template_ids).SerializeToString()
        replies = await bus.gather_all(
            self._nc, natsnames.erasure_check(partition), payload, window_s
        )
        return [searcher_pb2.ErasureCheckResponse.FromString(raw) for raw in replies]
