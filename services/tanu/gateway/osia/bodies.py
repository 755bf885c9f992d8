"""OSIA bodies to Tanu's messages and back: biometric data (one FACE item,
inline), the Encounter (with Tanu's extension fields in the spec's
extension points), candidates, encounters, dates.

Extension points (docs/osia.md): ``biographicData.dateOfBirth`` (the
subject's date of birth, required to create a person);
``contextualData.consent`` (``purposes``, ``evidenceRef``, ``guardian``:
``personId``, ``relationship``, ``biometricData`` of the guardian's face);
``contextualData.allowDuplicate`` and ``contextualData.waitIndexed``.
``clientData``, ``contextualData`` and ``biographicData`` are kept with
the encounter as given and returned by readEncounter.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json

from tanu.core import errors
from tanu.v1 import common_pb2, identity_pb2

MAX_DATA_BYTES = 16 * 1024
KEPT_FIELDS = ("clientData", "contextualData", "biographicData")


class NotSupported(errors.TanuError):
    """A feature of the OSIA interface that Tanu does not support (HTTP 501)."""

    http_status = 501


def _shown(value) -> str:
    text = str(value)
    return repr(text) if len(text) <= 32 else f"of {len(text)} characters"


def sample(items, field: str = "biometricData") -> common_pb2.BiometricSample:
    """The one FACE sample of an OSIA biometricData list (image or template, base64)."""
    if not isinstance(items, list) or not items:
        raise errors.InvalidArgument(f"{field} must be a non-empty list")
    if not all(isinstance(b, dict) for b in items):
        raise errors.InvalidArgument(f"every item of {field} must be an object")
    types = [b.get("biometricType") for b in items]
    if any(not isinstance(t, str) for t in types):
        raise errors.InvalidArgument(f"every item of {field} needs a biometricType string")
    faces = [b for b in items if b.get("biometricType") == "FACE" and not b.get("missing")]
    if not faces:
        raise NotSupported(
            f"Tanu matches faces only: {field} holds no FACE item (found {sorted(set(types))[:5]})"
        )
    if len(faces) != 1:
        raise errors.InvalidArgument(
            f"exactly one FACE item is needed in {field}, found {len(faces)}"
        )
    b = faces[0]
    for ref in ("imageRef", "templateRef"):
        if b.get(ref):
            raise NotSupported(f"{ref} is not supported: send the data inline (image or template)")
    if b.get("encryption"):
        raise NotSupported("encrypted biometric data is not supported: use TLS")
    for name in ("image", "template"):
        if b.get(name) is not None and not isinstance(b[name], str):
            raise errors.InvalidArgument(f"{field}: {name} must be a base64 string")
    try:
        if b.get("image"):
            return common_pb2.BiometricSample(image=base64.b64decode(b["image"], validate=True))
        if b.get("template"):
            vec = base64.b64decode(b["template"], validate=True)
            return common_pb2.BiometricSample(template=common_pb2.Template(vector=vec))
    except (binascii.Error, ValueError):
        raise errors.InvalidArgument(f"{field}: image/template must be base64") from None
    raise errors.InvalidArgument(f"{field}: the FACE item has neither image nor template")


def _object(body: dict, name: str) -> dict:
    value = body.get(name)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise errors.InvalidArgument(f"{name} must be an object")
    return value


def _bool(obj: dict, name: str, where: str) -> bool:
    value = obj.get(name, False)
    if not isinstance(value, bool):
        raise errors.InvalidArgument(f"{where}.{name} must be true or false")
    return value


def _strings(value, name: str, limit: int = 32) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise errors.InvalidArgument(f"{name} must be a list of strings")
    if len(value) > limit:
        raise errors.InvalidArgument(f"{name} holds {len(value)} items; the limit is {limit}")
    if len(set(value)) != len(value):
        raise errors.InvalidArgument(f"{name} holds duplicates")
    return value


def _string(obj: dict, name: str, where: str, limit: int = 256) -> str:
    value = obj.get(name, "")
    if not isinstance(value, str):
        raise errors.InvalidArgument(f"{where}.{name} must be a string")
    if len(value) > limit:
        raise errors.InvalidArgument(f"{where}.{name} is longer than {limit} characters")
    return value


class EncounterBody:
    """An OSIA Encounter, read: the sample, the encounter's fields and Tanu's extensions."""

    def __init__(self, body: dict, need_sample: bool = True) -> None:
        allowed = {"encounterId", "status", "encounterType", "createdDate", "updatedDate",
                   "galleries", "clientData", "contextualData", "biographicData",
                   "biometricData", "encryption", "integrity"}  # fmt: skip
        unknown = sorted(set(body) - allowed)
        if unknown:
            raise errors.InvalidArgument(
                f"unknown Encounter fields {unknown[:5]}; Tanu's extensions go in "
                "contextualData / biographicData (docs/osia.md)"
            )
        if body.get("encryption"):
            raise NotSupported("encrypted encounters are not supported: use TLS")
        self.sample = (sample(body.get("biometricData")) if need_sample or body.get("biometricData")
                       else None)  # fmt: skip
        status = body.get("status", "ACTIVE")
        if status not in ("ACTIVE", "INACTIVE"):
            raise errors.InvalidArgument(f"status {_shown(status)} is not ACTIVE or INACTIVE")
        self.status = status
        etype = body.get("encounterType", "")
        if not isinstance(etype, str) or len(etype) > 64:
            raise errors.InvalidArgument("encounterType must be a string of at most 64 characters")
        self.encounter_type = etype
        self.galleries = [g for g in _strings(body.get("galleries"), "galleries") if g != "ALL"]
        client = body.get("clientData")
        if client is not None:
            if not isinstance(client, str):
                raise errors.InvalidArgument("clientData must be a base64 string")
            try:
                base64.b64decode(client, validate=True)
            except (binascii.Error, ValueError):
                raise errors.InvalidArgument("clientData must be base64") from None
        context = _object(body, "contextualData")
        bio = _object(body, "biographicData")
        kept = {k: body[k] for k in KEPT_FIELDS if body.get(k) is not None}
        self.data_json = json.dumps(kept, separators=(",", ":"), sort_keys=True) if kept else ""
        if len(self.data_json.encode()) > MAX_DATA_BYTES:
            raise errors.InvalidArgument(
                f"clientData, contextualData and biographicData together exceed {MAX_DATA_BYTES} bytes"
            )
        self.date_of_birth = _string(bio, "dateOfBirth", "biographicData", 10)
        self.allow_duplicate = _bool(context, "allowDuplicate", "contextualData")
        self.wait_indexed = _bool(context, "waitIndexed", "contextualData")
        self.consent = _consent(context.get("consent"))

    def fields(self, encounter_id: str = ""):
        """The encounter's ``EncounterFields``."""
        try:
            from tanu.v1 import encounters_pb2
        except ImportError:  # a build without encounters
            return None
        return encounters_pb2.EncounterFields(
            encounter_id=encounter_id, encounter_type=self.encounter_type,
            galleries=self.galleries, data_json=self.data_json, status=self.status,
        )  # fmt: skip


def _consent(value) -> identity_pb2.ConsentGrant | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise errors.InvalidArgument("contextualData.consent must be an object")
    where = "contextualData.consent"
    grant = identity_pb2.ConsentGrant(
        purposes=_strings(value.get("purposes"), f"{where}.purposes"),
        evidence_ref=_string(value, "evidenceRef", where),
    )
    g = value.get("guardian")
    if g is not None:
        if not isinstance(g, dict):
            raise errors.InvalidArgument(f"{where}.guardian must be an object")
        grant.guardian_subject_id = _string(g, "personId", f"{where}.guardian", 128)
        grant.relationship = _string(g, "relationship", f"{where}.guardian", 64)
        grant.guardian_sample.CopyFrom(
            sample(g.get("biometricData"), f"{where}.guardian.biometricData")
        )
    return grant


def iso(ms: int) -> str:
    """An epoch in milliseconds as an RFC 3339 date-time (UTC)."""
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).isoformat(timespec="seconds")


def encounter_json(e) -> dict:
    """An OSIA Encounter from Tanu's: metadata and the caller's data, never a template."""
    out: dict = {
        "encounterId": e.encounter_id,
        "status": e.status or "ACTIVE",
        "encounterType": e.encounter_type,
        "galleries": ["ALL", *[g for g in e.galleries if g != "ALL"]],
        "biometricData": [{"biometricType": "FACE", "encounterId": e.encounter_id}],
    }
    if e.created_at_ms:
        out["createdDate"] = iso(e.created_at_ms)
    if e.updated_at_ms:
        out["updatedDate"] = iso(e.updated_at_ms)
    if e.data_json:
        try:
            kept = json.loads(e.data_json)
        except ValueError:
            kept = {}
        out.update({k: kept[k] for k in KEPT_FIELDS if k in kept})
    return out


def person_ids(person_id: str, encounter_id: str, others: dict | None = None) -> dict:
    """An ExtendablePersonIds."""
    out: dict = {"personId": person_id, "encounterId": encounter_id}
    if others:
        out["others"] = others
    return out


def candidates(r: identity_pb2.IdentifyResponse, gallery: str) -> list[dict]:
    """OSIA Candidates, best first. ``score`` is required by the spec: a
    tenant that does not see scores gets the decision there (1 a match,
    0 not) and ``others.scoreWithheld``."""
    out = []
    for i, c in enumerate(r.candidates):
        seen = c.HasField("score")
        score = c.score if seen else (1.0 if c.is_match else 0.0)
        detail: dict = {"score": score, "biometricType": "FACE"}
        enc = getattr(c, "encounter_id", "")
        if enc:
            detail["encounterId"] = enc
        others: dict = {"isMatch": c.is_match, "gallery": gallery}
        if not seen:
            others["scoreWithheld"] = True
        out.append({"personId": c.subject_id, "rank": i + 1, "score": score,
                    "scores": [detail], "others": others})  # fmt: skip
    return out
