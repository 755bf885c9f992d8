"""The partner REST facade: a subset of the OSIA ABIS interface (1.6.0) for
banks and other relying parties, served by the gateway next to gRPC and
through the same guard (token, scope, purpose, rate limit, audit).

    POST   /v1/verify/{galleryId}/{personId}?transactionId=..[&threshold=..]
    POST   /v1/identify/{galleryId}?transactionId=..[&maxCandidates=..]
    DELETE /v1/persons/{personId}?transactionId=..[&reason=..]     (lawful erasure; the signed receipt)
           (idempotent: header ``Idempotency-Key``, else the OSIA ``transactionId``)
    GET    /v1/persons/{personId}/report                          (the citizen's report)
    GET    /healthz

``galleryId`` is ``ALL`` (Tanu has one gallery per cluster). Biometric data
is a FACE ``image`` (base64 JPEG/PNG) or ``template`` (base64 little-endian
float32). Credentials: ``Authorization: Bearer <token>``; purpose:
``X-Tanu-Purpose``. Errors are ``{"code": <HTTP status>, "message": ...}``
with the HTTP status of the problem (401, 403, 400, 404, 413, 415, 429,
503...). Templates and images are never returned.

Hostile input: the caller is authenticated before anything of the request
is looked at (401 first); a body must be ``application/json`` (else 415),
UTF-8, at most ``MAX_JSON_DEPTH`` deep, without NaN/Infinity or numbers
out of range; query numbers are range-checked; replies are RFC 8259 JSON
only (a non-finite number would be ``null``, never ``Infinity``). No input
is answered 500.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
import time
from collections.abc import Callable

from aiohttp import web
from google.protobuf import json_format

from tanu.core import errors, logs, tls
from tanu.v1 import common_pb2, identity_pb2

from .api import OPERATIONS
from .gateway import Gateway
from .guard import PEER_KEY, Guard

log = logs.get(__name__)

GALLERIES = ("ALL",)
MAX_JSON_DEPTH = 16
MAX_CANDIDATES = 1000
F32_MAX = 3.4028234663852886e38  # request fields are float32
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKETS = re.compile(r"[\[\]{}]")


def _finite(value):
    """``value`` with every non-finite float replaced by None (JSON null)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def _dumps(value) -> str:
    return json.dumps(_finite(value), allow_nan=False)


def json_response(value, status: int = 200) -> web.Response:
    """An RFC 8259 JSON reply (never NaN or Infinity)."""
    return web.json_response(value, status=status, dumps=_dumps)


def _error(exc: errors.TanuError) -> web.Response:
    return json_response({"code": exc.http_status, "message": exc.message}, exc.http_status)


def _refuse_constant(name: str):
    raise errors.InvalidArgument(f"the body holds {name}, which is not JSON (RFC 8259)")


def _parse_float(text: str) -> float:
    v = float(text)
    if not math.isfinite(v):
        raise errors.InvalidArgument(f"the number {text[:32]} in the body is out of range")
    return v


def _parse_int(text: str) -> int:
    if len(text.lstrip("-")) > 19:
        raise errors.InvalidArgument(f"the integer {text[:32]}... in the body is out of range")
    return int(text)


def parse_json(raw: bytes) -> dict:
    """A request body as a JSON object; InvalidArgument naming what is wrong
    (not UTF-8, not JSON, nested deeper than ``MAX_JSON_DEPTH``, NaN or
    Infinity, a number out of range, not an object)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise errors.InvalidArgument("the body is not UTF-8") from None
    depth = deepest = 0
    for b in _BRACKETS.findall(_STRING.sub('""', text)):
        depth += 1 if b in "[{" else -1
        deepest = max(deepest, depth)
    if deepest > MAX_JSON_DEPTH:
        raise errors.InvalidArgument(
            f"the body is nested {deepest} levels deep; the limit is {MAX_JSON_DEPTH}"
        )
    try:
        body = json.loads(text, parse_constant=_refuse_constant, parse_float=_parse_float,
                          parse_int=_parse_int)  # fmt: skip
    except (ValueError, RecursionError):
        raise errors.InvalidArgument("the body is not JSON") from None
    if not isinstance(body, dict):
        raise errors.InvalidArgument("the body must be a JSON object")
    return body


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
    for field in ("image", "template"):
        if b.get(field) and not isinstance(b[field], str):
            raise errors.InvalidArgument(f"{field} must be a base64 string")
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
        """Request id (the caller's when it is a safe one, else a fresh one:
        ``logs.checked_request_id``), per-route metrics, and errors as JSON
        with their HTTP status."""
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
            return _error(exc)
        except web.HTTPRequestEntityTooLarge as exc:
            return json_response(
                {"code": 413, "message": f"the request body is too large ({exc.text})"}, 413
            )
        except web.HTTPException as exc:
            return json_response({"code": exc.status, "message": exc.reason}, exc.status)
        except Exception:  # noqa: BLE001 - never a trace to the caller
            log.exception("rest_handler_failed", route=route)
            return _error(errors.Internal(f"internal error (request id {rid})"))

    async def _serve(
        self, operation: str, request: web.Request, build: Callable[[bytes], object],
        subject_id: str = "", body: bool = True,
    ):  # fmt: skip
        """Runs an Identity operation for the HTTP request: the caller is
        authenticated first, then the body is read and checked (content
        type, JSON) and the request built by ``build(body)``, inside the
        guard (so a refusal is audited like any other)."""
        op = OPERATIONS[operation]
        md = self._md(request)
        self._guard.authenticate(md, operation)  # 401 before anything else is looked at
        raw = await request.read() if body else b""
        built: list = []

        def make():
            if body:
                _check_content_type(request)
            built.append(build(raw))
            return built[0]

        return await self._guard.handle(
            op, md, subject_id, lambda call: op.use_case(self._gw, built[0], call), request=make
        )

    def _md(self, request: web.Request) -> dict[str, str]:
        if "Authorization" in request.headers and self._refuse_plaintext:
            if not tls.is_loopback(request.remote or ""):
                raise errors.Unauthenticated(tls.PLAINTEXT_TOKEN_REFUSAL)
        md = {PEER_KEY: request.remote or ""}
        if "Authorization" in request.headers:
            md["authorization"] = request.headers["Authorization"]
        if "X-Tanu-Purpose" in request.headers:
            md["x-tanu-purpose"] = request.headers["X-Tanu-Purpose"]
        if request.method in ("POST", "PUT", "DELETE") and request.path.startswith("/v1/persons"):
            key = request.headers.get("Idempotency-Key") or request.query.get("transactionId", "")
            if key:  # a write: a retry with the same key gets the first outcome
                md["idempotency-key"] = key
        return md

    @staticmethod
    def _gallery(request: web.Request) -> None:
        g = request.match_info["galleryId"]
        if g not in GALLERIES:
            shown = repr(g) if len(g) <= 32 else f"of {len(g)} characters"
            raise errors.NotFound(f"unknown gallery {shown}; this service has one gallery: ALL")

    @staticmethod
    def _number(request: web.Request, name: str, kind=float, lo=None, hi=None):
        """A query number, range-checked; InvalidArgument when it is not one
        (NaN and infinities included) or out of [lo, hi]."""
        raw = request.query.get(name)
        if raw is None:
            return None
        shown = repr(raw) if len(raw) <= 32 else f"of {len(raw)} characters"
        try:
            value = kind(raw) if len(raw) <= 32 else None
        except ValueError:
            value = None
        if value is None or (
            kind is float and not (math.isfinite(value) and abs(value) <= F32_MAX)
        ):
            raise errors.InvalidArgument(f"{name}={shown} is not a finite number")
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            raise errors.InvalidArgument(f"{name}={shown} is out of range: {lo}..{hi}")
        return value

    async def verify(self, request: web.Request) -> web.Response:
        def build(raw: bytes) -> identity_pb2.VerifyRequest:
            self._gallery(request)
            req = identity_pb2.VerifyRequest(
                subject_id=request.match_info["personId"], sample=_sample(parse_json(raw))
            )
            threshold = self._number(request, "threshold")
            if threshold is not None:
                req.threshold = threshold
            return req

        r = await self._serve("Verify", request, build, request.match_info["personId"])
        out: dict = {"decision": r.decision == common_pb2.DECISION_MATCH}
        if r.HasField("score"):  # only for tenants that see scores
            out["scores"] = [{"score": r.score, "biometricType": "FACE"}]
        return json_response(out)

    async def identify(self, request: web.Request) -> web.Response:
        def build(raw: bytes) -> identity_pb2.IdentifyRequest:
            self._gallery(request)
            req = identity_pb2.IdentifyRequest(sample=_sample(parse_json(raw)))
            top = self._number(request, "maxCandidates", int, 1, MAX_CANDIDATES)
            if top is not None:
                req.top_k = top
            return req

        r = await self._serve("Identify", request, build)
        if not r.complete:  # never a silently smaller gallery
            raise errors.Unavailable(f"partitions {list(r.missing_partitions)} did not answer")
        return json_response([
            {"personId": c.subject_id, "rank": i + 1, "others": {"isMatch": c.is_match},
             **({"score": c.score} if c.HasField("score") else {})}
            for i, c in enumerate(r.candidates)
        ])  # fmt: skip

    async def delete(self, request: web.Request) -> web.Response:
        pid = request.match_info["personId"]

        def build(_raw: bytes) -> identity_pb2.DeleteRequest:
            return identity_pb2.DeleteRequest(
                subject_id=pid, reason=request.query.get("reason", "")
            )

        r = await self._serve("Delete", request, build, pid, body=False)
        return json_response(json_format.MessageToDict(r))

    async def report(self, request: web.Request) -> web.Response:
        pid = request.match_info["personId"]

        def build(_raw: bytes) -> identity_pb2.GetSubjectRequest:
            return identity_pb2.GetSubjectRequest(subject_id=pid)

        r = await self._serve("GetSubjectReport", request, build, pid, body=False)
        return json_response(json_format.MessageToDict(r))

    async def healthz(self, request: web.Request) -> web.Response:
        problem = self._gw.layout_problem or ("" if self._bus_up() else "NATS is not connected")
        return json_response({"serving": not problem, "problem": problem},
                             503 if problem else 200)  # fmt: skip


def _check_content_type(request: web.Request) -> None:
    """Refuses (415) a body that does not say it is UTF-8 JSON."""
    charset = (request.charset or "utf-8").lower()
    if request.content_type != "application/json" or charset not in ("utf-8", "utf8"):
        raise UnsupportedMediaType(
            f"the body must be sent as Content-Type: application/json (UTF-8), "
            f"not {logs.bounded(request.headers.get('Content-Type', 'none'), 64)!r}"
        )


class UnsupportedMediaType(errors.InvalidArgument):
    """A body of a media type the facade does not read (HTTP 415)."""

    http_status = 415
