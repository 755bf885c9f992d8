"""The partner REST facade: a subset of the OSIA ABIS interface (1.6.0) for
banks and other relying parties, served by the gateway next to gRPC and
through the same guard (token, scope, purpose, rate limit, audit).

    POST   /v1/verify/{galleryId}/{personId}?transactionId=..[&threshold=..]
    POST   /v1/identify/{galleryId}?transactionId=..[&maxCandidates=..]
    DELETE /v1/persons/{personId}?transactionId=..[&reason=..]     (lawful erasure; the signed receipt)
    GET    /v1/persons/{personId}/report                          (the citizen's report)
    GET    /healthz

``galleryId`` is ``ALL`` (Tanu has one gallery per cluster). Biometric data
is a FACE ``image`` (base64 JPEG/PNG) or ``template`` (base64 little-endian
float32). Credentials: ``Authorization: Bearer <token>``; purpose:
``X-Tanu-Purpose``. Errors are ``{"code": <HTTP status>, "message": ...}``
with the HTTP status of the problem (401, 403, 400, 404, 429, 503...).
Templates and images are never returned.
"""

from __future__ import annotations

import base64
import binascii
import json
import time

from aiohttp import web
from google.protobuf import json_format

from tanu.core import errors, logs, tls
from tanu.v1 import common_pb2, identity_pb2

from .api import OPERATIONS
from .gateway import Gateway
from .guard import Guard

log = logs.get(__name__)

GALLERIES = ("ALL",)


def _error(exc: errors.TanuError) -> web.Response:
    return web.json_response(
        {"code": exc.http_status, "message": exc.message}, status=exc.http_status
    )


def _sample(body: dict) -> common_pb2.BiometricSample:
    items = body.get("biometricData")
    if not isinstance(items, list) or not items:
        raise errors.InvalidArgument("biometricData must be a non-empty list")
    faces = [b for b in items if isinstance(b, dict) and b.get("biometricType", "FACE") == "FACE"]
    if len(faces) != 1:
        raise errors.InvalidArgument(
            f"exactly one FACE item is needed in biometricData, found {len(faces)}"
        )
    b = faces[0]
    for field in ("imageRef", "templateRef"):
        if b.get(field):
            raise errors.InvalidArgument(f"{field} is not supported: send the data inline")
    try:
        if b.get("image"):
            return common_pb2.BiometricSample(image=base64.b64decode(b["image"], validate=True))
        if b.get("template"):
            vec = base64.b64decode(b["template"], validate=True)
            return common_pb2.BiometricSample(template=common_pb2.Template(vector=vec))
    except (binascii.Error, ValueError, TypeError):
        raise errors.InvalidArgument("image/template must be base64") from None
    raise errors.InvalidArgument("the FACE item has neither image nor template")


class RestFacade:
    """The REST routes, each serving one operation of the Identity table
    (``api.OPERATIONS``) through the same guard as gRPC."""

    def __init__(self, gateway: Gateway, guard: Guard, metrics, max_bytes: int,
                 bus_up=lambda: True) -> None:  # fmt: skip
        self._gw = gateway
        self._guard = guard
        self._metrics = metrics
        self.app = web.Application(client_max_size=max_bytes * 4 // 3 + 4096,
                                   middlewares=[self._observe])  # fmt: skip
        self.app.add_routes([
            web.post("/v1/verify/{galleryId}/{personId}", self.verify),
            web.post("/v1/identify/{galleryId}", self.identify),
            web.delete("/v1/persons/{personId}", self.delete),
            web.get("/v1/persons/{personId}/report", self.report),
            web.get("/healthz", self.healthz),
        ])  # fmt: skip
        self._runner: web.AppRunner | None = None
        self._bus_up = bus_up  # whether the gateway's NATS connection is up
        self._refuse_plaintext = False
        self.port = 0

    async def start(self, host: str, port: int, ssl_context=None,
                    refuse_plaintext_tokens: bool = False) -> int:  # fmt: skip
        """Serves on ``host:port``: HTTPS with ``ssl_context``; without it,
        with ``refuse_plaintext_tokens``, a token from another machine is 401."""
        self._refuse_plaintext = ssl_context is None and refuse_plaintext_tokens
        self._runner = web.AppRunner(self.app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port, ssl_context=ssl_context)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]
        log.info("rest_started", port=self.port)
        return self.port

    async def stop(self) -> None:
        if self._runner:
            await self._runner.cleanup()

    @web.middleware
    async def _observe(self, request: web.Request, handler):
        """Request id, per-route metrics, and errors as JSON with their HTTP status."""
        rid = request.headers.get("X-Request-Id") or logs.new_request_id()
        token = logs.request_id_var.set(rid)
        resource = request.match_info.route.resource
        route = resource.canonical if resource is not None else "unmatched"
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
            return _error(exc)
        except web.HTTPRequestEntityTooLarge as exc:
            return web.json_response(
                {"code": 413, "message": f"the request body is too large ({exc.text})"}, status=413
            )
        except web.HTTPException as exc:
            return web.json_response({"code": exc.status, "message": exc.reason}, status=exc.status)
        except Exception:  # noqa: BLE001 - never a trace to the caller
            log.exception("rest_handler_failed", route=route)
            return _error(errors.Internal(f"internal error (request id {rid})"))

    async def _serve(self, operation: str, req, request: web.Request):
        """Runs an Identity operation for the HTTP request, with its credentials and purpose."""
        return await OPERATIONS[operation].serve(self._guard, self._gw, req, self._md(request))

    def _md(self, request: web.Request) -> dict[str, str]:
        md = {}
        if "Authorization" in request.headers and self._refuse_plaintext:
            if not tls.is_loopback(request.remote or ""):
                raise errors.Unauthenticated(tls.PLAINTEXT_TOKEN_REFUSAL)
        if "Authorization" in request.headers:
            md["authorization"] = request.headers["Authorization"]
        if "X-Tanu-Purpose" in request.headers:
            md["x-tanu-purpose"] = request.headers["X-Tanu-Purpose"]
        return md

    @staticmethod
    async def _json(request: web.Request) -> dict:
        try:
            body = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise errors.InvalidArgument("the body is not JSON") from None
        if not isinstance(body, dict):
            raise errors.InvalidArgument("the body must be a JSON object")
        return body

    @staticmethod
    def _gallery(request: web.Request) -> None:
        g = request.match_info["galleryId"]
        if g not in GALLERIES:
            raise errors.NotFound(f"unknown gallery {g!r}; this service has one gallery: ALL")

    @staticmethod
    def _number(request: web.Request, name: str, kind=float):
        raw = request.query.get(name)
        if raw is None:
            return None
        try:
            return kind(raw)
        except ValueError:
            raise errors.InvalidArgument(f"{name}={raw!r} is not a number") from None

    async def verify(self, request: web.Request) -> web.Response:
        self._gallery(request)
        body = await self._json(request)
        req = identity_pb2.VerifyRequest(
            subject_id=request.match_info["personId"], sample=_sample(body)
        )
        threshold = self._number(request, "threshold")
        if threshold is not None:
            req.threshold = threshold
        r = await self._serve("Verify", req, request)
        return web.json_response({
            "decision": r.decision == common_pb2.DECISION_MATCH,
            "scores": [{"score": r.score, "biometricType": "FACE"}],
        })  # fmt: skip

    async def identify(self, request: web.Request) -> web.Response:
        self._gallery(request)
        body = await self._json(request)
        req = identity_pb2.IdentifyRequest(sample=_sample(body))
        top = self._number(request, "maxCandidates", int)
        if top is not None:
            req.top_k = top
        r = await self._serve("Identify", req, request)
        if not r.complete:  # never a silently smaller gallery
            raise errors.Unavailable(f"partitions {list(r.missing_partitions)} did not answer")
        return web.json_response([
            {"personId": c.subject_id, "rank": i + 1, "score": c.score,
             "others": {"isMatch": c.is_match}}
            for i, c in enumerate(r.candidates)
        ])  # fmt: skip

    async def delete(self, request: web.Request) -> web.Response:
        req = identity_pb2.DeleteRequest(
            subject_id=request.match_info["personId"], reason=request.query.get("reason", "")
        )
        r = await self._serve("Delete", req, request)
        return web.json_response(json_format.MessageToDict(r))

    async def report(self, request: web.Request) -> web.Response:
        req = identity_pb2.GetSubjectRequest(subject_id=request.match_info["personId"])
        r = await self._serve("GetSubjectReport", req, request)
        return web.json_response(json_format.MessageToDict(r))

    async def healthz(self, request: web.Request) -> web.Response:
        problem = self._gw.layout_problem or ("" if self._bus_up() else "NATS is not connected")
        return web.json_response({"serving": not problem, "problem": problem},
                                 status=503 if problem else 200)  # fmt: skip
