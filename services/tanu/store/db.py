"""The system of record in SQLite (the embedded default): subjects,
templates, and the transactional outbox of template events.

Every change to the gallery writes its event into ``outbox`` in the same
transaction, so an acknowledged enrolment or deletion always reaches the
event stream, whatever crashes in between. All calls run on one thread (one
writer); the async service hands them to it with ``run``.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np

from tanu.core import errors, vectors
from tanu.core.config import Layout
from tanu.core.subjects import template_events
from tanu.v1 import common_pb2, store_pb2

T = TypeVar("T")

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS subjects (
    subject_id TEXT PRIMARY KEY,
    partition INTEGER NOT NULL,
    model_id TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS templates (
    template_id INTEGER PRIMARY KEY AUTOINCREMENT,
    subject_id TEXT NOT NULL REFERENCES subjects(subject_id) ON DELETE CASCADE,
    model_id TEXT NOT NULL,
    dimension INTEGER NOT NULL,
    vector BLOB NOT NULL,
    created_at_ms INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS templates_by_subject ON templates(subject_id);
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id TEXT NOT NULL UNIQUE,
    subject TEXT NOT NULL,
    payload BLOB NOT NULL,
    created_at_ms INTEGER NOT NULL
);
"""


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(frozen=True)
class OutboxRow:
    """One event waiting to be published."""

    seq: int
    event_id: str
    subject: str
    payload: bytes


class SqliteStore:
    """Subjects, templates and the outbox in one SQLite file (WAL, full sync)."""

    def __init__(self, path: str | Path, layout: Layout) -> None:
        self.layout = layout
        self.path = Path(path)
        if str(path) != ":memory:":
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite")
        self._conn = self._executor.submit(self._open).result()

    def _open(self) -> sqlite3.Connection:
        conn = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA foreign_keys=ON")
        conn.executescript(SCHEMA)
        self._check_layout(conn)
        return conn

    def _check_layout(self, conn: sqlite3.Connection) -> None:
        """Records the layout on first use; refuses a different one later,
        because partition assignment and template space depend on it."""
        have = dict(conn.execute("SELECT key, value FROM meta").fetchall())
        if not have:
            conn.executemany(
                "INSERT INTO meta(key, value) VALUES (?, ?)",
                list(self.layout.as_dict(True).items()),
            )
            return
        detail = self.layout.differences(have, "stored", "configured", as_str=True)
        if detail:
            raise errors.FailedPrecondition(
                f"store {self.path} was created with another layout ({detail})"
            )

    async def run(self, fn: Callable[..., T], *args) -> T:
        """Runs ``fn(*args)`` on the database thread."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    def close(self) -> None:
        self._executor.submit(self._conn.close).result()
        self._executor.shutdown(wait=True)

    # --- transactions -------------------------------------------------

    def _tx(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            out = fn(self._conn)
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")
        return out

    def _subject_row(self, conn: sqlite3.Connection, subject_id: str) -> common_pb2.Subject:
        row = conn.execute(
            "SELECT s.partition, s.model_id, s.created_at_ms, COUNT(t.template_id) "
            "FROM subjects s LEFT JOIN templates t ON t.subject_id = s.subject_id "
            "WHERE s.subject_id = ? GROUP BY s.subject_id",
            (subject_id,),
        ).fetchone()
        if row is None:
            raise errors.NotFound(f"subject {subject_id!r} is not enrolled")
        return common_pb2.Subject(
            subject_id=subject_id,
            partition=row[0],
            model_id=row[1],
            created_at_ms=row[2],
            template_count=row[3],
        )

    def _outbox(self, conn: sqlite3.Connection, event: store_pb2.TemplateEvent) -> None:
        conn.execute(
            "INSERT INTO outbox(event_id, subject, payload, created_at_ms) VALUES (?, ?, ?, ?)",
            (
                event.event_id,
                template_events(event.partition),
                event.SerializeToString(),
                event.occurred_at_ms,
            ),
        )

    def _insert_subject(self, conn: sqlite3.Connection, subject_id: str, vecs: np.ndarray) -> None:
        lay = self.layout
        ts = now_ms()
        part = vectors.partition_of(subject_id, lay.partitions)
        try:
            conn.execute(
                "INSERT INTO subjects(subject_id, partition, model_id, created_at_ms) VALUES (?, ?, ?, ?)",
                (subject_id, part, lay.model_id, ts),
            )
        except sqlite3.IntegrityError:
            raise errors.AlreadyExists(f"subject {subject_id!r} is already enrolled") from None
        ids = []
        for row in vecs:
            cur = conn.execute(
                "INSERT INTO templates(subject_id, model_id, dimension, vector, created_at_ms) VALUES (?, ?, ?, ?, ?)",
                (subject_id, lay.model_id, lay.dimension, vectors.to_bytes(row), ts),
            )
            ids.append(cur.lastrowid)
        self._outbox(
            conn,
            store_pb2.TemplateEvent(
                event_id=uuid.uuid4().hex,
                kind=store_pb2.TemplateEvent.KIND_ADDED,
                subject_id=subject_id,
                partition=part,
                template_ids=ids,
                vectors=vectors.to_bytes(vecs),
                dimension=lay.dimension,
                model_id=lay.model_id,
                occurred_at_ms=ts,
            ),
        )

    # --- operations (run on the database thread) ------------------------

    def put_subject(self, subject_id: str, vecs: np.ndarray) -> common_pb2.Subject:
        """Enrols a subject with its templates (rows of ``vecs``) and queues the event."""

        def tx(conn: sqlite3.Connection) -> common_pb2.Subject:
            self._insert_subject(conn, subject_id, vecs)
            return self._subject_row(conn, subject_id)

        return self._tx(tx)

    def put_many(self, items: Sequence[tuple[str, np.ndarray]]) -> int:
        """Bulk enrolment in one transaction (imports, benchmarks); one event
        per subject. Returns the number of subjects written."""

        def tx(conn: sqlite3.Connection) -> int:
            for subject_id, vecs in items:
                self._insert_subject(conn, subject_id, vecs)
            return len(items)

        return self._tx(tx)

    def get_subject(self, subject_id: str) -> common_pb2.Subject:
        return self._subject_row(self._conn, subject_id)

    def get_templates(self, subject_id: str) -> store_pb2.GetTemplatesResponse:
        subject = self._subject_row(self._conn, subject_id)
        rows = self._conn.execute(
            "SELECT template_id, model_id, vector FROM templates WHERE subject_id = ? ORDER BY template_id",
            (subject_id,),
        ).fetchall()
        return store_pb2.GetTemplatesResponse(
            subject=subject,
            templates=[
                store_pb2.StoredTemplate(
                    template_id=tid, template=common_pb2.Template(vector=vec, model_id=mid)
                )
                for tid, mid, vec in rows
            ],
        )

    def delete_subject(self, subject_id: str, reason: str) -> store_pb2.DeleteSubjectResponse:
        """Deletes the subject and its templates and queues the removal event."""

        def tx(conn: sqlite3.Connection) -> store_pb2.DeleteSubjectResponse:
            subject = self._subject_row(conn, subject_id)
            ids = [
                r[0]
                for r in conn.execute(
                    "SELECT template_id FROM templates WHERE subject_id = ?", (subject_id,)
                )
            ]
            conn.execute("DELETE FROM templates WHERE subject_id = ?", (subject_id,))
            conn.execute("DELETE FROM subjects WHERE subject_id = ?", (subject_id,))
            ts = now_ms()
            self._outbox(
                conn,
                store_pb2.TemplateEvent(
                    event_id=uuid.uuid4().hex,
                    kind=store_pb2.TemplateEvent.KIND_REMOVED,
                    subject_id=subject_id,
                    partition=subject.partition,
                    template_ids=ids,
                    model_id=subject.model_id,
                    occurred_at_ms=ts,
                ),
            )
            return store_pb2.DeleteSubjectResponse(
                subject=subject, template_ids=ids, deleted_at_ms=ts
            )

        return self._tx(tx)

    def outbox_batch(self, limit: int) -> list[OutboxRow]:
        """The oldest unpublished events, in commit order."""
        rows = self._conn.execute(
            "SELECT seq, event_id, subject, payload FROM outbox ORDER BY seq LIMIT ?", (limit,)
        ).fetchall()
        return [OutboxRow(*r) for r in rows]

    def outbox_done(self, last_seq: int) -> None:
        """Forgets every event up to ``last_seq``: JetStream has acknowledged them."""
        self._conn.execute("DELETE FROM outbox WHERE seq <= ?", (last_seq,))

    def outbox_pending(self) -> int:
        return self._conn.execute("SELECT COUNT(*) FROM outbox").fetchone()[0]

    def count_subjects(self) -> int:
        return self._conn.execute("SELECT COUNT(*) FROM subjects").fetchone()[0]
