"""Asynchronous tasks of the OSIA facade (``tanu.gateway.osia``): a request
sent with a ``callback`` becomes a task here, so it survives a gateway
restart; gateways claim due tasks under a lease (one owner at a time, on
SQLite and PostgreSQL alike), run them, store the result and record every
delivery attempt to the callback.

A task's request and result are sealed at rest with a data key of the
task's own, wrapped by the master key (they may hold a face image or a
template, and no table holds those in the clear). A task is unique per
(tenant, operation, transaction id): the same request again gets the same
task back, another request with the same transaction id is refused
(ALREADY_EXISTS). A task is only ever found for its own tenant.

Statuses (OSIA 1.6.0 ``readTaskStatus``): PENDING (not run yet),
RESPONSE_SCHEDULED (result ready, delivery due), RESPONSE_RETRY (a delivery
failed, another is due at ``next_attempt_ms``), COMPLETED (the callback
answered 2xx), RESPONSE_ERROR (every attempt failed).
"""

from __future__ import annotations

import re

from tanu.core import envelope, errors
from tanu.v1 import tasks_pb2

from .schema import Database, now_ms

PENDING, SCHEDULED, RETRY = "PENDING", "RESPONSE_SCHEDULED", "RESPONSE_RETRY"
COMPLETED, ERROR = "COMPLETED", "RESPONSE_ERROR"
STATUSES = (PENDING, SCHEDULED, RETRY, COMPLETED, ERROR)
DUE = (PENDING, SCHEDULED, RETRY)
TASK_ID_RE = re.compile(r"[A-Za-z0-9\-]{8,64}")
MAX_CLAIM = 64
MAX_LEASE_MS = 10 * 60_000
MAX_REQUEST_BYTES = 64 * 2**20
# A finished task (COMPLETED, RESPONSE_ERROR) is kept this long for
# readTaskStatus and redeliverTaskResult, then purged.
DEFAULT_TASK_TTL_MS = 7 * 86_400_000

_COLUMNS = (
    "task_id, tenant, client, operation, transaction_id, request_sha256, status, priority, "
    "callback, master_key_id, wrapped_key, request, result_status, result_type, result, "
    "has_result, attempts, next_attempt_ms, created_at_ms, updated_at_ms, last_error"
)


def check_task_id(task_id: str) -> str:
    """``task_id`` when it has the form of one; NOT_FOUND otherwise (a
    malformed id names no task)."""
    if not TASK_ID_RE.fullmatch(task_id or ""):
        raise errors.NotFound("no such task")
    return task_id


class Tasks(Database):
    """The ``osia_tasks`` table."""

    DDL = """
CREATE TABLE IF NOT EXISTS osia_tasks (
    task_id TEXT PRIMARY KEY,
    tenant TEXT NOT NULL,
    client TEXT NOT NULL,
    operation TEXT NOT NULL,
    transaction_id TEXT NOT NULL,
    request_sha256 TEXT NOT NULL,
    status TEXT NOT NULL,
    priority INTEGER NOT NULL,
    callback TEXT NOT NULL,
    master_key_id TEXT NOT NULL,
    wrapped_key {blob} NOT NULL,
    request {blob} NOT NULL,
    result_status INTEGER NOT NULL DEFAULT 0,
    result_type TEXT NOT NULL DEFAULT '',
    result {blob},
    has_result INTEGER NOT NULL DEFAULT 0,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_ms {big} NOT NULL,
    lease_owner TEXT NOT NULL DEFAULT '',
    lease_until_ms {big} NOT NULL DEFAULT 0,
    created_at_ms {big} NOT NULL,
    updated_at_ms {big} NOT NULL,
    last_error TEXT NOT NULL DEFAULT '',
    UNIQUE (tenant, operation, transaction_id)
);
CREATE INDEX IF NOT EXISTS osia_tasks_due ON osia_tasks(status, next_attempt_ms)
"""

    # --- sealing -------------------------------------------------------------------------

    def _task_key(self, task_id: str, key_id: str, wrapped: bytes) -> bytes:
        return self.keys.unwrap(key_id, bytes(wrapped), b"task:" + task_id.encode())

    def _row_task(self, row, dek: bytes | None = None) -> tasks_pb2.Task:
        (tid, tenant, client, op, txn, sha, status, prio, cb, kid, wrapped, req, rstatus,
         rtype, result, has_result, attempts, nxt, created, updated, last_error) = row  # fmt: skip
        dek = dek or self._task_key(tid, kid, wrapped)
        aad = "task:" + tid
        t = tasks_pb2.Task(
            task_id=tid, tenant=tenant, client=client, operation=op, transaction_id=txn,
            request_sha256=sha, status=status, priority=prio, callback=cb,
            request=envelope.open_template(dek, aad, bytes(req)) if req else b"",
            result_status=rstatus, result_type=rtype, has_result=bool(has_result),
            attempts=attempts, next_attempt_ms=nxt, created_at_ms=created,
            updated_at_ms=updated, last_error=last_error,
        )  # fmt: skip
        if has_result and result:
            t.result = envelope.open_template(dek, aad + ":result", bytes(result))
        return t

    # --- operations ----------------------------------------------------------------------

    def create_task(self, task: tasks_pb2.Task) -> tasks_pb2.CreateTaskResponse:
        """Creates ``task`` (PENDING, due now), or returns the task of the
        same tenant, operation and transaction id when its request digest is
        the same; ALREADY_EXISTS when it is not."""
        check_task_id(task.task_id)
        if task.status not in ("", PENDING):
            raise errors.InvalidArgument("a new task is PENDING")
        if not (0 <= task.priority <= 9):
            raise errors.InvalidArgument("priority must be 0..9")
        if len(task.request) > MAX_REQUEST_BYTES:
            raise errors.InvalidArgument("the task's request is too large")
        if not task.tenant or not task.operation or not task.transaction_id:
            raise errors.InvalidArgument("a task needs a tenant, an operation and a transaction id")

        def tx(_c) -> tasks_pb2.CreateTaskResponse:
            row = self._one(
                f"SELECT {_COLUMNS} FROM osia_tasks WHERE tenant = ? AND operation = ? "
                "AND transaction_id = ?",
                (task.tenant, task.operation, task.transaction_id),
            )
            if row is not None:
                if row[5] != task.request_sha256:
                    raise errors.AlreadyExists(
                        f"transactionId {task.transaction_id[:64]!r} was used for another "
                        f"{task.operation} request; use a new transactionId for a new request"
                    )
                return tasks_pb2.CreateTaskResponse(task=self._row_task(row), existed=True)
            now = now_ms()
            dek, kid = envelope.new_data_key(), self.keys.active_id()
            aad = "task:" + task.task_id
            self._x(
                f"INSERT INTO osia_tasks({_COLUMNS}) VALUES "
                "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, '', NULL, 0, 0, ?, ?, ?, '')",
                (task.task_id, task.tenant, task.client, task.operation, task.transaction_id,
                 task.request_sha256, PENDING, task.priority, task.callback, kid,
                 self.keys.wrap(kid, dek, aad.encode()),
                 envelope.seal_template(dek, aad, task.request), now, now, now),
            )  # fmt: skip
            out = tasks_pb2.Task()
            out.CopyFrom(task)
            out.status, out.next_attempt_ms, out.created_at_ms = PENDING, now, now
            out.updated_at_ms = now
            return tasks_pb2.CreateTaskResponse(task=out, existed=False)

        return self._tx(tx)

    def claim_tasks(self, owner: str, limit: int, lease_ms: int) -> tasks_pb2.ClaimTasksResponse:
        """Leases up to ``limit`` due tasks to ``owner`` for ``lease_ms``:
        highest priority first, then oldest. A task leased to another owner
        whose lease has not run out is skipped, so no two gateways hold one
        task at once."""
        if not owner or len(owner) > 128:
            raise errors.InvalidArgument("a claim needs an owner (at most 128 characters)")
        limit = max(1, min(limit or 16, MAX_CLAIM))
        lease_ms = max(1000, min(lease_ms or 60_000, MAX_LEASE_MS))

        def tx(_c) -> tasks_pb2.ClaimTasksResponse:
            now = now_ms()
            lock = " FOR UPDATE SKIP LOCKED" if self.is_postgres else ""
            rows = self._all(
                f"SELECT {_COLUMNS} FROM osia_tasks WHERE status IN (?, ?, ?) "
                "AND next_attempt_ms <= ? AND lease_until_ms < ? "
                f"ORDER BY priority DESC, created_at_ms, task_id LIMIT ?{lock}",
                (*DUE, now, now, limit),
            )
            for r in rows:
                self._x(
                    "UPDATE osia_tasks SET lease_owner = ?, lease_until_ms = ? WHERE task_id = ?",
                    (owner, now + lease_ms, r[0]),
                )
            return tasks_pb2.ClaimTasksResponse(tasks=[self._row_task(r) for r in rows])

        return self._tx(tx)

    def update_task(self, req: tasks_pb2.UpdateTaskRequest) -> tasks_pb2.Task:
        """The lease owner's update (status, result, attempts, next attempt);
        FAILED_PRECONDITION when the lease is no longer ``req.owner``'s."""
        check_task_id(req.task_id)
        if req.status not in STATUSES:
            raise errors.InvalidArgument(f"status must be one of {list(STATUSES)}")

        def tx(_c) -> tasks_pb2.Task:
            row = self._one(
                f"SELECT {_COLUMNS}, lease_owner, lease_until_ms FROM osia_tasks WHERE task_id = ?",
                (req.task_id,),
            )
            if row is None:
                raise errors.NotFound("no such task")
            now = now_ms()
            if row[-2] != req.owner:
                raise errors.FailedPrecondition("the task is leased to another owner")
            tid, kid, wrapped = row[0], row[9], row[10]
            dek = self._task_key(tid, kid, wrapped)
            sets = ["status = ?", "attempts = ?", "next_attempt_ms = ?", "updated_at_ms = ?",
                    "last_error = ?"]  # fmt: skip
            args: list = [req.status, req.attempts, req.next_attempt_ms or now, now,
                          req.last_error[:300]]  # fmt: skip
            if req.set_result:
                sets += ["has_result = 1", "result_status = ?", "result_type = ?", "result = ?"]
                args += [req.result_status, req.result_type[:64],
                         envelope.seal_template(dek, f"task:{tid}:result", req.result)]  # fmt: skip
            if req.release:
                sets += ["lease_owner = ''", "lease_until_ms = 0"]
            self._x(f"UPDATE osia_tasks SET {', '.join(sets)} WHERE task_id = ?", (*args, tid))
            return self._row_task(
                self._one(f"SELECT {_COLUMNS} FROM osia_tasks WHERE task_id = ?", (tid,)), dek
            )

        return self._tx(tx)

    task_ttl_ms: int = DEFAULT_TASK_TTL_MS

    def purge_tasks(self, now: int | None = None) -> int:
        """Deletes finished tasks last updated more than ``task_ttl_ms`` ago; returns how many."""
        cutoff = (now_ms() if now is None else now) - self.task_ttl_ms

        def tx(_c) -> int:
            (n,) = self._one(
                "SELECT COUNT(*) FROM osia_tasks WHERE status IN (?, ?) AND updated_at_ms < ?",
                (COMPLETED, ERROR, cutoff),
            )
            self._x(
                "DELETE FROM osia_tasks WHERE status IN (?, ?) AND updated_at_ms < ?",
                (COMPLETED, ERROR, cutoff),
            )
            return n

        return self._tx(tx)

    def get_task(self, task_id: str, tenant: str) -> tasks_pb2.Task:
        """The tenant's task; NOT_FOUND for an unknown id or another tenant's."""
        check_task_id(task_id)
        row = self._one(
            f"SELECT {_COLUMNS} FROM osia_tasks WHERE task_id = ? AND tenant = ?", (task_id, tenant)
        )
        if row is None:
            raise errors.NotFound("no such task")
        return self._row_task(row)

    def redeliver_task(self, task_id: str, tenant: str) -> tasks_pb2.Task:
        """Schedules the result's delivery again, now, with a fresh count of
        attempts (a task not run yet is left as it is: its result goes out
        when it is ready)."""
        check_task_id(task_id)

        def tx(_c) -> tasks_pb2.Task:
            t = self.get_task(task_id, tenant)
            if t.has_result:
                now = now_ms()
                self._x(
                    "UPDATE osia_tasks SET status = ?, attempts = 0, next_attempt_ms = ?, "
                    "updated_at_ms = ?, last_error = '' WHERE task_id = ?",
                    (SCHEDULED, now, now, task_id),
                )
                t.status, t.attempts, t.next_attempt_ms = SCHEDULED, 0, now
            return t

        return self._tx(tx)
