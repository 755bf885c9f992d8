"""Request builders for tests."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from tanu.core import vectors
from tanu.v1 import common_pb2, identity_pb2

# The repository root (models under var/, deploy/, helm/).
ROOT = Path(__file__).resolve().parents[1]


def sample(vec: np.ndarray, model_id: str = "") -> common_pb2.BiometricSample:
    return common_pb2.BiometricSample(
        template=common_pb2.Template(vector=vectors.to_bytes(vec), model_id=model_id)
    )


ADULT_DOB = "1990-01-01"
PURPOSES = ("identity_verification", "kyc")


def consent(purposes=PURPOSES, **kw) -> identity_pb2.ConsentGrant:
    return identity_pb2.ConsentGrant(purposes=list(purposes), evidence_ref="form-0001", **kw)


def enroll_request(**kw) -> identity_pb2.EnrollRequest:
    """An EnrollRequest with an adult's date of birth and own consent, unless ``kw`` says otherwise."""
    kw.setdefault("date_of_birth", ADULT_DOB)
    kw.setdefault("consent", consent())
    return identity_pb2.EnrollRequest(**kw)


def enroll(subject_id: str, vec: np.ndarray, **kw) -> identity_pb2.EnrollRequest:
    """An adult's enrolment with their own consent, unless ``kw`` says otherwise."""
    kw.setdefault("date_of_birth", ADULT_DOB)
    kw.setdefault("consent", consent())
    return identity_pb2.EnrollRequest(subject_id=subject_id, sample=sample(vec), **kw)


def identify(vec: np.ndarray, **kw) -> identity_pb2.IdentifyRequest:
    return identity_pb2.IdentifyRequest(sample=sample(vec), **kw)


def verify(subject_id: str, vec: np.ndarray, **kw) -> identity_pb2.VerifyRequest:
    return identity_pb2.VerifyRequest(subject_id=subject_id, sample=sample(vec), **kw)


def read_until(proc, marker: str, timeout_s: float) -> str:
    """Reads ``proc``'s stdout line by line until a line holds ``marker``
    (or the output ends, or ``timeout_s`` passes); returns what was read."""
    lines: list[str] = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if marker in line:
            break
    return "".join(lines)
