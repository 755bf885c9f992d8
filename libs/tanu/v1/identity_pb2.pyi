from tanu.v1 import cases_pb2 as _cases_pb2
from tanu.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ConsentGrant(_message.Message):
    __slots__ = ("purposes", "evidence_ref", "guardian_subject_id", "relationship", "guardian_sample")
    PURPOSES_FIELD_NUMBER: _ClassVar[int]
    EVIDENCE_REF_FIELD_NUMBER: _ClassVar[int]
    GUARDIAN_SUBJECT_ID_FIELD_NUMBER: _ClassVar[int]
    RELATIONSHIP_FIELD_NUMBER: _ClassVar[int]
    GUARDIAN_SAMPLE_FIELD_NUMBER: _ClassVar[int]
    purposes: _containers.RepeatedScalarFieldContainer[str]
    evidence_ref: str
    guardian_subject_id: str
    relationship: str
    guardian_sample: _common_pb2.BiometricSample
    def __init__(self, purposes: _Optional[_Iterable[str]] = ..., evidence_ref: _Optional[str] = ..., guardian_subject_id: _Optional[str] = ..., relationship: _Optional[str] = ..., guardian_sample: _Optional[_Union[_common_pb2.BiometricSample, _Mapping]] = ...) -> None: ...

class GrantConsentRequest(_message.Message):
    __slots__ = ("subject_id", "consent", "sample")
    SUBJECT_ID_FIELD_NUMBER: _ClassVar[int]
    CONSENT_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_FIELD_NUMBER: _ClassVar[int]
    subject_id: str
    consent: ConsentGrant
    sample: _common_pb2.BiometricSample
    def __init__(self, subject_id: _Optional[str] = ..., consent: _Optional[_Union[ConsentGrant, _Mapping]] = ..., sample: _Optional[_Union[_common_pb2.BiometricSample, _Mapping]] = ...) -> None: ...

class RevokeConsentRequest(_message.Message):
    __slots__ = ("subject_id", "purposes", "revoker_subject_id", "revoker_sample")
    SUBJECT_ID_FIELD_NUMBER: _ClassVar[int]
    PURPOSES_FIELD_NUMBER: _ClassVar[int]
    REVOKER_SUBJECT_ID_FIELD_NUMBER: _ClassVar[int]
    REVOKER_SAMPLE_FIELD_NUMBER: _ClassVar[int]
    subject_id: str
    purposes: _containers.RepeatedScalarFieldContainer[str]
    revoker_subject_id: str
    revoker_sample: _common_pb2.BiometricSample
    def __init__(self, subject_id: _Optional[str] = ..., purposes: _Optional[_Iterable[str]] = ..., revoker_subject_id: _Optional[str] = ..., revoker_sample: _Optional[_Union[_common_pb2.BiometricSample, _Mapping]] = ...) -> None: ...

class ConsentResponse(_message.Message):
    __slots__ = ("subject_id", "purposes", "erased", "receipt")
    SUBJECT_ID_FIELD_NUMBER: _ClassVar[int]
    PURPOSES_FIELD_NUMBER: _ClassVar[int]
    ERASED_FIELD_NUMBER: _ClassVar[int]
    RECEIPT_FIELD_NUMBER: _ClassVar[int]
    subject_id: str
    purposes: _containers.RepeatedScalarFieldContainer[str]
    erased: bool
    receipt: _common_pb2.ErasureReceipt
    def __init__(self, subject_id: _Optional[str] = ..., purposes: _Optional[_Iterable[str]] = ..., erased: _Optional[bool] = ..., receipt: _Optional[_Union[_common_pb2.ErasureReceipt, _Mapping]] = ...) -> None: ...

class SetBiometricLockRequest(_message.Message):
    __slots__ = ("subject_id", "locked", "sample")
    SUBJECT_ID_FIELD_NUMBER: _ClassVar[int]
    LOCKED_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_FIELD_NUMBER: _ClassVar[int]
    subject_id: str
    locked: bool
    sample: _common_pb2.BiometricSample
    def __init__(self, subject_id: _Optional[str] = ..., locked: _Optional[bool] = ..., sample: _Optional[_Union[_common_pb2.BiometricSample, _Mapping]] = ...) -> None: ...

class SetBiometricLockResponse(_message.Message):
    __slots__ = ("subject_id", "locked")
    SUBJECT_ID_FIELD_NUMBER: _ClassVar[int]
    LOCKED_FIELD_NUMBER: _ClassVar[int]
    subject_id: str
    locked: bool
    def __init__(self, subject_id: _Optional[str] = ..., locked: _Optional[bool] = ...) -> None: ...

class EnrollRequest(_message.Message):
    __slots__ = ("subject_id", "sample", "allow_duplicate", "wait_indexed", "date_of_birth", "consent")
    SUBJECT_ID_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_FIELD_NUMBER: _ClassVar[int]
    ALLOW_DUPLICATE_FIELD_NUMBER: _ClassVar[int]
    WAIT_INDEXED_FIELD_NUMBER: _ClassVar[int]
    DATE_OF_BIRTH_FIELD_NUMBER: _ClassVar[int]
    CONSENT_FIELD_NUMBER: _ClassVar[int]
    subject_id: str
    sample: _common_pb2.BiometricSample
    allow_duplicate: bool
    wait_indexed: bool
    date_of_birth: str
    consent: ConsentGrant
    def __init__(self, subject_id: _Optional[str] = ..., sample: _Optional[_Union[_common_pb2.BiometricSample, _Mapping]] = ..., allow_duplicate: _Optional[bool] = ..., wait_indexed: _Optional[bool] = ..., date_of_birth: _Optional[str] = ..., consent: _Optional[_Union[ConsentGrant, _Mapping]] = ...) -> None: ...

class EnrollResponse(_message.Message):
    __slots__ = ("enrolled", "subject", "duplicate_of", "threshold", "indexed", "threshold_source", "outcome", "case_id", "duplicate_withheld")
    ENROLLED_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    DUPLICATE_OF_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    INDEXED_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_SOURCE_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    CASE_ID_FIELD_NUMBER: _ClassVar[int]
    DUPLICATE_WITHHELD_FIELD_NUMBER: _ClassVar[int]
    enrolled: bool
    subject: _common_pb2.Subject
    duplicate_of: _common_pb2.Candidate
    threshold: float
    indexed: bool
    threshold_source: str
    outcome: str
    case_id: str
    duplicate_withheld: bool
    def __init__(self, enrolled: _Optional[bool] = ..., subject: _Optional[_Union[_common_pb2.Subject, _Mapping]] = ..., duplicate_of: _Optional[_Union[_common_pb2.Candidate, _Mapping]] = ..., threshold: _Optional[float] = ..., indexed: _Optional[bool] = ..., threshold_source: _Optional[str] = ..., outcome: _Optional[str] = ..., case_id: _Optional[str] = ..., duplicate_withheld: _Optional[bool] = ...) -> None: ...

class VerifyRequest(_message.Message):
    __slots__ = ("subject_id", "sample", "threshold")
    SUBJECT_ID_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    subject_id: str
    sample: _common_pb2.BiometricSample
    threshold: float
    def __init__(self, subject_id: _Optional[str] = ..., sample: _Optional[_Union[_common_pb2.BiometricSample, _Mapping]] = ..., threshold: _Optional[float] = ...) -> None: ...

class VerifyResponse(_message.Message):
    __slots__ = ("decision", "score", "threshold", "metric", "model_id", "threshold_source")
    DECISION_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    METRIC_FIELD_NUMBER: _ClassVar[int]
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_SOURCE_FIELD_NUMBER: _ClassVar[int]
    decision: _common_pb2.Decision
    score: float
    threshold: float
    metric: _common_pb2.Metric
    model_id: str
    threshold_source: str
    def __init__(self, decision: _Optional[_Union[_common_pb2.Decision, str]] = ..., score: _Optional[float] = ..., threshold: _Optional[float] = ..., metric: _Optional[_Union[_common_pb2.Metric, str]] = ..., model_id: _Optional[str] = ..., threshold_source: _Optional[str] = ...) -> None: ...

class IdentifyRequest(_message.Message):
    __slots__ = ("sample", "top_k", "threshold", "require_complete")
    SAMPLE_FIELD_NUMBER: _ClassVar[int]
    TOP_K_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    REQUIRE_COMPLETE_FIELD_NUMBER: _ClassVar[int]
    sample: _common_pb2.BiometricSample
    top_k: int
    threshold: float
    require_complete: bool
    def __init__(self, sample: _Optional[_Union[_common_pb2.BiometricSample, _Mapping]] = ..., top_k: _Optional[int] = ..., threshold: _Optional[float] = ..., require_complete: _Optional[bool] = ...) -> None: ...

class IdentifyResponse(_message.Message):
    __slots__ = ("candidates", "decision", "threshold", "metric", "complete", "missing_partitions", "gallery_size", "model_id", "threshold_source")
    CANDIDATES_FIELD_NUMBER: _ClassVar[int]
    DECISION_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    METRIC_FIELD_NUMBER: _ClassVar[int]
    COMPLETE_FIELD_NUMBER: _ClassVar[int]
    MISSING_PARTITIONS_FIELD_NUMBER: _ClassVar[int]
    GALLERY_SIZE_FIELD_NUMBER: _ClassVar[int]
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_SOURCE_FIELD_NUMBER: _ClassVar[int]
    candidates: _containers.RepeatedCompositeFieldContainer[_common_pb2.Candidate]
    decision: _common_pb2.Decision
    threshold: float
    metric: _common_pb2.Metric
    complete: bool
    missing_partitions: _containers.RepeatedScalarFieldContainer[int]
    gallery_size: int
    model_id: str
    threshold_source: str
    def __init__(self, candidates: _Optional[_Iterable[_Union[_common_pb2.Candidate, _Mapping]]] = ..., decision: _Optional[_Union[_common_pb2.Decision, str]] = ..., threshold: _Optional[float] = ..., metric: _Optional[_Union[_common_pb2.Metric, str]] = ..., complete: _Optional[bool] = ..., missing_partitions: _Optional[_Iterable[int]] = ..., gallery_size: _Optional[int] = ..., model_id: _Optional[str] = ..., threshold_source: _Optional[str] = ...) -> None: ...

class DeleteRequest(_message.Message):
    __slots__ = ("subject_id", "reason")
    SUBJECT_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    subject_id: str
    reason: str
    def __init__(self, subject_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class DeleteResponse(_message.Message):
    __slots__ = ("subject_id", "templates_removed", "deleted_at_ms", "partition", "receipt")
    SUBJECT_ID_FIELD_NUMBER: _ClassVar[int]
    TEMPLATES_REMOVED_FIELD_NUMBER: _ClassVar[int]
    DELETED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    PARTITION_FIELD_NUMBER: _ClassVar[int]
    RECEIPT_FIELD_NUMBER: _ClassVar[int]
    subject_id: str
    templates_removed: int
    deleted_at_ms: int
    partition: int
    receipt: _common_pb2.ErasureReceipt
    def __init__(self, subject_id: _Optional[str] = ..., templates_removed: _Optional[int] = ..., deleted_at_ms: _Optional[int] = ..., partition: _Optional[int] = ..., receipt: _Optional[_Union[_common_pb2.ErasureReceipt, _Mapping]] = ...) -> None: ...

class GetErasureReceiptRequest(_message.Message):
    __slots__ = ("receipt_id", "subject_id")
    RECEIPT_ID_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_ID_FIELD_NUMBER: _ClassVar[int]
    receipt_id: str
    subject_id: str
    def __init__(self, receipt_id: _Optional[str] = ..., subject_id: _Optional[str] = ...) -> None: ...

class GetSubjectRequest(_message.Message):
    __slots__ = ("subject_id",)
    SUBJECT_ID_FIELD_NUMBER: _ClassVar[int]
    subject_id: str
    def __init__(self, subject_id: _Optional[str] = ...) -> None: ...
