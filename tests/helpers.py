"""Request builders for tests."""

from __future__ import annotations

import numpy as np

from tanu.core import vectors
from tanu.v1 import common_pb2, identity_pb2


def sample(vec: np.ndarray, model_id: str = "") -> common_pb2.BiometricSample:
    return common_pb2.BiometricSample(
        template=common_pb2.Template(vector=vectors.to_bytes(vec), model_id=model_id)
    )


def enroll(subject_id: str, vec: np.ndarray, **kw) -> identity_pb2.EnrollRequest:
    return identity_pb2.EnrollRequest(subject_id=subject_id, sample=sample(vec), **kw)


def identify(vec: np.ndarray, **kw) -> identity_pb2.IdentifyRequest:
    return identity_pb2.IdentifyRequest(sample=sample(vec), **kw)


def verify(subject_id: str, vec: np.ndarray, **kw) -> identity_pb2.VerifyRequest:
    return identity_pb2.VerifyRequest(subject_id=subject_id, sample=sample(vec), **kw)
