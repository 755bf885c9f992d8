"""The 22 operations of OSIA ABIS 1.6.0, each mapped onto Tanu's Identity
operations (``gateway.api.OPERATIONS``): how its request is built from the
path, the query and the body, which operations it runs, and how their
reply becomes the spec's body and status.

A route's ``build`` checks everything the caller sent (a 400 names what is
wrong) and returns the messages its ``run`` will need; ``run`` calls the
Identity operations through ``invoke`` (the guard, synchronously, or as the
caller authenticated earlier for an asynchronous task); ``render`` gives
(HTTP status, JSON value; None for an empty 204). The same three serve a
synchronous request and an asynchronous task, so both answer alike.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from google.protobuf.message import Message

from tanu.core import errors
from tanu.v1 import common_pb2, encounters_pb2, identity_pb2

from . import bodies, params

Invoke = Callable[[str, Message, str], Awaitable[Message]]


@dataclass
class Ctx:
    """One request as the routes see it."""

    path: dict[str, str]
    query: dict[str, str]
    body: Any = None
    max_top_k: int = 1000
    tenant: str = ""
    transaction_id: str = ""
    created: tuple[str, str] = ("", "")  # the (person, encounter) a create names
    gateway: Any = None  # the Gateway, for the store reads a route makes itself

    def generated_id(self, prefix: str, *salt: str) -> str:
        """An id Tanu generates for the caller (createEncounterNoId(s)), the
        same for the same tenant and transaction: a retry names the same
        person and encounter, so it is the same request."""
        seed = "\n".join((self.tenant, self.transaction_id, *salt)).encode()
        return f"{prefix}-{hashlib.sha256(seed).hexdigest()[:24]}"


@dataclass(frozen=True)
class Route:
    operation_id: str
    method: str
    path: str
    ops: tuple[str, ...]  # Identity operations; the first authorises the request
    build: Callable[[Ctx], dict[str, Message]] | None = None
    run: Callable[[Invoke, dict[str, Message], Ctx], Awaitable[Any]] | None = None
    render: Callable[[Ctx, Any], tuple[int, Any]] | None = None
    body: str = ""  # "object", "array", "optional" (an object or nothing), "" (none read)
    writes: bool = False  # keyed by the transactionId in the store (idempotent)
    subject: Callable[[Ctx], str] = field(default=lambda ctx: ctx.path.get("personId", ""))
    unsupported: str = ""  # why the route answers 501
    asynchronous: bool = True  # accepts a callback


def message_class(name: str) -> type[Message] | None:
    """A message of the Identity API by name (identity_pb2, encounters_pb2); None if absent."""
    cls = getattr(identity_pb2, name, None)
    if cls is None:
        cls = getattr(encounters_pb2, name, None)
    return cls


def _msg(name: str, **fields) -> Message:
    """An Identity API message by name (NotSupported when this build lacks it)."""
    cls = message_class(name)
    if cls is None:
        raise bodies.NotSupported(f"{name} is not available in this build of Tanu")
    known = cls.DESCRIPTOR.fields_by_name
    missing = sorted(k for k, v in fields.items() if k not in known and v)
    if missing:
        raise bodies.NotSupported(f"{name}.{missing[0]} is not available in this build of Tanu")
    return cls(**{k: v for k, v in fields.items() if k in known and v is not None})


def _one(op: str):
    async def run(invoke: Invoke, msgs, ctx: Ctx):
        return await invoke(op, msgs[op], ctx.path.get("personId", ""))

    return run


def _gallery(ctx: Ctx) -> str:
    g = ctx.path.get("galleryId", "ALL")
    if not g or len(g) > 64:
        raise errors.InvalidArgument("galleryId must be 1..64 characters")
    return "" if g == "ALL" else g


def _no_content(_ctx: Ctx, _reply) -> tuple[int, Any]:
    return 204, None


def _erased(_ctx: Ctx, reply) -> tuple[int, Any]:
    """204; the signed erasure receipt's id in ``X-Tanu-Receipt-Id``."""
    receipt = getattr(reply, "receipt", None)
    rid = receipt.receipt_id if receipt is not None else ""
    return 204, ({"X-Tanu-Receipt-Id": rid} if rid else None)


# --- encounters ---------------------------------------------------------------------------


def _build_create(ctx: Ctx, person_id: str, encounter_id: str) -> dict[str, Message]:
    e = bodies.EncounterBody(ctx.body)
    if "encounterId" in ctx.path and ctx.body.get("encounterId") not in (None, "", encounter_id):
        raise errors.InvalidArgument("the body's encounterId differs from the path's")
    fields = e.fields(encounter_id)
    enrol = _msg("EnrollRequest", subject_id=person_id, sample=e.sample,
                 allow_duplicate=e.allow_duplicate, wait_indexed=e.wait_indexed,
                 date_of_birth=e.date_of_birth, encounter_id=encounter_id,
                 galleries=e.galleries, encounter_type=e.encounter_type,
                 encounter_data_json=e.data_json)  # fmt: skip
    if e.consent is not None:
        enrol.consent.CopyFrom(e.consent)
    msgs = {"Enroll": enrol}
    if fields is not None:
        msgs["AddEncounter"] = _msg(
            "AddEncounterRequest", subject_id=person_id, sample=e.sample, encounter=fields,
            allow_duplicate=e.allow_duplicate, wait_indexed=e.wait_indexed,
        )  # fmt: skip
    return msgs


def _build_create_noids(ctx: Ctx):
    person = ctx.generated_id("p")
    return _build_create(ctx, person, ctx.generated_id("e", person))


def _build_create_noid(ctx: Ctx):
    person = ctx.path["personId"]
    return _build_create(ctx, person, ctx.generated_id("e", person))


def _build_create_with_id(ctx: Ctx):
    return _build_create(ctx, ctx.path["personId"], ctx.path["encounterId"])


async def _run_create(invoke: Invoke, msgs, ctx: Ctx):
    """A new person (Enroll) or, when the person exists, another encounter
    (AddEncounter): the spec creates the person automatically."""
    enrol = msgs["Enroll"]
    ctx.created = (enrol.subject_id, enrol.encounter_id)
    try:
        return await invoke("Enroll", enrol, enrol.subject_id)
    except errors.AlreadyExists:
        if "AddEncounter" not in msgs:  # a build without encounters
            raise
    try:
        return await invoke("AddEncounter", msgs["AddEncounter"], enrol.subject_id)
    except errors.NotFound:
        raise errors.AlreadyExists(
            f"person {params.shown(enrol.subject_id)} exists and is not yours to add to"
        ) from None


def _render_create(ctx: Ctx, r) -> tuple[int, Any]:
    if isinstance(r, identity_pb2.EnrollResponse):
        others = {"outcome": r.outcome}
        if r.case_id:
            others["caseId"] = r.case_id
        if r.HasField("duplicate_of") and r.duplicate_of.subject_id:
            others["duplicateOf"] = r.duplicate_of.subject_id
        if r.outcome == "refused":
            raise errors.AlreadyExists(
                "the person is already enrolled under another id (de-duplication refused it)"
            )
        return 200, bodies.person_ids(ctx.created[0], ctx.created[1], others)
    if r.outcome == "refused":
        raise errors.AlreadyExists(
            "the encounter matches another person (de-duplication refused it)"
        )
    return 200, bodies.person_ids(r.encounter.subject_id, r.encounter.encounter_id,
                                  {"outcome": r.outcome})  # fmt: skip


def _build_read_all(ctx: Ctx):
    return {"ListEncounters": _msg("ListEncountersRequest", subject_id=ctx.path["personId"])}


def _render_read_all(_ctx, r):
    return 200, [bodies.encounter_json(e) for e in r.encounters]


def _build_read(ctx: Ctx):
    return {"GetEncounter": _msg("GetEncounterRequest", subject_id=ctx.path["personId"],
                                 encounter_id=ctx.path["encounterId"])}  # fmt: skip


def _render_encounter(_ctx, e):
    return 200, bodies.encounter_json(e)


def _build_update(ctx: Ctx):
    e = bodies.EncounterBody(ctx.body, need_sample=False)
    req = _msg("UpdateEncounterRequest", subject_id=ctx.path["personId"],
               encounter_id=ctx.path["encounterId"], encounter=e.fields())  # fmt: skip
    if e.sample is not None:
        req.sample.CopyFrom(e.sample)
    return {"UpdateEncounter": req}


def _render_update(_ctx, e):
    return 200, bodies.person_ids(e.subject_id, e.encounter_id)


def _build_delete_encounter(ctx: Ctx):
    return {"DeleteEncounter": _msg("DeleteEncounterRequest", subject_id=ctx.path["personId"],
                                    encounter_id=ctx.path["encounterId"],
                                    reason=ctx.query.get("reason", "")[:200])}  # fmt: skip


def _build_delete_all(ctx: Ctx):
    return {"Delete": identity_pb2.DeleteRequest(subject_id=ctx.path["personId"],
                                                 reason=ctx.query.get("reason", "")[:200])}  # fmt: skip


def _build_status(ctx: Ctx):
    status = ctx.query.get("status")
    if status not in ("ACTIVE", "INACTIVE"):
        raise errors.InvalidArgument(
            f"status={params.shown(status or '')} must be ACTIVE or INACTIVE"
        )
    return {"SetEncounterStatus": _msg("SetEncounterStatusRequest",
                                       subject_id=ctx.path["personId"],
                                       encounter_id=ctx.path["encounterId"], status=status)}  # fmt: skip


def _build_galleries(ctx: Ctx):
    galleries = ctx.body
    if not galleries or not all(isinstance(g, str) for g in galleries):
        raise errors.InvalidArgument("the body must be a non-empty list of gallery names")
    if len(set(galleries)) != len(galleries):
        raise errors.InvalidArgument("the list of galleries holds duplicates")
    return {
        "SetEncounterGalleries": _msg(
            "SetEncounterGalleriesRequest",
            subject_id=ctx.path["personId"],
            encounter_id=ctx.path["encounterId"],
            galleries=[g for g in galleries if g != "ALL"],
        )
    }


def _build_merge(ctx: Ctx):
    return {"MergeSubjects": _msg("MergeSubjectsRequest", subject_id=ctx.path["personIdTarget"],
                                  source_subject_id=ctx.path["personIdSource"],
                                  reason=ctx.query.get("reason", "")[:200])}  # fmt: skip


def _build_move(ctx: Ctx):
    return {"MoveEncounter": _msg("MoveEncounterRequest", subject_id=ctx.path["personIdTarget"],
                                  source_subject_id=ctx.path["personIdSource"],
                                  encounter_id=ctx.path["encounterId"],
                                  reason=ctx.query.get("reason", "")[:200])}  # fmt: skip


def _run_two(op: str):
    async def run(invoke: Invoke, msgs, ctx: Ctx):
        return await invoke(op, msgs[op], ctx.path["personIdTarget"])

    return run


def _target(ctx: Ctx) -> str:
    return ctx.path.get("personIdTarget", "")


# --- search -------------------------------------------------------------------------------


def _set_gallery(req, gallery: str) -> None:
    """Searches ``gallery`` ("" : ALL)."""
    if "gallery" in req.DESCRIPTOR.fields_by_name:
        req.gallery = gallery
    elif gallery:
        raise errors.NotFound(f"unknown gallery {params.shown(gallery)}; this build has one: ALL")


def _search_settings(ctx: Ctx, req) -> None:
    """maxNbCand (1..TANU_MAX_TOP_K), threshold (only stricter than the
    calibrated one: the gateway's rule), the levels (ignored), the gallery
    (the path's, or the filter's ``gallery`` when the path says ALL)."""
    top = params.integer(ctx.query, "maxNbCand", 1, ctx.max_top_k)
    if top is not None:
        req.top_k = top
    threshold = params.number(ctx.query, "threshold")
    if threshold is not None:
        req.threshold = threshold
    params.ignored_levels(ctx.query)
    gallery = _gallery(ctx)
    body = ctx.body if isinstance(ctx.body, dict) else {}
    flt = body.get("filter", body) if "filter" in body else body
    if isinstance(flt, dict) and isinstance(flt.get("gallery"), str) and not gallery:
        gallery = "" if flt["gallery"] == "ALL" else flt["gallery"][:64]
    _set_gallery(req, gallery)


def _build_identify(ctx: Ctx):
    body = ctx.body
    unknown = sorted(set(body) - {"filter", "biometricData", "encryption", "integrity"})
    if unknown:
        raise errors.InvalidArgument(f"unknown IdentifyRequest fields {unknown[:5]}")
    if body.get("filter") is not None and not isinstance(body["filter"], dict):
        raise errors.InvalidArgument("filter must be an object")
    if body.get("encryption"):
        raise bodies.NotSupported("encrypted requests are not supported: use TLS")
    req = identity_pb2.IdentifyRequest(sample=bodies.sample(body.get("biometricData")))
    _search_settings(ctx, req)
    return {"Identify": req}


def _build_identify_from(ctx: Ctx):
    if ctx.body is not None and not isinstance(ctx.body, dict):
        raise errors.InvalidArgument("the body (a Filter) must be an object")
    req = identity_pb2.IdentifyRequest()
    if "probe_subject_id" not in req.DESCRIPTOR.fields_by_name:
        raise bodies.NotSupported("identify by person is not available in this build of Tanu")
    req.probe_subject_id = ctx.path["personId"]
    if "encounterId" in ctx.path:
        req.probe_encounter_id = ctx.path["encounterId"]
    _search_settings(ctx, req)
    return {"Identify": req}


def _render_identify(ctx: Ctx, r):
    if not r.complete:  # never a silently smaller gallery
        raise errors.Unavailable(f"partitions {list(r.missing_partitions)} did not answer")
    return 200, bodies.candidates(r, ctx.path.get("galleryId", "ALL"))


def _build_verify(ctx: Ctx):
    body = ctx.body
    unknown = sorted(set(body) - {"biometricData", "encryption", "integrity"})
    if unknown:
        raise errors.InvalidArgument(f"unknown VerifyFromIdRequest fields {unknown[:5]}")
    if body.get("encryption"):
        raise bodies.NotSupported("encrypted requests are not supported: use TLS")
    gallery = _gallery(ctx)
    if gallery and message_class("ListEncountersRequest") is None:
        raise errors.NotFound(f"unknown gallery {params.shown(gallery)}; this build has one: ALL")
    req = identity_pb2.VerifyRequest(subject_id=ctx.path["personId"],
                                     sample=bodies.sample(body.get("biometricData")))  # fmt: skip
    threshold = params.number(ctx.query, "threshold")
    if threshold is not None:
        req.threshold = threshold
    params.ignored_levels(ctx.query)
    return {"Verify": req}


async def _run_verify(invoke: Invoke, msgs, ctx: Ctx):
    """Verify; in a named gallery, only a person with an encounter there
    (checked after the verification, which checks the caller's access to
    the person: membership is never told to a caller without it)."""
    req = msgs["Verify"]
    reply = await invoke("Verify", req, req.subject_id)
    gallery = _gallery(ctx)
    if gallery:
        listed = await ctx.gateway.store.list_encounters(
            encounters_pb2.ListEncountersRequest(subject_id=req.subject_id)
        )
        if not any(gallery in e.galleries for e in listed.encounters):
            raise errors.NotFound(f"person {params.shown(req.subject_id)} is not in gallery "
                                  f"{params.shown(gallery)}")  # fmt: skip
    return reply


def _render_verify(_ctx, r):
    out: dict = {"decision": r.decision == common_pb2.DECISION_MATCH}
    if r.HasField("score"):  # only for tenants that see scores
        out["scores"] = [{"score": r.score, "biometricType": "FACE"}]
    return 200, out


def _build_verify_bio(ctx: Ctx):
    """verifyFromBio: two samples compared 1:1 (CompareSamples), nothing
    stored; ``threshold`` only stricter, the levels ignored."""
    body = ctx.body
    unknown = sorted(set(body) - {"biometricData1", "biometricData2", "encryption", "integrity"})
    if unknown:
        raise errors.InvalidArgument(f"unknown VerifyFromBioRequest fields {unknown[:5]}")
    if body.get("encryption"):
        raise bodies.NotSupported("encrypted requests are not supported: use TLS")
    req = _msg("CompareSamplesRequest",
               sample_a=bodies.sample(body.get("biometricData1"), "biometricData1"),
               sample_b=bodies.sample(body.get("biometricData2"), "biometricData2"))  # fmt: skip
    threshold = params.number(ctx.query, "threshold")
    if threshold is not None:
        req.threshold = threshold
    params.ignored_levels(ctx.query)
    return {"CompareSamples": req}


# --- templates ----------------------------------------------------------------------------

# Tanu's template format (OSIA TemplateFormat is extensible): the raw
# little-endian float32 vector of the model named in ``algorithm``.
TEMPLATE_FORMAT = "TANU_F32LE"


def _build_read_template(ctx: Ctx):
    fmt = ctx.query.get("templateFormat")
    if fmt is not None and fmt != TEMPLATE_FORMAT:
        raise bodies.NotSupported(f"templateFormat {params.shown(fmt)} is not supported: Tanu "
                                  f"holds face templates as {TEMPLATE_FORMAT} only")  # fmt: skip
    for name in ("biometricSubType", "instance", "qualityFormat"):
        if len(ctx.query.get(name, "")) > 64:
            raise errors.InvalidArgument(f"{name} is longer than 64 characters")
    return {"ReadTemplates": _msg("ReadTemplatesRequest", subject_id=ctx.path["personId"],
                                  encounter_id=ctx.path["encounterId"])}  # fmt: skip


def _render_templates(ctx: Ctx, r):
    """BiometricComputedData items (none when another biometricType is asked)."""
    import base64

    if ctx.query.get("biometricType", "FACE") != "FACE":
        return 200, []
    return 200, [{"biometricType": "FACE", "template": base64.b64encode(t.template.vector).decode(),
                  "templateFormat": TEMPLATE_FORMAT, "algorithm": t.template.model_id,
                  "vendor": "Tanu"} for t in r.templates]  # fmt: skip


# --- galleries ----------------------------------------------------------------------------


def _build_galleries_list(_ctx: Ctx):
    return {"ListGalleries": _msg("ListGalleriesRequest")}


def _render_galleries(_ctx, r):
    names = [g.name for g in r.galleries]
    return 200, ["ALL", *[n for n in names if n != "ALL"]]


def _build_gallery_content(ctx: Ctx):
    offset = params.integer(ctx.query, "offset", 0, MAX_OFFSET) or 0
    limit = params.integer(ctx.query, "limit", 1, 1000)
    _gallery(ctx)
    return {"GetGalleryContent": _msg("GetGalleryContentRequest",
                                      gallery=ctx.path["galleryId"],
                                      page_size=min(1000, offset + (limit or 1000)))}  # fmt: skip


async def _run_gallery_content(invoke: Invoke, msgs, ctx: Ctx):
    req = msgs["GetGalleryContent"]
    offset = params.integer(ctx.query, "offset", 0, MAX_OFFSET) or 0
    limit = params.integer(ctx.query, "limit", 1, 1000) or 1000
    members: list = []
    while True:  # pages until offset + limit members are read (bounded above)
        r = await invoke("GetGalleryContent", req, "")
        members.extend(r.members)
        if len(members) >= offset + limit or not r.next_page_token:
            return members[offset : offset + limit]
        req.page_token = r.next_page_token


MAX_OFFSET = 100_000  # readGalleryContent pages through the store up to this far


def _render_gallery_content(_ctx, members):
    return 200, [bodies.person_ids(m.subject_id, m.encounter_id) for m in members]


# --- the table ----------------------------------------------------------------------------

ROUTES: tuple[Route, ...] = (
    Route("createEncounterNoIds", "POST", "/v1/persons", ("Enroll", "AddEncounter"),
          _build_create_noids, _run_create, _render_create, "object", True,
          subject=lambda ctx: ""),
    Route("createEncounterNoId", "POST", "/v1/persons/{personId}/encounters",
          ("Enroll", "AddEncounter"), _build_create_noid, _run_create, _render_create,
          "object", True),
    Route("readAllEncounters", "GET", "/v1/persons/{personId}/encounters", ("ListEncounters",),
          _build_read_all, _one("ListEncounters"), _render_read_all),
    Route("createEncounter", "POST", "/v1/persons/{personId}/encounters/{encounterId}",
          ("Enroll", "AddEncounter"), _build_create_with_id, _run_create, _render_create,
          "object", True),
    Route("readEncounter", "GET", "/v1/persons/{personId}/encounters/{encounterId}",
          ("GetEncounter",), _build_read, _one("GetEncounter"), _render_encounter),
    Route("updateEncounter", "PUT", "/v1/persons/{personId}/encounters/{encounterId}",
          ("UpdateEncounter",), _build_update, _one("UpdateEncounter"), _render_update,
          "object", True),
    Route("deleteEncounter", "DELETE", "/v1/persons/{personId}/encounters/{encounterId}",
          ("DeleteEncounter",), _build_delete_encounter, _one("DeleteEncounter"), _erased,
          "", True),
    Route("mergeEncounter", "POST", "/v1/persons/{personIdTarget}/merge/{personIdSource}",
          ("MergeSubjects",), _build_merge, _run_two("MergeSubjects"), _no_content, "", True,
          subject=_target),
    Route("moveEncounter", "POST",
          "/v1/persons/{personIdTarget}/move/{personIdSource}/encounters/{encounterId}",
          ("MoveEncounter",), _build_move, _run_two("MoveEncounter"), _no_content, "", True,
          subject=_target),
    Route("updateEncounterStatus", "PUT", "/v1/persons/{personId}/encounters/{encounterId}/status",
          ("SetEncounterStatus",), _build_status, _one("SetEncounterStatus"), _no_content,
          "", True),
    Route("updateEncounterGalleries", "PUT",
          "/v1/persons/{personId}/encounters/{encounterId}/galleries",
          ("SetEncounterGalleries",), _build_galleries, _one("SetEncounterGalleries"),
          _no_content, "array", True),
    Route("readTemplate", "GET", "/v1/persons/{personId}/encounters/{encounterId}/templates",
          ("ReadTemplates",), _build_read_template, _one("ReadTemplates"), _render_templates),
    Route("deleteAll", "DELETE", "/v1/persons/{personId}", ("Delete",), _build_delete_all,
          _one("Delete"), _erased, "", True),
    Route("identify", "POST", "/v1/identify/{galleryId}", ("Identify",), _build_identify,
          _one("Identify"), _render_identify, "object", subject=lambda ctx: ""),
    Route("identifyFromId", "POST", "/v1/identify/{galleryId}/{personId}", ("Identify",),
          _build_identify_from, _one("Identify"), _render_identify, "optional"),
    Route("identifyFromEncounterId", "POST",
          "/v1/identify/{galleryId}/{personId}/encounters/{encounterId}", ("Identify",),
          _build_identify_from, _one("Identify"), _render_identify, "optional"),
    Route("verifyFromId", "POST", "/v1/verify/{galleryId}/{personId}", ("Verify",),
          _build_verify, _run_verify, _render_verify, "object"),
    Route("verifyFromBio", "POST", "/v1/verify", ("CompareSamples",), _build_verify_bio,
          _one("CompareSamples"), _render_verify, "object", subject=lambda ctx: ""),
    Route("readGalleries", "GET", "/v1/galleries", ("ListGalleries",), _build_galleries_list,
          _one("ListGalleries"), _render_galleries),
    Route("readGalleryContent", "GET", "/v1/galleries/{galleryId}", ("GetGalleryContent",),
          _build_gallery_content, _run_gallery_content, _render_gallery_content),
)  # fmt: skip

BY_ID = {r.operation_id: r for r in ROUTES}
# The two task operations (readTaskStatus, redeliverTaskResult) are served by the facade itself.
TASK_OPERATIONS = ("readTaskStatus", "redeliverTaskResult")
