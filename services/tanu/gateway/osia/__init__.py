"""The OSIA ABIS 1.6.0 REST interface of the gateway (docs/osia.md).

- ``facade``: the aiohttp application (``OsiaFacade``), synchronous and asynchronous modes
- ``routes``: the 22 operations mapped onto the Identity operations
- ``bodies``: OSIA JSON to Tanu's messages and back; Tanu's extension fields
- ``params``: the query parameters, checked
- ``jsonio``: hostile JSON in, RFC 8259 JSON and the spec's Error out
- ``tasks``: the worker running asynchronous tasks and calling back
- ``callbacks``: the per-tenant callback allow-list (no SSRF) and the delivery
- ``openapi``: the shipped spec (unmodified) and Tanu's published OpenAPI
"""

from .facade import OsiaFacade
from .tasks import WorkerSettings

__all__ = ["OsiaFacade", "WorkerSettings"]
