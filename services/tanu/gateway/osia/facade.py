"""The OSIA ABIS 1.6.0 REST facade: the spec's 22 operations (``routes``)
over the gateway's Identity operations and guard, synchronous or, with a
``callback``, asynchronous (``tasks``); Tanu's published OpenAPI at
``GET /openapi.json`` (``openapi``); and two routes of Tanu's own:
``GET /v1/persons/{personId}/report`` (the citizen's report) and
``GET /healthz``.

Every request: the caller is authenticated first (401 before anything of
the request is looked at), then ``transactionId`` (required; 400), then
the body (``application/json``, else 415; hostile JSON, 400), then the
operation's parameters; the guard authorises (403), bounds, runs and
audits (the transactionId is in the audit entry). Writes are idempotent by
transactionId (or an ``Idempotency-Key`` header): the same transaction and
body get the same outcome, another body 409. Errors are the spec's
``Error`` ``{code, message}`` with the HTTP status of the problem; a
feature Tanu does not support is 501. No input is answered 500.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid

from aiohttp import web
from google.protobuf import json_format

from tanu.core import errors, logs, tls
from tanu.v1 import identity_pb2, tasks_pb2

from .. import idempotency
from ..api import OPERATIONS
from ..gateway import Gateway
from ..guard import PEER_KEY, PURPOSE_KEY, TRANSACTION_KEY, Guard
from . import callbacks, jsonio, openapi, params
from .bodies import NotSupported
from .routes import ROUTES, Ctx, Route
from .tasks import TaskWorker, encode_task_request

log = logs.get(__name__)


class OsiaFacade:
    """The REST application: OSIA routes, task routes, Tanu's extras."""

    def __init__(self, gateway: Gateway, guard: Guard, metrics, max_bytes: int,
                 bus_up=lambda: True, worker_settings=None) -> None:  # fmt: skip
        self._gw = gateway
        self._guard = guard
        self._metrics = metrics
        self.app = web.Application(client_max_size=max_bytes * 4 // 3 + 4096,
                                   middlewares=[self._observe])  # fmt: skip
        routes = [web.route(r.method, r.path, self._handler(r)) for r in ROUTES]
        routes += [
            web.get("/v1/tasks/{taskId}/status", self.read_task_status),
            web.post("/v1/tasks/{taskId}/redeliver", self.redeliver_task_result),
            web.get("/v1/persons/{personId}/report", self.report),
            web.get("/openapi.json", self.openapi),
            web.get("/healthz", self.healthz),
        ]
        self.app.add_routes(routes)
        self._runner: web.AppRunner | None = None
        self._bus_up = bus_up
        self._refuse_plaintext = False
        self._published: bytes | None = None
        self.worker = TaskWorker(gateway, guard, worker_settings)
        self.port = 0

    async def start(self, host: str, port: int, ssl_context=None,
                    refuse_plaintext_tokens: bool = False) -> int:  # fmt: skip
        """Serves on ``host:port``: HTTPS with ``ssl_context``; without it,
        with ``refuse_plaintext_tokens``, a token from another machine is
        401. Starts the task worker."""
        self._refuse_plaintext = ssl_context is None and refuse_plaintext_tokens
        self._runner = web.AppRunner(self.app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port, ssl_context=ssl_context)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]
        self.worker.start()
        log.info("rest_started", port=self.port)
        return self.port

    async def stop(self) -> None:
        await self.worker.stop()
        if self._runner:
            await self._runner.cleanup()

    # --- middleware ------------------------------------------------------------------------

    @web.middleware
    async def _observe(self, request: web.Request, handler):
        """Request id (the caller's when it is a safe one, else a fresh one),
        per-route metrics, and errors as the spec's Error body."""
        rid, replaced = logs.checked_request_id(request.headers.get("X-Request-Id"))
        token = logs.request_id_var.set(rid)
        resource = request.match_info.route.resource
        route = resource.canonical if resource is not None else "unmatched"
        if replaced:
            log.info("request_id_replaced", route=route, why=replaced)
        start = time.perf_counter()
        try:
            resp = await self._respond(request, handler, route, rid)
            resp.headers["X-Request-Id"] = rid
            self._metrics.http_requests.labels(route, request.method, str(resp.status)).inc()
            return resp
        finally:
            self._metrics.http_duration.labels(route, request.method).observe(
                time.perf_counter() - start
            )
            logs.request_id_var.reset(token)

    @staticmethod
    async def _respond(request, handler, route: str, rid: str) -> web.StreamResponse:
        try:
            return await handler(request)
        except errors.TanuError as exc:
            return jsonio.error(exc)
        except web.HTTPRequestEntityTooLarge as exc:
            return jsonio.error_response(413, f"the request body is too large ({exc.text})")
        except web.HTTPException as exc:
            return jsonio.error_response(exc.status, exc.reason)
        except Exception:  # noqa: BLE001 - never a trace to the caller
            log.exception("rest_handler_failed", route=route)
            return jsonio.error(errors.Internal(f"internal error (request id {rid})"))

    # --- OSIA operations -------------------------------------------------------------------

    def _md(self, request: web.Request) -> dict[str, str]:
        if "Authorization" in request.headers and self._refuse_plaintext:
            if not tls.is_loopback(request.remote or ""):
                raise errors.Unauthenticated(tls.PLAINTEXT_TOKEN_REFUSAL)
        md = {PEER_KEY: request.remote or ""}
        if "Authorization" in request.headers:
            md["authorization"] = request.headers["Authorization"]
        if "X-Tanu-Purpose" in request.headers:
            md[PURPOSE_KEY] = request.headers["X-Tanu-Purpose"]
        return md

    async def _read_body(self, request: web.Request, route: Route):
        raw = await request.read()
        if route.body == "optional" and not raw:
            return None, raw
        if not route.body:
            return None, b""
        jsonio.check_content_type(request)
        return jsonio.parse_json(raw, list if route.body == "array" else dict), raw

    def _handler(self, route: Route):
        async def handle(request: web.Request) -> web.StreamResponse:
            return await self._serve(route, request)

        handle.__name__ = route.operation_id
        return handle

    async def _serve(self, route: Route, request: web.Request) -> web.StreamResponse:
        md = self._md(request)
        principal = self._guard.authenticate(md, route.ops[0] if route.ops else route.operation_id)
        if route.unsupported:
            raise _not_implemented(route.unsupported)
        txn = params.transaction_id(request.query)
        md[TRANSACTION_KEY] = txn
        body, raw = await self._read_body(request, route)
        ctx = Ctx(dict(request.match_info), dict(request.query), body,
                  self._gw.config.max_top_k, principal.tenant_id, txn, gateway=self._gw)  # fmt: skip
        callback = request.query.get("callback")
        priority = params.priority(request.query)
        msgs = route.build(ctx)
        if route.writes:
            key = request.headers.get("Idempotency-Key", "")
            md[idempotency.METADATA_KEY] = key or txn  # per operation below
        if callback is not None:
            await callbacks.check(callback, principal.tenant)
            return await self._accept(route, request, md, principal, ctx, msgs, raw, txn,
                                      callback, priority)  # fmt: skip
        status, value = await self._run(route, md, ctx, msgs)
        return _reply(status, value)

    async def _run(self, route: Route, md: dict[str, str], ctx: Ctx, msgs):
        """Runs the route synchronously through the guard."""

        async def invoke(op_name: str, message, subject_id: str):
            op = OPERATIONS.get(op_name)
            if op is None:
                raise _not_implemented(f"{op_name} is not available in this build of Tanu")
            call_md = dict(md)
            if idempotency.METADATA_KEY in md:
                call_md[idempotency.METADATA_KEY] = params.idempotency_key(
                    md[idempotency.METADATA_KEY], op_name
                )
            return await self._guard.handle(
                op, call_md, subject_id, lambda call: op.use_case(self._gw, message, call),
                request=message,
            )  # fmt: skip

        reply = await route.run(invoke, msgs, ctx)
        return route.render(ctx, reply)

    async def _accept(self, route, request, md, principal, ctx, msgs, raw: bytes, txn: str,
                      callback: str, priority: int) -> web.Response:  # fmt: skip
        """An asynchronous request: authorised, bounded and audited now
        (as accepted), stored as a task, 202 ``{taskId}``; the worker runs
        it and calls back."""
        op = OPERATIONS.get(route.ops[0])
        if op is None:
            raise _not_implemented(f"{route.operation_id} is not available in this build of Tanu")
        digest = hashlib.sha256(json.dumps(
            [route.operation_id, sorted(ctx.path.items()),
             sorted((k, v) for k, v in ctx.query.items()), raw.hex()]).encode()).hexdigest()  # fmt: skip
        first = msgs[route.ops[0]]
        task = tasks_pb2.Task(
            task_id=str(uuid.uuid4()), tenant=principal.tenant_id, client=principal.client,
            operation=route.operation_id, transaction_id=txn, request_sha256=digest,
            priority=priority, callback=callback,
            request=encode_task_request(ctx, msgs, principal, md),
        )  # fmt: skip
        created: list = []

        async def enqueue(call):
            call.result = "accepted"
            created.append(await self._gw.store.create_task(tasks_pb2.CreateTaskRequest(task=task)))
            call.detail = {"task_id": created[0].task.task_id, "asynchronous": True}
            return created[0]

        accept_md = {k: v for k, v in md.items() if k != idempotency.METADATA_KEY}
        await self._guard.handle(op, accept_md, route.subject(ctx), enqueue, request=first)
        self.worker.wake()
        return jsonio.json_response({"taskId": created[0].task.task_id}, 202)

    # --- tasks -----------------------------------------------------------------------------

    async def _task(self, request: web.Request, op: str):
        md = self._md(request)
        principal = self._guard.authenticate(md, op)
        params.transaction_id(request.query)
        return principal, request.match_info["taskId"]

    async def read_task_status(self, request: web.Request) -> web.Response:
        """readTaskStatus: the status of one of the caller's tenant's tasks."""
        principal, task_id = await self._task(request, "readTaskStatus")
        t = await self._gw.store.get_task(
            tasks_pb2.GetTaskRequest(task_id=task_id, tenant=principal.tenant_id)
        )
        return jsonio.json_response(t.status)

    async def redeliver_task_result(self, request: web.Request) -> web.Response:
        """redeliverTaskResult: the result sent to the callback again."""
        principal, task_id = await self._task(request, "redeliverTaskResult")
        await self._gw.store.redeliver_task(
            tasks_pb2.RedeliverTaskRequest(task_id=task_id, tenant=principal.tenant_id)
        )
        self.worker.wake()
        return web.Response(status=204)

    # --- Tanu's own ------------------------------------------------------------------------

    async def report(self, request: web.Request) -> web.Response:
        """The citizen's report (Tanu's route, not OSIA's)."""
        pid = request.match_info["personId"]
        md = self._md(request)
        op = OPERATIONS["GetSubjectReport"]
        self._guard.authenticate(md, op.name)
        req = identity_pb2.GetSubjectRequest(subject_id=pid)
        r = await self._guard.handle(op, md, pid, lambda call: op.use_case(self._gw, req, call),
                                     request=req)  # fmt: skip
        return jsonio.json_response(json_format.MessageToDict(r))

    async def openapi(self, _request: web.Request) -> web.Response:
        """Tanu's published OpenAPI: the spec plus Tanu's documented additions."""
        if self._published is None:
            self._published = json.dumps(openapi.published()).encode()
        return web.Response(body=self._published, content_type="application/json")

    async def healthz(self, _request: web.Request) -> web.Response:
        problem = self._gw.layout_problem or ("" if self._bus_up() else "NATS is not connected")
        return jsonio.json_response({"serving": not problem, "problem": problem},
                                    503 if problem else 200)  # fmt: skip


def _not_implemented(message: str) -> errors.TanuError:
    return NotSupported(message)


def _reply(status: int, value) -> web.Response:
    """The HTTP reply of a route's (status, value): for 204, ``value`` is
    the reply's headers (e.g. ``X-Tanu-Receipt-Id``) or None."""
    if status == 204:
        return web.Response(status=204, headers=value or None)
    return jsonio.json_response(value, status)
