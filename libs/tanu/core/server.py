"""gRPC server bootstrap: grpc.aio with health and reflection always
registered, interceptors for the request id, metrics and error → status
mapping, message-size limits, TLS when configured (``tls``), and graceful
shutdown on SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

import grpc
import structlog
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from tanu.core import errors, logs, tls
from tanu.core.config import Common
from tanu.core.metrics import Metrics

log = logs.get(__name__)

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
REQUEST_ID_KEY = "x-request-id"


class MalformedRequest:
    """What a method receives when its request body did not decode (only a
    method marked ``accepts_malformed``; any other is refused
    INVALID_ARGUMENT by the interceptor). ``refuse`` raises that refusal."""

    def __init__(self, method: str, size: int) -> None:
        self.method = method
        self.size = size

    def refuse(self):
        raise errors.InvalidArgument(
            f"the request body ({self.size} bytes) is not a valid {self.method} request message"
        )


def _tolerant(deserializer, method: str):
    """``deserializer``, returning a ``MalformedRequest`` instead of raising:
    grpc.aio decodes before any handler or interceptor runs, and a decode
    error there becomes UNKNOWN, unaudited."""
    if deserializer is None:
        return None

    def decode(data: bytes):
        try:
            return deserializer(data)
        except Exception:  # noqa: BLE001 - DecodeError, or invalid UTF-8 in a string field
            return MalformedRequest(method, len(data))

    return decode


class ServiceInterceptor(grpc.aio.ServerInterceptor):
    """Binds the caller's request id (when it is a safe one; else a fresh
    one, ``logs.checked_request_id``), times every unary RPC, counts it by
    status code, turns a body that does not decode into INVALID_ARGUMENT,
    and turns exceptions into statuses: a TanuError into its code and
    message, anything else into INTERNAL with the request id (the trace goes
    to the log, never to the caller)."""

    def __init__(
        self, service: str, metrics: Metrics, refuse_plaintext_tokens: bool = False
    ) -> None:
        self._service = service
        self._metrics = metrics
        # Plaintext server: a token from another machine crossed the network
        # in clear; refuse it before any work (tls.refuses_plaintext_tokens).
        self._refuse_plaintext_tokens = refuse_plaintext_tokens
        # Per registered method: its handler and the wrapped one, built once
        # (not per call; only methods the server has a handler for).
        self._wrapped: dict[str, tuple[grpc.RpcMethodHandler, grpc.RpcMethodHandler]] = {}

    async def intercept_service(self, continuation, handler_call_details):
        handler = await continuation(handler_call_details)
        if handler is None or handler.unary_unary is None:
            return handler
        known = self._wrapped.get(handler_call_details.method)
        if known is None or known[0] is not handler:
            known = (handler, self._wrap(handler_call_details.method, handler))
            self._wrapped[handler_call_details.method] = known
        return known[1]

    def _wrap(self, full_method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        method = full_method.rsplit("/", 1)[-1][:64]
        inner = handler.unary_unary
        own_refusal = getattr(inner, "accepts_malformed", False)
        service, metrics = self._service, self._metrics
        refuse_plaintext = self._refuse_plaintext_tokens
        duration = metrics.rpc_duration.labels(service, method)
        counted: dict[grpc.StatusCode, object] = {}  # the counter of each status code

        async def wrapped(request, context: grpc.aio.ServicerContext):
            md = {k: v for k, v in (context.invocation_metadata() or ()) if isinstance(v, str)}
            rid, replaced = logs.checked_request_id(md.get(REQUEST_ID_KEY))
            token = logs.request_id_var.set(rid)
            context.set_trailing_metadata(((REQUEST_ID_KEY, rid),))
            if replaced:
                log.info("request_id_replaced", method=method, why=replaced)
            start = time.perf_counter()
            code = grpc.StatusCode.OK
            try:
                if (
                    refuse_plaintext
                    and "authorization" in md
                    and not tls.is_loopback(context.peer())
                ):
                    raise errors.Unauthenticated(tls.PLAINTEXT_TOKEN_REFUSAL)
                if isinstance(request, MalformedRequest) and not own_refusal:
                    request.refuse()
                return await inner(request, context)
            except errors.TanuError as exc:
                code = exc.code
                log.info("rpc_refused", method=method, code=code.name, reason=exc.message)
                await context.abort(exc.code, exc.message)
            except asyncio.CancelledError:
                code = grpc.StatusCode.CANCELLED
                raise
            except grpc.aio.AbortError:  # the servicer aborted itself
                code = context.code() or grpc.StatusCode.UNKNOWN
                raise
            except Exception:
                code = grpc.StatusCode.INTERNAL
                log.exception("rpc_failed", method=method)
                await context.abort(grpc.StatusCode.INTERNAL, f"internal error (request id {rid})")
            finally:
                counter = counted.get(code)
                if counter is None:
                    counter = counted[code] = metrics.rpc_requests.labels(
                        service, method, code.name
                    )
                counter.inc()
                duration.observe(time.perf_counter() - start)
                logs.request_id_var.reset(token)

        return grpc.unary_unary_rpc_method_handler(
            wrapped,
            request_deserializer=_tolerant(handler.request_deserializer, method),
            response_serializer=handler.response_serializer,
        )


@dataclass
class GrpcServer:
    """A started grpc.aio server with its health servicer."""

    server: grpc.aio.Server
    port: int
    health: health.aio.HealthServicer
    service_names: tuple[str, ...]

    async def set_serving(self, serving: bool) -> None:
        """Health of the server and of each of its services: SERVING or NOT_SERVING."""
        status = SERVING if serving else NOT_SERVING
        for name in ("", *self.service_names):
            await self.health.set(name, status)

    async def stop(self, grace_s: float) -> None:
        """Health → NOT_SERVING, then let in-flight RPCs finish for ``grace_s``."""
        await self.health.enter_graceful_shutdown()
        await self.server.stop(grace_s)


async def start_grpc(
    common: Common,
    service: str,
    metrics: Metrics,
    register: Iterable[tuple[Callable[[object, grpc.aio.Server], None], object, str]],
    *,
    serving: bool = True,
) -> GrpcServer:
    """Creates, binds (port 0 picks a free port) and starts a server.

    ``register`` holds (add_XServicer_to_server, servicer, full service name).
    With ``serving=False`` health stays NOT_SERVING until ``set_serving(True)``.
    """
    server = grpc.aio.server(
        interceptors=[ServiceInterceptor(service, metrics, tls.refuses_plaintext_tokens(common))],
        options=[
            ("grpc.max_receive_message_length", common.max_message_bytes),
            ("grpc.max_send_message_length", common.max_message_bytes),
            ("grpc.so_reuseport", 0),
        ],
    )
    names: list[str] = []
    for add, servicer, name in register:
        add(servicer, server)
        names.append(name)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (*names, health.SERVICE_NAME, reflection.SERVICE_NAME), server
    )
    address = f"{common.grpc_host}:{common.grpc_port}"
    try:
        port = tls.add_port(server, address, common)
    except RuntimeError as exc:
        raise errors.Unavailable(f"cannot bind gRPC on {address}: {exc}") from exc
    if port == 0:
        raise errors.Unavailable(f"cannot bind gRPC on {address}: the port is taken")
    await server.start()
    srv = GrpcServer(server, port, health_servicer, tuple(names))
    await srv.set_serving(serving)
    log.info("grpc_started", service=service, port=port)
    return srv


async def run_until_signal(stop: Callable[[], Awaitable[None]]) -> None:
    """Waits for SIGTERM or SIGINT, then runs ``stop`` once (graceful
    shutdown); a second signal during shutdown is ignored."""
    loop = asyncio.get_running_loop()
    event = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, event.set)
    await event.wait()
    log.info("shutdown_requested")
    await stop()
    structlog.contextvars.clear_contextvars()
