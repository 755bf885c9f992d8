"""A searcher: one replica of one gallery partition.

It builds its FAISS index from the partition's template events with a durable
JetStream pull consumer, and answers ``tanu.search.p<k>`` (queue group
``searcher-p<k>``) and the ``tanu.v1.Searcher`` gRPC service. Until it has
applied every event already in the stream, its gRPC health says NOT_SERVING
and it does not join the queue group, so no request ever sees a half-built
partition. Concurrent searches are micro-batched into one FAISS call.
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import nats.errors
import numpy as np
from google.protobuf.message import DecodeError

from tanu.core import bus, clusterconfig, errors, logs, natsnames
from tanu.core.batching import MicroBatcher
from tanu.core.config import SearcherConfig
from tanu.core.ids import partition_of
from tanu.core.metrics import Metrics
from tanu.core.service import ServiceBase
from tanu.index import PartitionIndex, snapshot
from tanu.v1 import common_pb2, searcher_pb2, searcher_pb2_grpc, store_pb2

log = logs.get(__name__)

MAX_TOP_K = 2048
LAYOUT_POLL_S = 1.0


MAX_QUERIES = 4096
METRIC_ENUM = {"l2": common_pb2.METRIC_L2, "cosine": common_pb2.METRIC_COSINE}


class SearcherService(ServiceBase):
    name = "searcher"

    def __init__(self, config: SearcherConfig, metrics: Metrics | None = None) -> None:
        super().__init__(config.common, metrics)
        self.config = config
        self.layout = config.common.layout
        self.index = PartitionIndex(self.layout.dimension, self.layout.metric, config.index_kind,
                                    config.ivf_nlist, config.ivf_nprobe, config.ivf_rerank,
                                    device=config.index_device,
                                    compact_share=config.device_compact_share)  # fmt: skip
        self.applied_sequence = 0
        self.caught_up = asyncio.Event()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="faiss")
        self._batcher = MicroBatcher(
            self._search_batch,
            name=f"search-p{config.partition}",
            max_batch=config.batch_max,
            max_wait_s=config.batch_wait_ms / 1000,
            metrics=self.metrics,
        )
        self._labels = (str(config.partition), config.replica)
        self._apply_task: asyncio.Task[None] | None = None
        self._snapshot_task: asyncio.Task[None] | None = None
        self._psub = None
        self.index_sequence = 0  # last stream sequence applied to the index (index thread)
        self._snapshot_sequence = 0
        self.restored_sequence = 0  # the snapshot this searcher started from (0: none)
        self._snapshot_key = b""  # loaded at start when snapshots are on
        # Erasure: ids removed from the index that the snapshot on disk may
        # still hold (exported, but the write has not completed yet) ...
        self._unwritten_erasures: set[int] = set()
        # ... or all of them, when a snapshot file is on disk that this
        # searcher did not write or load (refused: another key, damaged).
        self._disk_unknown = False
        self._erasure_deadline: float | None = None  # loop time the snapshot must be rewritten by
        self._snapshot_wake = asyncio.Event()
        self._snapshot_lock = asyncio.Lock()
        # Re-partitioning: a staging searcher builds a partition of the next
        # layout and joins the queue group only once the layout is switched
        # to it; an active one leaves when the layout moves away from it.
        self.active = not config.staging
        self.in_queue_group = False
        self._all_events = False  # read every partition's events, keep this one's
        self._search_responder = None
        self._layout_task: asyncio.Task[None] | None = None

    async def _in_index_thread(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    # --- building the index from the stream ------------------------------

    async def start(self) -> SearcherService:
        cfg, common = self.config, self.config.common
        if cfg.faiss_threads > 0:
            import faiss

            faiss.omp_set_num_threads(cfg.faiss_threads)
        await self.serve_grpc(searcher_pb2_grpc.add_SearcherServicer_to_server, SearcherServicer(self),
                              "tanu.v1.Searcher", serving=False)  # fmt: skip
        nc = await self.connect(f"tanu-searcher-p{cfg.partition}-{cfg.replica}")
        js = nc.jetstream()
        name = f"searcher-p{cfg.partition}"
        if cfg.staging:
            record = await clusterconfig.ensure_next_layout(js, self.layout, name)
        else:
            record = await clusterconfig.ensure_layout(js, self.layout, name)
        # After a rebalance the stream holds events routed under another
        # partition count: read them all and keep this partition's.
        self._all_events = cfg.staging or clusterconfig.rerouted(record, self.layout.partitions)
        self._search_responder = bus.Responder(nc)
        await self.responder.serve(natsnames.searcher_stats(self.layout.partitions, cfg.partition), "",
                                   searcher_pb2.StatsRequest, self._stats_request)  # fmt: skip
        await bus.ensure_events_stream(
            js, natsnames.EVENTS_STREAM, [natsnames.EVENTS_WILDCARD], common.stream_replicas,
            common.stream_duplicate_window_s,
        )  # fmt: skip
        durable = self._durable
        filt = (
            natsnames.ALL_TEMPLATE_EVENTS
            if self._all_events
            else natsnames.template_events(cfg.partition)
        )
        # The consumer starts right after what the index already holds: the
        # beginning of the stream for an empty index, or the snapshot's
        # sequence + 1 for a restored one.
        restored = await self._restore(js) if cfg.snapshot_dir else 0
        await bus.reset_durable_consumer(
            js, natsnames.EVENTS_STREAM, durable, filt, restored + 1 if restored else 0
        )
        psub = self._psub = await js.pull_subscribe(
            filt, durable=durable, stream=natsnames.EVENTS_STREAM
        )
        info = await js.consumer_info(natsnames.EVENTS_STREAM, durable)
        if info.num_pending == 0:
            await self._mark_caught_up()
        self._apply_task = asyncio.create_task(self._apply_loop(psub), name="apply-events")
        if cfg.snapshot_dir:
            self._snapshot_task = asyncio.create_task(self._snapshot_loop(), name="snapshots")
            self.metrics.watch_disk(cfg.snapshot_dir)
        self._layout_task = asyncio.create_task(self._layout_loop(js), name="layout")
        log.info(
            "searcher_started",
            partition=cfg.partition,
            replica=cfg.replica,
            pending=info.num_pending,
            staging=cfg.staging,
            all_events=self._all_events,
        )
        return self

    @property
    def _durable(self) -> str:
        cfg = self.config
        if cfg.staging:
            return natsnames.staging_consumer(self.layout.partitions, cfg.partition, cfg.replica)
        return natsnames.searcher_consumer(cfg.partition, cfg.replica)

    async def _stats_request(self, req: searcher_pb2.StatsRequest) -> searcher_pb2.StatsResponse:
        return await self.stats(req.include_template_ids, list(req.erased_template_ids))

    async def _layout_loop(self, js) -> None:
        """Follows the cluster's layout: a staging searcher becomes active
        when the layout is switched to its own; an active one leaves the
        queue group when the layout moves to another partition count."""
        mine = self.layout.partitions
        while not self._stopping:
            await asyncio.sleep(LAYOUT_POLL_S)
            try:
                record, _ = await clusterconfig.read_layout(js)
            except Exception as exc:  # noqa: BLE001 - NATS reconnecting: ask again
                log.warning("layout_unreadable", error=str(exc))
                continue
            if record is None:
                continue
            ours = not self.layout.differences(record, "cluster", "searcher")
            if ours and not self.active:
                self.active = True
                log.info("searcher_promoted", partition=self.config.partition, partitions=mine)
                if self.caught_up.is_set():
                    await self._join_queue_group()
            elif not ours and self.active:
                self.active = False
                log.warning("searcher_retired", partition=self.config.partition, partitions=mine,
                            cluster_partitions=record.get("partitions"))  # fmt: skip
                await self._leave_queue_group()

    async def _join_queue_group(self) -> None:
        if self.in_queue_group or not self.active:
            return
        cfg = self.config
        await self._search_responder.serve(natsnames.search(cfg.partition), natsnames.search_queue(cfg.partition),
                                           searcher_pb2.SearchRequest, self.search)  # fmt: skip
        self.in_queue_group = True

    async def _leave_queue_group(self) -> None:
        if self.in_queue_group:
            self.in_queue_group = False
            await self._search_responder.stop()
            if self.grpc:
                await self.grpc.set_serving(False)

    async def _apply_loop(self, psub) -> None:
        js = self.nc.jetstream()
        durable = self._durable
        # nats-py turns a cancellation into an ordinary error in places
        # (e.g. ConnectionClosedError), so the loop also checks the stop flag.
        while not self._stopping:
            try:
                await self._apply_round(psub, js, durable)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - NATS reconnecting, ack failed: unacked events come again
                if self._stopping:
                    return
                log.warning("apply_round_failed", error=str(exc))
                await asyncio.sleep(0.5)

    async def _apply_round(self, psub, js, durable: str) -> None:
        try:
            msgs = await psub.fetch(self.config.fetch_batch, timeout=1.0)
        except (nats.errors.TimeoutError, TimeoutError):
            # Nothing came: caught up only if the server agrees nothing is
            # pending (a fetch can also time out while NATS reconnects).
            info = await js.consumer_info(natsnames.EVENTS_STREAM, durable)
            self.metrics.stream_lag.labels(*self._labels).set(info.num_pending)
            if info.num_pending == 0 and info.num_ack_pending == 0:
                await self._mark_caught_up()
            return
        if not msgs:
            return
        events = []
        part, parts = self.config.partition, self.layout.partitions
        for m in msgs:
            ev = store_pb2.TemplateEvent()
            try:
                ev.ParseFromString(m.data)
            except DecodeError:
                log.error("event_undecodable", sequence=m.metadata.sequence.stream)
                continue
            if self._all_events and partition_of(ev.subject_id, parts) != part:
                continue  # another partition's subject under this layout
            events.append(ev)
        last = msgs[-1]
        erased = await self._in_index_thread(self._apply, events, last.metadata.sequence.stream)
        if erased:
            self._erasure_applied()
        await last.ack()  # ack-all: acknowledges the whole batch
        self.applied_sequence = last.metadata.sequence.stream
        pending = last.metadata.num_pending
        self.metrics.stream_lag.labels(*self._labels).set(pending)
        self.metrics.applied_sequence.labels(*self._labels).set(self.applied_sequence)
        self.metrics.gallery_templates.labels(*self._labels).set(len(self.index))
        if pending == 0:
            await self._mark_caught_up()

    def _apply(self, events: list[store_pb2.TemplateEvent], sequence: int) -> bool:
        """Applies a batch in order, one FAISS call per run of adds or
        removes, and records the batch's last stream sequence with it (on
        the index thread, so a snapshot never pairs an index with a sequence
        it has not reached). Returns whether templates were removed."""
        dim, model = self.layout.dimension, self.layout.model_id
        adds: list[store_pb2.TemplateEvent] = []

        def flush_adds() -> None:
            if not adds:
                return
            ids = np.fromiter((t for e in adds for t in e.template_ids), dtype=np.int64)
            subs = [e.subject_id for e in adds for _ in e.template_ids]
            vecs = np.frombuffer(b"".join(e.vectors for e in adds), dtype="<f4").reshape(-1, dim)
            self.index.add(ids, subs, vecs)
            adds.clear()

        removes: list[store_pb2.TemplateEvent] = []

        def flush_removes() -> None:
            if removes:
                self.index.remove(
                    np.fromiter((t for e in removes for t in e.template_ids), np.int64)
                )
                removes.clear()

        for ev in events:
            if ev.model_id and ev.model_id != model:
                log.error(
                    "event_model_mismatch",
                    event_id=ev.event_id,
                    event_model=ev.model_id,
                    model=model,
                )
                continue
            if ev.kind == store_pb2.TemplateEvent.KIND_ADDED:
                if ev.dimension != dim or len(ev.vectors) != 4 * dim * len(ev.template_ids):
                    log.error("event_bad_vectors", event_id=ev.event_id)
                    continue
                flush_removes()
                adds.append(ev)
            elif ev.kind == store_pb2.TemplateEvent.KIND_REMOVED:
                flush_adds()
                removes.append(ev)
        flush_adds()
        flush_removes()
        self.index_sequence = sequence
        return self.index.has_erasures_since_export

    # --- snapshots --------------------------------------------------------

    @property
    def snapshot_path(self) -> Path:
        cfg, parts = self.config, self.layout.partitions
        return Path(cfg.snapshot_dir) / f"p{cfg.partition}of{parts}-{cfg.replica}.snap"

    def _binding(self) -> dict:
        lay = self.layout
        return {"format": 2, "partition": self.config.partition, "partitions": lay.partitions, "dimension": lay.dimension,
                "metric": lay.metric, "model_id": lay.model_id, "kind": self.index.kind}  # fmt: skip

    def _key(self) -> bytes:
        try:
            return snapshot.load_key(self.config.snapshot_key_file, self.config.snapshot_key)
        except (OSError, ValueError) as exc:
            raise errors.FailedPrecondition(
                f"snapshots are encrypted at rest and need a key (TANU_SNAPSHOT_KEY_FILE or TANU_SNAPSHOT_KEY): {exc}"
            ) from None

    async def _restore(self, js) -> int:
        """Loads the latest usable snapshot; returns its sequence (0: none)."""
        self._snapshot_key = key = self._key()  # read once; every snapshot uses it
        path = self.snapshot_path
        snapshot.remove_partial(path)  # a write cut short by a crash
        if not path.exists():
            return 0
        state = (await js.stream_info(natsnames.EVENTS_STREAM)).state
        # A refused snapshot stays on disk until this searcher writes its
        # own; it may hold erased templates, so until then every erasure
        # counts as pending, and the rewrite is due within the erasure delay.
        try:
            snap = await self._in_index_thread(snapshot.read, path, key, self._binding())
        except snapshot.SnapshotError as exc:
            log.error("snapshot_refused", reason=str(exc))
            return self._refused()
        if snap.sequence > state.last_seq:
            log.error("snapshot_refused", reason="newer than the stream (the stream was reset)",
                      snapshot_sequence=snap.sequence, stream_last=state.last_seq)  # fmt: skip
            return self._refused()
        if state.first_seq > snap.sequence + 1:
            log.error("snapshot_refused", reason="the stream no longer holds the events after it",
                      snapshot_sequence=snap.sequence, stream_first=state.first_seq)  # fmt: skip
            return self._refused()
        await self._in_index_thread(self.index.restore, snap)
        self.index_sequence = self.applied_sequence = self._snapshot_sequence = (
            self.restored_sequence
        ) = snap.sequence
        log.info("snapshot_restored", templates=len(self.index), sequence=snap.sequence)
        return snap.sequence

    def _refused(self) -> int:
        self._disk_unknown = True
        self._erasure_deadline = (
            asyncio.get_running_loop().time() + self.config.snapshot_erasure_delay_s
        )
        return 0

    def _erasure_applied(self) -> None:
        """Templates were removed: with snapshots on, the snapshot on disk
        must be rewritten without them within the erasure delay."""
        if not self.config.snapshot_dir or self._erasure_deadline is not None:
            return
        self._erasure_deadline = (
            asyncio.get_running_loop().time() + self.config.snapshot_erasure_delay_s
        )
        self._snapshot_wake.set()

    def _export(self, sequence: int):
        return self.index.export(sequence), self.index.take_erased()

    async def take_snapshot(self, force: bool = False) -> bool:
        """Writes a snapshot if the index changed since the last one (or
        ``force``). The new file replaces the old one atomically, so once it
        is written no snapshot file holds the templates removed before it."""
        async with self._snapshot_lock:
            if self.index_sequence == self._snapshot_sequence and not force:
                return False
            # Serialise on the index thread (a consistent cut); encrypt and write beside it.
            state, erased = await self._in_index_thread(self._export, self.index_sequence)
            self._unwritten_erasures |= erased
            size = await asyncio.to_thread(
                snapshot.write, self.snapshot_path, self._snapshot_key, self._binding(), state
            )
            self._unwritten_erasures -= erased
            self._disk_unknown = False
            self._snapshot_sequence = state.sequence
        self.metrics.snapshot_timestamp.labels(*self._labels).set(time.time())
        log.info(
            "snapshot_written",
            templates=len(state.template_ids),
            sequence=state.sequence,
            bytes=size,
        )
        return True

    async def _snapshot_loop(self) -> None:
        """A snapshot every interval (when the index changed), and one within
        the erasure delay of a removal."""
        loop = asyncio.get_running_loop()
        regular = loop.time() + self.config.snapshot_interval_s
        while True:
            due = min(regular, self._erasure_deadline or regular)
            try:
                await asyncio.wait_for(self._snapshot_wake.wait(), max(0.0, due - loop.time()))
            except TimeoutError:
                pass
            self._snapshot_wake.clear()
            now = loop.time()
            erasure = self._erasure_deadline is not None and now >= self._erasure_deadline
            if now < regular and not erasure:
                continue
            try:
                if erasure:
                    self._erasure_deadline = None  # removals from here on set a new deadline
                await self.take_snapshot(force=erasure and self._disk_unknown)
            except Exception as exc:  # noqa: BLE001 - keep serving; try again soon
                log.error("snapshot_failed", error=str(exc))
                if erasure:
                    self._erasure_deadline = now + min(5.0, self.config.snapshot_erasure_delay_s)
            if now >= regular:
                regular = now + self.config.snapshot_interval_s

    async def pending_erasures(self, template_ids: list[int]) -> list[int]:
        """Of ``template_ids``, those this replica has not erased everywhere
        it keeps them: not yet removed from the index (no removal event
        applied), or still in the snapshot file on disk."""
        if not template_ids:
            return []
        ids = np.asarray(template_ids, dtype=np.int64)

        def check():
            removed = self.index.tombstoned(ids)
            on_disk = (
                self.index.erased_since_export(ids)
                if self.config.snapshot_dir
                else np.zeros(len(ids), bool)
            )
            return removed, on_disk

        removed, on_disk = await self._in_index_thread(check)
        if self.config.snapshot_dir:
            if self._disk_unknown and self.snapshot_path.exists():
                on_disk |= removed
            elif self._unwritten_erasures:
                on_disk |= np.isin(ids, np.fromiter(self._unwritten_erasures, np.int64))
        return ids[~removed | on_disk].tolist()

    def ready(self) -> bool:
        return self.caught_up.is_set() and (self.active or self.config.staging)

    async def _mark_caught_up(self) -> None:
        """Joins the partition's queue group and says SERVING, once."""
        if self.caught_up.is_set():
            return
        cfg = self.config
        await self._join_queue_group()
        # Every replica answers erasure checks (no queue group): the gateway's
        # erasure receipt lists each one's confirmation.
        await self.responder.serve(
            natsnames.erasure(cfg.partition), "", searcher_pb2.StatsRequest,
            lambda r: self.stats(False, list(r.erased_template_ids)),
        )  # fmt: skip
        assert self.grpc
        await self.grpc.set_serving(True)
        self.caught_up.set()
        log.info("searcher_caught_up", partition=cfg.partition, templates=len(self.index),
                 sequence=self.applied_sequence)  # fmt: skip

    # --- searching --------------------------------------------------------

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
        q = np.frombuffer(req.queries, dtype="<f4").reshape(req.count, lay.dimension)
        if not np.isfinite(q).all():
            raise errors.InvalidArgument("queries contain NaN or infinity")
        scores, subs, size = await self._batcher.submit((q, int(req.top_k)))
        part = self.config.partition
        reply = searcher_pb2.SearchResponse(
            partition=part, gallery_size=size, applied_sequence=self.applied_sequence
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

    async def _search_batch(self, items: list[tuple[np.ndarray, int]]):
        queries = np.concatenate([q for q, _ in items], axis=0)
        k = max(k for _, k in items)
        start = time.perf_counter()
        scores, subs, size = await self._in_index_thread(self._run_search, queries, k)
        self.metrics.faiss_search_duration.labels(str(self.config.partition)).observe(
            time.perf_counter() - start
        )
        out, row = [], 0
        for q, kk in items:
            n = len(q)
            out.append((scores[row : row + n, :kk], [r[:kk] for r in subs[row : row + n]], size))
            row += n
        return out

    def _run_search(self, queries: np.ndarray, k: int):
        """Scores and subject ids (mapped in the same cut as the search)."""
        if len(self.index) == 0:
            n = len(queries)
            return np.zeros((n, 0), np.float32), [[] for _ in range(n)], 0
        scores, _, subs = self.index.search_subjects(queries, k)
        return scores, subs, len(self.index)

    async def stats(
        self, include_ids: bool, erased: list[int] | None = None
    ) -> searcher_pb2.StatsResponse:
        ids = await self._in_index_thread(self.index.template_ids) if include_ids else []
        pending = await self.pending_erasures(list(erased or []))
        return searcher_pb2.StatsResponse(
            partition=self.config.partition,
            replica=self.config.replica,
            gallery_size=len(self.index),
            applied_sequence=self.applied_sequence,
            caught_up=self.caught_up.is_set(),
            index_kind=self.index.kind,
            dimension=self.layout.dimension,
            metric=METRIC_ENUM[self.layout.metric],
            model_id=self.layout.model_id,
            template_ids=ids,
            pending_erasure_template_ids=pending,
            snapshot_sequence=self._snapshot_sequence if self.snapshot_on_disk else 0,
        )

    @property
    def snapshot_on_disk(self) -> bool:
        return (
            bool(self.config.snapshot_dir)
            and not self._disk_unknown
            and self.snapshot_path.exists()
        )

    async def release(self) -> None:
        """Stops applying events and answers what is queued (the queue group
        was left and health went NOT_SERVING before this)."""
        await self._batcher.close()
        if self._search_responder:
            await self._search_responder.stop()
        for task in (self._layout_task, self._apply_task, self._snapshot_task):
            if task:
                task.cancel()
                await asyncio.wait({task}, timeout=5)
        if self._psub:
            try:
                await self._psub.unsubscribe()
            except Exception:  # noqa: BLE001 - connection already gone
                pass
        if self.config.snapshot_dir and self.caught_up.is_set():
            try:
                await self.take_snapshot()  # a graceful stop leaves the freshest snapshot behind
            except Exception as exc:  # noqa: BLE001
                log.error("snapshot_failed", error=str(exc))

    def close(self) -> None:
        self._executor.shutdown(wait=True)


class SearcherServicer(searcher_pb2_grpc.SearcherServicer):
    def __init__(self, svc: SearcherService) -> None:
        self._svc = svc

    async def Search(self, request, context):
        if not self._svc.caught_up.is_set():
            raise errors.Unavailable("this searcher is still catching up with the event stream")
        return await self._svc.search(request)

    async def Stats(self, request, context):
        return await self._svc.stats(request.include_template_ids, request.erased_template_ids)
