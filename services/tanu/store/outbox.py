"""The transactional outbox of template events, and the queue of stream
messages to delete after an erasure.

Every change to the gallery writes its event into ``outbox`` in the same
transaction (``_queue_event``), so an acknowledged enrolment or erasure
always reaches the event stream, whatever crashes in between. The relay
(``tanu.store.relay``) reads the oldest events (``outbox_batch``), publishes
them and then forgets them (``outbox_done``), remembering where each
template event sits in the stream (table ``published``) so that an erasure
can delete it there too (table ``stream_erasures``).

Events carrying vectors are sealed with the subject's data key, like
templates; ``outbox_batch`` opens them for publishing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from tanu.core import envelope
from tanu.core.natsnames import template_events
from tanu.v1 import store_pb2

from .datakeys import DataKeys

ADDED, REMOVED = store_pb2.TemplateEvent.KIND_ADDED, store_pb2.TemplateEvent.KIND_REMOVED


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

    def _queue_event(self, event: store_pb2.TemplateEvent, dek: bytes | None = None) -> None:
        """Writes ``event`` into the outbox, in the caller's transaction;
        sealed with ``dek`` when given (events carrying vectors)."""
        payload = event.SerializeToString()
        if dek is not None:
            payload = envelope.seal_template(dek, event.subject_id, payload)
        self._x(
            "INSERT INTO outbox(event_id, subject, subject_id, kind, payload, created_at_ms) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (event.event_id, template_events(event.partition), event.subject_id, event.kind,
             payload, event.occurred_at_ms),
        )  # fmt: skip

    def _queue_stream_erasures(self, stream_seqs: Sequence[int]) -> None:
        for s in stream_seqs:
            self._x(
                "INSERT INTO stream_erasures(stream_seq) VALUES (?) ON CONFLICT DO NOTHING", (s,)
            )

    def outbox_batch(self, limit: int) -> list[OutboxRow]:
        """The oldest unpublished events (lowest ``seq`` first), opened for
        publishing. With one store writing, ``seq`` order is commit order."""
        rows = self._all(
            "SELECT seq, event_id, subject, payload, subject_id, kind FROM outbox "
            "ORDER BY seq LIMIT ?",
            (limit,),
        )
        out = []
        for seq, eid, subj, payload, sid, kind in rows:
            payload = bytes(payload)
            if kind == ADDED:
                payload = envelope.open_template(self._dek(sid), sid, payload)
            out.append(OutboxRow(seq, eid, subj, payload, sid, kind))
        return out

    def outbox_done(self, rows: Sequence[OutboxRow], stream_seqs: Sequence[int]) -> None:
        """Forgets published events and remembers where their template
        events sit in the stream (to delete them there on erasure)."""

        def tx(_c) -> None:
            for row, sseq in zip(rows, stream_seqs, strict=True):
                if row.kind != ADDED:
                    continue
                if self._one("SELECT 1 FROM subjects WHERE subject_id = ?", (row.subject_id,)):
                    self._x("INSERT INTO published(subject_id, stream_seq) VALUES (?, ?)",
                            (row.subject_id, sseq))  # fmt: skip
                else:  # erased while being published: delete it from the stream too
                    self._queue_stream_erasures([sseq])
            # Exactly the rows published: with several stores on one
            # PostgreSQL database, a row with a lower seq may have committed
            # after this batch was read, and is not published yet.
            for row in rows:
                self._x("DELETE FROM outbox WHERE seq = ?", (row.seq,))

        self._tx(tx)

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
