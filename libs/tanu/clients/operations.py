"""Operations declared once: a name on the bus, a request and a reply type,
and optionally the gRPC method that serves the same thing.

A client class lists its operations as class attributes; reading one from
an instance gives the typed call, reading it from the class gives the
``Operation`` itself, which the service's registration (NATS responders and
the gRPC servicer) walks. So an operation is written in one place and the
caller, the NATS endpoint and the gRPC method cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from typing import Any, Generic, TypeVar

from google.protobuf.message import Message
from nats.aio.client import Client as NATS

from tanu.core import bus
from tanu.core.metrics import Metrics

Q = TypeVar("Q", bound=Message)
R = TypeVar("R", bound=Message)


class Operation(Generic[Q, R]):
    """One request/reply operation of a service."""

    def __init__(self, name: str, request: type[Q], reply: type[R], grpc_method: str = "") -> None:
        self.name = name  # the bus name, e.g. "consent.grant"
        self.request = request
        self.reply = reply
        self.grpc_method = grpc_method  # e.g. "GrantConsent"; "" when there is none
        self.attr = ""  # the client method and handler name, set by the class

    def __set_name__(self, owner: type, attr: str) -> None:
        self.attr = attr

    def __get__(self, client: Any, owner: type | None = None) -> Any:
        if client is None:
            return self
        op = self

        async def call(request: Q, *, timeout: float | None = None) -> R:
            return await client.call(op, request, timeout)

        call.__name__ = self.attr
        call.__doc__ = f"{self.request.__name__} -> {self.reply.__name__} on {self.name}"
        return call

    def __repr__(self) -> str:
        return f"Operation({self.name!r}, {self.request.__name__}, {self.reply.__name__})"


class BusClient:
    """A typed client over NATS request/reply. A subclass declares its
    ``Operation``s as class attributes and says which subject an operation
    is asked on and under which label its latency is measured."""

    def __init__(self, nc: NATS, timeout_s: float, metrics: Metrics | None = None) -> None:
        self._nc = nc
        self.timeout_s = timeout_s
        self._metrics = metrics

    def subject(self, op: Operation) -> str:
        return op.name

    def label(self, op: Operation) -> str:
        """The ``operation`` label of tanu_nats_request_duration_seconds."""
        return op.name

    async def call(self, op: Operation[Q, R], request: Q, timeout: float | None = None) -> R:
        return await bus.request(
            self._nc, self.subject(op), request, op.reply,
            self.timeout_s if timeout is None else timeout,
            operation=self.label(op), metrics=self._metrics,
        )  # fmt: skip


def operations_of(client_class: type) -> Iterator[Operation]:
    """Every operation a client class declares, in declaration order."""
    for value in vars(client_class).values():
        if isinstance(value, Operation):
            yield value


Handler = Callable[[Message], Awaitable[Message]]


def handlers_for(client_class: type, target: object) -> list[tuple[Operation, Handler]]:
    """Pairs each operation with ``target``'s method of the same name; fails
    at start-up, not at the first request, when one is missing."""
    pairs = []
    for op in operations_of(client_class):
        fn = getattr(target, op.attr, None)
        if fn is None:
            raise TypeError(f"{type(target).__name__} does not implement {op.attr} ({op.name})")
        pairs.append((op, fn))
    return pairs


def grpc_servicer(base: type, client_class: type, target: object) -> object:
    """An instance of the generated servicer ``base`` whose every gRPC method
    calls ``target``'s handler for the same operation."""
    methods: dict[str, Any] = {}
    for op, fn in handlers_for(client_class, target):
        if not op.grpc_method:
            continue

        async def method(self, request, context, _fn=fn):  # noqa: ARG001 - gRPC's signature
            return await _fn(request)

        methods[op.grpc_method] = method
    return type(f"{base.__name__}FromOperations", (base,), methods)()
