"""The gateway's REST interface: the OSIA ABIS 1.6.0 facade
(``tanu.gateway.osia``), mounted by the gateway service next to gRPC on
``TANU_REST_PORT`` and served through the same guard (token, scope,
purpose, rate limit, audit). See docs/osia.md."""

from __future__ import annotations

from .osia import OsiaFacade, WorkerSettings
from .osia.jsonio import MAX_JSON_DEPTH, json_response, parse_json

RestFacade = OsiaFacade

__all__ = [
    "MAX_JSON_DEPTH",
    "OsiaFacade",
    "RestFacade",
    "WorkerSettings",
    "json_response",
    "parse_json",
]
