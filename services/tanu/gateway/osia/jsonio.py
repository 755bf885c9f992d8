"""JSON in and out of the OSIA facade: request bodies read as hostile
(UTF-8, bounded depth, no NaN/Infinity, numbers in range), replies as RFC
8259 JSON only, errors as the spec's ``Error`` body ``{code, message}``.
"""

from __future__ import annotations

import json
import math
import re

from aiohttp import web

from tanu.core import errors, logs

MAX_JSON_DEPTH = 16
MAX_CANDIDATES = 1000
F32_MAX = 3.4028234663852886e38  # request fields are float32
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKETS = re.compile(r"[\[\]{}]")


def _finite(value):
    """``value`` with every non-finite float replaced by None (JSON null)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def _dumps(value) -> str:
    return json.dumps(_finite(value), allow_nan=False)


def json_response(value, status: int = 200) -> web.Response:
    """An RFC 8259 JSON reply (never NaN or Infinity)."""
    return web.json_response(value, status=status, dumps=_dumps)


def error_response(status: int, message: str) -> web.Response:
    """The spec's Error body with its HTTP status."""
    return json_response({"code": status, "message": message}, status)


def error(exc: errors.TanuError) -> web.Response:
    return error_response(exc.http_status, exc.message)


def _refuse_constant(name: str):
    raise errors.InvalidArgument(f"the body holds {name}, which is not JSON (RFC 8259)")


def _parse_float(text: str) -> float:
    v = float(text)
    if not math.isfinite(v):
        raise errors.InvalidArgument(f"the number {text[:32]} in the body is out of range")
    return v


def _parse_int(text: str) -> int:
    if len(text.lstrip("-")) > 19:
        raise errors.InvalidArgument(f"the integer {text[:32]}... in the body is out of range")
    return int(text)


def parse_json(raw: bytes, kind: type = dict):
    """A request body as a JSON object; InvalidArgument naming what is wrong
    (not UTF-8, not JSON, nested deeper than ``MAX_JSON_DEPTH``, NaN or
    Infinity, a number out of range, not an object)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise errors.InvalidArgument("the body is not UTF-8") from None
    depth = deepest = 0
    for b in _BRACKETS.findall(_STRING.sub('""', text)):
        depth += 1 if b in "[{" else -1
        deepest = max(deepest, depth)
    if deepest > MAX_JSON_DEPTH:
        raise errors.InvalidArgument(
            f"the body is nested {deepest} levels deep; the limit is {MAX_JSON_DEPTH}"
        )
    try:
        body = json.loads(text, parse_constant=_refuse_constant, parse_float=_parse_float,
                          parse_int=_parse_int)  # fmt: skip
    except (ValueError, RecursionError):
        raise errors.InvalidArgument("the body is not JSON") from None
    if not isinstance(body, kind):
        what = "an object" if kind is dict else "an array"
        raise errors.InvalidArgument(f"the body must be a JSON {what}")
    return body


def check_content_type(request: web.Request) -> None:
    """Refuses (415) a body that does not say it is UTF-8 JSON."""
    charset = (request.charset or "utf-8").lower()
    if request.content_type != "application/json" or charset not in ("utf-8", "utf8"):
        raise UnsupportedMediaType(
            f"the body must be sent as Content-Type: application/json (UTF-8), "
            f"not {logs.bounded(request.headers.get('Content-Type', 'none'), 64)!r}"
        )


class UnsupportedMediaType(errors.InvalidArgument):
    """A body of a media type the facade does not read (HTTP 415)."""

    http_status = 415
