"""The OSIA ABIS 1.6.0 specification (shipped unmodified in this package:
``osia-abis-1.6.0.yaml``, with its NOTICE and license) and Tanu's
published OpenAPI, built from it at start-up: the same document plus
Tanu's documented additions, added programmatically:

- on every operation, the responses Tanu may give that the spec does not
  list (401 unauthenticated, 403 with an Error body, 404, 409, 412, 413,
  415, 429, 501 not supported, 503, 504), each with the spec's Error body;
- ``GET /v1/persons/{personId}/report``, ``GET /openapi.json`` and
  ``GET /healthz``, Tanu's own routes;
- ``x-tanu-extensions``: the extension fields Tanu reads in the spec's
  extension points (docs/osia.md).
"""

from __future__ import annotations

import copy
from functools import lru_cache
from importlib import resources

import yaml

SPEC_FILE = "osia-abis-1.6.0.yaml"
METHODS = ("get", "put", "post", "delete", "patch")
_ERROR = {"$ref": "#/components/schemas/Error"}
ADDED_RESPONSES = {
    "400": "Bad request: the message names the parameter or field",
    "401": "No credentials, or a malformed, forged or expired bearer token",
    "403": "Scope, purpose, consent or lock refusal",
    "404": "Unknown person, encounter, gallery or task (or not the caller's)",
    "409": "Conflict: the id exists, or the transactionId was used for another request",
    "412": "A precondition of Tanu's domain rules is not met (e.g. no consent record)",
    "413": "The request body is too large",
    "415": "The body is not application/json (UTF-8)",
    "429": "Rate limit, or a verification delayed after repeated failures",
    "501": "A feature of the interface Tanu does not support (the message says which)",
    "503": "A partition or a dependency is unavailable (never a partial answer)",
    "504": "An internal call ran out of time",
}
EXTENSIONS = {
    "biographicData.dateOfBirth": "YYYY-MM-DD; required to create a person (a minor needs "
                                  "a guardian's consent)",
    "contextualData.consent.purposes": "purposes the person consents to",
    "contextualData.consent.evidenceRef": "reference of the consent's evidence (a form id)",
    "contextualData.consent.guardian": "for a minor: {personId, relationship, biometricData} "
                                       "of an enrolled adult guardian, verified by face",
    "contextualData.allowDuplicate": "enrol even when de-duplication finds a match",
    "contextualData.waitIndexed": "answer once the encounter is searchable",
    "X-Tanu-Purpose": "header: the purpose of the request (identify, verify)",
    "Idempotency-Key": "header: the idempotency key of a write (default: transactionId)",
    "reason": "query (deleteAll, deleteEncounter, merge, move): why, kept with the erasure",
}  # fmt: skip


@lru_cache(maxsize=1)
def spec_text() -> str:
    """The OSIA specification as shipped (unmodified)."""
    return resources.files(__package__).joinpath(SPEC_FILE).read_text(encoding="utf-8")


def spec() -> dict:
    """The OSIA specification, parsed (a fresh copy)."""
    return copy.deepcopy(_parsed())


@lru_cache(maxsize=1)
def _parsed() -> dict:
    return yaml.safe_load(spec_text())


def operations(doc: dict | None = None):
    """(path, method, operation) of every operation of the spec."""
    doc = doc or _parsed()
    for path, item in doc["paths"].items():
        for method in METHODS:
            if method in item:
                yield path, method, item[method]


def _error_response(description: str) -> dict:
    return {"description": description,
            "content": {"application/json": {"schema": dict(_ERROR)}}}  # fmt: skip


def published() -> dict:
    """Tanu's published OpenAPI: the spec plus Tanu's documented additions."""
    doc = spec()
    doc["info"]["title"] = "OSIA ABIS Interface (Tanu)"
    doc["info"]["x-tanu-source"] = f"{SPEC_FILE}, unmodified, plus the additions below"
    doc["servers"] = [{"url": "/"}]
    for _path, _method, op in operations(doc):
        responses = op.setdefault("responses", {})
        for code, description in ADDED_RESPONSES.items():
            have = responses.get(code)
            if have is None:
                responses[code] = _error_response(description)
            elif "content" not in have:  # e.g. 403, 404, 409: the spec gives no body
                have["content"] = {"application/json": {"schema": dict(_ERROR)}}
    person = {"name": "personId", "in": "path", "required": True, "schema": {"type": "string"}}
    doc["paths"]["/v1/persons/{personId}/report"] = {"get": {
        "tags": ["Tanu"], "operationId": "tanuSubjectReport",
        "summary": "Tanu: what is held about a person (the citizen's report)",
        "security": [{"BearerAuth": []}], "parameters": [person],
        "responses": {"200": {"description": "The report",
                              "content": {"application/json": {"schema": {"type": "object"}}}},
                      **{c: _error_response(d) for c, d in ADDED_RESPONSES.items()}},
    }}  # fmt: skip
    doc["paths"]["/healthz"] = {"get": {
        "tags": ["Tanu"], "operationId": "tanuHealth", "summary": "Tanu: whether the gateway serves",
        "security": [],
        "responses": {c: {"description": d, "content": {"application/json": {"schema": {
            "type": "object", "properties": {"serving": {"type": "boolean"},
                                             "problem": {"type": "string"}}}}}}
                      for c, d in (("200", "Serving"), ("503", "Not serving"))},
    }}  # fmt: skip
    doc["paths"]["/openapi.json"] = {"get": {
        "tags": ["Tanu"], "operationId": "tanuOpenApi", "summary": "Tanu: this document",
        "security": [],
        "responses": {"200": {"description": "OpenAPI 3.0",
                              "content": {"application/json": {"schema": {"type": "object"}}}}},
    }}  # fmt: skip
    doc["x-tanu-extensions"] = dict(EXTENSIONS)
    return doc
