"""The store's database: its tables (``SCHEMA``), the two SQL dialects
(SQLite, the embedded default; PostgreSQL through psycopg 3, for
production), one connection on one thread, and transactions.

``Database`` is the base of every part of the store (``tanu.store.db``):
the parts add their tables' SQL on top of its helpers ``_x`` (execute),
``_one``, ``_all`` and ``_tx``. One connection means one writer; the
async service hands every call to the connection's own thread with
``run``, and callers without an event loop (tests, benchmarks) call the
methods directly, one at a time.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from tanu.core import errors, logs
from tanu.core.config import Layout

T = TypeVar("T")

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
    verification_locked INTEGER NOT NULL DEFAULT 0,
    owner TEXT NOT NULL DEFAULT ''
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
CREATE TABLE IF NOT EXISTS erasures (
    receipt_id TEXT PRIMARY KEY,
    subject_id TEXT NOT NULL,
    erased_at_ms {big} NOT NULL,
    record TEXT NOT NULL,
    stream_seqs TEXT NOT NULL,
    replicas TEXT NOT NULL DEFAULT '[]',
    body TEXT NOT NULL DEFAULT '',
    signature TEXT NOT NULL DEFAULT '',
    key_id TEXT NOT NULL DEFAULT '',
    audit_seq {big} NOT NULL DEFAULT 0,
    complete INTEGER NOT NULL DEFAULT 0,
    purged INTEGER NOT NULL DEFAULT 0
);
"""


# Columns added after the first release: (table, column, declaration), added
# to an existing database when it is opened (CREATE TABLE IF NOT EXISTS does not).
ADDED_COLUMNS = (
    ("subjects", "owner", "TEXT NOT NULL DEFAULT ''"),
    # Encounters (``tanu.store.encounters``): each template is one encounter.
    ("templates", "encounter_id", "TEXT NOT NULL DEFAULT ''"),
    ("templates", "encounter_type", "TEXT NOT NULL DEFAULT ''"),
    ("templates", "inactive", "INTEGER NOT NULL DEFAULT 0"),
    ("templates", "updated_at_ms", "{big} NOT NULL DEFAULT 0"),
    ("templates", "encounter_data", "{blob}"),
    # The outbox seq of a template's latest event, and its stream sequence
    # once published (0 until then): ``tanu.store.outbox``, ``tanu.store.dedup``.
    ("templates", "event_seq", "{big} NOT NULL DEFAULT 0"),
    ("templates", "stream_seq", "{big} NOT NULL DEFAULT 0"),
    # A held enrolment's encounter fields, sealed with the case's data key.
    ("cases", "encounter", "{blob}"),
)


log = logs.get(__name__)

# Seconds a connection to PostgreSQL may take to open.
CONNECT_TIMEOUT_S = 5
# The least time between two attempts to reconnect to PostgreSQL.
RECONNECT_PAUSE_S = 0.5


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(frozen=True)
class Dialect:
    """What differs between the backends: column types, how a writing
    transaction begins, the integrity error and the parameter marker."""

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


def postgres() -> Dialect:
    """The PostgreSQL dialect (psycopg is imported only when it is used)."""
    import psycopg

    return Dialect("postgres", "BIGSERIAL PRIMARY KEY", "BYTEA", "BIGINT", "BEGIN",
                   (psycopg.IntegrityError,))  # fmt: skip


def is_postgres_target(target: str | Path) -> bool:
    """Whether ``target`` is a PostgreSQL DSN (else a SQLite file path)."""
    return str(target).startswith(("postgresql://", "postgres://"))


class Database:
    """One connection to the store's database, used from one thread."""

    layout: Layout

    def _open_database(self, target: str | Path, readonly: bool = False) -> None:
        """Connects to ``target`` (a SQLite file path or a ``postgresql://``
        DSN) on a thread of its own. A writer creates the tables and checks
        the recorded layout against ``self.layout``; a reader does neither."""
        self.target = str(target)
        self._readonly = readonly
        self.is_postgres = is_postgres_target(self.target)
        self.dialect = postgres() if self.is_postgres else SQLITE
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="store-db")
        if readonly:
            self._conn = self._executor.submit(self._connect, True).result()
            return
        if not self.is_postgres and self.target != ":memory:":
            Path(self.target).parent.mkdir(parents=True, exist_ok=True)
        self._conn = self._executor.submit(self._create).result()

    def _connect(self, readonly: bool = False):
        if self.is_postgres:
            import psycopg

            # A bounded wait: an unreachable server fails a request, it
            # does not hold the database thread for the OS's TCP timeout.
            return psycopg.connect(self.target, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S)
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

    def _create(self):
        self._conn = conn = self._connect()
        d = self.dialect
        # The base tables, then each part's own (a mixin's class attribute ``DDL``).
        parts = [SCHEMA] + [k.__dict__["DDL"] for k in reversed(type(self).__mro__)
                            if "DDL" in k.__dict__]  # fmt: skip
        ddl = ";".join(parts).format(pk=d.pk, blob=d.blob, big=d.big)
        self._tx(lambda _c: [self._x(stmt) for stmt in ddl.split(";") if stmt.strip()])
        self._add_columns()
        # Then each part's migration of existing rows (a mixin's ``MIGRATE``).
        for k in reversed(type(self).__mro__):
            for stmt in k.__dict__.get("MIGRATE", "").split(";"):
                if stmt.strip():
                    self._tx(lambda _c, q=stmt: self._x(q.format(big=d.big, blob=d.blob)))
        self._check_layout()
        return conn

    def _add_columns(self) -> None:
        """Adds the columns of ``ADDED_COLUMNS`` to a database created before them."""
        d = self.dialect
        for table, column, decl in ADDED_COLUMNS:
            decl = decl.format(big=d.big, blob=d.blob)
            try:
                self._x(f"SELECT {column} FROM {table} LIMIT 0")
            except Exception:  # noqa: BLE001 (sqlite3 / psycopg: no such column; autocommit)
                self._x(f"ALTER TABLE {table} ADD COLUMN {column} {decl}")

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

    queued: int = 0  # jobs waiting for or running on the database thread (``run``)

    async def run(self, fn: Callable[..., T], *args) -> T:
        """Runs ``fn(*args)`` on the database thread, on a live connection
        (``_on_live_connection``)."""
        self.queued += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(
                self._executor, self._on_live_connection, fn, args
            )
        finally:
            self.queued -= 1

    reconnects: int = 0  # connections to PostgreSQL opened again after one was lost
    _last_connect_attempt = 0.0

    def _lost(self) -> bool:
        conn = self._conn
        return self.is_postgres and (conn.closed or getattr(conn, "broken", False))

    def _on_live_connection(self, fn: Callable[..., T], args: tuple) -> T:
        """``fn(*args)``, reconnecting first when PostgreSQL dropped the
        connection (a restart, a failover, an idle timeout, a network cut).
        A request the loss interrupted is refused as UNAVAILABLE: its
        transaction was rolled back, or, lost during COMMIT, its outcome is
        unknown; a retry with the same idempotency key is safe either way."""
        if self._lost():
            self._reconnect()
        try:
            return fn(*args)
        except Exception:
            if not self._lost():
                raise
            self._in_tx = False
            log.warning("database_connection_lost", database=self.describe())
            try:
                self._reconnect()
            except errors.Unavailable:
                pass  # the next request tries again
            raise errors.Unavailable(
                "the store lost its database connection during the request: it was not "
                "applied, or (lost while committing) its outcome is unknown; retry it with "
                "the same idempotency key"
            ) from None

    def _reconnect(self) -> None:
        """A new connection in place of the lost one (at most one attempt
        per RECONNECT_PAUSE_S, so a server that is down is not hammered)."""
        now = time.monotonic()
        if now - self._last_connect_attempt < RECONNECT_PAUSE_S:
            raise errors.Unavailable(f"the store's database {self.describe()} is unreachable")
        self._last_connect_attempt = now
        try:
            conn = self._connect(self._readonly)
        except Exception as exc:  # noqa: BLE001 - psycopg's connection errors
            log.warning("database_unreachable", database=self.describe(), error=type(exc).__name__)
            raise errors.Unavailable(
                f"the store's database {self.describe()} is unreachable"
            ) from None
        self._conn = conn
        self._in_tx = False
        self.reconnects += 1
        log.info("database_reconnected", database=self.describe(), reconnects=self.reconnects)

    def close(self) -> None:
        self._executor.submit(self._conn.close).result()
        self._executor.shutdown(wait=True)

    _in_tx = False

    def _tx(self, fn: Callable[[Any], T]) -> T:
        """Runs ``fn`` in one transaction. Nested calls join the outer one,
        so a write can be wrapped (``tanu.store.idempotency``: the key's
        record and the reply commit with the effect, or neither does)."""
        if self._in_tx:
            return fn(self._conn)
        self._conn.execute(self.dialect.begin)
        self._in_tx = True
        try:
            out = fn(self._conn)
        except BaseException:
            self._in_tx = False
            self._conn.execute("ROLLBACK")
            raise
        self._in_tx = False
        self._conn.execute("COMMIT")
        return out
