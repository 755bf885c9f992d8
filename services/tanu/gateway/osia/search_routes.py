"""The OSIA routes that search and compare (identify, verify) and read
galleries: how each builds its Identity requests and renders the reply
(``route.Route``)."""

from __future__ import annotations

from tanu.core import errors
from tanu.v1 import common_pb2, encounters_pb2, identity_pb2

from . import bodies, params
from .route import Ctx, Invoke, gallery_of, message_class, msg

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
    gallery = gallery_of(ctx)
    body = ctx.body if isinstance(ctx.body, dict) else {}
    flt = body.get("filter", body) if "filter" in body else body
    if isinstance(flt, dict) and isinstance(flt.get("gallery"), str) and not gallery:
        gallery = "" if flt["gallery"] == "ALL" else flt["gallery"][:64]
    _set_gallery(req, gallery)


def build_identify(ctx: Ctx):
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


def build_identify_from(ctx: Ctx):
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


def render_identify(ctx: Ctx, r):
    if not r.complete:  # never a silently smaller gallery
        raise errors.Unavailable(f"partitions {list(r.missing_partitions)} did not answer")
    return 200, bodies.candidates(r, ctx.path.get("galleryId", "ALL"))


def build_verify(ctx: Ctx):
    body = ctx.body
    unknown = sorted(set(body) - {"biometricData", "encryption", "integrity"})
    if unknown:
        raise errors.InvalidArgument(f"unknown VerifyFromIdRequest fields {unknown[:5]}")
    if body.get("encryption"):
        raise bodies.NotSupported("encrypted requests are not supported: use TLS")
    gallery = gallery_of(ctx)
    if gallery and message_class("ListEncountersRequest") is None:
        raise errors.NotFound(f"unknown gallery {params.shown(gallery)}; this build has one: ALL")
    req = identity_pb2.VerifyRequest(subject_id=ctx.path["personId"],
                                     sample=bodies.sample(body.get("biometricData")))  # fmt: skip
    threshold = params.number(ctx.query, "threshold")
    if threshold is not None:
        req.threshold = threshold
    params.ignored_levels(ctx.query)
    return {"Verify": req}


async def run_verify(invoke: Invoke, msgs, ctx: Ctx):
    """Verify; in a named gallery, only a person with an encounter there
    (checked after the verification, which checks the caller's access to
    the person: membership is never told to a caller without it)."""
    req = msgs["Verify"]
    reply = await invoke("Verify", req, req.subject_id)
    gallery = gallery_of(ctx)
    if gallery:
        listed = await ctx.gateway.store.list_encounters(
            encounters_pb2.ListEncountersRequest(subject_id=req.subject_id)
        )
        if not any(gallery in e.galleries for e in listed.encounters):
            raise errors.NotFound(f"person {params.shown(req.subject_id)} is not in gallery "
                                  f"{params.shown(gallery)}")  # fmt: skip
    return reply


def render_verify(_ctx, r):
    out: dict = {"decision": r.decision == common_pb2.DECISION_MATCH}
    if r.HasField("score"):  # only for tenants that see scores
        out["scores"] = [{"score": r.score, "biometricType": "FACE"}]
    return 200, out


def build_verify_bio(ctx: Ctx):
    """verifyFromBio: two samples compared 1:1 (CompareSamples), nothing
    stored; ``threshold`` only stricter, the levels ignored."""
    body = ctx.body
    unknown = sorted(set(body) - {"biometricData1", "biometricData2", "encryption", "integrity"})
    if unknown:
        raise errors.InvalidArgument(f"unknown VerifyFromBioRequest fields {unknown[:5]}")
    if body.get("encryption"):
        raise bodies.NotSupported("encrypted requests are not supported: use TLS")
    req = msg("CompareSamplesRequest",
               sample_a=bodies.sample(body.get("biometricData1"), "biometricData1"),
               sample_b=bodies.sample(body.get("biometricData2"), "biometricData2"))  # fmt: skip
    threshold = params.number(ctx.query, "threshold")
    if threshold is not None:
        req.threshold = threshold
    params.ignored_levels(ctx.query)
    return {"CompareSamples": req}


# --- galleries ----------------------------------------------------------------------------


def build_galleries_list(_ctx: Ctx):
    return {"ListGalleries": msg("ListGalleriesRequest")}


def render_galleries(_ctx, r):
    names = [g.name for g in r.galleries]
    return 200, ["ALL", *[n for n in names if n != "ALL"]]


def build_gallery_content(ctx: Ctx):
    offset = params.integer(ctx.query, "offset", 0, MAX_OFFSET) or 0
    limit = params.integer(ctx.query, "limit", 1, 1000)
    gallery_of(ctx)
    return {"GetGalleryContent": msg("GetGalleryContentRequest",
                                      gallery=ctx.path["galleryId"],
                                      page_size=min(1000, offset + (limit or 1000)))}  # fmt: skip


async def run_gallery_content(invoke: Invoke, msgs, ctx: Ctx):
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


def render_gallery_content(_ctx, members):
    return 200, [bodies.person_ids(m.subject_id, m.encounter_id) for m in members]
