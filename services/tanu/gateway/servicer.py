"""The gRPC adapter of the Identity API: one method per operation of the
table (``api.OPERATIONS``), each passing the request through the guard to
its use case.

A request body that does not decode reaches its method as a
``server.MalformedRequest`` (``accepts_malformed``): it passes the guard
like any request (authenticated first, then refused INVALID_ARGUMENT and
audited), never UNKNOWN."""

from __future__ import annotations

from tanu.core import errors
from tanu.core.server import MalformedRequest
from tanu.v1 import identity_pb2, identity_pb2_grpc

from .api import OPERATIONS, IdentityOperation
from .gateway import Gateway
from .guard import PEER_KEY, Guard

_METHODS = set(identity_pb2.DESCRIPTOR.services_by_name["Identity"].methods_by_name)
if _METHODS != set(OPERATIONS):  # the table and the contract cannot drift apart
    raise TypeError(
        f"tanu.v1.Identity methods {sorted(_METHODS)} differ from the operation table "
        f"{sorted(OPERATIONS)}"
    )


def _method(op: IdentityOperation):
    async def method(self: IdentityServicer, request, context):
        md = {k: v for k, v in (context.invocation_metadata() or ()) if isinstance(v, str)}
        md[PEER_KEY] = context.peer() or ""
        if isinstance(request, MalformedRequest):
            return await self.guard.handle(
                op, md, "", _never, context.time_remaining(), request=request.refuse
            )
        return await op.serve(self.guard, self.gateway, request, md, context.time_remaining())

    method.__name__ = method.__qualname__ = op.name
    method.__doc__ = f"Identity.{op.name}, through the guard."
    method.accepts_malformed = True  # type: ignore[attr-defined]
    return method


async def _never(call):
    raise errors.Internal("a malformed request reached its use case")


class IdentityServicer(identity_pb2_grpc.IdentityServicer):
    """Every RPC passes the guard: token, scope, purpose, rate limit, bounds, audit."""

    def __init__(self, gateway: Gateway, guard: Guard) -> None:
        self.gateway = gateway
        self.guard = guard


for _name, _op in OPERATIONS.items():
    setattr(IdentityServicer, _name, _method(_op))
