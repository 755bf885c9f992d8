"""The hash-chained audit log and its signed checkpoints
(``tanu.core.audit`` holds the chain's rules and its verification).

Each entry's hash covers the previous entry's hash, and checkpoints sign
the head of the chain from time to time, so any edit, deletion, insertion
or reordering is found and located by ``tanu.core.audit.verify`` over
``audit_entries`` and ``audit_checkpoints``. On PostgreSQL several stores
may share a database: appends take a table lock so the chain stays one.

Group commit (``GroupCommit``): appends that arrive while one is being
committed are committed together in the next transaction (one fsync for
all of them); each caller is answered only once the transaction holding
its records has committed, so an entry is durable before its request's
reply leaves. A shared commit that fails is retried one append at a time,
so a bad append fails its own caller only.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Generic, TypeVar

from tanu.core import audit
from tanu.core.batching import MicroBatcher
from tanu.core.metrics import Metrics
from tanu.v1 import store_pb2

from .schema import Database, now_ms

G = TypeVar("G")
O = TypeVar("O")  # noqa: E741


class AuditLog(Database):
    """The ``audit`` and ``audit_checkpoints`` tables."""

    def _append_audit(self, records: Sequence[store_pb2.AuditRecord]) -> int:
        """Appends to the chain in the caller's transaction; returns the last seq."""
        if self.is_postgres:  # one chain, whichever store instance appends
            self._x("LOCK TABLE audit IN EXCLUSIVE MODE")
        last = self._one("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1")
        seq, prev = (last[0], last[1]) if last else (0, audit.GENESIS)
        rows = []
        for r in records:
            seq += 1
            e = audit.Entry(
                seq, r.at_ms or now_ms(), r.tenant[:64], r.client[:64], r.operation[:64],
                r.purpose[:64], r.subject_id[:128], r.result[:64], r.detail_json or "{}", prev,
            )  # fmt: skip
            h = audit.entry_hash(prev, e)
            rows.append((e.seq, e.ts_ms, e.tenant, e.client, e.operation, e.purpose,
                         e.subject_id, e.result, e.detail, prev, h))  # fmt: skip
            prev = h
        if rows:  # one statement for the whole append
            self._conn.cursor().executemany(
                self.dialect.sql(
                    "INSERT INTO audit(seq, ts_ms, tenant, client, operation, purpose, subject_id, "
                    "result, detail, prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                ),
                rows,
            )
        return seq

    def append_audit(self, records: Sequence[store_pb2.AuditRecord]) -> int:
        """Appends entries to the chain; returns the last sequence number."""
        return self._tx(lambda _c: self._append_audit(records))

    def append_audit_groups(self, groups: Sequence[Sequence[store_pb2.AuditRecord]]) -> list[int]:
        """Appends several callers' entries, in order, in one transaction;
        returns each group's last sequence number."""

        def tx(_c) -> list[int]:
            seq = self._append_audit([r for g in groups for r in g])
            ends, end = [], seq - sum(len(g) for g in groups)
            for g in groups:
                end += len(g)
                ends.append(end)
            return ends

        return self._tx(tx)

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
        """When the last checkpoint was signed (0: never)."""
        row = self._one("SELECT MAX(ts_ms) FROM audit_checkpoints")
        return int(row[0] or 0)

    def audit_entries(self, batch: int = 10_000) -> Iterator[audit.Entry]:
        """Every entry in chain order, read ``batch`` at a time."""
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
        """Every signed checkpoint, oldest first."""
        return [
            audit.Checkpoint(r[0], r[1], r[2], r[3], bytes(r[4]))
            for r in self._all(
                "SELECT seq, hash, ts_ms, key_id, signature FROM audit_checkpoints ORDER BY seq"
            )
        ]


class GroupCommit(Generic[G, O]):
    """Audit appends committed together: those waiting while a commit runs
    share the next one (no wait is added to fill it). ``commit(groups)``
    (by default ``append_audit_groups``) runs on the database thread and
    writes every group in one transaction, returning each group's result."""

    def __init__(
        self,
        log: AuditLog,
        metrics: Metrics | None = None,
        max_groups: int = 256,
        *,
        name: str = "audit_commit",
        commit: Callable[[Sequence[G]], Sequence[O]] | None = None,
    ) -> None:
        self._log = log
        self._fn = commit or log.append_audit_groups
        self._batcher: MicroBatcher[G, O | Exception] = (
            MicroBatcher(self._commit, name=name, max_batch=max_groups,
                         max_wait_s=0.0, max_in_flight=1, metrics=metrics)
        )  # fmt: skip

    async def append(self, group: G) -> O:
        """Writes ``group`` (by default: appends its records to the chain
        and returns their last sequence number) once the transaction
        holding it has committed."""
        out = await self._batcher.submit(group)
        if isinstance(out, Exception):
            raise out
        return out

    async def _commit(self, groups: list[G]) -> list[O | Exception]:
        try:
            return list(await self._log.run(self._fn, groups))
        except Exception as exc:  # noqa: BLE001 - isolated below
            if len(groups) == 1:
                return [exc]
        out: list[O | Exception] = []
        for g in groups:  # one at a time: only the group that fails is refused
            try:
                out.append((await self._log.run(self._fn, [g]))[0])
            except Exception as exc:  # noqa: BLE001 - this caller's refusal
                out.append(exc)
        return out

    async def close(self) -> None:
        await self._batcher.close()
