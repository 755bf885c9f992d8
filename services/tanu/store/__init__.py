"""The store service: the system of record (``Store``, on SQLite or
PostgreSQL), its outbox relay to the event stream, and the running
service (``StoreService``). ``python -m tanu.store`` runs the service;
``python -m tanu.store.admin`` holds the offline tools (audit verification).
"""

from .db import Store
from .handlers import StoreHandlers
from .outbox import OutboxRow
from .relay import MSG_ID, OutboxRelay
from .service import StoreService

__all__ = ["MSG_ID", "OutboxRelay", "OutboxRow", "Store", "StoreHandlers", "StoreService"]
