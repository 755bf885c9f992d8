"""structlog JSON logs: one event name per line, fields not prose, the request
id bound from a contextvar. Images, templates, tokens and keys are never
passed to a logger (callers log sizes and ids, not payloads)."""

from __future__ import annotations

import contextvars
import logging
import sys
import uuid

import structlog

request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="")


def new_request_id() -> str:
    """A fresh request id (32 hex characters)."""
    return uuid.uuid4().hex


def _add_request_id(_logger, _name, event_dict):
    rid = request_id_var.get()
    if rid and "request_id" not in event_dict:
        event_dict["request_id"] = rid
    return event_dict


def configure(service: str, level: str = "info", stream=None) -> None:
    """Sets up JSON logging for a process running ``service``."""
    lvl = logging.getLevelName(level.upper())
    if not isinstance(lvl, int):
        raise ValueError(f"TANU_LOG_LEVEL={level!r} is not a log level")
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            _add_request_id,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(lvl),
        logger_factory=structlog.PrintLoggerFactory(file=stream or sys.stderr),
        cache_logger_on_first_use=False,
    )
    structlog.contextvars.bind_contextvars(service=service)


def get(name: str):
    """A logger for module ``name``."""
    return structlog.get_logger(module=name)
