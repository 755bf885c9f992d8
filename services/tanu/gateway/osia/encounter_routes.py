"""The OSIA routes on persons and their encounters (create, read, update,
delete, status, galleries, merge, move) and their templates: how each
builds its Identity requests and renders the reply (``route.Route``)."""

from __future__ import annotations

from typing import Any

from google.protobuf.message import Message

from tanu.core import errors
from tanu.v1 import identity_pb2

from . import bodies, params
from .route import Ctx, Invoke, msg

# --- encounters ---------------------------------------------------------------------------


def build_create(ctx: Ctx, person_id: str, encounter_id: str) -> dict[str, Message]:
    e = bodies.EncounterBody(ctx.body)
    if "encounterId" in ctx.path and ctx.body.get("encounterId") not in (None, "", encounter_id):
        raise errors.InvalidArgument("the body's encounterId differs from the path's")
    fields = e.fields(encounter_id)
    enrol = msg("EnrollRequest", subject_id=person_id, sample=e.sample,
                 allow_duplicate=e.allow_duplicate, wait_indexed=e.wait_indexed,
                 date_of_birth=e.date_of_birth, encounter_id=encounter_id,
                 galleries=e.galleries, encounter_type=e.encounter_type,
                 encounter_data_json=e.data_json)  # fmt: skip
    if e.consent is not None:
        enrol.consent.CopyFrom(e.consent)
    msgs = {"Enroll": enrol}
    if fields is not None:
        msgs["AddEncounter"] = msg(
            "AddEncounterRequest", subject_id=person_id, sample=e.sample, encounter=fields,
            allow_duplicate=e.allow_duplicate, wait_indexed=e.wait_indexed,
        )  # fmt: skip
    return msgs


def build_create_noids(ctx: Ctx):
    person = ctx.generated_id("p")
    return build_create(ctx, person, ctx.generated_id("e", person))


def build_create_noid(ctx: Ctx):
    person = ctx.path["personId"]
    return build_create(ctx, person, ctx.generated_id("e", person))


def build_create_with_id(ctx: Ctx):
    return build_create(ctx, ctx.path["personId"], ctx.path["encounterId"])


async def run_create(invoke: Invoke, msgs, ctx: Ctx):
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


def render_create(ctx: Ctx, r) -> tuple[int, Any]:
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


def build_read_all(ctx: Ctx):
    return {"ListEncounters": msg("ListEncountersRequest", subject_id=ctx.path["personId"])}


def render_read_all(_ctx, r):
    return 200, [bodies.encounter_json(e) for e in r.encounters]


def build_read(ctx: Ctx):
    return {"GetEncounter": msg("GetEncounterRequest", subject_id=ctx.path["personId"],
                                 encounter_id=ctx.path["encounterId"])}  # fmt: skip


def render_encounter(_ctx, e):
    return 200, bodies.encounter_json(e)


def build_update(ctx: Ctx):
    e = bodies.EncounterBody(ctx.body, need_sample=False)
    req = msg("UpdateEncounterRequest", subject_id=ctx.path["personId"],
               encounter_id=ctx.path["encounterId"], encounter=e.fields())  # fmt: skip
    if e.sample is not None:
        req.sample.CopyFrom(e.sample)
    return {"UpdateEncounter": req}


def render_update(_ctx, e):
    return 200, bodies.person_ids(e.subject_id, e.encounter_id)


def build_delete_encounter(ctx: Ctx):
    return {"DeleteEncounter": msg("DeleteEncounterRequest", subject_id=ctx.path["personId"],
                                    encounter_id=ctx.path["encounterId"],
                                    reason=ctx.query.get("reason", "")[:200])}  # fmt: skip


def build_delete_all(ctx: Ctx):
    return {"Delete": identity_pb2.DeleteRequest(subject_id=ctx.path["personId"],
                                                 reason=ctx.query.get("reason", "")[:200])}  # fmt: skip


def build_status(ctx: Ctx):
    status = ctx.query.get("status")
    if status not in ("ACTIVE", "INACTIVE"):
        raise errors.InvalidArgument(
            f"status={params.shown(status or '')} must be ACTIVE or INACTIVE"
        )
    return {"SetEncounterStatus": msg("SetEncounterStatusRequest",
                                       subject_id=ctx.path["personId"],
                                       encounter_id=ctx.path["encounterId"], status=status)}  # fmt: skip


def build_galleries(ctx: Ctx):
    galleries = ctx.body
    if not galleries or not all(isinstance(g, str) for g in galleries):
        raise errors.InvalidArgument("the body must be a non-empty list of gallery names")
    if len(set(galleries)) != len(galleries):
        raise errors.InvalidArgument("the list of galleries holds duplicates")
    return {
        "SetEncounterGalleries": msg(
            "SetEncounterGalleriesRequest",
            subject_id=ctx.path["personId"],
            encounter_id=ctx.path["encounterId"],
            galleries=[g for g in galleries if g != "ALL"],
        )
    }


def build_merge(ctx: Ctx):
    return {"MergeSubjects": msg("MergeSubjectsRequest", subject_id=ctx.path["personIdTarget"],
                                  source_subject_id=ctx.path["personIdSource"],
                                  reason=ctx.query.get("reason", "")[:200])}  # fmt: skip


def build_move(ctx: Ctx):
    return {"MoveEncounter": msg("MoveEncounterRequest", subject_id=ctx.path["personIdTarget"],
                                  source_subject_id=ctx.path["personIdSource"],
                                  encounter_id=ctx.path["encounterId"],
                                  reason=ctx.query.get("reason", "")[:200])}  # fmt: skip


# --- templates ----------------------------------------------------------------------------

# Tanu's template format (OSIA TemplateFormat is extensible): the raw
# little-endian float32 vector of the model named in ``algorithm``.
TEMPLATE_FORMAT = "TANU_F32LE"


def build_read_template(ctx: Ctx):
    fmt = ctx.query.get("templateFormat")
    if fmt is not None and fmt != TEMPLATE_FORMAT:
        raise bodies.NotSupported(f"templateFormat {params.shown(fmt)} is not supported: Tanu "
                                  f"holds face templates as {TEMPLATE_FORMAT} only")  # fmt: skip
    for name in ("biometricSubType", "instance", "qualityFormat"):
        if len(ctx.query.get(name, "")) > 64:
            raise errors.InvalidArgument(f"{name} is longer than 64 characters")
    return {"ReadTemplates": msg("ReadTemplatesRequest", subject_id=ctx.path["personId"],
                                  encounter_id=ctx.path["encounterId"])}  # fmt: skip


def render_templates(ctx: Ctx, r):
    """BiometricComputedData items (none when another biometricType is asked)."""
    import base64

    if ctx.query.get("biometricType", "FACE") != "FACE":
        return 200, []
    return 200, [{"biometricType": "FACE", "template": base64.b64encode(t.template.vector).decode(),
                  "templateFormat": TEMPLATE_FORMAT, "algorithm": t.template.model_id,
                  "vendor": "Tanu"} for t in r.templates]  # fmt: skip
