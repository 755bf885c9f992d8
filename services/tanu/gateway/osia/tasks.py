"""The gateway's worker for asynchronous OSIA tasks (``tanu.store.tasks``).

Every ``poll_s`` (and at once when a task is accepted or a redelivery
asked for) the worker claims due tasks from the store under a lease, so
two gateways never hold the same task: PENDING ones are run (highest
``priority`` first, then oldest) through the guard as the caller that sent
them (``Guard.handle_as``: scope and purpose checked again, bounded,
audited), their result stored, then POSTed to the callback with the spec's
``?transactionId=..&taskId=..``: the operation's result as
``application/json``, or its Error as ``application/error+json``. A 2xx
answer completes the task; otherwise RESPONSE_RETRY with an exponential
backoff (``backoff_s`` * 2^(attempt-1), at most ``max_backoff_s``) until
``max_attempts``, then RESPONSE_ERROR. A gateway that dies holding a task
leaves it to the next claim when the lease runs out; running a task again
is safe (writes are idempotent by their transactionId).

A task's request holds the built Identity messages and what the caller's
token allowed (tenant, client, scopes, purposes, bound subject: never the
token), sealed at rest by the store.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import time
from dataclasses import dataclass

from google.protobuf.message import Message

from tanu.core import auth, errors, logs
from tanu.v1 import tasks_pb2

from .. import idempotency
from ..api import OPERATIONS
from ..guard import PURPOSE_KEY, TRANSACTION_KEY
from . import callbacks, params
from .bodies import NotSupported
from .routes import BY_ID, Ctx, message_class

log = logs.get(__name__)

PENDING, SCHEDULED, RETRY = "PENDING", "RESPONSE_SCHEDULED", "RESPONSE_RETRY"
COMPLETED, ERROR = "COMPLETED", "RESPONSE_ERROR"
JSON, ERROR_JSON = "application/json", "application/error+json"


@dataclass
class WorkerSettings:
    """How the worker polls, leases and retries (tests shorten them)."""

    poll_s: float = 1.0  # how often due tasks are claimed when nothing wakes the worker
    lease_s: float = 120.0  # how long a claimed task is this gateway's
    max_attempts: int = 6  # deliveries before RESPONSE_ERROR
    backoff_s: float = 2.0  # the first retry's delay; doubled at each attempt
    max_backoff_s: float = 300.0
    delivery_timeout_s: float = 10.0
    batch: int = 4  # tasks claimed at once (worked in turn, well inside the lease)


def _message_class(name: str) -> type[Message]:
    cls = message_class(name)
    if cls is None:
        raise NotSupported(f"{name} is not available in this build of Tanu")
    return cls


def encode_task_request(ctx: Ctx, msgs: dict[str, Message], principal: auth.Principal,
                        md: dict[str, str]) -> bytes:  # fmt: skip
    """What a task needs to run later: the route's context, the built
    messages, the caller's authorisation and metadata (no token)."""
    return json.dumps({
        "path": ctx.path, "query": ctx.query, "body": ctx.body, "max_top_k": ctx.max_top_k,
        "msgs": {op: [type(m).__name__, base64.b64encode(m.SerializeToString()).decode()]
                 for op, m in msgs.items()},
        "principal": {"client": principal.client, "scopes": sorted(principal.scopes),
                      "purposes": sorted(principal.purposes), "subject": principal.subject,
                      "token_id": principal.token_id},
        "purpose": md.get(PURPOSE_KEY, ""), "transaction_id": md.get(TRANSACTION_KEY, ""),
        "idempotency_key": md.get(idempotency.METADATA_KEY, ""),
    }, separators=(",", ":")).encode()  # fmt: skip


class TaskWorker:
    """Claims, runs and delivers this gateway's share of the tasks."""

    def __init__(self, gateway, guard, settings: WorkerSettings | None = None) -> None:
        self._gw = gateway
        self._guard = guard
        self.settings = settings or WorkerSettings()
        self.owner = f"gateway-{os.getpid()}-{os.urandom(4).hex()}"
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._stopping = False

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="osia-tasks")

    async def stop(self) -> None:
        self._stopping = True
        if self._task:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):  # noqa: BLE001
                pass

    def wake(self) -> None:
        self._wake.set()

    async def _loop(self) -> None:
        while not self._stopping:
            try:
                await self.run_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - the next round tries again
                log.warning("osia_tasks_round_failed", error=str(exc)[:200])
            try:
                await asyncio.wait_for(self._wake.wait(), self.settings.poll_s)
            except TimeoutError:
                pass
            self._wake.clear()

    async def run_once(self) -> int:
        """Claims the due tasks and works them; returns how many it claimed."""
        s = self.settings
        claimed = await self._gw.store.claim_tasks(tasks_pb2.ClaimTasksRequest(
            owner=self.owner, limit=s.batch, lease_ms=int(s.lease_s * 1000)))  # fmt: skip
        for t in claimed.tasks:  # already in priority order
            await self._work(t)
        return len(claimed.tasks)

    async def _work(self, t: tasks_pb2.Task) -> None:
        update = tasks_pb2.UpdateTaskRequest(task_id=t.task_id, owner=self.owner,
                                             attempts=t.attempts)  # fmt: skip
        tenant = self._guard.auth.registry.tenants.get(t.tenant)
        if not t.has_result:
            status, media, body = await self._execute(t, tenant)
            t.result_status, t.result_type, t.result, t.has_result = status, media, body, True
            update.set_result, update.result_status = True, status
            update.result_type, update.result = media, body
        if tenant is None:
            ok, why = False, "the tenant is no longer registered"
        else:
            url = callbacks.with_ids(t.callback, t.transaction_id, t.task_id)
            ok, why = await callbacks.deliver(url, tenant, t.result_status, t.result_type,
                                              t.result, self.settings.delivery_timeout_s)  # fmt: skip
        attempts = t.attempts + 1
        update.attempts, update.release = attempts, True
        if ok:
            update.status = COMPLETED
        elif attempts >= self.settings.max_attempts:
            update.status, update.last_error = ERROR, why
        else:
            delay = min(self.settings.max_backoff_s, self.settings.backoff_s * 2 ** (attempts - 1))
            update.status, update.last_error = RETRY, why
            update.next_attempt_ms = int((time.time() + delay) * 1000)
        log.info("osia_task_delivery", operation=t.operation, status=update.status,
                 attempts=attempts, error=why)  # fmt: skip
        try:
            await self._gw.store.update_task(update)
        except errors.FailedPrecondition:
            log.warning("osia_task_lease_lost", operation=t.operation)

    async def _execute(self, t: tasks_pb2.Task, tenant) -> tuple[int, str, bytes]:
        """Runs the task's operation as its caller; (HTTP status, media type, body)."""
        token = logs.request_id_var.set(f"task-{t.task_id[:8]}")
        try:
            if tenant is None:
                raise errors.PermissionDenied("the tenant is no longer registered", "scope")
            doc = json.loads(t.request)
            route = BY_ID[t.operation]
            ctx = Ctx(doc["path"], doc["query"], doc["body"], doc["max_top_k"], t.tenant,
                      t.transaction_id, gateway=self._gw)  # fmt: skip
            msgs = {op: _message_class(name).FromString(base64.b64decode(data))
                    for op, (name, data) in doc["msgs"].items()}  # fmt: skip
            p = doc["principal"]
            principal = auth.Principal(
                tenant=tenant, client=p["client"],
                scopes=frozenset(p["scopes"]) & tenant.scopes,
                purposes=frozenset(p["purposes"]) & tenant.purposes,
                token_id=p["token_id"], subject=p["subject"],
            )  # fmt: skip
            md = {PURPOSE_KEY: doc["purpose"], TRANSACTION_KEY: doc["transaction_id"]}
            key = doc["idempotency_key"]

            async def invoke(op_name: str, message, subject_id: str):
                op = OPERATIONS.get(op_name)
                if op is None:
                    raise NotSupported(f"{op_name} is not available in this build of Tanu")
                call_md = dict(md)
                if key:
                    call_md[idempotency.METADATA_KEY] = params.idempotency_key(key, op_name)
                return await self._guard.handle_as(
                    op, principal, call_md, subject_id,
                    lambda call: op.use_case(self._gw, message, call), request=message,
                )  # fmt: skip

            status, value = route.render(ctx, await route.run(invoke, msgs, ctx))
            if status == 204:
                return 200, JSON, b'"OK"'
            from .jsonio import _dumps

            return status, JSON, _dumps(value).encode()
        except errors.TanuError as exc:
            return exc.http_status, ERROR_JSON, _error_body(exc.http_status, exc.message)
        except Exception:  # noqa: BLE001 - a bug: the caller gets a 500 Error, the log the trace
            log.exception("osia_task_failed", operation=t.operation)
            return 500, ERROR_JSON, _error_body(500, f"internal error (task {t.task_id})")
        finally:
            logs.request_id_var.reset(token)


def _error_body(code: int, message: str) -> bytes:
    return json.dumps({"code": code, "message": message}).encode()
