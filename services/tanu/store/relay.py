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

The relay never dies on an error: a database or bus failure is counted
(``tanu_relay_errors_total{kind}``), logged and retried with backoff
(0.1 s doubling to 5 s). An event JetStream refuses for good (over the
size limit) goes to the dead-letter table, so it cannot block the events
behind it (``tanu_relay_dead_letters_total``).

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
BACKOFF_MIN_S, BACKOFF_MAX_S = 0.1, 5.0
# JetStream's error for a message over the stream's max_msg_size.
ERR_MESSAGE_TOO_LARGE = 10054


class RelayFailure(Exception):
    """A relay round failed; ``kind`` (database, bus) labels the metric."""

    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        self.kind = kind


def is_permanent(exc: BaseException) -> bool:
    """Whether publishing failed for a reason a retry cannot cure: a
    message over the server's or the stream's size limit, or a request
    JetStream rejects as bad. Connection losses, timeouts and a stream
    that is (briefly) missing are retried."""
    import nats.errors
    from nats.js.errors import APIError, NoStreamResponseError, ServiceUnavailableError

    if isinstance(exc, nats.errors.MaxPayloadError):
        return True
    if isinstance(exc, (NoStreamResponseError, ServiceUnavailableError)):
        return False
    return isinstance(exc, APIError) and (exc.err_code == ERR_MESSAGE_TOO_LARGE or exc.code == 400)


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
        flush_timeout_s: float = 2.0,
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
        self._flush_timeout_s = flush_timeout_s
        # Each flush waits for the events queued before it: (its future,
        # the store's highest queued outbox seq when it was asked).
        self._waiters: list[tuple[asyncio.Future[None], int]] = []
        self._held = 0  # dead letters held, as last counted

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="outbox-relay")

    def wake(self) -> None:
        """Called after a commit, so events go out without waiting for the poll."""
        self._idle.clear()
        self._wake.set()

    async def flush(self, timeout: float | None = None) -> bool:
        """Waits until every event committed before this call is on the
        stream (published by this relay or, on a shared database, another
        one); False after ``timeout`` (default: the relay's flush timeout)
        when the relay could not publish them in time (they stay queued).
        The store acknowledges an enrolment after this, so that a search
        that starts after the acknowledgement can ask the stream how far
        each partition must be applied (read-your-writes)."""
        fut = asyncio.get_running_loop().create_future()
        self._waiters.append((fut, self._db.last_queued_seq))
        self.wake()
        try:
            await asyncio.wait_for(asyncio.shield(fut), timeout or self._flush_timeout_s)
            return True
        except TimeoutError:
            self._metrics.relay_flush_late.inc()
            return False

    def _settle(self, waiters: list[tuple[asyncio.Future[None], int]], done: bool,
                through: int) -> None:  # fmt: skip
        """Ends the flushes a pass answered: all of them when it reached the
        outbox's end; otherwise those whose events it published. A pass
        reads the lowest seqs present, so one that read a seq at or above a
        flush's mark read every event of that flush still in the outbox
        (the rest were published before); ``through`` is that highest seq
        (0 when the pass published nothing). So an import's batch is
        answered once its own events are on the stream, not only once the
        batches sent after it are too."""
        for w, mark in waiters:
            if w.done():
                continue
            if done or 0 < mark <= through:
                w.set_result(None)
            else:
                self._waiters.append((w, mark))

    async def wait_idle(self, timeout: float) -> None:
        """Waits until the relay finds the outbox empty (tests and benchmarks wait on it)."""
        await asyncio.wait_for(self._idle.wait(), timeout)

    async def _loop(self) -> None:
        # Every failure is counted, logged and retried with backoff; the
        # relay ends only when asked to (``stop``). nats-py can turn a
        # cancellation into an ordinary error (e.g. TooManyStalledMsgsError),
        # so the loop also checks the stop flag.
        backoff = BACKOFF_MIN_S
        prepared = False
        while not self._stopping:
            try:
                if not prepared:
                    await self._db_call(self._db.outbox_prepare)
                    self._held = await self._db_call(self._db.dead_letters_count)
                    self._metrics.relay_dead_letters_held.set(self._held)
                    prepared = True
                await self._round()
                backoff = BACKOFF_MIN_S
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - counted, logged, retried
                if self._stopping:
                    return
                kind = exc.kind if isinstance(exc, RelayFailure) else "internal"
                cause = exc.__cause__ if isinstance(exc, RelayFailure) else exc
                self._metrics.relay_errors.labels(kind).inc()
                log.warning("relay_failed", kind=kind, error=f"{type(cause).__name__}: {cause}",
                            retry_in_s=round(backoff, 2))  # fmt: skip
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX_S)

    async def _db_call(self, fn, *args):
        try:
            return await self._db.run(fn, *args)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            raise RelayFailure("database") from exc

    async def _round(self) -> None:
        """One pass: publish a batch and forget it, or, with the outbox
        empty, delete erased subjects' events from the stream and wait.
        A flush waiting since before the pass ends with a pass that saw
        the outbox's end (fewer rows than a batch)."""
        waiters, self._waiters = self._waiters, []
        done = idle = False
        through = 0
        try:
            done, idle, through = await self._pass()
        finally:
            self._settle(waiters, done, through)
        if idle:
            self._idle.set()
            self._wake.clear()
            if self._waiters:  # a flush arrived during the pass: another one now
                return
            try:
                await asyncio.wait_for(self._wake.wait(), self._poll_s)
            except TimeoutError:
                pass

    async def _pass(self) -> tuple[bool, bool, int]:
        """One pass: (whether it reached the end of the outbox, whether
        the outbox was empty, the highest seq it published or set aside)."""
        rows = await self._db_call(self._db.outbox_batch, self._batch)
        await self._count_dead_letters()  # the batch may have set some aside
        if not rows:
            try:
                await self.erase_from_stream()
            except RelayFailure:
                raise
            except Exception as exc:
                raise RelayFailure("bus") from exc
            self._metrics.outbox_pending.set(0)
            return True, True, 0
        self._idle.clear()
        read, through = len(rows), rows[-1].seq
        try:
            acks = await self.publish(rows)
        except Exception:  # noqa: BLE001 - a refusal surfaces as a timeout here
            # publish_async reports JetStream's refusal of one message only
            # as a missing acknowledgement: find out which, one at a time.
            rows, acks = await self._publish_singly(rows)
        await self._db_call(self._db.outbox_done, rows, acks)
        self._metrics.events_published.inc(len(rows))
        self._metrics.outbox_pending.set(await self._db_call(self._db.outbox_pending))
        return read < self._batch, False, through

    async def _count_dead_letters(self) -> None:
        """Dead letters held now; the counter grows by those added."""
        n = await self._db_call(self._db.dead_letters_count)
        if n > self._held:
            self._metrics.relay_dead_letters.inc(n - self._held)
            log.error("relay_dead_letters_added", added=n - self._held, held=n)
        self._held = n
        self._metrics.relay_dead_letters_held.set(n)

    async def _publish_singly(self, rows: Sequence[OutboxRow]) -> tuple[list[OutboxRow], list[int]]:
        """After a batch failed: publishes its events one at a time (a
        connection loss or timeout is raised for the loop to retry); those it refuses for good go to the dead-letter
        table. Returns the events published and their stream sequences."""
        done, acks = [], []
        for row in rows:
            try:
                ack = await self._js.publish(row.subject, row.payload,
                                             timeout=self._ack_timeout_s,
                                             headers={MSG_ID: row.event_id})  # fmt: skip
                acks.append(ack.seq)
                done.append(row)
            except Exception as exc:
                if not is_permanent(exc):
                    raise RelayFailure("bus") from exc
                await self._db_call(self._db.dead_letter, row.seq, f"{type(exc).__name__}: {exc}")
                await self._count_dead_letters()
                log.error("relay_dead_letter", outbox_seq=row.seq, event_id=row.event_id,
                          reason=type(exc).__name__)  # fmt: skip
        return done, acks

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

        seqs = await self._db_call(self._db.pending_stream_erasures, 1000)
        # Below the stream's first sequence a message is gone already (aged
        # out, or purged by a rebalance's finish); the server refuses to
        # delete it with a generic error, not "not found".
        first = (await self._js.stream_info(self._stream)).state.first_seq if seqs else 0
        for seq in seqs:
            if seq < first:
                continue
            try:
                await self._js.delete_msg(self._stream, seq)
            except NotFoundError:
                pass  # already gone (aged out, purged, or deleted before)
        if seqs:
            await self._db_call(self._db.stream_erasures_done, seqs)
            log.info("stream_messages_erased", count=len(seqs))
        return len(seqs)

    async def stop(self) -> None:
        """Stops publishing; whatever is unacknowledged stays in the outbox."""
        self._stopping = True
        if self._task:
            self._task.cancel()
            await asyncio.wait({self._task}, timeout=5)
            self._task = None
