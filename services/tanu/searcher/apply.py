"""Building a searcher's index from its partition's template events: a
durable JetStream pull consumer, batches applied in stream order on the
index thread, acknowledged once applied."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import nats.errors
import numpy as np
from google.protobuf.message import DecodeError

from tanu.core import bus, logs, natsnames
from tanu.core.config import SearcherConfig
from tanu.core.ids import partition_of
from tanu.core.metrics import Metrics
from tanu.index import PartitionIndex
from tanu.index.galleries import Memberships
from tanu.v1 import store_pb2

log = logs.get(__name__)


class EventApplier:
    """Consumes the partition's template events into the index."""

    def __init__(
        self,
        config: SearcherConfig,
        index: PartitionIndex,
        in_index_thread: Callable[..., Awaitable],
        metrics: Metrics,
        labels: tuple[str, str],
        *,
        stopping: Callable[[], bool],
        on_erasure: Callable[[], None],
        on_caught_up: Callable[[], Awaitable[None]],
    ) -> None:
        self.config = config
        self.layout = config.common.layout
        self._index = index
        self._in_index_thread = in_index_thread
        self._metrics, self._labels = metrics, labels
        self._stopping = stopping
        self._on_erasure = on_erasure  # templates were removed from the index
        self._on_caught_up = on_caught_up  # nothing is pending in the stream
        self.index_sequence = 0  # last stream sequence applied to the index (index thread)
        self.applied_sequence = 0  # last stream sequence applied and acknowledged
        self.every_partition = False  # read every partition's events, keep this one's
        self._psub = None
        self._task: asyncio.Task[None] | None = None

    @property
    def durable(self) -> str:
        """The replica's durable consumer name."""
        cfg = self.config
        if cfg.staging:
            return natsnames.staging_consumer(self.layout.partitions, cfg.partition, cfg.replica)
        return natsnames.searcher_consumer(cfg.partition, cfg.replica)

    async def subscribe(self, js, restored: int, every_partition: bool) -> int:
        """Points the durable consumer right after what the index already
        holds (the beginning of the stream for an empty index, or the
        snapshot's sequence + 1 for a restored one) and subscribes; returns
        how many events are pending."""
        self.every_partition = every_partition
        self.index_sequence = self.applied_sequence = restored
        filt = (
            natsnames.ALL_TEMPLATE_EVENTS
            if every_partition
            else natsnames.template_events(self.config.partition)
        )
        durable = self.durable
        await bus.reset_durable_consumer(
            js, natsnames.EVENTS_STREAM, durable, filt, restored + 1 if restored else 0
        )
        self._psub = await js.pull_subscribe(filt, durable=durable, stream=natsnames.EVENTS_STREAM)
        info = await js.consumer_info(natsnames.EVENTS_STREAM, durable)
        return info.num_pending

    def start(self, js) -> None:
        """Starts applying events (after ``subscribe``)."""
        self._task = asyncio.create_task(self._loop(self._psub, js), name="apply-events")

    async def stop(self) -> None:
        """Stops applying; unacknowledged events come again to the next start."""
        if self._task:
            self._task.cancel()
            await asyncio.wait({self._task}, timeout=5)

    async def unsubscribe(self) -> None:
        if self._psub:
            try:
                await self._psub.unsubscribe()
            except Exception:  # noqa: BLE001 - connection already gone
                pass

    async def _loop(self, psub, js) -> None:
        durable = self.durable
        # nats-py turns a cancellation into an ordinary error in places
        # (e.g. ConnectionClosedError), so the loop also checks the stop flag.
        while not self._stopping():
            try:
                await self._round(psub, js, durable)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - NATS reconnecting, ack failed: unacked events come again
                if self._stopping():
                    return
                log.warning("apply_round_failed", error=str(exc))
                await asyncio.sleep(0.5)

    async def _round(self, psub, js, durable: str) -> None:
        try:
            msgs = await psub.fetch(self.config.fetch_batch, timeout=1.0)
        except (nats.errors.TimeoutError, TimeoutError):
            # Nothing came: caught up only if the server agrees nothing is
            # pending (a fetch can also time out while NATS reconnects).
            info = await js.consumer_info(natsnames.EVENTS_STREAM, durable)
            self._metrics.stream_lag.labels(*self._labels).set(info.num_pending)
            if info.num_pending == 0 and info.num_ack_pending == 0:
                await self._on_caught_up()
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
            if (
                self.every_partition
                and ev.subject_id
                and partition_of(ev.subject_id, parts) != part
            ):
                continue  # another partition's subject under this layout
            # (A removal without a subject, reconciliation's, applies anywhere:
            # it tombstones ids that no subject of the store holds.)
            events.append(ev)
        last = msgs[-1]
        erased = await self._in_index_thread(self._apply, events, last.metadata.sequence.stream)
        if erased:
            self._on_erasure()
        await last.ack()  # ack-all: acknowledges the whole batch
        self.applied_sequence = last.metadata.sequence.stream
        pending = last.metadata.num_pending
        self._metrics.stream_lag.labels(*self._labels).set(pending)
        self._metrics.applied_sequence.labels(*self._labels).set(self.applied_sequence)
        self._metrics.gallery_templates.labels(*self._labels).set(len(self._index))
        if pending == 0:
            await self._on_caught_up()

    def _apply(self, events: list[store_pb2.TemplateEvent], sequence: int) -> bool:
        """Applies a batch in order, one FAISS call per run of adds or
        removes (one index call per run of membership changes), and records the batch's last stream sequence with it (on
        the index thread, so a snapshot never pairs an index with a sequence
        it has not reached). Returns whether templates were removed."""
        dim, model = self.layout.dimension, self.layout.model_id
        index = self._index
        adds: list[store_pb2.TemplateEvent] = []

        def runs(evs: list[store_pb2.TemplateEvent]) -> Memberships:
            return Memberships.of_runs(
                [(len(e.template_ids), e.galleries, e.inactive) for e in evs]
            )

        def flush_adds() -> None:
            if not adds:
                return
            ids = np.fromiter((t for e in adds for t in e.template_ids), dtype=np.int64)
            subs = [e.subject_id for e in adds for _ in e.template_ids]
            vecs = np.frombuffer(b"".join(e.vectors for e in adds), dtype="<f4").reshape(-1, dim)
            index.add(ids, subs, vecs, runs(adds))
            adds.clear()

        # Membership changes: each carries its templates' new full gallery
        # set and flag, so a replay changes nothing; unknown ids are ignored.
        changes: list[store_pb2.TemplateEvent] = []

        def flush_changes() -> None:
            if changes:
                ids = np.fromiter((t for e in changes for t in e.template_ids), np.int64)
                index.set_memberships(ids, runs(changes))
                changes.clear()

        removes: list[store_pb2.TemplateEvent] = []

        def flush_removes() -> None:
            if removes:
                index.remove(np.fromiter((t for e in removes for t in e.template_ids), np.int64))
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
                flush_changes()
                adds.append(ev)
            elif ev.kind == store_pb2.TemplateEvent.KIND_REMOVED:
                flush_adds()
                flush_changes()
                removes.append(ev)
            elif ev.kind == store_pb2.TemplateEvent.KIND_MEMBERSHIP:
                flush_adds()
                flush_removes()
                changes.append(ev)
        flush_adds()
        flush_removes()
        flush_changes()
        self.index_sequence = sequence
        return index.has_erasures_since_export
