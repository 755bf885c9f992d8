"""A searcher replica's snapshot file: restored at start, rewritten every
interval when the index changed and within the erasure delay of a removal,
and what it may still hold of erased templates.

The file format (encrypted at rest, bound to the layout) is
``tanu.index.snapshot``; this module decides when to write and read it."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import numpy as np

from tanu.core import errors, logs, natsnames
from tanu.core.config import SearcherConfig
from tanu.core.metrics import Metrics
from tanu.index import PartitionIndex, snapshot

log = logs.get(__name__)

# In the snapshot folder: held by the searcher writing its snapshot there.
WRITING_LOCK = ".writing.lock"


class SnapshotKeeper:
    """Restores, writes and accounts for one replica's snapshot file. With
    ``TANU_SNAPSHOT_DIR`` unset it is off: nothing is read or written, and
    only the index counts for erasure checks."""

    def __init__(
        self,
        config: SearcherConfig,
        index: PartitionIndex,
        in_index_thread: Callable[..., Awaitable],
        index_sequence: Callable[[], int],
        metrics: Metrics,
        labels: tuple[str, str],
    ) -> None:
        self.config = config
        self.layout = config.common.layout
        self.enabled = bool(config.snapshot_dir)
        self._index = index
        self._in_index_thread = in_index_thread
        self._index_sequence = index_sequence  # the last stream sequence applied to the index
        self._metrics, self._labels = metrics, labels
        self.sequence = 0  # stream sequence of the snapshot written or loaded last
        self.restored_sequence = 0  # the snapshot this searcher started from (0: none)
        self._key = b""  # loaded at start when snapshots are on
        # Erasure: ids removed from the index that the snapshot on disk may
        # still hold (exported, but the write has not completed yet) ...
        self._unwritten_erasures: set[int] = set()
        # ... or all of them, when a snapshot file is on disk that this
        # searcher did not write or load (refused: another key, damaged).
        self._disk_unknown = False
        self._erasure_deadline: float | None = None  # loop time the snapshot must be rewritten by
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None

    @property
    def path(self) -> Path:
        """The replica's snapshot file (one per partition, layout and replica)."""
        cfg, parts = self.config, self.layout.partitions
        return Path(cfg.snapshot_dir) / f"p{cfg.partition}of{parts}-{cfg.replica}.snap"

    @property
    def binding(self) -> dict:
        """What a snapshot is bound to (its associated data): partition,
        layout and index kind; a file bound to anything else is refused."""
        lay = self.layout
        return {"format": 2, "partition": self.config.partition, "partitions": lay.partitions, "dimension": lay.dimension,
                "metric": lay.metric, "model_id": lay.model_id, "kind": self._index.kind}  # fmt: skip

    @property
    def on_disk(self) -> bool:
        """Whether the file on disk is one this searcher wrote or loaded."""
        return self.enabled and not self._disk_unknown and self.path.exists()

    def read_back(self) -> snapshot.Snapshot:
        """The snapshot file as it is on disk, decrypted with this replica's
        key (for operators' inspection; raises SnapshotError if refused)."""
        return snapshot.read(self.path, self._key, self.binding)

    def plaintext(self) -> bytes:
        """The decrypted bytes of the file on disk (for inspection: e.g. that
        no trace of an erased template is left in it)."""
        return snapshot.decrypt(self.path, self._key, self.binding)

    def _load_key(self) -> bytes:
        try:
            return snapshot.load_key(self.config.snapshot_key_file, self.config.snapshot_key)
        except (OSError, ValueError) as exc:
            raise errors.FailedPrecondition(
                f"snapshots are encrypted at rest and need a key (TANU_SNAPSHOT_KEY_FILE or TANU_SNAPSHOT_KEY): {exc}"
            ) from None

    async def restore(self, js) -> int:
        """Loads the latest usable snapshot into the index; returns its
        sequence (0: none)."""
        self._key = key = self._load_key()  # read once; every snapshot uses it
        path = self.path
        snapshot.remove_partial(path)  # a write cut short by a crash
        if not path.exists():
            return 0
        state = (await js.stream_info(natsnames.EVENTS_STREAM)).state
        # A refused snapshot stays on disk until this searcher writes its
        # own; it may hold erased templates, so until then every erasure
        # counts as pending, and the rewrite is due within the erasure delay.
        try:
            snap = await self._in_index_thread(snapshot.read, path, key, self.binding)
        except snapshot.SnapshotMismatch as exc:
            # Expected after an operator changed the index kind or layout:
            # the partition is rebuilt from the stream, then rewritten.
            log.warning("snapshot_not_for_this_searcher", reason=str(exc),
                        rebuilding="from the stream")  # fmt: skip
            return self._refused()
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
        await self._in_index_thread(self._index.restore, snap)
        self.sequence = self.restored_sequence = snap.sequence
        log.info("snapshot_restored", templates=len(self._index), sequence=snap.sequence)
        return snap.sequence

    def _refused(self) -> int:
        self._disk_unknown = True
        self._erasure_deadline = (
            asyncio.get_running_loop().time() + self.config.snapshot_erasure_delay_s
        )
        return 0

    def erasure_applied(self) -> None:
        """Templates were removed: with snapshots on, the snapshot on disk
        must be rewritten without them within the erasure delay."""
        if not self.enabled or self._erasure_deadline is not None:
            return
        self._erasure_deadline = (
            asyncio.get_running_loop().time() + self.config.snapshot_erasure_delay_s
        )
        self._wake.set()

    def _export(self, sequence: int):
        return self._index.export(sequence), self._index.take_erased()

    async def take(self, force: bool = False) -> bool:
        """Writes a snapshot if the index changed since the last one (or
        ``force``). The new file replaces the old one atomically, so once it
        is written no snapshot file holds the templates removed before it."""
        async with self._lock:
            if self._index_sequence() == self.sequence and not force:
                return False
            async with self._turn_in_folder():
                # Serialise on the index thread (a consistent cut); encrypt and write beside it.
                state, erased = await self._in_index_thread(self._export, self._index_sequence())
                self._unwritten_erasures |= erased
                size = await asyncio.to_thread(
                    snapshot.write, self.path, self._key, self.binding, state
                )
                self._unwritten_erasures -= erased
            self._disk_unknown = False
            self.sequence = state.sequence
        self._metrics.snapshot_timestamp.labels(*self._labels).set(time.time())
        log.info(
            "snapshot_written",
            templates=len(state.template_ids),
            sequence=state.sequence,
            bytes=size,
        )
        return True

    @contextlib.asynccontextmanager
    async def _turn_in_folder(self):
        """Waits until no other searcher is writing into the same snapshot
        folder (replicas sharing one machine's disk and memory, as ``tanu
        up`` runs them): each holds a copy of its partition while it writes,
        so one writes at a time, and a machine never holds all the copies
        at once (at 20M x 128 in 4 partitions on 23 GB, coinciding writes
        were what the OOM killer stopped). An advisory lock on a file in the
        folder, released by the kernel if its holder dies; polled, so a
        stopping searcher is never left waiting in a thread."""
        os.makedirs(self.config.snapshot_dir, exist_ok=True)
        fd = os.open(Path(self.config.snapshot_dir) / WRITING_LOCK, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            since = time.monotonic()
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    await asyncio.sleep(0.1)
            if time.monotonic() - since > 1:
                log.info("snapshot_waited", seconds=round(time.monotonic() - since, 1),
                         reason="another searcher was writing into the folder")  # fmt: skip
            yield
        finally:
            os.close(fd)  # and with it the lock

    def start(self) -> None:
        """Starts the periodic and erasure-deadline rewrites."""
        self._task = asyncio.create_task(self._loop(), name="snapshots")
        self._metrics.watch_disk(self.config.snapshot_dir)

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            await asyncio.wait({self._task}, timeout=5)

    async def _loop(self) -> None:
        """A snapshot every interval (when the index changed), and one within
        the erasure delay of a removal."""
        loop = asyncio.get_running_loop()
        regular = loop.time() + self.config.snapshot_interval_s
        while True:
            due = min(regular, self._erasure_deadline or regular)
            try:
                await asyncio.wait_for(self._wake.wait(), max(0.0, due - loop.time()))
            except TimeoutError:
                pass
            self._wake.clear()
            now = loop.time()
            erasure = self._erasure_deadline is not None and now >= self._erasure_deadline
            if now < regular and not erasure:
                continue
            try:
                if erasure:
                    self._erasure_deadline = None  # removals from here on set a new deadline
                await self.take(force=erasure and self._disk_unknown)
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
        index = self._index

        def check():
            removed = index.tombstoned(ids)
            on_disk = index.erased_since_export(ids) if self.enabled else np.zeros(len(ids), bool)
            return removed, on_disk

        removed, on_disk = await self._in_index_thread(check)
        if self.enabled:
            if self._disk_unknown and self.path.exists():
                on_disk |= removed
            elif self._unwritten_erasures:
                on_disk |= np.isin(ids, np.fromiter(self._unwritten_erasures, np.int64))
        return ids[~removed | on_disk].tolist()
