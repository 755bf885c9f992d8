from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
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
