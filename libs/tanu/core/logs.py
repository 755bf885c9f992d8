"""structlog JSON logs: one event name per line, fields not prose, the request
id bound from a contextvar. Images, templates, tokens and keys are never
passed to a logger (callers log sizes and ids, not payloads).

Logs are data too, and outlive an erasure. So every line passes two
processors: strings longer than ``MAX_FIELD_CHARS`` are shortened (with
their length), and subject ids (fields named in ``SUBJECT_FIELDS``, and
every quoted value in an error message, which is where refusals name a
subject) become keyed pseudonyms: ``~`` and 12 hex digits of
HMAC-SHA256 under the deployment's key (``TANU_LOG_PSEUDONYM_KEY_FILE``).
The same id gives the same pseudonym, so an operator can follow one
subject through the logs, but nothing readable is left once the subject
is erased; without the key nobody can test a guess.
"""

from __future__ import annotations

import contextvars
import hashlib
import hmac
import logging
import os
import re
import sys

import structlog

request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="")

MAX_FIELD_CHARS = 256
SUBJECT_FIELDS = frozenset({"subject_id", "guardian_subject_id", "revoker_subject_id"})
# Fields that carry an error's text, whose quoted values are pseudonymised.
MESSAGE_FIELDS = frozenset({"reason", "error", "message"})
# A request id a caller may choose: a safe charset, at most 64 characters.
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}", re.ASCII)
_QUOTED = re.compile(r"'([^'\n]{1,256})'|\"([^\"\n]{1,256})\"")

# The key of the pseudonyms; a process that configured none uses a random
# one (pseudonyms then differ between processes and restarts).
_key: list[bytes] = [os.urandom(32)]


def new_request_id() -> str:
    """A fresh request id (32 hex characters, random)."""
    return os.urandom(16).hex()


def checked_request_id(given: str | None) -> tuple[str, str]:
    """The request id to use for a caller's ``given`` one, and why it was
    replaced ("" when kept): a caller's id is kept only when it is 1..64
    characters of ``A-Z a-z 0-9 . _ : -``; anything else (too long, other
    characters) is replaced by a fresh id, never stored or echoed."""
    if not given:
        return new_request_id(), ""
    if _REQUEST_ID.fullmatch(given):
        return given, ""
    why = "too_long" if len(given) > 64 else "bad_characters"
    return new_request_id(), why


def set_pseudonym_key(key: bytes) -> None:
    """Sets the key subject ids in logs are pseudonymised with."""
    if len(key) < 16:
        raise ValueError("the log pseudonym key must be at least 16 bytes")
    _key[0] = key


def load_pseudonym_key(path: str) -> None:
    """Reads the pseudonym key from a file (its bytes, stripped)."""
    with open(path, "rb") as f:
        set_pseudonym_key(f.read().strip())


def pseudonym(subject_id: str) -> str:
    """A subject id as it appears in logs: ``~`` + 12 hex digits of its keyed hash."""
    mac = hmac.new(_key[0], subject_id.encode("utf-8", "surrogatepass"), hashlib.sha256)
    return "~" + mac.hexdigest()[:12]


def bounded(value: str, limit: int = MAX_FIELD_CHARS) -> str:
    """``value`` shortened to ``limit`` characters, saying how long it was."""
    if len(value) <= limit:
        return value
    return value[:limit] + f"...({len(value)} characters)"


def _scrub_message(text: str) -> str:
    return _QUOTED.sub(lambda m: "'" + pseudonym(m.group(1) or m.group(2)) + "'", text)


def _privacy(_logger, _name, event_dict):
    for k, v in list(event_dict.items()):
        if k in SUBJECT_FIELDS and isinstance(v, str) and v:
            event_dict[k] = pseudonym(v)
        elif k in MESSAGE_FIELDS and isinstance(v, str):
            event_dict[k] = bounded(_scrub_message(v))
        elif isinstance(v, str):
            event_dict[k] = bounded(v, 8000 if k == "exception" else MAX_FIELD_CHARS)
    return event_dict


def _add_request_id(_logger, _name, event_dict):
    rid = request_id_var.get()
    if rid and "request_id" not in event_dict:
        event_dict["request_id"] = rid
    return event_dict


def configure(service: str, level: str = "info", stream=None, pseudonym_key_file: str = "") -> None:
    """Sets up JSON logging for a process running ``service``; subject ids
    are pseudonymised under the key in ``pseudonym_key_file`` (a random key
    per process without one)."""
    lvl = logging.getLevelName(level.upper())
    if not isinstance(lvl, int):
        raise ValueError(f"TANU_LOG_LEVEL={level!r} is not a log level")
    if pseudonym_key_file:
        load_pseudonym_key(pseudonym_key_file)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            _add_request_id,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            _privacy,
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
