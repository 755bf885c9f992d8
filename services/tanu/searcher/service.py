"""A searcher: one replica of one gallery partition.

It builds its FAISS index from the partition's template events with a durable
JetStream pull consumer (``apply``), and answers ``tanu.search.p<k>`` (queue
group ``searcher-p<k>``, see ``membership``) and the ``tanu.v1.Searcher`` gRPC
service. Until it has applied every event already in the stream, its gRPC
health says NOT_SERVING and it does not join the queue group, so no request
ever sees a half-built partition. Concurrent searches are micro-batched into
one FAISS call (``search``). With ``TANU_SNAPSHOT_DIR`` it starts from its
encrypted snapshot and keeps it fresh (``snapshots``).

This module wires those parts together and owns the lifecycle: start,
catching up, stats and erasure checks, stop.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tanu.core import bus, errors, logs, natsnames
from tanu.core.config import SearcherConfig
from tanu.core.metrics import Metrics
from tanu.core.service import ServiceBase
from tanu.core.vectors import METRIC_PROTO
from tanu.index import PartitionIndex
from tanu.v1 import common_pb2, searcher_pb2, searcher_pb2_grpc

from . import checks
from .apply import EventApplier
from .membership import Membership
from .search import Searches
from .snapshots import SnapshotKeeper

log = logs.get(__name__)


class SearcherService(ServiceBase):
    """One replica of one partition: its index and the parts that feed,
    persist and serve it (``events``, ``snapshots``, ``membership``,
    ``searches``)."""

    name = "searcher"
    renews_in_process = False  # its consumer and JetStream context are bound to the client

    def __init__(self, config: SearcherConfig, metrics: Metrics | None = None) -> None:
        super().__init__(config.common, metrics)
        self.config = config
        self.layout = config.common.layout
        self.index = PartitionIndex(self.layout.dimension, self.layout.metric, config.index_kind,
                                    config.ivf_nlist, config.ivf_nprobe, config.ivf_rerank,
                                    device=config.index_device,
                                    compact_share=config.device_compact_share)  # fmt: skip
        self.caught_up = asyncio.Event()
        # Every use of the index runs on this one thread (the index is not thread-safe).
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="faiss")
        labels = (str(config.partition), config.replica)
        self.events = EventApplier(config, self.index, self._in_index_thread, self.metrics, labels,
                                   stopping=lambda: self._stopping,
                                   on_erasure=lambda: self.snapshots.erasure_applied(),
                                   on_caught_up=self._mark_caught_up)  # fmt: skip
        self.snapshots = SnapshotKeeper(config, self.index, self._in_index_thread,
                                        lambda: self.events.index_sequence, self.metrics, labels)  # fmt: skip
        self.searches = Searches(config, self.index, self._in_index_thread,
                                 lambda: self.events.applied_sequence, self.metrics)  # fmt: skip
        self.membership = Membership(config, self.searches.search, stopping=lambda: self._stopping,
                                     caught_up=self.caught_up, on_leave=self._not_serving)  # fmt: skip

    async def _in_index_thread(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def on_index_thread(self, fn, *args):
        """Runs ``fn(*args)`` on the one thread that uses the index."""
        return await self._in_index_thread(fn, *args)

    # --- what callers read ------------------------------------------------

    @property
    def applied_sequence(self) -> int:
        """The last stream sequence applied to the index and acknowledged."""
        return self.events.applied_sequence

    @property
    def index_sequence(self) -> int:
        """The last stream sequence applied to the index."""
        return self.events.index_sequence

    @property
    def restored_sequence(self) -> int:
        """The snapshot this searcher started from (0: none)."""
        return self.snapshots.restored_sequence

    @property
    def snapshot_path(self) -> Path:
        return self.snapshots.path

    @property
    def in_queue_group(self) -> bool:
        """Whether this replica answers its partition's searches over NATS."""
        return self.membership.in_queue_group

    @property
    def reads_every_partition(self) -> bool:
        """Whether it reads every partition's events and keeps its own (a
        staging searcher only: an active one reads its partition's)."""
        return self.membership.reads_every_partition

    # --- lifecycle --------------------------------------------------------

    async def start(self) -> SearcherService:
        cfg, common = self.config, self.config.common
        if cfg.faiss_threads > 0:
            import faiss

            faiss.omp_set_num_threads(cfg.faiss_threads)
        await self.serve_grpc(searcher_pb2_grpc.add_SearcherServicer_to_server, SearcherServicer(self),
                              "tanu.v1.Searcher", serving=False)  # fmt: skip
        nc = await self.connect(f"tanu-searcher-p{cfg.partition}-{cfg.replica}")
        js = nc.jetstream()
        await self.membership.register(nc, js)
        await self.responder.serve(natsnames.searcher_stats(self.layout.partitions, cfg.partition), "",
                                   searcher_pb2.StatsRequest, self._stats_request)  # fmt: skip
        await bus.ensure_events_stream(
            js, natsnames.EVENTS_STREAM, [natsnames.EVENTS_WILDCARD], common.stream_replicas,
            common.stream_duplicate_window_s,
        )  # fmt: skip
        restored = await self.snapshots.restore(js) if cfg.snapshot_dir else 0
        # Every replica answers erasure checks and digests (no queue group),
        # from the start: one still catching up counts as not yet erased.
        parts = self.layout.partitions
        await self.responder.serve(natsnames.erasure_check(parts, cfg.partition), "",
                                   searcher_pb2.ErasureCheckRequest, self.check_erasure)  # fmt: skip
        await self.responder.serve(natsnames.searcher_digest(parts, cfg.partition), "",
                                   common_pb2.DigestRequest, self.digest)  # fmt: skip
        every = self.membership.reads_every_partition
        pending = await self.events.subscribe(js, restored, every)
        if pending == 0:
            await self._mark_caught_up()
        self.events.start(js)
        if cfg.snapshot_dir:
            self.snapshots.start()
        self.membership.start(js)
        log.info("searcher_started", partition=cfg.partition, replica=cfg.replica,
                 pending=pending, staging=cfg.staging, all_events=every)  # fmt: skip
        return self

    def ready(self) -> bool:
        return self.caught_up.is_set() and (self.membership.active or self.config.staging)

    async def _mark_caught_up(self) -> None:
        """Joins the partition's queue group and says SERVING, once."""
        if self.caught_up.is_set():
            return
        cfg = self.config
        await self.membership.join()
        assert self.grpc
        await self.grpc.set_serving(True)
        self.caught_up.set()
        log.info("searcher_caught_up", partition=cfg.partition, templates=len(self.index),
                 sequence=self.applied_sequence)  # fmt: skip

    async def _not_serving(self) -> None:
        if self.grpc:
            await self.grpc.set_serving(False)

    async def take_snapshot(self, force: bool = False) -> bool:
        """Writes a snapshot if the index changed since the last one (or
        ``force``); see ``SnapshotKeeper.take``."""
        return await self.snapshots.take(force)

    async def release(self) -> None:
        """Stops applying events and answers what is queued (the queue group
        was left and health went NOT_SERVING before this)."""
        await self.searches.close()
        await self.membership.stop()
        await self.events.stop()
        await self.snapshots.stop()
        await self.events.unsubscribe()
        if self.config.snapshot_dir and self.caught_up.is_set():
            try:
                await self.take_snapshot()  # a graceful stop leaves the freshest snapshot behind
            except Exception as exc:  # noqa: BLE001
                log.error("snapshot_failed", error=str(exc))

    def close(self) -> None:
        self._executor.shutdown(wait=True)

    # --- answers ----------------------------------------------------------

    async def search(self, req: searcher_pb2.SearchRequest) -> searcher_pb2.SearchResponse:
        return await self.searches.search(req)

    async def _stats_request(self, req: searcher_pb2.StatsRequest) -> searcher_pb2.StatsResponse:
        return await self.stats(req.include_template_ids)

    async def stats(self, include_ids: bool) -> searcher_pb2.StatsResponse:
        """The replica's state (with every template id it holds when ``include_ids``)."""
        ids = await self._in_index_thread(self.index.template_ids) if include_ids else []
        return searcher_pb2.StatsResponse(
            partition=self.config.partition,
            replica=self.config.replica,
            gallery_size=len(self.index),
            applied_sequence=self.applied_sequence,
            caught_up=self.caught_up.is_set(),
            index_kind=self.index.kind,
            dimension=self.layout.dimension,
            metric=METRIC_PROTO[self.layout.metric],
            model_id=self.layout.model_id,
            template_ids=ids,
            snapshot_sequence=self._snapshot_sequence(),
        )

    async def check_erasure(
        self, req: searcher_pb2.ErasureCheckRequest
    ) -> searcher_pb2.ErasureCheckResponse:
        """Which of the given template ids this replica still keeps, in its
        index or in its snapshot file on disk (``checks.erasure_check``)."""
        return await checks.erasure_check(self, req)

    async def digest(self, req: common_pb2.DigestRequest) -> common_pb2.DigestResponse:
        """The reconciliation digest of the index (``checks.index_digest``)."""
        return await checks.index_digest(self, req)

    def _snapshot_sequence(self) -> int:
        return self.snapshots.sequence if self.snapshots.on_disk else 0


class SearcherServicer(searcher_pb2_grpc.SearcherServicer):
    def __init__(self, svc: SearcherService) -> None:
        self._svc = svc

    async def Search(self, request, context):
        if not self._svc.caught_up.is_set():
            raise errors.Unavailable("this searcher is still catching up with the event stream")
        return await self._svc.search(request)

    async def Stats(self, request, context):
        return await self._svc.stats(request.include_template_ids)

    async def CheckErasure(self, request, context):
        return await self._svc.check_erasure(request)
