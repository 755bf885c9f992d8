"""Dead letters: template events the relay set aside because JetStream
refused them for good (``outbox.Outbox.dead_letter``), so the events behind
them could go out. Their subject is in the store but missing from the
indexes until an operator fixes the cause and requeues them.

* ``list_dead_letters``: what is held, as an operator may see it (the event
  id, partition, kind and reason; never a subject id or a template);
* ``requeue_dead_letters``: for each subject concerned, fresh events from
  what the store holds now (``_requeue_kept``: every template with today's
  galleries and status), never the set-aside event itself, which may be
  stale (a later gallery change) or name a template erased since; a removal
  event goes out again as it was (applying a removal is idempotent); the
  dead letters of a subject the store no longer holds are dropped;
* ``_drop_dead_letters``: erasure's part (``subjects.Subjects.delete_subject``
  and ``encounters.Encounters._drop_templates``): an erased subject's, or an
  erased encounter's, set-aside events go with the rest of their data, and
  so can never be requeued.

A mixin of the composed ``Store`` (``tanu.store.db``): it reads
``_requeue_kept`` (``encounters``), ``_subject_row`` (``subjects``) and
``_append_audit`` (``audit_log``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from tanu.core import audit, errors
from tanu.v1 import store_pb2

from .outbox import DEAD_LETTERS_DDL, REMOVED, TRACKED
from .schema import now_ms

# Dead letters listed, or requeued by seq, in one request.
MAX_DEAD_LETTERS = 1000


class DeadLetters:
    """The ``dead_letters`` table, as operators and erasure use it."""

    DDL = DEAD_LETTERS_DDL

    def list_dead_letters(self, limit: int = 0) -> store_pb2.ListDeadLettersResponse:
        """The oldest ``limit`` dead letters (0: 100) and how many there are."""
        if limit > MAX_DEAD_LETTERS:
            raise errors.InvalidArgument(f"at most {MAX_DEAD_LETTERS} dead letters per request")
        rows = self._all(
            "SELECT seq, event_id, subject, kind, reason, created_at_ms, dead_at_ms "
            "FROM dead_letters ORDER BY seq LIMIT ?",
            (limit or 100,),
        )
        (total,) = self._one("SELECT COUNT(*) FROM dead_letters")
        return store_pb2.ListDeadLettersResponse(
            letters=[
                store_pb2.DeadLetter(seq=r[0], event_id=r[1], subject=r[2], kind=r[3],
                                     reason=r[4], created_at_ms=r[5], dead_at_ms=r[6])
                for r in rows
            ],
            total=total,
        )  # fmt: skip

    def requeue_dead_letters(
        self, seqs: Sequence[int], every: bool, tenant: str = "", client: str = ""
    ) -> store_pb2.RequeueDeadLettersResponse:
        """Requeues the dead letters ``seqs`` (or ``every`` one), in one
        transaction with an audit entry of the counts; see the module."""
        if every == bool(seqs):
            raise errors.InvalidArgument("name the dead letters to requeue by seq, or ask for all")
        if len(seqs) > MAX_DEAD_LETTERS:
            raise errors.InvalidArgument(f"at most {MAX_DEAD_LETTERS} dead letters per request")

        def tx(_c) -> store_pb2.RequeueDeadLettersResponse:
            cols = "seq, event_id, subject, subject_id, kind, payload, created_at_ms"
            if every:
                rows = self._all(f"SELECT {cols} FROM dead_letters ORDER BY seq")
            else:
                marks = ", ".join("?" * len(seqs))
                rows = self._all(
                    f"SELECT {cols} FROM dead_letters WHERE seq IN ({marks}) ORDER BY seq",
                    list(seqs),
                )
                missing = sorted(set(seqs) - {r[0] for r in rows})
                if missing:
                    raise errors.NotFound(f"no dead letters with seq {missing[:10]}")
            out = store_pb2.RequeueDeadLettersResponse(requeued=len(rows))
            ts = now_ms()
            tracked = Counter(r[3] for r in rows if r[4] in TRACKED)  # subject: its letters
            for sid in sorted(tracked):
                try:
                    partition = self._subject_row(sid).partition
                except errors.NotFound:  # erased since: nothing to publish
                    out.dropped += tracked[sid]
                    continue
                out.subjects += 1
                out.templates += self._requeue_kept(sid, partition, ts)
            for seq, eid, subj, sid, kind, payload, created in rows:
                if kind == REMOVED:
                    self._x(
                        "INSERT INTO outbox(event_id, subject, subject_id, kind, payload, "
                        "created_at_ms) VALUES (?, ?, ?, ?, ?, ?)",
                        (eid, subj, sid, kind, bytes(payload), created),
                    )
                    out.removals += 1
                self._x("DELETE FROM dead_letters WHERE seq = ?", (seq,))
            self._append_audit([
                store_pb2.AuditRecord(
                    at_ms=ts, tenant=tenant[:64], client=client[:64],
                    operation="requeue_dead_letters", result="ok",
                    detail_json=audit.detail_json({
                        "requeued": out.requeued, "subjects": out.subjects,
                        "templates": out.templates, "removals": out.removals,
                        "dropped": out.dropped,
                    }),
                )
            ])  # fmt: skip
            return out

        return self._tx(tx)

    def _drop_dead_letters(self, subject_id: str) -> int:
        """Deletes the set-aside ADDED and membership events of
        ``subject_id``, in the caller's transaction; returns how many."""
        marks = ", ".join("?" * len(TRACKED))
        where = f"FROM dead_letters WHERE subject_id = ? AND kind IN ({marks})"
        (n,) = self._one(f"SELECT COUNT(*) {where}", (subject_id, *TRACKED))
        if n:
            self._x(f"DELETE {where}", (subject_id, *TRACKED))
        return n
