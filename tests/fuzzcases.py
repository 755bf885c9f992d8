"""Hostile inputs for every Identity method (gRPC, as request bytes) and
every REST route, made from a ``random.Random``: hypothesis drives one in
tests/test_fuzz.py (``st.randoms``), and tests/fuzz_run.py (``make
test-fuzz``) drives a plain one for a million cheap inputs.

A case is mostly a real request message whose fields take hostile values
(invisible and control characters, oversize strings, non-calendar dates,
NaN and huge templates, extreme numbers), then, sometimes, its encoding
mutated or replaced by random bytes, with metadata that is sometimes
missing, forged or odd. What must hold for every one of them: no
INTERNAL/UNKNOWN, no HTTP 5xx, the services keep serving."""

from __future__ import annotations

import json
import random
import struct
from dataclasses import dataclass

from tanu.v1 import common_pb2, identity_pb2

DIM = 128
METHODS = {
    "Enroll": identity_pb2.EnrollRequest,
    "Verify": identity_pb2.VerifyRequest,
    "Identify": identity_pb2.IdentifyRequest,
    "Delete": identity_pb2.DeleteRequest,
    "GetSubject": identity_pb2.GetSubjectRequest,
    "GetSubjectReport": identity_pb2.GetSubjectRequest,
    "GetAccessHistory": common_pb2.AccessHistoryRequest,
    "GrantConsent": identity_pb2.GrantConsentRequest,
    "RevokeConsent": identity_pb2.RevokeConsentRequest,
    "SetBiometricLock": identity_pb2.SetBiometricLockRequest,
}
# What the gRPC answers may be; anything else fails the property.
BAD_GRPC = ("INTERNAL", "UNKNOWN")

_ODD_CHARS = (
    "\x00", "\n", "\x7f", "\u200b", "\u202e", "\u2066", "\u00ad", "\ufeff", "\u2028",
    "\u3000", " ", "\u0301", "e\u0301", "\ud7ff", "\U0001f600", "\uffff", "'", '"', "\\",
    "%", "/", "..", "<", "\u0661", "\uff11", "é", "Ж", "ß",
)  # fmt: skip
_WORDS = ("grace", "alice", "fuzz-known", "kyc", "identity_verification", "border_control",
          "law_enforcement", "parent", "legal_guardian", "ALL", "", "0", "-1", "NaN")  # fmt: skip
_DATES = ("1990-01-01", "2010-06-15", "19900101", "1990-W01-1", "1990-001", "1990-02-30",
          "2999-01-01", "1879-12-31", "1990-1-1", "\uff11\uff19\uff19\uff10-01-01", "", "x")  # fmt: skip
_FLOATS = (0.0, -0.0, 1.0, -1.0, 0.5, 1e-45, 3.4e38, -3.4e38, float("nan"), float("inf"),
           float("-inf"), 1e300)  # fmt: skip
_INTS = (0, 1, 5, 10, 999, 1000, 1001, 2**31 - 1, 2**32 - 1)


def text(r: random.Random) -> str:
    """A string: a known word, odd characters, or something long."""
    k = r.random()
    if k < 0.35:
        return r.choice(_WORDS)
    if k < 0.8:
        return "".join(r.choice(_ODD_CHARS) if r.random() < 0.3 else r.choice("abcxyz-_.09")
                       for _ in range(r.randint(0, 20)))  # fmt: skip
    if k < 0.95:
        return r.choice("ab\u200b ") * r.randint(100, 600)
    return "z" * r.randint(1_000, 200_000)


def _f32(v: float) -> float:
    """``v`` packable as float32 (NaN and infinities kept, finite values clamped)."""
    if v != v or v in (float("inf"), float("-inf")):
        return v
    return max(-3.4e38, min(3.4e38, v))


def floats(r: random.Random, n: int) -> bytes:
    if r.random() < 0.5:  # a plausible template: unit-ish values
        vals = [r.uniform(-0.2, 0.2) for _ in range(n)]
        if n and r.random() < 0.3:
            vals[r.randrange(n)] = r.choice(_FLOATS)
        return struct.pack(f"<{n}f", *(_f32(v) for v in vals))
    return r.randbytes(n * 4)


def sample(r: random.Random, images: bool = True) -> common_pb2.BiometricSample:
    k = r.random()
    if k < 0.6 or not images:
        n = DIM if r.random() < 0.8 else r.choice((0, 1, 127, 129, 512))
        model = "" if r.random() < 0.8 else text(r)
        return common_pb2.BiometricSample(
            template=common_pb2.Template(vector=floats(r, n), model_id=model)
        )
    if k < 0.9:
        head = r.choice((b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff\xe0", b"GIF89a", b""))
        return common_pb2.BiometricSample(
            image=head + r.randbytes(r.randint(0, 2000)), face_selection=r.randint(0, 3)
        )
    return common_pb2.BiometricSample()


def grant(r: random.Random, images: bool) -> identity_pb2.ConsentGrant:
    g = identity_pb2.ConsentGrant(
        purposes=[text(r) if r.random() < 0.3 else r.choice(_WORDS[3:7])
                  for _ in range(r.choice((0, 1, 2, 3, 40)))],
        evidence_ref=r.choice(("form-1", "", text(r))),
    )  # fmt: skip
    if r.random() < 0.3:
        g.guardian_subject_id = text(r)
        g.relationship = r.choice(("parent", "legal_guardian", text(r)))
        g.guardian_sample.CopyFrom(sample(r, images))
    return g


def message(method: str, r: random.Random, images: bool = True):
    """A request for ``method`` with hostile field values."""
    sid = r.choice(("grace", "fuzz-known", "alice")) if r.random() < 0.5 else text(r)
    if method == "Enroll":
        m = identity_pb2.EnrollRequest(
            subject_id=sid, sample=sample(r, images), allow_duplicate=r.random() < 0.2,
            date_of_birth=r.choice(_DATES), wait_indexed=r.random() < 0.05,
        )  # fmt: skip
        if r.random() < 0.9:
            m.consent.CopyFrom(grant(r, images))
        return m
    if method == "Verify":
        m = identity_pb2.VerifyRequest(subject_id=sid, sample=sample(r, images))
        if r.random() < 0.3:
            m.threshold = r.choice(_FLOATS)
        return m
    if method == "Identify":
        m = identity_pb2.IdentifyRequest(sample=sample(r, images), top_k=r.choice(_INTS),
                                         require_complete=r.random() < 0.5)  # fmt: skip
        if r.random() < 0.3:
            m.threshold = r.choice(_FLOATS)
        return m
    if method == "Delete":
        return identity_pb2.DeleteRequest(subject_id=sid, reason=text(r))
    if method in ("GetSubject", "GetSubjectReport"):
        return identity_pb2.GetSubjectRequest(subject_id=sid)
    if method == "GetAccessHistory":
        return common_pb2.AccessHistoryRequest(
            subject_id=sid, page_size=r.choice(_INTS),
            page_token=r.choice(("", "0", "5", "-1", "99999999999999999999", text(r))),
        )  # fmt: skip
    if method == "GrantConsent":
        return identity_pb2.GrantConsentRequest(subject_id=sid, consent=grant(r, images),
                                                sample=sample(r, images))  # fmt: skip
    if method == "RevokeConsent":
        return identity_pb2.RevokeConsentRequest(
            subject_id=sid, purposes=[text(r) for _ in range(r.randint(0, 3))],
            revoker_subject_id=r.choice(("", text(r))), revoker_sample=sample(r, images),
        )  # fmt: skip
    return identity_pb2.SetBiometricLockRequest(subject_id=sid, locked=r.random() < 0.5,
                                                sample=sample(r, images))  # fmt: skip


def body(method: str, r: random.Random, images: bool = True) -> bytes:
    """The request bytes: mostly a real message, sometimes mutated or random."""
    k = r.random()
    data = message(method, r, images).SerializeToString()
    if k < 0.75:
        return data
    if k < 0.9 and data:  # flip, cut or splice bytes
        b = bytearray(data)
        for _ in range(r.randint(1, 4)):
            op = r.random()
            i = r.randrange(len(b)) if b else 0
            if op < 0.4 and b:
                b[i] = r.randrange(256)
            elif op < 0.7:
                b = b[:i]
            else:
                b[i:i] = r.randbytes(r.randint(1, 8))
        return bytes(b)
    return r.randbytes(r.randint(0, 64))


def grpc_metadata(r: random.Random, token: str) -> tuple[tuple[str, str], ...]:
    """Mostly the valid token and a purpose; sometimes none, forged or odd values."""
    md: list[tuple[str, str]] = []
    k = r.random()
    if k < 0.85:
        md.append(("authorization", f"Bearer {token}"))
    elif k < 0.93:
        md.append(("authorization", r.choice(("Bearer x", "Basic abc", "Bearer tanu1.a.b",
                                               "Bearer " + token[:-3] + "AAA", ""))))  # fmt: skip
    if r.random() < 0.9:
        md.append(("x-tanu-purpose", r.choice(("kyc", "identity_verification", "border_control",
                                                "", "x" * 100, "spying"))))  # fmt: skip
    if r.random() < 0.3:
        md.append(("x-request-id", r.choice(("rid-1", "a" * 100, "a b", "<x>", "ok.id:1_2"))))
    return tuple(md)


# --- REST --------------------------------------------------------------------------------


@dataclass
class HttpCase:
    method: str
    path: str
    headers: dict[str, str]
    data: bytes


def _json_value(r: random.Random, depth: int = 0):
    k = r.random()
    if depth > 3 or k < 0.3:
        return r.choice((None, True, 0, -1, 1e308, 2**70, "x", text(r)[:50]))
    if k < 0.65:
        return [_json_value(r, depth + 1) for _ in range(r.randint(0, 3))]
    return {text(r)[:20]: _json_value(r, depth + 1) for _ in range(r.randint(0, 3))}


def rest_body(r: random.Random, images: bool) -> bytes:
    import base64

    k = r.random()
    if k < 0.6:
        s = sample(r, images)
        item: dict = {"biometricType": r.choice(("FACE", "FACE", "FINGER", 7))}
        if s.WhichOneof("data") == "template":
            item["template"] = base64.b64encode(s.template.vector).decode()
        elif s.WhichOneof("data") == "image":
            item["image"] = base64.b64encode(s.image).decode()
        if r.random() < 0.2:
            item[r.choice(("image", "template", "imageRef"))] = _json_value(r)
        doc = {"biometricData": [item] * r.choice((1, 1, 1, 0, 2))}
        if r.random() < 0.2:
            doc["filter"] = _json_value(r)
        return json.dumps(doc).encode()
    if k < 0.75:
        return json.dumps(_json_value(r)).encode()
    if k < 0.85:
        d = r.randint(10, 3000)
        return b'{"a":' * d + b"1" + b"}" * d
    return r.choice((b"NaN", b'{"a": Infinity}', b"\xff\xfe", b"", b"{", r.randbytes(40)))


def _q(r: random.Random) -> str:
    from urllib.parse import quote

    return quote(text(r)[:300], safe="")


def http_case(r: random.Random, token: str, images: bool = True) -> HttpCase:
    """A request to one of the REST routes (or a path near them)."""
    route = r.randrange(14)
    pid = r.choice(("grace", "fuzz-known", _q(r)))
    eid = r.choice(("e1", _q(r)))
    gallery = r.choice(("ALL", "ALL", _q(r)))
    query = "?transactionId=" + _q(r)
    if r.random() < 0.5:
        query += (
            "&"
            + r.choice(
                (
                    "maxNbCand",
                    "threshold",
                    "reason",
                    "priority",
                    "callback",
                    "status",
                    "offset",
                    "limit",
                    "serviceLevel",
                )
            )
            + "="
            + r.choice(
                (
                    "3",
                    "-1",
                    "0",
                    "1001",
                    "1e400",
                    "nan",
                    "inf",
                    "99999999999999999999",
                    _q(r),
                    "http://169.254.169.254/x",
                    "ACTIVE",
                )
            )
        )
    method, path, data = {
        0: ("POST", f"/v1/verify/{gallery}/{pid}", None),
        1: ("POST", f"/v1/identify/{gallery}", None),
        2: ("DELETE", f"/v1/persons/{pid}", b""),
        3: ("GET", f"/v1/persons/{pid}/report", b""),
        4: ("GET", "/healthz", b""),
        5: (r.choice(("PUT", "PATCH", "GET")), r.choice(("/v1/identify/ALL", "/v1/x", "/")), b""),
        6: ("POST", f"/v1/persons/{pid}/encounters/{eid}", None),
        7: ("GET", f"/v1/persons/{pid}/encounters", b""),
        8: ("PUT", f"/v1/persons/{pid}/encounters/{eid}/status", b""),
        9: ("POST", f"/v1/identify/{gallery}/{pid}", None),
        10: ("POST", f"/v1/persons/{pid}/merge/{_q(r)}", b""),
        11: ("GET", f"/v1/galleries/{gallery}", b""),
        12: ("GET", f"/v1/tasks/{_q(r)}/status", b""),
        13: ("POST", f"/v1/tasks/{_q(r)}/redeliver", b""),
    }[route]  # fmt: skip
    headers = {}
    if r.random() < 0.85:
        headers["Authorization"] = f"Bearer {token}"
    elif r.random() < 0.5:
        headers["Authorization"] = r.choice(("Bearer nope", "Basic x", "Bearer"))
    if r.random() < 0.9:
        headers["X-Tanu-Purpose"] = r.choice(("kyc", "identity_verification", "", "x" * 80))
    if data is None:
        data = rest_body(r, images)
        headers["Content-Type"] = r.choice(
            ("application/json",) * 6
            + ("text/plain", "application/json; charset=latin-1", "multipart/form-data")
        )
    if r.random() < 0.2:
        headers["X-Request-Id"] = r.choice(("ok-1", "a" * 100, "<x>"))
    return HttpCase(method, path + query, headers, data)
