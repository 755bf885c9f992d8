"""The system of record: subjects, their consents, sealed templates and data
keys, the transactional outbox of template events, and the hash-chained
audit log. SQLite is the embedded default; PostgreSQL (psycopg 3) is the
production backend. Both run the same SQL through a small dialect table.

- Every change to the gallery writes its event into ``outbox`` in the same
  transaction, so an acknowledged enrolment or erasure always reaches the
  event stream, whatever crashes in between.
- Templates are sealed with their subject's data key, which is stored only
  wrapped by a master key (``tanu.core.keys``). No table, journal or WAL ever
  holds a template in the clear; the outbox holds template events sealed the
  same way. Erasure deletes the wrapped data key (crypto-shredding).
- All calls run on one thread (one connection, one writer); the async
  service hands them to it with ``run``. On PostgreSQL, several stores may
  share a database: audit appends take a table lock so the chain stays one.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from tanu.core import audit, envelope, errors, ids, vectors
from tanu.core.config import Layout
from tanu.core.natsnames import template_events
from tanu.policy.lockout import Lockout
from tanu.policy.subjects import RELATIONSHIPS, is_minor
from tanu.v1 import common_pb2, store_pb2

T = TypeVar("T")

ADDED, REMOVED = store_pb2.TemplateEvent.KIND_ADDED, store_pb2.TemplateEvent.KIND_REMOVED

# {pk}: an auto-numbered 64-bit primary key; {blob}: bytes; {big}: 64-bit int.
SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS subjects (
    subject_id TEXT PRIMARY KEY,
    partition INTEGER NOT NULL,
    model_id TEXT NOT NULL,
    date_of_birth TEXT NOT NULL,
    created_at_ms {big} NOT NULL,
    updated_at_ms {big} NOT NULL,
    biometric_lock INTEGER NOT NULL DEFAULT 0,
    failed_verifications INTEGER NOT NULL DEFAULT 0,
    retry_after_ms {big} NOT NULL DEFAULT 0,
    verification_locked INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS subject_keys (
    subject_id TEXT PRIMARY KEY REFERENCES subjects(subject_id) ON DELETE CASCADE,
    data_key_id TEXT NOT NULL,
    master_key_id TEXT NOT NULL,
    wrapped {blob} NOT NULL,
    created_at_ms {big} NOT NULL
);
CREATE INDEX IF NOT EXISTS subject_keys_by_master ON subject_keys(master_key_id);
CREATE TABLE IF NOT EXISTS templates (
    template_id {pk},
    subject_id TEXT NOT NULL REFERENCES subjects(subject_id) ON DELETE CASCADE,
    model_id TEXT NOT NULL,
    dimension INTEGER NOT NULL,
    sealed {blob} NOT NULL,
    created_at_ms {big} NOT NULL
);
CREATE INDEX IF NOT EXISTS templates_by_subject ON templates(subject_id);
CREATE TABLE IF NOT EXISTS consents (
    consent_id {pk},
    subject_id TEXT NOT NULL REFERENCES subjects(subject_id) ON DELETE CASCADE,
    purposes TEXT NOT NULL,
    given_by TEXT NOT NULL,
    guardian_subject_id TEXT NOT NULL,
    relationship TEXT NOT NULL,
    evidence_ref TEXT NOT NULL,
    tenant TEXT NOT NULL,
    client TEXT NOT NULL,
    granted_at_ms {big} NOT NULL,
    revoked_at_ms {big} NOT NULL DEFAULT 0,
    revoked_by TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS consents_by_subject ON consents(subject_id);
CREATE TABLE IF NOT EXISTS outbox (
    seq {pk},
    event_id TEXT NOT NULL UNIQUE,
    subject TEXT NOT NULL,
    subject_id TEXT NOT NULL,
    kind INTEGER NOT NULL,
    payload {blob} NOT NULL,
    created_at_ms {big} NOT NULL
);
CREATE TABLE IF NOT EXISTS published (
    subject_id TEXT NOT NULL,
    stream_seq {big} NOT NULL
);
CREATE INDEX IF NOT EXISTS published_by_subject ON published(subject_id);
CREATE TABLE IF NOT EXISTS stream_erasures (
    stream_seq {big} PRIMARY KEY
);
CREATE TABLE IF NOT EXISTS audit (
    seq {big} PRIMARY KEY,
    ts_ms {big} NOT NULL,
    tenant TEXT NOT NULL,
    client TEXT NOT NULL,
    operation TEXT NOT NULL,
    purpose TEXT NOT NULL,
    subject_id TEXT NOT NULL,
    result TEXT NOT NULL,
    detail TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_by_subject ON audit(subject_id, seq);
CREATE TABLE IF NOT EXISTS audit_checkpoints (
    seq {big} PRIMARY KEY,
    hash TEXT NOT NULL,
    ts_ms {big} NOT NULL,
    key_id TEXT NOT NULL,
    signature {blob} NOT NULL
);
"""


DEFAULT_LOCKOUT = Lockout()


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(frozen=True)
class OutboxRow:
    """One event waiting to be published (opened: the plain event bytes)."""

    seq: int
    event_id: str
    subject: str
    payload: bytes
    subject_id: str = ""
    kind: int = 0


@dataclass(frozen=True)
class Dialect:
    name: str
    pk: str
    blob: str
    big: str
    begin: str
    integrity: tuple[type[BaseException], ...]

    def sql(self, q: str) -> str:
        return q if self.name == "sqlite" else q.replace("?", "%s")


SQLITE = Dialect(
    "sqlite", "INTEGER PRIMARY KEY AUTOINCREMENT", "BLOB", "INTEGER", "BEGIN IMMEDIATE",
    (sqlite3.IntegrityError,),
)  # fmt: skip


def _postgres() -> Dialect:
    import psycopg

    return Dialect("postgres", "BIGSERIAL PRIMARY KEY", "BYTEA", "BIGINT", "BEGIN",
                   (psycopg.IntegrityError,))  # fmt: skip


class Store:
    """The store's tables behind one connection on one thread."""

    def __init__(
        self,
        target: str | Path,
        layout: Layout,
        key_provider: envelope.KeyProvider | None = None,
        lockout: Lockout = DEFAULT_LOCKOUT,
    ) -> None:
        """``target``: a SQLite file path, or a ``postgresql://`` DSN.
        ``key_provider``: the master keys; None gives a random key held in
        memory only (tests and benchmarks that never reopen the data)."""
        self.layout = layout
        self.lockout = lockout
        self.keys = key_provider or envelope.LocalKeyProvider({"ephemeral": envelope.new_data_key()},
                                                          "ephemeral")  # fmt: skip
        self._bind(target)
        if not self.is_postgres and self.target != ":memory:":
            Path(self.target).parent.mkdir(parents=True, exist_ok=True)
        self._conn = self._executor.submit(self._open).result()

    @classmethod
    def open_readonly(cls, target: str | Path) -> Store:
        """Opens an existing store to read (``tanu audit verify``): no schema,
        no layout check, no writes, no master key."""
        self = cls.__new__(cls)
        self._bind(target)
        self._conn = self._executor.submit(self._connect, True).result()
        return self

    def _bind(self, target: str | Path) -> None:
        """The backend of ``target`` and the one thread that talks to it."""
        self.target = str(target)
        self.is_postgres = self.target.startswith(("postgresql://", "postgres://"))
        self.dialect = _postgres() if self.is_postgres else SQLITE
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="store-db")

    @property
    def path(self) -> str:
        return self.target

    # --- connection -----------------------------------------------------

    def _connect(self, readonly: bool = False):
        if self.is_postgres:
            import psycopg

            return psycopg.connect(self.target, autocommit=True)
        if readonly:
            uri = Path(self.target).resolve().as_uri() + "?mode=ro"
            return sqlite3.connect(uri, uri=True, check_same_thread=False)
        conn = sqlite3.connect(self.target, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA foreign_keys=ON")
        # Freed pages are zeroed, so deleted (sealed) rows leave nothing behind.
        conn.execute("PRAGMA secure_delete=ON")
        return conn

    def _open(self):
        self._conn = conn = self._connect()
        d = self.dialect
        ddl = SCHEMA.format(pk=d.pk, blob=d.blob, big=d.big)
        self._tx(lambda _c: [self._x(stmt) for stmt in ddl.split(";") if stmt.strip()])
        self._check_layout()
        return conn

    def _x(self, q: str, args: Sequence[Any] = ()):
        return self._conn.execute(self.dialect.sql(q), tuple(args))

    def _one(self, q: str, args: Sequence[Any] = ()):
        return self._x(q, args).fetchone()

    def _all(self, q: str, args: Sequence[Any] = ()) -> list:
        return self._x(q, args).fetchall()

    def _check_layout(self) -> None:
        """Records the layout on first use; refuses a different one later,
        because partition assignment and template space depend on it."""
        have = dict(self._all("SELECT key, value FROM meta"))
        if not have:
            for k, v in self.layout.as_dict(True).items():
                self._x("INSERT INTO meta(key, value) VALUES (?, ?)", (k, v))
            return
        detail = self.layout.differences(have, "stored", "configured", as_str=True)
        if detail:
            raise errors.FailedPrecondition(
                f"store {self.describe()} was created with another layout ({detail})"
            )

    def describe(self) -> str:
        """Where the data lives, without credentials."""
        if self.is_postgres:
            from psycopg.conninfo import conninfo_to_dict

            info = conninfo_to_dict(self.target)
            return f"postgresql://{info.get('host', '')}:{info.get('port', '')}/{info.get('dbname', '')}"
        return self.target

    async def run(self, fn: Callable[..., T], *args) -> T:
        """Runs ``fn(*args)`` on the database thread."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    def close(self) -> None:
        self._executor.submit(self._conn.close).result()
        self._executor.shutdown(wait=True)

    def _tx(self, fn: Callable[[Any], T]) -> T:
        self._conn.execute(self.dialect.begin)
        try:
            out = fn(self._conn)
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")
        return out

    # --- data keys --------------------------------------------------------

    def _new_dek(self, subject_id: str, ts: int) -> bytes:
        dek = envelope.new_data_key()
        kid = self.keys.active_id()
        self._x(
            "INSERT INTO subject_keys(subject_id, data_key_id, master_key_id, wrapped, created_at_ms) "
            "VALUES (?, ?, ?, ?, ?)",
            (subject_id, "dk-" + uuid.uuid4().hex[:16], kid,
             self.keys.wrap(kid, dek, subject_id.encode()), ts),
        )  # fmt: skip
        return dek

    def _dek(self, subject_id: str) -> bytes:
        row = self._one(
            "SELECT master_key_id, wrapped FROM subject_keys WHERE subject_id = ?", (subject_id,)
        )
        if row is None:
            raise errors.FailedPrecondition(f"subject {subject_id!r} has no data key")
        return self.keys.unwrap(row[0], bytes(row[1]), subject_id.encode())

    # --- rows -------------------------------------------------------------

    def _subject_row(self, subject_id: str) -> common_pb2.Subject:
        row = self._one(
            "SELECT s.partition, s.model_id, s.created_at_ms, COUNT(t.template_id) "
            "FROM subjects s LEFT JOIN templates t ON t.subject_id = s.subject_id "
            "WHERE s.subject_id = ? GROUP BY s.subject_id, s.partition, s.model_id, s.created_at_ms",
            (subject_id,),
        )
        if row is None:
            raise errors.NotFound(f"subject {subject_id!r} is not enrolled")
        return common_pb2.Subject(
            subject_id=subject_id,
            partition=row[0],
            model_id=row[1],
            created_at_ms=row[2],
            template_count=row[3],
        )

    def _outbox(self, event: store_pb2.TemplateEvent, dek: bytes | None = None) -> None:
        payload = event.SerializeToString()
        if dek is not None:  # events carrying vectors are sealed like templates
            payload = envelope.seal_template(dek, event.subject_id, payload)
        self._x(
            "INSERT INTO outbox(event_id, subject, subject_id, kind, payload, created_at_ms) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (event.event_id, template_events(event.partition), event.subject_id, event.kind,
             payload, event.occurred_at_ms),
        )  # fmt: skip

    def _insert_consent(self, subject_id: str, c: common_pb2.Consent, ts: int) -> None:
        purposes = sorted({p.strip() for p in c.purposes if p.strip()})
        if not purposes:
            raise errors.InvalidArgument("a consent must name at least one purpose")
        given_by = c.given_by or "self"
        if given_by not in ("self", "guardian"):
            raise errors.InvalidArgument(
                f"consent given_by must be self or guardian, not {given_by!r}"
            )
        if given_by == "guardian" and (
            not c.guardian_subject_id or c.relationship not in RELATIONSHIPS
        ):
            raise errors.InvalidArgument(
                f"a guardian's consent names the guardian and a relationship in {list(RELATIONSHIPS)}"
            )
        if not c.evidence_ref:
            raise errors.InvalidArgument("a consent needs an evidence reference (evidence_ref)")
        self._x(
            "INSERT INTO consents(subject_id, purposes, given_by, guardian_subject_id, relationship, "
            "evidence_ref, tenant, client, granted_at_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (subject_id, json.dumps(purposes), given_by, c.guardian_subject_id, c.relationship,
             c.evidence_ref[:200], c.tenant, c.client, ts),
        )  # fmt: skip

    def _insert_subject(
        self,
        subject_id: str,
        vecs: np.ndarray,
        dob: str = "",
        consent: common_pb2.Consent | None = None,
    ) -> None:
        lay = self.layout
        ts = now_ms()
        part = ids.partition_of(subject_id, lay.partitions)
        try:
            self._x(
                "INSERT INTO subjects(subject_id, partition, model_id, date_of_birth, created_at_ms, "
                "updated_at_ms) VALUES (?, ?, ?, ?, ?, ?)",
                (subject_id, part, lay.model_id, dob, ts, ts),
            )
        except self.dialect.integrity:
            raise errors.AlreadyExists(f"subject {subject_id!r} is already enrolled") from None
        if consent is not None:
            self._insert_consent(subject_id, consent, ts)
        dek = self._new_dek(subject_id, ts)
        template_ids = []
        for row in vecs:
            (tid,) = self._one(
                "INSERT INTO templates(subject_id, model_id, dimension, sealed, created_at_ms) "
                "VALUES (?, ?, ?, ?, ?) RETURNING template_id",
                (subject_id, lay.model_id, lay.dimension,
                 envelope.seal_template(dek, subject_id, vectors.to_bytes(row)), ts),
            )  # fmt: skip
            template_ids.append(tid)
        self._outbox(
            store_pb2.TemplateEvent(
                event_id=uuid.uuid4().hex,
                kind=ADDED,
                subject_id=subject_id,
                partition=part,
                template_ids=template_ids,
                vectors=vectors.to_bytes(vecs),
                dimension=lay.dimension,
                model_id=lay.model_id,
                occurred_at_ms=ts,
            ),
            dek,
        )

    # --- gallery operations (run on the database thread) ------------------

    def put_subject(
        self,
        subject_id: str,
        vecs: np.ndarray,
        dob: str = "",
        consent: common_pb2.Consent | None = None,
    ) -> common_pb2.Subject:
        """Enrols a subject with its consent and templates, and queues the event."""

        def tx(_c) -> common_pb2.Subject:
            self._insert_subject(subject_id, vecs, dob, consent)
            return self._subject_row(subject_id)

        return self._tx(tx)

    def put_many(
        self,
        items: Sequence[tuple[str, np.ndarray]],
        dob: str = "",
        consent: common_pb2.Consent | None = None,
    ) -> int:
        """Bulk enrolment in one transaction (imports, benchmarks); one event
        per subject. Without ``consent`` the subjects are in the gallery
        (de-duplication sees them) but no purpose may match them.
        Returns the number of subjects written."""

        def tx(_c) -> int:
            for subject_id, vecs in items:
                self._insert_subject(subject_id, vecs, dob, consent)
            return len(items)

        return self._tx(tx)

    def get_subject(self, subject_id: str) -> common_pb2.Subject:
        return self._subject_row(subject_id)

    def get_templates(self, subject_id: str) -> store_pb2.GetTemplatesResponse:
        subject = self._subject_row(subject_id)
        dek = self._dek(subject_id)
        rows = self._all(
            "SELECT template_id, model_id, sealed FROM templates WHERE subject_id = ? "
            "ORDER BY template_id",
            (subject_id,),
        )
        return store_pb2.GetTemplatesResponse(
            subject=subject,
            templates=[
                store_pb2.StoredTemplate(
                    template_id=tid,
                    template=common_pb2.Template(
                        vector=envelope.open_template(dek, subject_id, bytes(blob)), model_id=mid
                    ),
                )
                for tid, mid, blob in rows
            ],
            status=self._status(subject_id),
        )

    def delete_subject(
        self, subject_id: str, reason: str, tenant: str = "", client: str = ""
    ) -> store_pb2.DeleteSubjectResponse:
        """Erases a subject: templates, consents and data key (crypto-
        shredding) in one transaction with its removal event, its unpublished
        template events, its published ones queued for deletion from the
        stream, and an audit entry."""

        def tx(_c) -> store_pb2.DeleteSubjectResponse:
            subject = self._subject_row(subject_id)
            template_ids = [r[0] for r in self._all(
                "SELECT template_id FROM templates WHERE subject_id = ?", (subject_id,))]  # fmt: skip
            key = self._one(
                "SELECT data_key_id, master_key_id FROM subject_keys WHERE subject_id = ?",
                (subject_id,),
            ) or ("", "")
            (consents,) = self._one(
                "SELECT COUNT(*) FROM consents WHERE subject_id = ?", (subject_id,)
            )
            seqs = [r[0] for r in self._all(
                "SELECT stream_seq FROM published WHERE subject_id = ?", (subject_id,))]  # fmt: skip
            for s in seqs:
                self._x(
                    "INSERT INTO stream_erasures(stream_seq) VALUES (?) ON CONFLICT DO NOTHING",
                    (s,),
                )
            self._x("DELETE FROM published WHERE subject_id = ?", (subject_id,))
            self._x("DELETE FROM outbox WHERE subject_id = ? AND kind = ?", (subject_id, ADDED))
            for table in ("templates", "consents", "subject_keys", "subjects"):
                self._x(f"DELETE FROM {table} WHERE subject_id = ?", (subject_id,))
            ts = now_ms()
            event_id = uuid.uuid4().hex
            self._outbox(
                store_pb2.TemplateEvent(
                    event_id=event_id,
                    kind=REMOVED,
                    subject_id=subject_id,
                    partition=subject.partition,
                    template_ids=template_ids,
                    model_id=subject.model_id,
                    occurred_at_ms=ts,
                )
            )
            seq = self._append_audit(
                [
                    store_pb2.AuditRecord(
                        at_ms=ts, tenant=tenant, client=client, operation="erase",
                        subject_id=subject_id, result="ok",
                        detail_json=audit.detail_json({
                            "reason": reason[:200], "templates": len(template_ids), "data_key_id": key[0],
                            "master_key_id": key[1], "stream_messages": len(seqs),
                            "consents": consents, "removal_event_id": event_id,
                        }),
                    )
                ]
            )  # fmt: skip
            return store_pb2.DeleteSubjectResponse(
                subject=subject, template_ids=template_ids, deleted_at_ms=ts, data_key_id=key[0],
                master_key_id=key[1], stream_messages=len(seqs), consents_removed=consents,
                removal_event_id=event_id, audit_seq=seq,
            )  # fmt: skip

        return self._tx(tx)

    # --- status, consents, locks --------------------------------------------

    def _status(self, subject_id: str) -> store_pb2.SubjectStatus:
        row = self._one(
            "SELECT date_of_birth, biometric_lock, failed_verifications, retry_after_ms, "
            "verification_locked FROM subjects WHERE subject_id = ?",
            (subject_id,),
        )
        if row is None:
            return store_pb2.SubjectStatus(subject_id=subject_id, enrolled=False)
        purposes: set[str] = set()
        guardians: set[str] = set()
        for p, g in self._all(
            "SELECT purposes, guardian_subject_id FROM consents "
            "WHERE subject_id = ? AND revoked_at_ms = 0",
            (subject_id,),
        ):
            purposes.update(json.loads(p))
            if g:
                guardians.add(g)
        return store_pb2.SubjectStatus(
            subject_id=subject_id,
            enrolled=True,
            date_of_birth=row[0],
            purposes=sorted(purposes),
            biometric_locked=bool(row[1]),
            failed_verifications=row[2],
            retry_after_ms=row[3],
            verification_locked=bool(row[4]),
            guardians=sorted(guardians),
        )

    def status(self, subject_ids: Sequence[str]) -> store_pb2.StatusResponse:
        return store_pb2.StatusResponse(statuses=[self._status(s) for s in subject_ids])

    def record_verification(self, subject_id: str, matched: bool) -> store_pb2.SubjectStatus:
        """Counts consecutive failures (the rule: ``tanu.policy.lockout``)."""

        def tx(_c) -> store_pb2.SubjectStatus:
            self._subject_row(subject_id)
            if matched:
                self._x(
                    "UPDATE subjects SET failed_verifications = 0, retry_after_ms = 0 "
                    "WHERE subject_id = ?",
                    (subject_id,),
                )
            else:
                (n,) = self._one(
                    "SELECT failed_verifications FROM subjects WHERE subject_id = ?", (subject_id,)
                )
                n += 1
                retry, locked = self.lockout.after_failure(n, now_ms())
                self._x(
                    "UPDATE subjects SET failed_verifications = ?, retry_after_ms = ?, "
                    "verification_locked = ? WHERE subject_id = ?",
                    (n, retry, int(locked), subject_id),
                )
            return self._status(subject_id)

        return self._tx(tx)

    def grant_consent(
        self, subject_id: str, consent: common_pb2.Consent
    ) -> store_pb2.SubjectStatus:
        def tx(_c) -> store_pb2.SubjectStatus:
            self._subject_row(subject_id)
            ts = now_ms()
            self._insert_consent(subject_id, consent, ts)
            self._x("UPDATE subjects SET updated_at_ms = ? WHERE subject_id = ?", (ts, subject_id))
            return self._status(subject_id)

        return self._tx(tx)

    def revoke_consent(
        self, subject_id: str, purposes: Sequence[str], revoked_by: str
    ) -> store_pb2.SubjectStatus:
        """Withdraws the named purposes (all when empty) from every consent in
        force; a consent left with no purpose is marked revoked."""

        def tx(_c) -> store_pb2.SubjectStatus:
            self._subject_row(subject_id)
            ts = now_ms()
            drop = set(purposes)
            for cid, p in self._all(
                "SELECT consent_id, purposes FROM consents WHERE subject_id = ? AND revoked_at_ms = 0",
                (subject_id,),
            ):
                left = [x for x in json.loads(p) if drop and x not in drop]
                if left:
                    self._x("UPDATE consents SET purposes = ? WHERE consent_id = ?",
                            (json.dumps(left), cid))  # fmt: skip
                else:
                    self._x(
                        "UPDATE consents SET revoked_at_ms = ?, revoked_by = ? WHERE consent_id = ?",
                        (ts, revoked_by, cid),
                    )
            self._x("UPDATE subjects SET updated_at_ms = ? WHERE subject_id = ?", (ts, subject_id))
            return self._status(subject_id)

        return self._tx(tx)

    def set_biometric_lock(self, subject_id: str, locked: bool) -> store_pb2.SubjectStatus:
        """Sets the subject's own lock. Unlocking also lifts a verification lockout."""

        def tx(_c) -> store_pb2.SubjectStatus:
            self._subject_row(subject_id)
            if locked:
                self._x("UPDATE subjects SET biometric_lock = 1, updated_at_ms = ? WHERE subject_id = ?",
                        (now_ms(), subject_id))  # fmt: skip
            else:
                self._x(
                    "UPDATE subjects SET biometric_lock = 0, verification_locked = 0, "
                    "failed_verifications = 0, retry_after_ms = 0, updated_at_ms = ? "
                    "WHERE subject_id = ?",
                    (now_ms(), subject_id),
                )
            return self._status(subject_id)

        return self._tx(tx)

    def report(self, subject_id: str) -> common_pb2.SubjectReport:
        subject = self._subject_row(subject_id)
        st = self._status(subject_id)
        (updated,) = self._one(
            "SELECT updated_at_ms FROM subjects WHERE subject_id = ?", (subject_id,)
        )
        key = self._one(
            "SELECT data_key_id, master_key_id FROM subject_keys WHERE subject_id = ?",
            (subject_id,),
        ) or ("", "")
        consents = [
            common_pb2.Consent(
                consent_id=r[0],
                purposes=json.loads(r[1]),
                given_by=r[2],
                guardian_subject_id=r[3],
                relationship=r[4],
                evidence_ref=r[5],
                tenant=r[6],
                client=r[7],
                granted_at_ms=r[8],
                revoked_at_ms=r[9],
                revoked_by=r[10],
            )  # fmt: skip
            for r in self._all(
                "SELECT consent_id, purposes, given_by, guardian_subject_id, relationship, "
                "evidence_ref, tenant, client, granted_at_ms, revoked_at_ms, revoked_by "
                "FROM consents WHERE subject_id = ? ORDER BY consent_id",
                (subject_id,),
            )
        ]
        return common_pb2.SubjectReport(
            subject=subject,
            date_of_birth=st.date_of_birth,
            minor=bool(st.date_of_birth) and is_minor(st.date_of_birth),
            records={
                "templates": subject.template_count,
                "consents": len(consents),
                "data_key": 1 if key[0] else 0,
            },
            updated_at_ms=updated,
            data_key_id=key[0],
            master_key_id=key[1],
            consents=consents,
            biometric_locked=st.biometric_locked,
            verification_locked=st.verification_locked,
            failed_verifications=st.failed_verifications,
        )

    # --- key rotation -------------------------------------------------------

    def rewrap_batch(self, limit: int) -> int:
        """Re-wraps up to ``limit`` data keys not under the active master key."""
        active = self.keys.active_id()

        def tx(_c) -> int:
            rows = self._all(
                "SELECT subject_id, master_key_id, wrapped FROM subject_keys "
                "WHERE master_key_id <> ? LIMIT ?",
                (active, limit),
            )
            for sid, kid, wrapped in rows:
                dek = self.keys.unwrap(kid, bytes(wrapped), sid.encode())
                self._x(
                    "UPDATE subject_keys SET master_key_id = ?, wrapped = ? WHERE subject_id = ?",
                    (active, self.keys.wrap(active, dek, sid.encode()), sid),
                )
            return len(rows)

        return self._tx(tx)

    def master_keys_in_use(self) -> list[str]:
        return sorted(r[0] for r in self._all("SELECT DISTINCT master_key_id FROM subject_keys"))

    # --- audit log ------------------------------------------------------------

    def _append_audit(self, records: Sequence[store_pb2.AuditRecord]) -> int:
        if self.is_postgres:  # one chain, whichever store instance appends
            self._x("LOCK TABLE audit IN EXCLUSIVE MODE")
        last = self._one("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1")
        seq, prev = (last[0], last[1]) if last else (0, audit.GENESIS)
        for r in records:
            seq += 1
            e = audit.Entry(
                seq, r.at_ms or now_ms(), r.tenant[:64], r.client[:64], r.operation[:64],
                r.purpose[:64], r.subject_id[:128], r.result[:64], r.detail_json or "{}", prev,
            )  # fmt: skip
            h = audit.entry_hash(prev, e)
            self._x(
                "INSERT INTO audit(seq, ts_ms, tenant, client, operation, purpose, subject_id, "
                "result, detail, prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (e.seq, e.ts_ms, e.tenant, e.client, e.operation, e.purpose, e.subject_id,
                 e.result, e.detail, prev, h),
            )  # fmt: skip
            prev = h
        return seq

    def append_audit(self, records: Sequence[store_pb2.AuditRecord]) -> int:
        """Appends entries to the chain; returns the last sequence number."""
        return self._tx(lambda _c: self._append_audit(records))

    def checkpoint(self, signer) -> audit.Checkpoint | None:
        """Seals the chain's head with a signed checkpoint, if it moved."""

        def tx(_c) -> audit.Checkpoint | None:
            head = self._one("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1")
            done = self._one("SELECT MAX(seq) FROM audit_checkpoints")
            if head is None or (done[0] or 0) >= head[0]:
                return None
            cp = audit.sign_checkpoint(signer, head[0], head[1], now_ms())
            self._x(
                "INSERT INTO audit_checkpoints(seq, hash, ts_ms, key_id, signature) "
                "VALUES (?, ?, ?, ?, ?)",
                (cp.seq, cp.hash, cp.ts_ms, cp.key_id, cp.signature),
            )
            return cp

        return self._tx(tx)

    def last_checkpoint_ms(self) -> int:
        row = self._one("SELECT MAX(ts_ms) FROM audit_checkpoints")
        return int(row[0] or 0)

    def audit_entries(self, batch: int = 10_000) -> Iterator[audit.Entry]:
        after = 0
        while True:
            rows = self._all(
                "SELECT seq, ts_ms, tenant, client, operation, purpose, subject_id, result, "
                "detail, prev_hash, hash FROM audit WHERE seq > ? ORDER BY seq LIMIT ?",
                (after, batch),
            )
            if not rows:
                return
            for r in rows:
                yield audit.Entry(*r)
            after = rows[-1][0]

    def audit_checkpoints(self) -> list[audit.Checkpoint]:
        return [
            audit.Checkpoint(r[0], r[1], r[2], r[3], bytes(r[4]))
            for r in self._all(
                "SELECT seq, hash, ts_ms, key_id, signature FROM audit_checkpoints ORDER BY seq"
            )
        ]

    def access_history(
        self, subject_id: str, page_size: int, page_token: str
    ) -> common_pb2.AccessHistory:
        size = min(max(page_size or 50, 1), 500)
        try:
            after = int(page_token) if page_token else 0
        except ValueError:
            raise errors.InvalidArgument(f"page_token {page_token!r} is not valid") from None
        rows = self._all(
            "SELECT seq, ts_ms, tenant, client, operation, purpose, result FROM audit "
            "WHERE subject_id = ? AND seq > ? ORDER BY seq LIMIT ?",
            (subject_id, after, size + 1),
        )
        more = len(rows) > size
        rows = rows[:size]
        return common_pb2.AccessHistory(
            entries=[
                common_pb2.AccessEntry(
                    seq=r[0],
                    at_ms=r[1],
                    tenant=r[2],
                    client=r[3],
                    operation=r[4],
                    purpose=r[5],
                    result=r[6],
                )  # fmt: skip
                for r in rows
            ],
            next_page_token=str(rows[-1][0]) if more else "",
        )

    # --- outbox and stream erasure --------------------------------------------

    def outbox_batch(self, limit: int) -> list[OutboxRow]:
        """The oldest unpublished events, in commit order, opened for publishing."""
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
                    self._x("INSERT INTO stream_erasures(stream_seq) VALUES (?) "
                            "ON CONFLICT DO NOTHING", (sseq,))  # fmt: skip
            self._x("DELETE FROM outbox WHERE seq <= ?", (rows[-1].seq,))

        self._tx(tx)

    def outbox_pending(self) -> int:
        return self._one("SELECT COUNT(*) FROM outbox")[0]

    def pending_stream_erasures(self, limit: int = 1000) -> list[int]:
        return [r[0] for r in self._all(
            "SELECT stream_seq FROM stream_erasures ORDER BY stream_seq LIMIT ?", (limit,))]  # fmt: skip

    def stream_erasures_done(self, seqs: Sequence[int]) -> None:
        self._tx(lambda _c: [self._x("DELETE FROM stream_erasures WHERE stream_seq = ?", (s,))
                             for s in seqs])  # fmt: skip

    def count_subjects(self) -> int:
        return self._one("SELECT COUNT(*) FROM subjects")[0]


# The embedded default's name, kept for callers that open a file directly.
SqliteStore = Store
