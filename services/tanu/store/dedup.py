"""De-duplication serialised in the system of record.

The gateway searches the indexed gallery (1:N over the partitions) and
sends its best candidate with the enrolment. Here, inside the enrolment's
transaction and under a lock that serialises enrolments across every store
process (SQLite: the write transaction itself, ``BEGIN IMMEDIATE``;
PostgreSQL: a transaction-scoped advisory lock), the new templates are also
compared exactly with every template enrolled within the last
``dedup_window_ms`` (longer than the indexing lag: committed, perhaps not yet
searchable) that the gateway's search may not have seen, read from
``templates`` and opened with their subjects' data keys a batch at a time.
Erased subjects are out of the window by construction: their rows are gone.

What the search saw: each partition's searcher reports the stream sequence
it had applied before it searched (``DedupCheck.searched_sequences``), and
the relay records on each template the stream sequence of its latest event
(``templates.stream_seq``, 0 while one waits in the outbox). An active
template whose latest event is at or below its partition's searched
sequence was in the index that answered, so it leaves the window: after a
bulk import (``tanu gallery import``) the window shrinks back as soon as the
searchers have applied it, instead of holding every imported template for
``dedup_window_ms``. Everything else stays: unpublished or dead-lettered
events, inactive templates (the search leaves them out), subjects moved by
a re-partitioning, partitions the gateway did not report (an older
gateway: the whole window, as before).

A match outside ``allow_duplicate`` holds the enrolment as an adjudication
case (``tanu.store.cases``), or refuses it when the score is beyond the
"certain" threshold; either way the matched subject's access history
records the hit.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from tanu.core import envelope, errors, vectors
from tanu.v1 import common_pb2, store_pb2

from .cases import Cases
from .schema import now_ms
from .window import RecentWindow, better

# The advisory lock every enrolment takes on PostgreSQL, per schema (the
# store's tables): advisory locks are database-wide, so two stores on
# separate schemas of one database must not serialise on each other.
ENROL_LOCK = "tanu-enrol"
DEFAULT_WINDOW_MS = 300_000
BATCH = 500
MAX_CANDIDATES = 16


class Dedup(Cases):
    """Enrolment with de-duplication against the recent templates."""

    DDL = "CREATE INDEX IF NOT EXISTS templates_by_time ON templates(created_at_ms)"
    # After ``schema.ADDED_COLUMNS`` (an older database gains stream_seq first).
    MIGRATE = (
        "CREATE INDEX IF NOT EXISTS templates_by_stream ON templates(stream_seq, created_at_ms)"
    )
    dedup_window_ms: int = DEFAULT_WINDOW_MS

    def _dedup_lock(self) -> None:
        """Serialises enrolments (and case decisions) across store processes."""
        if self.is_postgres:
            self._x("SELECT pg_advisory_xact_lock(hashtext(current_schema() || ?))", (ENROL_LOCK,))
        # SQLite: BEGIN IMMEDIATE already holds the database's one write lock.

    _recent: RecentWindow | None = None

    def _window_ids(self, searched: Mapping[int, int] | None = None) -> np.ndarray:
        """Ids of the templates in the window: enrolled within it and not
        seen by a search that had applied ``searched`` (partition: stream
        sequence; None or a partition left out: none seen there)."""
        since = now_ms() - self.dedup_window_ms
        searched = dict(searched or {})
        floor = min((searched.get(p, 0) for p in range(self.layout.partitions)), default=0)
        if not floor:
            # A partition not searched: every template of the window stays
            # (templates_by_time: the window's rows, never the whole table).
            rows = self._all(
                "SELECT t.template_id, s.partition, t.stream_seq, t.inactive FROM templates t "
                "JOIN subjects s ON s.subject_id = t.subject_id "
                "WHERE t.created_at_ms >= ? AND t.model_id = ?",
                (since, self.layout.model_id),
            )
        else:
            rows = self._recent_since(since, floor)
        ids = [tid for tid, part, seq, inactive in rows
               if not seq or inactive or seq > searched.get(part, 0)]  # fmt: skip
        return np.unique(np.asarray(ids, dtype=np.int64))

    def _recent_since(self, since: int, floor: int) -> list:
        """The window's unpublished templates and those published past
        ``floor``: (id, partition, stream seq, inactive)."""
        # Two index ranges (templates_by_stream): the unpublished, and those
        # published past the lowest searched sequence. ``+created_at_ms``
        # keeps SQLite on that index rather than templates_by_time.
        return self._all(
            "SELECT t.template_id, s.partition, t.stream_seq, t.inactive FROM templates t "
            "JOIN subjects s ON s.subject_id = t.subject_id "
            "WHERE t.stream_seq = 0 AND t.created_at_ms >= ? AND t.model_id = ? "
            "UNION ALL "
            "SELECT t.template_id, s.partition, t.stream_seq, t.inactive FROM templates t "
            "JOIN subjects s ON s.subject_id = t.subject_id "
            "WHERE t.stream_seq > ? AND +t.created_at_ms >= ? AND t.model_id = ?",
            (since, self.layout.model_id, floor, since, self.layout.model_id),
        )

    def _window_best(
        self, vecs: np.ndarray, exclude: str = "", searched: Mapping[int, int] | None = None
    ) -> tuple[str, float] | None:
        """The best-scoring subject among the templates in the window (exact
        scores; ``searched``: what the gateway's search had applied, see
        ``_window_ids``), or None when there are none. Opens only the
        templates this process has not opened before (``RecentWindow``)."""
        lay = self.layout
        if self._recent is None:
            self._recent = RecentWindow(lay.dimension)
        missing = self._recent.sync(self._window_ids(searched))
        keys: dict[str, bytes] = {}
        for start in range(0, len(missing), BATCH):
            chunk = [int(t) for t in missing[start : start + BATCH]]
            rows = self._all(
                "SELECT t.template_id, t.subject_id, t.sealed, k.master_key_id, k.wrapped "
                "FROM templates t JOIN subject_keys k ON k.subject_id = t.subject_id "
                f"WHERE t.template_id IN ({', '.join('?' * len(chunk))})",
                chunk,
            )
            ids, sids, raws = [], [], []
            for tid, sid, sealed, mk, wrapped in rows:
                dek = keys.get(sid)
                if dek is None:
                    dek = keys[sid] = self.keys.unwrap(mk, bytes(wrapped), sid.encode())
                raws.append(envelope.open_template(dek, sid, bytes(sealed)))
                ids.append(tid)
                sids.append(sid)
            if rows:
                self._recent.add(ids, sids, vectors.from_bytes(b"".join(raws), lay.dimension))
        keys.clear()
        return self._recent.best(vecs, lay.metric, exclude)

    def prune_window(self) -> int:
        """Drops opened templates that left the window or the database (an
        erasure by any store process); returns how many are held. Asks only
        about the templates held (a few thousand at most), never the whole
        table: at 10M templates a scan of the stream index held the
        database thread for 0.4 s warm, seconds cold, on every prune."""
        if self._recent is None or not len(self._recent):
            return 0
        since = now_ms() - self.dedup_window_ms
        held = [int(t) for t in self._recent.ids]
        still: list[int] = []
        for start in range(0, len(held), BATCH):
            chunk = held[start : start + BATCH]
            still += [r[0] for r in self._all(
                "SELECT template_id FROM templates WHERE created_at_ms >= ? AND model_id = ? "
                f"AND template_id IN ({', '.join('?' * len(chunk))})",
                (since, self.layout.model_id, *chunk),
            )]  # fmt: skip
        self._recent.sync(np.unique(np.asarray(still, dtype=np.int64)))
        return len(self._recent)

    def forget_window_subject(self, subject_id: str) -> None:
        """Drops an erased subject's opened templates at once."""
        if self._recent is not None:
            self._recent.forget_subject(subject_id)

    def enrol_subject(
        self, req: store_pb2.PutSubjectRequest, vecs: np.ndarray, encounters=None
    ) -> store_pb2.EnrolOutcome:
        """Enrols, refers (an adjudication case) or refuses, in one
        transaction under the enrolment lock; ``encounters``: the templates'
        (``tanu.store.encounter_rules.EncounterMeta``), else generated."""
        d, metric = req.dedup, self.layout.metric
        sid = req.subject_id

        def tx(_c) -> store_pb2.EnrolOutcome:
            self._dedup_lock()
            if self._one("SELECT 1 FROM subjects WHERE subject_id = ?", (sid,)):
                raise errors.AlreadyExists(f"subject {sid!r} is already enrolled")
            held = self.open_case_for(sid)
            if held and not d.allow_duplicate:
                raise errors.AlreadyExists(
                    f"an enrolment of subject {sid!r} is held for adjudication"
                )
            found = self._window_best(vecs, searched=d.searched_sequences)
            for c in d.candidates[:MAX_CANDIDATES]:  # best first: the best still enrolled
                if c.subject_id and self._one(
                    "SELECT 1 FROM subjects WHERE subject_id = ?", (c.subject_id,)
                ):
                    if found is None or better(c.score, found[1], metric):
                        found = (c.subject_id, float(c.score))
                    break
            match = found if found and vectors.is_match(found[1], d.threshold, metric) else None
            out = store_pb2.EnrolOutcome(outcome="enrolled")
            if match is not None:
                out.match.CopyFrom(common_pb2.Candidate(
                    subject_id=match[0], score=match[1], is_match=True,
                    partition=self._subject_row(match[0]).partition))  # fmt: skip
                out.match_status.CopyFrom(self._status(match[0]))
                out.match_tenants.extend(self.consent_tenants(match[0]))
            if match is None or d.allow_duplicate:
                if held:  # enrolled as asked: the held enrolment is moot
                    self._close_case(held, "superseded", d.tenant, d.client, d.purpose)
                self._insert_subject(sid, vecs, req.date_of_birth, req.consent, encounters)
                out.subject.CopyFrom(self._subject_row(sid))
            elif d.certain_threshold and vectors.is_match(match[1], d.certain_threshold, metric):
                out.outcome = "refused"
            else:
                out.outcome = "referred"
                out.case_id = self._hold(req, vecs, match[0], match[1])
            if match is not None:
                self._case_audit(out.case_id, [match[0]], "dedup_hit", out.outcome, d.tenant,
                                 d.client, d.purpose, {"score": round(match[1], 6)})  # fmt: skip
            return out

        return self._tx(tx)
