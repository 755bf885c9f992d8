"""Typed, transport-free errors and the one table that maps them to gRPC
status codes, HTTP codes and NATS reply headers.

Services raise these; the gRPC interceptor and the NATS reply helper turn them
into a status with the message, which always names the problem. Anything else
that escapes a handler becomes INTERNAL with the request id, never a trace.
"""

from __future__ import annotations

import grpc


class TanuError(Exception):
    """Base of every error a caller may see. ``message`` names the problem."""

    code: grpc.StatusCode = grpc.StatusCode.INTERNAL
    http_status: int = 500
    # Why a request was refused (unauthenticated, scope, purpose, consent,
    # rate_limited, lockout, ...) for the denials metric; "" for errors that
    # are not refusals.
    reason: str = ""

    def __init__(self, message: str, reason: str = "") -> None:
        super().__init__(message)
        self.message = message
        if reason:
            self.reason = reason


class InvalidArgument(TanuError):
    """Bad input: wrong dimension, NaN, empty template, bad image, no face."""

    code = grpc.StatusCode.INVALID_ARGUMENT
    http_status = 400


class NotFound(TanuError):
    """An unknown subject."""

    code = grpc.StatusCode.NOT_FOUND
    http_status = 404


class AlreadyExists(TanuError):
    """A subject id that is already enrolled."""

    code = grpc.StatusCode.ALREADY_EXISTS
    http_status = 409


class FailedPrecondition(TanuError):
    """The system is not in a state to do this (no consent, wrong model)."""

    code = grpc.StatusCode.FAILED_PRECONDITION
    http_status = 412


class IdempotencyConflict(FailedPrecondition):
    """An idempotency key reused for a different request (HTTP 409). Its
    message starts with ``PREFIX``, so it is rebuilt as such across the bus."""

    PREFIX = "idempotency key reused"
    http_status = 409


class PermissionDenied(TanuError):
    """Scope or purpose not granted."""

    code = grpc.StatusCode.PERMISSION_DENIED
    http_status = 403


class KeyProblem(FailedPrecondition):
    """A key is missing, unknown or does not open the data."""


class Unauthenticated(TanuError):
    """Missing, expired or forged credentials."""

    code = grpc.StatusCode.UNAUTHENTICATED
    http_status = 401
    reason = "unauthenticated"


class ResourceExhausted(TanuError):
    """Overload, rate limit or an oversize message."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED
    http_status = 429


class Unavailable(TanuError):
    """A dependency (partition, store, detector) did not answer."""

    code = grpc.StatusCode.UNAVAILABLE
    http_status = 503


class DeadlineExceeded(TanuError):
    """The request's deadline passed before the work was done."""

    code = grpc.StatusCode.DEADLINE_EXCEEDED
    http_status = 504


class Internal(TanuError):
    """A bug or an unexpected failure; the message carries no internals."""


_BY_CODE: dict[grpc.StatusCode, type[TanuError]] = {
    cls.code: cls
    for cls in (
        InvalidArgument,
        NotFound,
        AlreadyExists,
        FailedPrecondition,
        PermissionDenied,
        Unauthenticated,
        ResourceExhausted,
        Unavailable,
        DeadlineExceeded,
        Internal,
    )
}

_BY_NAME: dict[str, grpc.StatusCode] = {c.name: c for c in grpc.StatusCode}


def from_code(code: grpc.StatusCode | str, message: str) -> TanuError:
    """Rebuilds a typed error from a status code (or its name) and message."""
    if isinstance(code, str):
        code = _BY_NAME.get(code, grpc.StatusCode.INTERNAL)
    if code == grpc.StatusCode.FAILED_PRECONDITION and message.startswith(
        IdempotencyConflict.PREFIX
    ):
        return IdempotencyConflict(message)
    return _BY_CODE.get(code, Internal)(message)
