"""The gateway service: the public Identity API (gRPC, and the partner REST
facade) over the internal services.

    service        GatewayService: wiring and lifecycle
    servicer       IdentityServicer: the gRPC adapter, generated from the table
    api            OPERATIONS: one IdentityOperation per Identity RPC
    guard          Guard, Call: token, scope, purpose, rate limit, audit
    rest           RestFacade: the OSIA subset over the same table and guard
    gateway        Gateway: the state the use cases share
    identify, enrol, verify, citizen, erasure: the use cases
    samples, search, layout_watch: the shared pieces; cases: adjudication;
    idempotency: the keys of the writes
"""

from .api import OPERATIONS, IdentityOperation
from .gateway import Gateway
from .guard import PURPOSE_KEY, Call, Guard
from .service import GatewayService
from .servicer import IdentityServicer

__all__ = [
    "OPERATIONS",
    "PURPOSE_KEY",
    "Call",
    "Gateway",
    "GatewayService",
    "Guard",
    "IdentityOperation",
    "IdentityServicer",
]
