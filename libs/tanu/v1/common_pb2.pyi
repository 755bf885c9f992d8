from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class FaceSelection(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    FACE_SELECTION_LARGEST: _ClassVar[FaceSelection]
    FACE_SELECTION_REQUIRE_SINGLE: _ClassVar[FaceSelection]

class Metric(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    METRIC_UNSPECIFIED: _ClassVar[Metric]
    METRIC_L2: _ClassVar[Metric]
    METRIC_COSINE: _ClassVar[Metric]

class Decision(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DECISION_UNSPECIFIED: _ClassVar[Decision]
    DECISION_MATCH: _ClassVar[Decision]
    DECISION_NO_MATCH: _ClassVar[Decision]
FACE_SELECTION_LARGEST: FaceSelection
FACE_SELECTION_REQUIRE_SINGLE: FaceSelection
METRIC_UNSPECIFIED: Metric
METRIC_L2: Metric
METRIC_COSINE: Metric
DECISION_UNSPECIFIED: Decision
DECISION_MATCH: Decision
DECISION_NO_MATCH: Decision

class Template(_message.Message):
    __slots__ = ("vector", "model_id")
    VECTOR_FIELD_NUMBER: _ClassVar[int]
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    vector: bytes
    model_id: str
    def __init__(self, vector: _Optional[bytes] = ..., model_id: _Optional[str] = ...) -> None: ...

class BiometricSample(_message.Message):
    __slots__ = ("image", "template", "face_selection")
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    TEMPLATE_FIELD_NUMBER: _ClassVar[int]
    FACE_SELECTION_FIELD_NUMBER: _ClassVar[int]
    image: bytes
    template: Template
    face_selection: FaceSelection
    def __init__(self, image: _Optional[bytes] = ..., template: _Optional[_Union[Template, _Mapping]] = ..., face_selection: _Optional[_Union[FaceSelection, str]] = ...) -> None: ...

class Candidate(_message.Message):
    __slots__ = ("subject_id", "score", "is_match", "partition")
    SUBJECT_ID_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    IS_MATCH_FIELD_NUMBER: _ClassVar[int]
    PARTITION_FIELD_NUMBER: _ClassVar[int]
    subject_id: str
    score: float
    is_match: bool
    partition: int
    def __init__(self, subject_id: _Optional[str] = ..., score: _Optional[float] = ..., is_match: _Optional[bool] = ..., partition: _Optional[int] = ...) -> None: ...

class Subject(_message.Message):
    __slots__ = ("subject_id", "created_at_ms", "template_count", "model_id", "partition")
    SUBJECT_ID_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    TEMPLATE_COUNT_FIELD_NUMBER: _ClassVar[int]
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    PARTITION_FIELD_NUMBER: _ClassVar[int]
    subject_id: str
    created_at_ms: int
    template_count: int
    model_id: str
    partition: int
    def __init__(self, subject_id: _Optional[str] = ..., created_at_ms: _Optional[int] = ..., template_count: _Optional[int] = ..., model_id: _Optional[str] = ..., partition: _Optional[int] = ...) -> None: ...

class Consent(_message.Message):
    __slots__ = ("purposes", "given_by", "guardian_subject_id", "relationship", "evidence_ref", "granted_at_ms", "revoked_at_ms", "tenant", "client", "consent_id", "revoked_by")
    PURPOSES_FIELD_NUMBER: _ClassVar[int]
    GIVEN_BY_FIELD_NUMBER: _ClassVar[int]
    GUARDIAN_SUBJECT_ID_FIELD_NUMBER: _ClassVar[int]
    RELATIONSHIP_FIELD_NUMBER: _ClassVar[int]
    EVIDENCE_REF_FIELD_NUMBER: _ClassVar[int]
    GRANTED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    REVOKED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    CLIENT_FIELD_NUMBER: _ClassVar[int]
    CONSENT_ID_FIELD_NUMBER: _ClassVar[int]
    REVOKED_BY_FIELD_NUMBER: _ClassVar[int]
    purposes: _containers.RepeatedScalarFieldContainer[str]
    given_by: str
    guardian_subject_id: str
    relationship: str
    evidence_ref: str
    granted_at_ms: int
    revoked_at_ms: int
    tenant: str
    client: str
    consent_id: int
    revoked_by: str
    def __init__(self, purposes: _Optional[_Iterable[str]] = ..., given_by: _Optional[str] = ..., guardian_subject_id: _Optional[str] = ..., relationship: _Optional[str] = ..., evidence_ref: _Optional[str] = ..., granted_at_ms: _Optional[int] = ..., revoked_at_ms: _Optional[int] = ..., tenant: _Optional[str] = ..., client: _Optional[str] = ..., consent_id: _Optional[int] = ..., revoked_by: _Optional[str] = ...) -> None: ...

class SubjectReport(_message.Message):
    __slots__ = ("subject", "date_of_birth", "minor", "records", "updated_at_ms", "data_key_id", "master_key_id", "consents", "biometric_locked", "verification_locked", "failed_verifications")
    class RecordsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    DATE_OF_BIRTH_FIELD_NUMBER: _ClassVar[int]
    MINOR_FIELD_NUMBER: _ClassVar[int]
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    DATA_KEY_ID_FIELD_NUMBER: _ClassVar[int]
    MASTER_KEY_ID_FIELD_NUMBER: _ClassVar[int]
    CONSENTS_FIELD_NUMBER: _ClassVar[int]
    BIOMETRIC_LOCKED_FIELD_NUMBER: _ClassVar[int]
    VERIFICATION_LOCKED_FIELD_NUMBER: _ClassVar[int]
    FAILED_VERIFICATIONS_FIELD_NUMBER: _ClassVar[int]
    subject: Subject
    date_of_birth: str
    minor: bool
    records: _containers.ScalarMap[str, int]
    updated_at_ms: int
    data_key_id: str
    master_key_id: str
    consents: _containers.RepeatedCompositeFieldContainer[Consent]
    biometric_locked: bool
    verification_locked: bool
    failed_verifications: int
    def __init__(self, subject: _Optional[_Union[Subject, _Mapping]] = ..., date_of_birth: _Optional[str] = ..., minor: _Optional[bool] = ..., records: _Optional[_Mapping[str, int]] = ..., updated_at_ms: _Optional[int] = ..., data_key_id: _Optional[str] = ..., master_key_id: _Optional[str] = ..., consents: _Optional[_Iterable[_Union[Consent, _Mapping]]] = ..., biometric_locked: _Optional[bool] = ..., verification_locked: _Optional[bool] = ..., failed_verifications: _Optional[int] = ...) -> None: ...

class AccessEntry(_message.Message):
    __slots__ = ("seq", "at_ms", "tenant", "client", "operation", "purpose", "result")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    AT_MS_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    CLIENT_FIELD_NUMBER: _ClassVar[int]
    OPERATION_FIELD_NUMBER: _ClassVar[int]
    PURPOSE_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    seq: int
    at_ms: int
    tenant: str
    client: str
    operation: str
    purpose: str
    result: str
    def __init__(self, seq: _Optional[int] = ..., at_ms: _Optional[int] = ..., tenant: _Optional[str] = ..., client: _Optional[str] = ..., operation: _Optional[str] = ..., purpose: _Optional[str] = ..., result: _Optional[str] = ...) -> None: ...

class AccessHistoryRequest(_message.Message):
    __slots__ = ("subject_id", "page_size", "page_token")
    SUBJECT_ID_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    subject_id: str
    page_size: int
    page_token: str
    def __init__(self, subject_id: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class AccessHistory(_message.Message):
    __slots__ = ("entries", "next_page_token")
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    entries: _containers.RepeatedCompositeFieldContainer[AccessEntry]
    next_page_token: str
    def __init__(self, entries: _Optional[_Iterable[_Union[AccessEntry, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class ErasureReceipt(_message.Message):
    __slots__ = ("receipt_id", "subject_id", "erased_at_ms", "complete", "body_json", "signature", "signing_key_id", "audit_seq", "index_removed", "snapshots_purged")
    RECEIPT_ID_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_ID_FIELD_NUMBER: _ClassVar[int]
    ERASED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    COMPLETE_FIELD_NUMBER: _ClassVar[int]
    BODY_JSON_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    SIGNING_KEY_ID_FIELD_NUMBER: _ClassVar[int]
    AUDIT_SEQ_FIELD_NUMBER: _ClassVar[int]
    INDEX_REMOVED_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOTS_PURGED_FIELD_NUMBER: _ClassVar[int]
    receipt_id: str
    subject_id: str
    erased_at_ms: int
    complete: bool
    body_json: str
    signature: bytes
    signing_key_id: str
    audit_seq: int
    index_removed: bool
    snapshots_purged: bool
    def __init__(self, receipt_id: _Optional[str] = ..., subject_id: _Optional[str] = ..., erased_at_ms: _Optional[int] = ..., complete: _Optional[bool] = ..., body_json: _Optional[str] = ..., signature: _Optional[bytes] = ..., signing_key_id: _Optional[str] = ..., audit_seq: _Optional[int] = ..., index_removed: _Optional[bool] = ..., snapshots_purged: _Optional[bool] = ...) -> None: ...

class IdRange(_message.Message):
    __slots__ = ("lo", "hi")
    LO_FIELD_NUMBER: _ClassVar[int]
    HI_FIELD_NUMBER: _ClassVar[int]
    lo: int
    hi: int
    def __init__(self, lo: _Optional[int] = ..., hi: _Optional[int] = ...) -> None: ...

class DigestRequest(_message.Message):
    __slots__ = ("partitions", "partition", "ranges", "list_below")
    PARTITIONS_FIELD_NUMBER: _ClassVar[int]
    PARTITION_FIELD_NUMBER: _ClassVar[int]
    RANGES_FIELD_NUMBER: _ClassVar[int]
    LIST_BELOW_FIELD_NUMBER: _ClassVar[int]
    partitions: int
    partition: int
    ranges: _containers.RepeatedCompositeFieldContainer[IdRange]
    list_below: int
    def __init__(self, partitions: _Optional[int] = ..., partition: _Optional[int] = ..., ranges: _Optional[_Iterable[_Union[IdRange, _Mapping]]] = ..., list_below: _Optional[int] = ...) -> None: ...

class RangeDigest(_message.Message):
    __slots__ = ("lo", "hi", "count", "xor", "sum", "template_ids", "max_id")
    LO_FIELD_NUMBER: _ClassVar[int]
    HI_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    XOR_FIELD_NUMBER: _ClassVar[int]
    SUM_FIELD_NUMBER: _ClassVar[int]
    TEMPLATE_IDS_FIELD_NUMBER: _ClassVar[int]
    MAX_ID_FIELD_NUMBER: _ClassVar[int]
    lo: int
    hi: int
    count: int
    xor: int
    sum: int
    template_ids: _containers.RepeatedScalarFieldContainer[int]
    max_id: int
    def __init__(self, lo: _Optional[int] = ..., hi: _Optional[int] = ..., count: _Optional[int] = ..., xor: _Optional[int] = ..., sum: _Optional[int] = ..., template_ids: _Optional[_Iterable[int]] = ..., max_id: _Optional[int] = ...) -> None: ...

class DigestResponse(_message.Message):
    __slots__ = ("partition", "replica", "caught_up", "applied_sequence", "ranges", "partitions")
    PARTITION_FIELD_NUMBER: _ClassVar[int]
    REPLICA_FIELD_NUMBER: _ClassVar[int]
    CAUGHT_UP_FIELD_NUMBER: _ClassVar[int]
    APPLIED_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    RANGES_FIELD_NUMBER: _ClassVar[int]
    PARTITIONS_FIELD_NUMBER: _ClassVar[int]
    partition: int
    replica: str
    caught_up: bool
    applied_sequence: int
    ranges: _containers.RepeatedCompositeFieldContainer[RangeDigest]
    partitions: int
    def __init__(self, partition: _Optional[int] = ..., replica: _Optional[str] = ..., caught_up: _Optional[bool] = ..., applied_sequence: _Optional[int] = ..., ranges: _Optional[_Iterable[_Union[RangeDigest, _Mapping]]] = ..., partitions: _Optional[int] = ...) -> None: ...
