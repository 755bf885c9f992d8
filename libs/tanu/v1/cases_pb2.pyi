from tanu.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class CaseRecord(_message.Message):
    __slots__ = ("subject_id", "date_of_birth", "purposes", "tenants", "created_at_ms", "partition", "template_count", "biometric_locked", "present")
    SUBJECT_ID_FIELD_NUMBER: _ClassVar[int]
    DATE_OF_BIRTH_FIELD_NUMBER: _ClassVar[int]
    PURPOSES_FIELD_NUMBER: _ClassVar[int]
    TENANTS_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    PARTITION_FIELD_NUMBER: _ClassVar[int]
    TEMPLATE_COUNT_FIELD_NUMBER: _ClassVar[int]
    BIOMETRIC_LOCKED_FIELD_NUMBER: _ClassVar[int]
    PRESENT_FIELD_NUMBER: _ClassVar[int]
    subject_id: str
    date_of_birth: str
    purposes: _containers.RepeatedScalarFieldContainer[str]
    tenants: _containers.RepeatedScalarFieldContainer[str]
    created_at_ms: int
    partition: int
    template_count: int
    biometric_locked: bool
    present: bool
    def __init__(self, subject_id: _Optional[str] = ..., date_of_birth: _Optional[str] = ..., purposes: _Optional[_Iterable[str]] = ..., tenants: _Optional[_Iterable[str]] = ..., created_at_ms: _Optional[int] = ..., partition: _Optional[int] = ..., template_count: _Optional[int] = ..., biometric_locked: _Optional[bool] = ..., present: _Optional[bool] = ...) -> None: ...

class Case(_message.Message):
    __slots__ = ("case_id", "state", "created_at_ms", "enrolment", "matched", "score", "threshold", "metric", "tenant", "client", "purpose", "decided_at_ms", "decided_by", "note")
    CASE_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    ENROLMENT_FIELD_NUMBER: _ClassVar[int]
    MATCHED_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    METRIC_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    CLIENT_FIELD_NUMBER: _ClassVar[int]
    PURPOSE_FIELD_NUMBER: _ClassVar[int]
    DECIDED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    DECIDED_BY_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    case_id: str
    state: str
    created_at_ms: int
    enrolment: CaseRecord
    matched: CaseRecord
    score: float
    threshold: float
    metric: _common_pb2.Metric
    tenant: str
    client: str
    purpose: str
    decided_at_ms: int
    decided_by: str
    note: str
    def __init__(self, case_id: _Optional[str] = ..., state: _Optional[str] = ..., created_at_ms: _Optional[int] = ..., enrolment: _Optional[_Union[CaseRecord, _Mapping]] = ..., matched: _Optional[_Union[CaseRecord, _Mapping]] = ..., score: _Optional[float] = ..., threshold: _Optional[float] = ..., metric: _Optional[_Union[_common_pb2.Metric, str]] = ..., tenant: _Optional[str] = ..., client: _Optional[str] = ..., purpose: _Optional[str] = ..., decided_at_ms: _Optional[int] = ..., decided_by: _Optional[str] = ..., note: _Optional[str] = ...) -> None: ...

class ListCasesRequest(_message.Message):
    __slots__ = ("state", "page_size", "page_token")
    STATE_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    state: str
    page_size: int
    page_token: str
    def __init__(self, state: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListCasesResponse(_message.Message):
    __slots__ = ("cases", "next_page_token")
    CASES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    cases: _containers.RepeatedCompositeFieldContainer[Case]
    next_page_token: str
    def __init__(self, cases: _Optional[_Iterable[_Union[Case, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class GetCaseRequest(_message.Message):
    __slots__ = ("case_id",)
    CASE_ID_FIELD_NUMBER: _ClassVar[int]
    case_id: str
    def __init__(self, case_id: _Optional[str] = ...) -> None: ...

class DecideCaseRequest(_message.Message):
    __slots__ = ("case_id", "decision", "note", "decided_by_tenant", "decided_by_client")
    CASE_ID_FIELD_NUMBER: _ClassVar[int]
    DECISION_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    DECIDED_BY_TENANT_FIELD_NUMBER: _ClassVar[int]
    DECIDED_BY_CLIENT_FIELD_NUMBER: _ClassVar[int]
    case_id: str
    decision: str
    note: str
    decided_by_tenant: str
    decided_by_client: str
    def __init__(self, case_id: _Optional[str] = ..., decision: _Optional[str] = ..., note: _Optional[str] = ..., decided_by_tenant: _Optional[str] = ..., decided_by_client: _Optional[str] = ...) -> None: ...

class DecideCaseResponse(_message.Message):
    __slots__ = ("case", "subject")
    CASE_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    case: Case
    subject: _common_pb2.Subject
    def __init__(self, case: _Optional[_Union[Case, _Mapping]] = ..., subject: _Optional[_Union[_common_pb2.Subject, _Mapping]] = ...) -> None: ...
