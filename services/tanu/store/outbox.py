"""The transactional outbox of template events, and the queue of stream
messages to delete after an erasure.

Every change to the gallery writes its event into ``outbox`` in the same
transaction (``_queue_event``), so an acknowledged enrolment or erasure
always reaches the event stream, whatever crashes in between. The relay
(``tanu.store.relay``) reads the oldest events (``outbox_batch``), publishes
them and then forgets them (``outbox_done``), remembering where each
template event sits in the stream (table ``published``) so that an erasure
can delete it there too (table ``stream_erasures``), and on each template
the stream sequence of its latest event (``templates.stream_seq``, 0 while
one is unpublished), for the de-duplication window (``tanu.store.dedup``).

Events carrying vectors are sealed with the subject's data key, like
templates; ``outbox_batch`` opens them for publishing.

A poison event, one that can never be published (it cannot be opened, or
JetStream refuses it for good, e.g. over the stream's maximum message
size), moves to the ``dead_letters`` table (``dead_letter``) instead of
blocking every event behind it; ``tanu_relay_dead_letters`` and its alert
tell the operator. An added-template event whose subject was erased
before it went out is simply dropped: the subject's removal event follows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from tanu.core import envelope, errors
from tanu.core.natsnames import template_events
from tanu.v1 import store_pb2

from .datakeys import DataKeys
from .schema import now_ms

ADDED, REMOVED = store_pb2.TemplateEvent.KIND_ADDED, store_pb2.TemplateEvent.KIND_REMOVED
# A subject's gallery membership (``tanu.store.encounters``): remembered in
# ``published`` like its ADDED events, so its erasure deletes them too.
MEMBERSHIP = store_pb2.TemplateEvent.KIND_MEMBERSHIP
TRACKED = (ADDED, MEMBERSHIP)

# Created by the relay when it starts (``outbox_prepare``); the payload
# stays sealed as it was in the outbox.
DEAD_LETTERS_DDL = (
    "CREATE TABLE IF NOT EXISTS dead_letters ("
    "seq {big} PRIMARY KEY, event_id TEXT NOT NULL, subject TEXT NOT NULL, "
    "subject_id TEXT NOT NULL, kind INTEGER NOT NULL, payload {blob} NOT NULL, "
    "created_at_ms {big} NOT NULL, reason TEXT NOT NULL, dead_at_ms {big} NOT NULL)"
)


@dataclass(frozen=True)
class OutboxRow:
    """One event waiting to be published (opened: the plain event bytes)."""

    seq: int
    event_id: str
    subject: str
    payload: bytes
    subject_id: str
    kind: int


class Outbox(DataKeys):
    """The ``outbox``, ``published`` and ``stream_erasures`` tables."""

    last_queued_seq = 0  # the highest outbox seq this store has queued

    def _queue_event(self, event: store_pb2.TemplateEvent, dek: bytes | None = None) -> None:
        """Writes ``event`` into the outbox, in the caller's transaction;
        sealed with ``dek`` when given (events carrying vectors)."""
        payload = event.SerializeToString()
        if dek is not None:
            payload = envelope.seal_template(dek, event.subject_id, payload)
        (seq,) = self._one(
            "INSERT INTO outbox(event_id, subject, subject_id, kind, payload, created_at_ms) "
            "VALUES (?, ?, ?, ?, ?, ?) RETURNING seq",
            (event.event_id, template_events(event.partition), event.subject_id, event.kind,
             payload, event.occurred_at_ms),
        )  # fmt: skip
        # Read by the relay's flush (on the event loop, after the commit):
        # every event this store queued before it has a seq no higher.
        self.last_queued_seq = max(self.last_queued_seq, seq)
        if event.kind in TRACKED and event.template_ids:
            # Not searchable as it now stands until this event is applied
            # (``tanu.store.dedup``: the window keeps it until then).
            tids = list(event.template_ids)
            self._x(
                "UPDATE templates SET event_seq = ?, stream_seq = 0 "
                f"WHERE template_id IN ({', '.join('?' * len(tids))})",
                (seq, *tids),
            )

    def _queue_stream_erasures(self, stream_seqs: Sequence[int]) -> None:
        for s in stream_seqs:
            self._x(
                "INSERT INTO stream_erasures(stream_seq) VALUES (?) ON CONFLICT DO NOTHING", (s,)
            )

    def outbox_prepare(self) -> None:
        """Creates the dead-letter table when it is missing (idempotent)."""
        d = self.dialect
        self._tx(lambda _c: self._x(DEAD_LETTERS_DDL.format(big=d.big, blob=d.blob)))

    def outbox_batch(self, limit: int) -> list[OutboxRow]:
        """The oldest unpublished events (lowest ``seq`` first), opened for
        publishing. With one store writing, ``seq`` order is commit order.
        An event that cannot be opened goes to the dead-letter table (or is
        dropped when its subject was erased meanwhile) and is not returned."""
        rows = self._all(
            "SELECT seq, event_id, subject, payload, subject_id, kind FROM outbox "
            "ORDER BY seq LIMIT ?",
            (limit,),
        )
        out = []
        for seq, eid, subj, payload, sid, kind in rows:
            payload = bytes(payload)
            if kind == ADDED:
                try:
                    payload = envelope.open_template(self._dek(sid), sid, payload)
                except (errors.KeyProblem, errors.FailedPrecondition) as exc:
                    if self._one("SELECT 1 FROM subjects WHERE subject_id = ?", (sid,)) is None:
                        self._tx(
                            lambda _c, s=seq: self._x("DELETE FROM outbox WHERE seq = ?", (s,))
                        )
                    else:
                        self.dead_letter(seq, f"cannot be opened: {exc}")
                    continue
            out.append(OutboxRow(seq, eid, subj, payload, sid, kind))
        return out

    def dead_letter(self, seq: int, reason: str) -> None:
        """Moves outbox event ``seq`` to the dead-letter table with ``reason``
        (no-op when another relay has moved or published it already)."""

        def tx(_c) -> None:
            self._x(
                "INSERT INTO dead_letters(seq, event_id, subject, subject_id, kind, payload, "
                "created_at_ms, reason, dead_at_ms) SELECT seq, event_id, subject, subject_id, "
                "kind, payload, created_at_ms, ?, ? FROM outbox WHERE seq = ? "
                "ON CONFLICT DO NOTHING",
                (reason[:500], now_ms(), seq),
            )
            self._x("DELETE FROM outbox WHERE seq = ?", (seq,))

        self._tx(tx)

    def dead_letters(self) -> list[tuple[int, str, str, str]]:
        """(seq, event id, stream subject, reason) of every dead letter, oldest first."""
        return [tuple(r) for r in self._all(
            "SELECT seq, event_id, subject, reason FROM dead_letters ORDER BY seq")]  # fmt: skip

    def dead_letters_count(self) -> int:
        return self._one("SELECT COUNT(*) FROM dead_letters")[0]

    def outbox_done(self, rows: Sequence[OutboxRow], stream_seqs: Sequence[int]) -> None:
        """Forgets published events and remembers where their template
        events sit in the stream (to delete them there on erasure)."""

        def tx(_c) -> None:
            for row, sseq in zip(rows, stream_seqs, strict=True):
                # Exactly the rows published: with several stores on one
                # PostgreSQL database, a row with a lower seq may have
                # committed after this batch was read, and is not published
                # yet. The relay that forgets a row records where it went.
                gone = self._x("DELETE FROM outbox WHERE seq = ?", (row.seq,)).rowcount
                if row.kind not in TRACKED:
                    continue
                if not self._one("SELECT 1 FROM subjects WHERE subject_id = ?", (row.subject_id,)):
                    # Erased while being published (its outbox row went with
                    # the erasure, so ``gone`` is 0): the message is on the
                    # stream all the same and must be deleted there too.
                    self._queue_stream_erasures([sseq])
                elif (
                    gone == 0
                    and self._x(
                        "DELETE FROM withdrawn_events WHERE event_id = ?", (row.event_id,)
                    ).rowcount
                ):
                    # Withdrawn while being published (an encounter erased or
                    # moved, ``tanu.store.encounters``): deleted there too.
                    self._queue_stream_erasures([sseq])
                elif gone == 1:
                    self._x("INSERT INTO published(subject_id, stream_seq) VALUES (?, ?)",
                            (row.subject_id, sseq))  # fmt: skip
                    self._mark_published(row, sseq)

        self._tx(tx)

    def _mark_published(self, row: OutboxRow, stream_seq: int) -> None:
        """Records where a template's latest event sits in the stream (only
        when no later event for it was queued since): a search that had
        applied ``stream_seq`` on its partition saw the template as it is."""
        event = store_pb2.TemplateEvent()
        event.ParseFromString(row.payload)
        tids = list(event.template_ids)
        if tids:
            self._x(
                "UPDATE templates SET stream_seq = ? WHERE event_seq = ? "
                f"AND template_id IN ({', '.join('?' * len(tids))})",
                (stream_seq, row.seq, *tids),
            )

    def outbox_pending(self) -> int:
        """How many events wait in the outbox."""
        return self._one("SELECT COUNT(*) FROM outbox")[0]

    def pending_stream_erasures(self, limit: int = 1000) -> list[int]:
        """Stream sequence numbers of erased subjects' events still to delete."""
        return [r[0] for r in self._all(
            "SELECT stream_seq FROM stream_erasures ORDER BY stream_seq LIMIT ?", (limit,))]  # fmt: skip

    def stream_erasures_done(self, seqs: Sequence[int]) -> None:
        """Forgets stream messages that are deleted (or were gone already)."""
        self._tx(lambda _c: [self._x("DELETE FROM stream_erasures WHERE stream_seq = ?", (s,))
                             for s in seqs])  # fmt: skip
