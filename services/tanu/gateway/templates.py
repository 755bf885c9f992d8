"""ReadTemplates (OSIA readTemplate): the stored templates of one
encounter, for a migration to another ABIS and nothing else.

Templates never leave Tanu by default: the operation needs scope
``templates.read``, which no tenant kind holds unless its entry in the
tenants file lists it (``tanu.core.auth``); without it the guard refuses
before anything is looked up (the same answer whether the person exists
or not). With it, the caller needs rights to the subject
(``tanu.policy.access``: owner or operator; else the uniform refusal).
Every read is audited under the subject, so it shows in the subject's
access history."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tanu.core import errors, ids
from tanu.core.vectors import METRIC_PROTO
from tanu.policy import access
from tanu.v1 import identity_pb2, store_pb2

if TYPE_CHECKING:
    from .gateway import Gateway
    from .guard import Call


async def read_templates(
    gw: Gateway, req: identity_pb2.ReadTemplatesRequest, call: Call
) -> identity_pb2.ReadTemplatesResponse:
    sid = ids.check_subject_id(req.subject_id)
    if not req.encounter_id:
        raise errors.InvalidArgument("encounter_id is required")
    st = (await gw.statuses([sid]))[sid]
    access.check("ReadTemplates", call.principal, st)
    if not st.enrolled:  # the operator, who may be told a subject is absent
        raise access.refused()
    held = await gw.store.templates(store_pb2.GetTemplatesRequest(subject_id=sid))
    mine = [t for t in held.templates if t.encounter_id == req.encounter_id
            and t.template.model_id in ("", gw.layout.model_id)]  # fmt: skip
    if not mine:
        raise errors.NotFound(f"encounter {req.encounter_id!r} of this person holds no template")
    call.result = "templates_read"
    call.detail = {"encounter_id": req.encounter_id, "templates": len(mine)}
    out = identity_pb2.ReadTemplatesResponse(
        metric=METRIC_PROTO[gw.layout.metric], dimension=gw.layout.dimension
    )
    for t in mine:
        e = out.templates.add(encounter_id=t.encounter_id, inactive=t.inactive)
        e.template.vector = t.template.vector
        e.template.model_id = t.template.model_id or gw.layout.model_id
    return out
