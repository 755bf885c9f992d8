"""What an OSIA route is (``Route``: its operation, method and path, the
Identity operations it runs, and its build / run / render), the request as
routes see it (``Ctx``), and the small parts many routes share: Identity
messages by name, running one operation, the path's gallery, the empty
replies.

A route's ``build`` checks everything the caller sent (a 400 names what is
wrong) and returns the messages its ``run`` will need; ``run`` calls the
Identity operations through ``invoke`` (the guard, synchronously, or as the
caller authenticated earlier for an asynchronous task); ``render`` gives
(HTTP status, JSON value; None for an empty 204). The same three serve a
synchronous request and an asynchronous task, so both answer alike.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from google.protobuf.message import Message

from tanu.core import errors
from tanu.v1 import encounters_pb2, identity_pb2

from . import bodies

Invoke = Callable[[str, Message, str], Awaitable[Message]]


@dataclass
class Ctx:
    """One request as the routes see it."""

    path: dict[str, str]
    query: dict[str, str]
    body: Any = None
    max_top_k: int = 1000
    tenant: str = ""
    transaction_id: str = ""
    created: tuple[str, str] = ("", "")  # the (person, encounter) a create names
    gateway: Any = None  # the Gateway, for the store reads a route makes itself

    def generated_id(self, prefix: str, *salt: str) -> str:
        """An id Tanu generates for the caller (createEncounterNoId(s)), the
        same for the same tenant and transaction: a retry names the same
        person and encounter, so it is the same request."""
        seed = "\n".join((self.tenant, self.transaction_id, *salt)).encode()
        return f"{prefix}-{hashlib.sha256(seed).hexdigest()[:24]}"


@dataclass(frozen=True)
class Route:
    operation_id: str
    method: str
    path: str
    ops: tuple[str, ...]  # Identity operations; the first authorises the request
    build: Callable[[Ctx], dict[str, Message]] | None = None
    run: Callable[[Invoke, dict[str, Message], Ctx], Awaitable[Any]] | None = None
    render: Callable[[Ctx, Any], tuple[int, Any]] | None = None
    body: str = ""  # "object", "array", "optional" (an object or nothing), "" (none read)
    writes: bool = False  # keyed by the transactionId in the store (idempotent)
    subject: Callable[[Ctx], str] = field(default=lambda ctx: ctx.path.get("personId", ""))
    unsupported: str = ""  # why the route answers 501
    asynchronous: bool = True  # accepts a callback


def message_class(name: str) -> type[Message] | None:
    """A message of the Identity API by name (identity_pb2, encounters_pb2); None if absent."""
    cls = getattr(identity_pb2, name, None)
    if cls is None:
        cls = getattr(encounters_pb2, name, None)
    return cls


def msg(name: str, **fields) -> Message:
    """An Identity API message by name (NotSupported when this build lacks it)."""
    cls = message_class(name)
    if cls is None:
        raise bodies.NotSupported(f"{name} is not available in this build of Tanu")
    known = cls.DESCRIPTOR.fields_by_name
    missing = sorted(k for k, v in fields.items() if k not in known and v)
    if missing:
        raise bodies.NotSupported(f"{name}.{missing[0]} is not available in this build of Tanu")
    return cls(**{k: v for k, v in fields.items() if k in known and v is not None})


def one(op: str):
    async def run(invoke: Invoke, msgs, ctx: Ctx):
        return await invoke(op, msgs[op], ctx.path.get("personId", ""))

    return run


def gallery_of(ctx: Ctx) -> str:
    g = ctx.path.get("galleryId", "ALL")
    if not g or len(g) > 64:
        raise errors.InvalidArgument("galleryId must be 1..64 characters")
    return "" if g == "ALL" else g


def no_content(_ctx: Ctx, _reply) -> tuple[int, Any]:
    return 204, None


def erased(_ctx: Ctx, reply) -> tuple[int, Any]:
    """204; the signed erasure receipt's id in ``X-Tanu-Receipt-Id``."""
    receipt = getattr(reply, "receipt", None)
    rid = receipt.receipt_id if receipt is not None else ""
    return 204, ({"X-Tanu-Receipt-Id": rid} if rid else None)


def run_two(op: str):
    async def run(invoke: Invoke, msgs, ctx: Ctx):
        return await invoke(op, msgs[op], ctx.path["personIdTarget"])

    return run


def target(ctx: Ctx) -> str:
    return ctx.path.get("personIdTarget", "")
