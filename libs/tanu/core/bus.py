"""NATS helpers: connect with reconnect, protobuf request/reply with a
deadline and typed errors, queue-group handlers, scatter-gather to
partitions, and JetStream stream/consumer setup.

Errors travel as reply headers (``Tanu-Error-Code``/``Tanu-Error-Message``)
and are raised again at the caller as the same typed error. The request id
travels as ``Tanu-Request-Id``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

import nats
import nats.errors
from google.protobuf.message import DecodeError, Message
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import JetStreamContext, api
from nats.js.errors import NotFoundError

from tanu.core import errors, logs, natsconn
from tanu.core.metrics import Metrics
from tanu.core.natsconn import NatsAuth

log = logs.get(__name__)

ERROR_CODE = "Tanu-Error-Code"
ERROR_MESSAGE = "Tanu-Error-Message"
REQUEST_ID = "Tanu-Request-Id"

M = TypeVar("M", bound=Message)
R = TypeVar("R", bound=Message)
Q = TypeVar("Q", bound=Message)


async def connect(
    url: str,
    name: str,
    on_state: Callable[[bool], Awaitable[None]] | None = None,
    auth: NatsAuth | None = None,
) -> NATS:
    """Connects with unlimited reconnects (``natsconn.connect``): connection
    changes are logged and reported to ``on_state``; credentials and TLS from
    ``auth``, or from the URL (``nats://user:password@host:port``)."""
    return await natsconn.connect(url, name, on_state, auth)


def _decode(message_type: type[M], data: bytes, refusal: Callable[[], errors.TanuError]) -> M:
    """``data`` parsed as a ``message_type``; else the error ``refusal`` makes
    (a bad reply is the responder's fault, a bad request the caller's)."""
    message = message_type()
    try:
        message.ParseFromString(data)
    except DecodeError:
        raise refusal() from None
    return message


class NoResponders(errors.Unavailable):
    """Nobody was subscribed to the subject when the request reached the
    server (a service down, or a replica's subscription not yet seen by
    every server route)."""


def _raise_if_error(msg: Msg) -> None:
    hdrs = msg.headers or {}
    code = hdrs.get(ERROR_CODE)
    if code:
        raise errors.from_code(code, hdrs.get(ERROR_MESSAGE, "error"))


async def request(
    nc: NATS,
    subject: str,
    message: Message | bytes,
    reply_type: type[R],
    timeout: float,
    *,
    operation: str | None = None,
    metrics: Metrics | None = None,
) -> R:
    """Sends ``message`` to ``subject`` and returns the decoded reply, raising
    the responder's typed error, UNAVAILABLE when nobody listens, or
    DEADLINE_EXCEEDED after ``timeout`` seconds."""
    headers = {REQUEST_ID: logs.request_id_var.get() or logs.new_request_id()}
    if not nc.is_connected:  # say so now, not as the timeout it would become
        raise errors.Unavailable(f"the message bus is down (NATS unreachable); {subject} not asked")
    start = time.perf_counter()
    try:
        data = message if isinstance(message, bytes) else message.SerializeToString()
        msg = await nc.request(subject, data, timeout=timeout, headers=headers)
    except nats.errors.NoRespondersError:
        raise NoResponders(f"no service is answering on {subject}") from None
    except (nats.errors.TimeoutError, TimeoutError):
        if not nc.is_connected:
            raise errors.Unavailable(
                f"the message bus is down (NATS unreachable); {subject} did not answer"
            ) from None
        raise errors.DeadlineExceeded(f"{subject} did not answer within {timeout:.3f}s") from None
    except nats.errors.MaxPayloadError:
        raise errors.ResourceExhausted(
            f"message to {subject} is larger than the NATS server accepts ({nc.max_payload} bytes)"
        ) from None
    except nats.errors.Error as exc:
        raise errors.Unavailable(f"NATS request to {subject} failed: {exc}") from None
    finally:
        if metrics and operation:
            metrics.nats_request_duration.labels(operation).observe(time.perf_counter() - start)
    _raise_if_error(msg)
    return _decode(
        reply_type,
        msg.data,
        lambda: errors.Internal(f"{subject} sent a reply that is not a {reply_type.__name__}"),
    )


async def scatter(
    nc: NATS,
    subjects: Sequence[str],
    message: Message,
    reply_type: type[R],
    timeout: float,
    *,
    operation: str | None = None,
    metrics: Metrics | None = None,
) -> list[R | errors.TanuError]:
    """Sends one message to every subject at once and gathers the replies
    within ``timeout``; a subject that fails or does not answer gets its
    typed error in the result instead of a reply."""
    payload = message.SerializeToString()  # once, not once per partition

    async def one(subject: str) -> R | errors.TanuError:
        try:
            return await request(
                nc, subject, payload, reply_type, timeout, operation=operation, metrics=metrics
            )
        except errors.TanuError as exc:
            return exc

    return list(await asyncio.gather(*(one(s) for s in subjects)))


async def gather_all(nc: NATS, subject: str, payload: bytes, window_s: float) -> list[bytes]:
    """Publishes once and collects every reply that arrives within
    ``window_s`` (for subjects that every instance answers, not one of a
    queue group). Error replies are skipped."""
    inbox = nc.new_inbox()
    replies: list[bytes] = []

    async def on_reply(msg: Msg) -> None:
        if not (msg.headers or {}).get(ERROR_CODE):
            replies.append(msg.data)

    sub = await nc.subscribe(inbox, cb=on_reply)
    try:
        await nc.publish(subject, payload, reply=inbox)
        await asyncio.sleep(window_s)
    finally:
        await sub.unsubscribe()
    return replies


Handler = Callable[[Q], Awaitable[Message]]


class Responder:
    """Serves protobuf request/reply on a subject, in a queue group. Each
    message is handled in its own task, so a slow request (or one parked in a
    micro-batch) does not hold up the next; ``max_in_flight`` bounds them.
    A TanuError becomes the ``Tanu-Error-Code``/``Tanu-Error-Message``
    headers that ``request`` raises again; anything else becomes INTERNAL
    with the request id (the trace goes to the log). ``stop`` waits for the
    requests in flight.

    Why not ``nats.micro`` (nats-py 2.16, ``nats/micro/service.py``), read
    point by point:

    - queue groups: micro has them (``EndpointConfig.queue_group``, default
      ``"q"``) - a match;
    - concurrency: an endpoint subscribes with its handler as the callback,
      and nats-py awaits one subscription's callbacks one after another
      (``Subscription._wait_for_msgs``), so one slow request, or one waiting
      for a micro-batch to fill, holds up every later one on that subject;
      there is no per-message task and no in-flight bound;
    - errors: micro replies ``Nats-Service-Error``/``Nats-Service-Error-Code``
      with a free-form code, and for any exception but its ``ServiceError``
      it sends ``repr(exc)`` to the caller - internals we must not leak; our
      callers re-raise typed errors from a gRPC status name;
    - request id: micro neither reads nor sets one; ours binds
      ``Tanu-Request-Id`` to the log contextvar for the handler;
    - stopping: ``Service.stop`` unsubscribes, which cancels the task running
      the handler in flight; ours lets every started request finish.

    What micro would add is discovery and stats (``$SRV.PING/INFO/STATS``);
    Tanu has Prometheus metrics and gRPC health for that. Wrapping micro to
    fix all of the above would leave little of it, so the Responder stays.
    """

    def __init__(self, nc: NATS, max_in_flight: int = 1024) -> None:
        self._nc = nc
        self._subs: list = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._slots = asyncio.Semaphore(max_in_flight)

    async def serve(
        self, subject: str, queue: str, request_type: type[Q], handler: Handler
    ) -> None:
        async def on_msg(msg: Msg) -> None:
            await self._slots.acquire()
            task = asyncio.create_task(self._handle(msg, request_type, handler))
            self._tasks.add(task)
            task.add_done_callback(self._done)

        self._subs.append(await self._nc.subscribe(subject, queue=queue, cb=on_msg))
        # Returns once the server has the subscription (a PING answered after
        # the SUB): a service that then says SERVING is reachable at once,
        # not "no responders" for the moment the SUB sat in the send buffer.
        await self._nc.flush()

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._slots.release()

    async def _handle(self, msg: Msg, request_type: type[Q], handler: Handler) -> None:
        rid = (msg.headers or {}).get(REQUEST_ID) or logs.new_request_id()
        token = logs.request_id_var.set(rid)
        try:
            req = _decode(
                request_type,
                msg.data,
                lambda: errors.InvalidArgument(
                    f"request on {msg.subject} is not a valid {request_type.__name__}"
                ),
            )
            reply = await handler(req)
            if msg.reply:
                await self._nc.publish(msg.reply, reply.SerializeToString())
        except errors.TanuError as exc:
            await self._reply_error(msg, exc)
        except Exception:  # noqa: BLE001 - a handler bug must not kill the subscription
            log.exception("handler_failed", subject=msg.subject)
            await self._reply_error(msg, errors.Internal(f"internal error (request id {rid})"))
        finally:
            logs.request_id_var.reset(token)

    async def _reply_error(self, msg: Msg, exc: errors.TanuError) -> None:
        if not msg.reply:
            return
        headers = {
            ERROR_CODE: exc.code.name,
            ERROR_MESSAGE: exc.message.replace("\r", " ").replace("\n", " "),
        }
        try:
            await self._nc.publish(msg.reply, b"", headers=headers)
        except Exception:  # noqa: BLE001
            log.warning("reply_failed", subject=msg.subject)

    async def stop(self) -> None:
        """Stops taking new requests, then waits for those in flight."""
        for sub in self._subs:
            try:
                await sub.unsubscribe()
            except Exception:  # noqa: BLE001 - connection may already be closed
                pass
        self._subs.clear()
        if self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)


async def ensure_events_stream(
    js: JetStreamContext, name: str, subjects: list[str], replicas: int, duplicate_window_s: float
) -> api.StreamInfo:
    """Creates the event stream (file storage) or updates its settings."""
    config = api.StreamConfig(
        name=name,
        subjects=subjects,
        storage=api.StorageType.FILE,
        retention=api.RetentionPolicy.LIMITS,
        num_replicas=replicas,
        duplicate_window=duplicate_window_s,
    )
    try:
        info = await js.stream_info(name)
    except NotFoundError:
        return await js.add_stream(config)
    have = info.config
    if (sorted(have.subjects or []), have.num_replicas, have.duplicate_window) == (
        sorted(subjects),
        replicas,
        duplicate_window_s,
    ):
        # Unchanged: no update, which only the store's NATS role may make.
        return info
    return await js.update_stream(config)


async def reset_durable_consumer(
    js: JetStreamContext, stream: str, durable: str, filter_subject: str, start_sequence: int = 0
) -> None:
    """(Re)creates a durable pull consumer positioned at ``start_sequence``
    (0: the start of the stream), with ack-all. A searcher starting with an
    empty index must replay from the start, whatever the old consumer acked."""
    try:
        await js.delete_consumer(stream, durable)
    except NotFoundError:
        pass
    # Named (nats-server 2.9+): the create request's subject then carries
    # the filter, which a searcher role's permissions pin to its partition.
    config = api.ConsumerConfig(
        name=durable,
        durable_name=durable,
        filter_subject=filter_subject,
        ack_policy=api.AckPolicy.ALL,
        max_ack_pending=-1,
        ack_wait=30,
        deliver_policy=api.DeliverPolicy.BY_START_SEQUENCE
        if start_sequence
        else api.DeliverPolicy.ALL,
        opt_start_seq=start_sequence or None,
        inactive_threshold=7 * 24 * 3600.0,
    )
    await js.add_consumer(stream, config)
