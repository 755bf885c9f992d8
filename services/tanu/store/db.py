"""The system of record, ``Store``: subjects, their consents, sealed
templates and data keys, the transactional outbox of template events, and
the hash-chained audit log, on SQLite (the embedded default: a file path)
or PostgreSQL (production: a ``postgresql://`` DSN). Both run the same SQL
through a small dialect table (``tanu.store.schema``).

``Store`` is composed of mixins, one per responsibility, each a module
owning its tables' SQL, all over one ``Database`` (one connection on one
thread). A mixin that needs another's part subclasses it, so the class
bases say what depends on what:

- ``schema.Database``: tables, dialects, the connection and its thread, transactions
- ``datakeys.DataKeys``: per-subject data keys, wrapped; their rotation
- ``outbox.Outbox`` (DataKeys): template events to publish, stream erasures
- ``audit_log.AuditLog``: the hash chain and its signed checkpoints
- ``status.SubjectStatus``: the subject's record, consents, lockout, lock
- ``subjects.Subjects`` (SubjectStatus, Outbox, AuditLog): enrol, read, erase
- ``screening.Screening`` (SubjectStatus, AuditLog): Identify's candidates
  screened for its purpose and its audit entries, in one transaction
- ``report.CitizenReport`` (SubjectStatus, DataKeys): report, access history
- ``migrations.LayoutMigration``: template ids by subject, re-partitioning
- ``erasures.Erasures`` (Outbox, AuditLog): erasure records, their signed receipts
- ``digests.Digests`` (SubjectStatus, Outbox): reconciliation digests, re-publishing
- ``dead_letters.DeadLetters`` (Outbox, Encounters): set-aside events listed,
  requeued from what the store holds, dropped on erasure
- ``cases.Cases`` (Subjects): the adjudication queue
- ``dedup.Dedup`` (Cases): enrolment de-duplicated under a lock, in the store
  (``window.RecentWindow``: the window's opened templates, synced with the database)
- ``idempotency.Idempotency`` (AuditLog): idempotency keys and stored replies
- ``tasks.Tasks``: the OSIA facade's asynchronous tasks (sealed requests and results, leases)
- ``encounters.Encounters`` (Dedup): encounters (one per template), their
  galleries and status, moves and merges (``encounter_rules``: what they may hold)
- ``galleries.Galleries``: galleries and their members, as a caller may see them

Mixins rather than separate objects because every part writes in the same
transactions on the same connection (an erasure touches four of them), and
callers (the service, tests, benchmarks) use one object's methods.

No table, journal or WAL ever holds a template in the clear; on PostgreSQL
several stores may share a database (the audit chain stays one).
"""

from __future__ import annotations

from pathlib import Path

from tanu.core import envelope
from tanu.core.config import Layout
from tanu.policy.lockout import Lockout

from .audit_log import AuditLog
from .datakeys import DataKeys
from .dead_letters import DeadLetters
from .dedup import Dedup
from .digests import Digests
from .encounters import Encounters
from .galleries import Galleries
from .idempotency import Idempotency
from .migrations import LayoutMigration
from .outbox import Outbox
from .report import CitizenReport
from .schema import Database
from .screening import Screening
from .status import SubjectStatus
from .subjects import Subjects
from .tasks import Tasks

DEFAULT_LOCKOUT = Lockout()


class Store(
    Galleries,
    Encounters,
    Dedup,
    Idempotency,
    Tasks,
    Screening,
    Subjects,
    CitizenReport,
    LayoutMigration,
    Digests,
    SubjectStatus,
    DeadLetters,
    Outbox,
    DataKeys,
    AuditLog,
    Database,
):
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
        self._open_database(target)

    @classmethod
    def open_readonly(cls, target: str | Path) -> Store:
        """Opens an existing store to read (``python -m tanu.store.admin``):
        no schema, no layout check, no writes, no master key."""
        self = cls.__new__(cls)
        self._open_database(target, readonly=True)
        return self
