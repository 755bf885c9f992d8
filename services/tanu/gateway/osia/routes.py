"""The 22 operations of OSIA ABIS 1.6.0, each mapped onto Tanu's Identity
operations (``gateway.api.OPERATIONS``): how its request is built from the
path, the query and the body, which operations it runs, and how their
reply becomes the spec's body and status.

Each route's build / run / render is described in ``route``. The parts
live beside this table: ``route`` (Route, Ctx, the shared parts),
``encounter_routes`` (persons, encounters, templates), ``search_routes``
(identify, verify, galleries).
"""

from __future__ import annotations

from . import encounter_routes as enc
from . import search_routes as srch
from .route import Ctx, Invoke, Route, erased, message_class, no_content, one, run_two, target

__all__ = ["BY_ID", "ROUTES", "TASK_OPERATIONS", "Ctx", "Invoke", "Route", "message_class"]

# --- the table ----------------------------------------------------------------------------

ROUTES: tuple[Route, ...] = (
    Route("createEncounterNoIds", "POST", "/v1/persons", ("Enroll", "AddEncounter"),
          enc.build_create_noids, enc.run_create, enc.render_create, "object", True,
          subject=lambda ctx: ""),
    Route("createEncounterNoId", "POST", "/v1/persons/{personId}/encounters",
          ("Enroll", "AddEncounter"), enc.build_create_noid, enc.run_create, enc.render_create,
          "object", True),
    Route("readAllEncounters", "GET", "/v1/persons/{personId}/encounters", ("ListEncounters",),
          enc.build_read_all, one("ListEncounters"), enc.render_read_all),
    Route("createEncounter", "POST", "/v1/persons/{personId}/encounters/{encounterId}",
          ("Enroll", "AddEncounter"), enc.build_create_with_id, enc.run_create, enc.render_create,
          "object", True),
    Route("readEncounter", "GET", "/v1/persons/{personId}/encounters/{encounterId}",
          ("GetEncounter",), enc.build_read, one("GetEncounter"), enc.render_encounter),
    Route("updateEncounter", "PUT", "/v1/persons/{personId}/encounters/{encounterId}",
          ("UpdateEncounter",), enc.build_update, one("UpdateEncounter"), enc.render_update,
          "object", True),
    Route("deleteEncounter", "DELETE", "/v1/persons/{personId}/encounters/{encounterId}",
          ("DeleteEncounter",), enc.build_delete_encounter, one("DeleteEncounter"), erased,
          "", True),
    Route("mergeEncounter", "POST", "/v1/persons/{personIdTarget}/merge/{personIdSource}",
          ("MergeSubjects",), enc.build_merge, run_two("MergeSubjects"), no_content, "", True,
          subject=target),
    Route("moveEncounter", "POST",
          "/v1/persons/{personIdTarget}/move/{personIdSource}/encounters/{encounterId}",
          ("MoveEncounter",), enc.build_move, run_two("MoveEncounter"), no_content, "", True,
          subject=target),
    Route("updateEncounterStatus", "PUT", "/v1/persons/{personId}/encounters/{encounterId}/status",
          ("SetEncounterStatus",), enc.build_status, one("SetEncounterStatus"), no_content,
          "", True),
    Route("updateEncounterGalleries", "PUT",
          "/v1/persons/{personId}/encounters/{encounterId}/galleries",
          ("SetEncounterGalleries",), enc.build_galleries, one("SetEncounterGalleries"),
          no_content, "array", True),
    Route("readTemplate", "GET", "/v1/persons/{personId}/encounters/{encounterId}/templates",
          ("ReadTemplates",), enc.build_read_template, one("ReadTemplates"), enc.render_templates),
    Route("deleteAll", "DELETE", "/v1/persons/{personId}", ("Delete",), enc.build_delete_all,
          one("Delete"), erased, "", True),
    Route("identify", "POST", "/v1/identify/{galleryId}", ("Identify",), srch.build_identify,
          one("Identify"), srch.render_identify, "object", subject=lambda ctx: ""),
    Route("identifyFromId", "POST", "/v1/identify/{galleryId}/{personId}", ("Identify",),
          srch.build_identify_from, one("Identify"), srch.render_identify, "optional"),
    Route("identifyFromEncounterId", "POST",
          "/v1/identify/{galleryId}/{personId}/encounters/{encounterId}", ("Identify",),
          srch.build_identify_from, one("Identify"), srch.render_identify, "optional"),
    Route("verifyFromId", "POST", "/v1/verify/{galleryId}/{personId}", ("Verify",),
          srch.build_verify, srch.run_verify, srch.render_verify, "object"),
    Route("verifyFromBio", "POST", "/v1/verify", ("CompareSamples",), srch.build_verify_bio,
          one("CompareSamples"), srch.render_verify, "object", subject=lambda ctx: ""),
    Route("readGalleries", "GET", "/v1/galleries", ("ListGalleries",), srch.build_galleries_list,
          one("ListGalleries"), srch.render_galleries),
    Route("readGalleryContent", "GET", "/v1/galleries/{galleryId}", ("GetGalleryContent",),
          srch.build_gallery_content, srch.run_gallery_content, srch.render_gallery_content),
)  # fmt: skip

BY_ID = {r.operation_id: r for r in ROUTES}
# The two task operations (readTaskStatus, redeliverTaskResult) are served by the facade itself.
TASK_OPERATIONS = ("readTaskStatus", "redeliverTaskResult")
