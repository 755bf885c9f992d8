from tanu.v1 import cases_pb2 as _cases_pb2
from tanu.v1 import common_pb2 as _common_pb2
from tanu.v1 import encounters_pb2 as _encounters_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class CompareSamplesRequest(_message.Message):
    __slots__ = ("sample_a", "sample_b", "threshold")
    SAMPLE_A_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_B_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    sample_a: _common_pb2.BiometricSample
    sample_b: _common_pb2.BiometricSample
    threshold: float
    def __init__(self, sample_a: _Optional[_Union[_common_pb2.BiometricSample, _Mapping]] = ..., sample_b: _Optional[_Union[_common_pb2.BiometricSample, _Mapping]] = ..., threshold: _Optional[float] = ...) -> None: ...

class CompareSamplesResponse(_message.Message):
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

class ReadTemplatesRequest(_message.Message):
    __slots__ = ("subject_id", "encounter_id")
    SUBJECT_ID_FIELD_NUMBER: _ClassVar[int]
    ENCOUNTER_ID_FIELD_NUMBER: _ClassVar[int]
    subject_id: str
    encounter_id: str
    def __init__(self, subject_id: _Optional[str] = ..., encounter_id: _Optional[str] = ...) -> None: ...

class EncounterTemplate(_message.Message):
    __slots__ = ("encounter_id", "template", "inactive")
    ENCOUNTER_ID_FIELD_NUMBER: _ClassVar[int]
    TEMPLATE_FIELD_NUMBER: _ClassVar[int]
    INACTIVE_FIELD_NUMBER: _ClassVar[int]
    encounter_id: str
    template: _common_pb2.Template
    inactive: bool
    def __init__(self, encounter_id: _Optional[str] = ..., template: _Optional[_Union[_common_pb2.Template, _Mapping]] = ..., inactive: _Optional[bool] = ...) -> None: ...

class ReadTemplatesResponse(_message.Message):
    __slots__ = ("templates", "metric", "dimension")
    TEMPLATES_FIELD_NUMBER: _ClassVar[int]
    METRIC_FIELD_NUMBER: _ClassVar[int]
    DIMENSION_FIELD_NUMBER: _ClassVar[int]
    templates: _containers.RepeatedCompositeFieldContainer[EncounterTemplate]
    metric: _common_pb2.Metric
    dimension: int
    def __init__(self, templates: _Optional[_Iterable[_Union[EncounterTemplate, _Mapping]]] = ..., metric: _Optional[_Union[_common_pb2.Metric, str]] = ..., dimension: _Optional[int] = ...) -> None: ...

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
    __slots__ = ("subject_id", "sample", "allow_duplicate", "wait_indexed", "date_of_birth", "consent", "encounter_id", "galleries", "encounter_type", "encounter_data_json")
    SUBJECT_ID_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_FIELD_NUMBER: _ClassVar[int]
    ALLOW_DUPLICATE_FIELD_NUMBER: _ClassVar[int]
    WAIT_INDEXED_FIELD_NUMBER: _ClassVar[int]
    DATE_OF_BIRTH_FIELD_NUMBER: _ClassVar[int]
    CONSENT_FIELD_NUMBER: _ClassVar[int]
    ENCOUNTER_ID_FIELD_NUMBER: _ClassVar[int]
    GALLERIES_FIELD_NUMBER: _ClassVar[int]
    ENCOUNTER_TYPE_FIELD_NUMBER: _ClassVar[int]
    ENCOUNTER_DATA_JSON_FIELD_NUMBER: _ClassVar[int]
    subject_id: str
    sample: _common_pb2.BiometricSample
    allow_duplicate: bool
    wait_indexed: bool
    date_of_birth: str
    consent: ConsentGrant
    encounter_id: str
    galleries: _containers.RepeatedScalarFieldContainer[str]
    encounter_type: str
    encounter_data_json: str
    def __init__(self, subject_id: _Optional[str] = ..., sample: _Optional[_Union[_common_pb2.BiometricSample, _Mapping]] = ..., allow_duplicate: _Optional[bool] = ..., wait_indexed: _Optional[bool] = ..., date_of_birth: _Optional[str] = ..., consent: _Optional[_Union[ConsentGrant, _Mapping]] = ..., encounter_id: _Optional[str] = ..., galleries: _Optional[_Iterable[str]] = ..., encounter_type: _Optional[str] = ..., encounter_data_json: _Optional[str] = ...) -> None: ...

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
    __slots__ = ("sample", "top_k", "threshold", "require_complete", "gallery", "probe_subject_id", "probe_encounter_id")
    SAMPLE_FIELD_NUMBER: _ClassVar[int]
    TOP_K_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    REQUIRE_COMPLETE_FIELD_NUMBER: _ClassVar[int]
    GALLERY_FIELD_NUMBER: _ClassVar[int]
    PROBE_SUBJECT_ID_FIELD_NUMBER: _ClassVar[int]
    PROBE_ENCOUNTER_ID_FIELD_NUMBER: _ClassVar[int]
    sample: _common_pb2.BiometricSample
    top_k: int
    threshold: float
    require_complete: bool
    gallery: str
    probe_subject_id: str
    probe_encounter_id: str
    def __init__(self, sample: _Optional[_Union[_common_pb2.BiometricSample, _Mapping]] = ..., top_k: _Optional[int] = ..., threshold: _Optional[float] = ..., require_complete: _Optional[bool] = ..., gallery: _Optional[str] = ..., probe_subject_id: _Optional[str] = ..., probe_encounter_id: _Optional[str] = ...) -> None: ...

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

class AddEncounterRequest(_message.Message):
    __slots__ = ("subject_id", "sample", "encounter", "allow_duplicate", "wait_indexed")
    SUBJECT_ID_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_FIELD_NUMBER: _ClassVar[int]
    ENCOUNTER_FIELD_NUMBER: _ClassVar[int]
    ALLOW_DUPLICATE_FIELD_NUMBER: _ClassVar[int]
    WAIT_INDEXED_FIELD_NUMBER: _ClassVar[int]
    subject_id: str
    sample: _common_pb2.BiometricSample
    encounter: _encounters_pb2.EncounterFields
    allow_duplicate: bool
    wait_indexed: bool
    def __init__(self, subject_id: _Optional[str] = ..., sample: _Optional[_Union[_common_pb2.BiometricSample, _Mapping]] = ..., encounter: _Optional[_Union[_encounters_pb2.EncounterFields, _Mapping]] = ..., allow_duplicate: _Optional[bool] = ..., wait_indexed: _Optional[bool] = ...) -> None: ...

class AddEncounterResponse(_message.Message):
    __slots__ = ("outcome", "encounter", "duplicate_of", "duplicate_withheld", "threshold", "indexed")
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    ENCOUNTER_FIELD_NUMBER: _ClassVar[int]
    DUPLICATE_OF_FIELD_NUMBER: _ClassVar[int]
    DUPLICATE_WITHHELD_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    INDEXED_FIELD_NUMBER: _ClassVar[int]
    outcome: str
    encounter: _encounters_pb2.Encounter
    duplicate_of: _common_pb2.Candidate
    duplicate_withheld: bool
    threshold: float
    indexed: bool
    def __init__(self, outcome: _Optional[str] = ..., encounter: _Optional[_Union[_encounters_pb2.Encounter, _Mapping]] = ..., duplicate_of: _Optional[_Union[_common_pb2.Candidate, _Mapping]] = ..., duplicate_withheld: _Optional[bool] = ..., threshold: _Optional[float] = ..., indexed: _Optional[bool] = ...) -> None: ...

class UpdateEncounterRequest(_message.Message):
    __slots__ = ("subject_id", "encounter_id", "sample", "encounter", "update_fields")
    SUBJECT_ID_FIELD_NUMBER: _ClassVar[int]
    ENCOUNTER_ID_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_FIELD_NUMBER: _ClassVar[int]
    ENCOUNTER_FIELD_NUMBER: _ClassVar[int]
    UPDATE_FIELDS_FIELD_NUMBER: _ClassVar[int]
    subject_id: str
    encounter_id: str
    sample: _common_pb2.BiometricSample
    encounter: _encounters_pb2.EncounterFields
    update_fields: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, subject_id: _Optional[str] = ..., encounter_id: _Optional[str] = ..., sample: _Optional[_Union[_common_pb2.BiometricSample, _Mapping]] = ..., encounter: _Optional[_Union[_encounters_pb2.EncounterFields, _Mapping]] = ..., update_fields: _Optional[_Iterable[str]] = ...) -> None: ...

class DeleteEncounterRequest(_message.Message):
    __slots__ = ("subject_id", "encounter_id", "reason")
    SUBJECT_ID_FIELD_NUMBER: _ClassVar[int]
    ENCOUNTER_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    subject_id: str
    encounter_id: str
    reason: str
    def __init__(self, subject_id: _Optional[str] = ..., encounter_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class DeleteEncounterResponse(_message.Message):
    __slots__ = ("subject_id", "encounter_id", "deleted_at_ms", "receipt")
    SUBJECT_ID_FIELD_NUMBER: _ClassVar[int]
    ENCOUNTER_ID_FIELD_NUMBER: _ClassVar[int]
    DELETED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    RECEIPT_FIELD_NUMBER: _ClassVar[int]
    subject_id: str
    encounter_id: str
    deleted_at_ms: int
    receipt: _common_pb2.ErasureReceipt
    def __init__(self, subject_id: _Optional[str] = ..., encounter_id: _Optional[str] = ..., deleted_at_ms: _Optional[int] = ..., receipt: _Optional[_Union[_common_pb2.ErasureReceipt, _Mapping]] = ...) -> None: ...

class SetEncounterStatusRequest(_message.Message):
    __slots__ = ("subject_id", "encounter_id", "status")
    SUBJECT_ID_FIELD_NUMBER: _ClassVar[int]
    ENCOUNTER_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    subject_id: str
    encounter_id: str
    status: str
    def __init__(self, subject_id: _Optional[str] = ..., encounter_id: _Optional[str] = ..., status: _Optional[str] = ...) -> None: ...

class SetEncounterGalleriesRequest(_message.Message):
    __slots__ = ("subject_id", "encounter_id", "galleries")
    SUBJECT_ID_FIELD_NUMBER: _ClassVar[int]
    ENCOUNTER_ID_FIELD_NUMBER: _ClassVar[int]
    GALLERIES_FIELD_NUMBER: _ClassVar[int]
    subject_id: str
    encounter_id: str
    galleries: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, subject_id: _Optional[str] = ..., encounter_id: _Optional[str] = ..., galleries: _Optional[_Iterable[str]] = ...) -> None: ...

class MoveEncounterRequest(_message.Message):
    __slots__ = ("subject_id", "source_subject_id", "encounter_id", "reason")
    SUBJECT_ID_FIELD_NUMBER: _ClassVar[int]
    SOURCE_SUBJECT_ID_FIELD_NUMBER: _ClassVar[int]
    ENCOUNTER_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    subject_id: str
    source_subject_id: str
    encounter_id: str
    reason: str
    def __init__(self, subject_id: _Optional[str] = ..., source_subject_id: _Optional[str] = ..., encounter_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class MoveEncounterResponse(_message.Message):
    __slots__ = ("encounter", "source_erased", "source_receipt")
    ENCOUNTER_FIELD_NUMBER: _ClassVar[int]
    SOURCE_ERASED_FIELD_NUMBER: _ClassVar[int]
    SOURCE_RECEIPT_FIELD_NUMBER: _ClassVar[int]
    encounter: _encounters_pb2.Encounter
    source_erased: bool
    source_receipt: _common_pb2.ErasureReceipt
    def __init__(self, encounter: _Optional[_Union[_encounters_pb2.Encounter, _Mapping]] = ..., source_erased: _Optional[bool] = ..., source_receipt: _Optional[_Union[_common_pb2.ErasureReceipt, _Mapping]] = ...) -> None: ...

class MergeSubjectsRequest(_message.Message):
    __slots__ = ("subject_id", "source_subject_id", "reason")
    SUBJECT_ID_FIELD_NUMBER: _ClassVar[int]
    SOURCE_SUBJECT_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    subject_id: str
    source_subject_id: str
    reason: str
    def __init__(self, subject_id: _Optional[str] = ..., source_subject_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class MergeSubjectsResponse(_message.Message):
    __slots__ = ("subject", "moved", "source_erased", "source_receipt", "case_id")
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    MOVED_FIELD_NUMBER: _ClassVar[int]
    SOURCE_ERASED_FIELD_NUMBER: _ClassVar[int]
    SOURCE_RECEIPT_FIELD_NUMBER: _ClassVar[int]
    CASE_ID_FIELD_NUMBER: _ClassVar[int]
    subject: _common_pb2.Subject
    moved: _containers.RepeatedCompositeFieldContainer[_encounters_pb2.Encounter]
    source_erased: bool
    source_receipt: _common_pb2.ErasureReceipt
    case_id: str
    def __init__(self, subject: _Optional[_Union[_common_pb2.Subject, _Mapping]] = ..., moved: _Optional[_Iterable[_Union[_encounters_pb2.Encounter, _Mapping]]] = ..., source_erased: _Optional[bool] = ..., source_receipt: _Optional[_Union[_common_pb2.ErasureReceipt, _Mapping]] = ..., case_id: _Optional[str] = ...) -> None: ...

class ListGalleriesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetGalleryContentRequest(_message.Message):
    __slots__ = ("gallery", "page_size", "page_token")
    GALLERY_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    gallery: str
    page_size: int
    page_token: str
    def __init__(self, gallery: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...
