"""The outbox relay: publishes committed template events to JetStream
with ``Nats-Msg-Id`` = event id, and forgets them only once JetStream has
acknowledged them.

Events go out in outbox order (``seq``, lowest first, a batch at a time).
With one store writing, that is commit order. With several stores sharing
a PostgreSQL database, ``seq`` is taken when a row is inserted, not when it
commits, and each store's relay reads the shared outbox: an event whose
transaction commits late can go out after events with a higher ``seq``, and
two relays may publish the same event (JetStream drops the second inside
its duplicate window).

A crash (of the relay, the store or NATS) between publishing and forgetting
re-publishes the same events on the next round; JetStream drops them as
duplicates inside its duplicate window, and searchers apply events
idempotently in any case. So no event is lost and none is applied twice.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from nats.js import JetStreamContext

from tanu.core import logs, natsnames
from tanu.core.metrics import Metrics

from .db import Store
from .outbox import OutboxRow

log = logs.get(__name__)

MSG_ID = "Nats-Msg-Id"


class OutboxRelay:
    """Publishes the outbox of one ``Store`` to the event stream, in a task
    of its own (``start``/``stop``)."""

    def __init__(
        self,
        db: Store,
        js: JetStreamContext,
        *,
        batch: int,
        poll_s: float,
        metrics: Metrics,
        ack_timeout_s: float = 10.0,
        stream: str = natsnames.EVENTS_STREAM,
    ) -> None:
        self._stream = stream
        self._db = db
        self._js = js
        self._batch = batch
        self._poll_s = poll_s
        self._metrics = metrics
        self._ack_timeout_s = ack_timeout_s
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="outbox-relay")

    def wake(self) -> None:
        """Called after a commit, so events go out without waiting for the poll."""
        self._idle.clear()
        self._wake.set()

    async def wait_idle(self, timeout: float) -> None:
        """Waits until the relay finds the outbox empty (tests and benchmarks wait on it)."""
        await asyncio.wait_for(self._idle.wait(), timeout)

    async def _loop(self) -> None:
        backoff = 0.1
        # nats-py can turn a cancellation into an ordinary error (e.g.
        # TooManyStalledMsgsError), so the loop also checks the stop flag.
        while not self._stopping:
            rows = await self._db.run(self._db.outbox_batch, self._batch)
            if not rows:
                try:
                    await self.erase_from_stream()
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # noqa: BLE001 - NATS down: retried next round
                    log.warning("stream_erasure_failed", error=str(exc))
                    if not self._stopping:
                        await asyncio.sleep(backoff)
                        backoff = min(backoff * 2, 5.0)
                    continue
                self._metrics.outbox_pending.set(0)
                self._idle.set()
                self._wake.clear()
                try:
                    await asyncio.wait_for(self._wake.wait(), self._poll_s)
                except TimeoutError:
                    pass
                continue
            self._idle.clear()
            try:
                acks = await self.publish(rows)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - NATS down, timeouts: retry with backoff
                if self._stopping:
                    return
                log.warning(
                    "relay_publish_failed", error=str(exc), events=len(rows), retry_in_s=backoff
                )
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            backoff = 0.1
            await self._db.run(self._db.outbox_done, rows, acks)
            self._metrics.events_published.inc(len(rows))
            self._metrics.outbox_pending.set(await self._db.run(self._db.outbox_pending))

    async def publish(self, rows: Sequence[OutboxRow]) -> list[int]:
        """Publishes ``rows`` (from ``Store.outbox_batch``) and waits for
        JetStream's acknowledgements; returns the events' stream sequence
        numbers. It does not forget them: the loop does that (``outbox_done``)
        once this returns, so a relay that dies in between re-publishes them."""
        # publish_async sends in call order on one connection, so the stream
        # keeps the batch's order; the acknowledgements are awaited together.
        futures = [
            await self._js.publish_async(row.subject, row.payload, headers={MSG_ID: row.event_id})
            for row in rows
        ]
        acks = await asyncio.wait_for(asyncio.gather(*futures), self._ack_timeout_s)
        return [a.seq for a in acks]

    async def erase_from_stream(self) -> int:
        """Deletes up to 1000 erased subjects' template events from the
        stream (the server overwrites them); returns how many it deleted or
        found gone already. The rest wait for the next idle round."""
        from nats.js.errors import NotFoundError

        seqs = await self._db.run(self._db.pending_stream_erasures, 1000)
        for seq in seqs:
            try:
                await self._js.delete_msg(self._stream, seq)
            except NotFoundError:
                pass  # already gone (aged out, purged, or deleted before)
        if seqs:
            await self._db.run(self._db.stream_erasures_done, seqs)
            log.info("stream_messages_erased", count=len(seqs))
        return len(seqs)

    async def stop(self) -> None:
        """Stops publishing; whatever is unacknowledged stays in the outbox."""
        self._stopping = True
        if self._task:
            self._task.cancel()
            await asyncio.wait({self._task}, timeout=5)
            self._task = None
