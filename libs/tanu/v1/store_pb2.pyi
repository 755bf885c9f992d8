from tanu.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class PutSubjectRequest(_message.Message):
    __slots__ = ("subject_id", "templates")
    SUBJECT_ID_FIELD_NUMBER: _ClassVar[int]
    TEMPLATES_FIELD_NUMBER: _ClassVar[int]
    subject_id: str
    templates: _containers.RepeatedCompositeFieldContainer[_common_pb2.Template]
    def __init__(self, subject_id: _Optional[str] = ..., templates: _Optional[_Iterable[_Union[_common_pb2.Template, _Mapping]]] = ...) -> None: ...

class GetSubjectRecordRequest(_message.Message):
    __slots__ = ("subject_id",)
    SUBJECT_ID_FIELD_NUMBER: _ClassVar[int]
    subject_id: str
    def __init__(self, subject_id: _Optional[str] = ...) -> None: ...

class GetTemplatesRequest(_message.Message):
    __slots__ = ("subject_id",)
    SUBJECT_ID_FIELD_NUMBER: _ClassVar[int]
    subject_id: str
    def __init__(self, subject_id: _Optional[str] = ...) -> None: ...

class StoredTemplate(_message.Message):
    __slots__ = ("template_id", "template")
    TEMPLATE_ID_FIELD_NUMBER: _ClassVar[int]
    TEMPLATE_FIELD_NUMBER: _ClassVar[int]
    template_id: int
    template: _common_pb2.Template
    def __init__(self, template_id: _Optional[int] = ..., template: _Optional[_Union[_common_pb2.Template, _Mapping]] = ...) -> None: ...

class GetTemplatesResponse(_message.Message):
    __slots__ = ("subject", "templates")
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    TEMPLATES_FIELD_NUMBER: _ClassVar[int]
    subject: _common_pb2.Subject
    templates: _containers.RepeatedCompositeFieldContainer[StoredTemplate]
    def __init__(self, subject: _Optional[_Union[_common_pb2.Subject, _Mapping]] = ..., templates: _Optional[_Iterable[_Union[StoredTemplate, _Mapping]]] = ...) -> None: ...

class DeleteSubjectRequest(_message.Message):
    __slots__ = ("subject_id", "reason")
    SUBJECT_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    subject_id: str
    reason: str
    def __init__(self, subject_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class DeleteSubjectResponse(_message.Message):
    __slots__ = ("subject", "template_ids", "deleted_at_ms")
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    TEMPLATE_IDS_FIELD_NUMBER: _ClassVar[int]
    DELETED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    subject: _common_pb2.Subject
    template_ids: _containers.RepeatedScalarFieldContainer[int]
    deleted_at_ms: int
    def __init__(self, subject: _Optional[_Union[_common_pb2.Subject, _Mapping]] = ..., template_ids: _Optional[_Iterable[int]] = ..., deleted_at_ms: _Optional[int] = ...) -> None: ...

class TemplateEvent(_message.Message):
    __slots__ = ("event_id", "kind", "subject_id", "partition", "template_ids", "vectors", "dimension", "model_id", "occurred_at_ms")
    class Kind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        KIND_UNSPECIFIED: _ClassVar[TemplateEvent.Kind]
        KIND_ADDED: _ClassVar[TemplateEvent.Kind]
        KIND_REMOVED: _ClassVar[TemplateEvent.Kind]
    KIND_UNSPECIFIED: TemplateEvent.Kind
    KIND_ADDED: TemplateEvent.Kind
    KIND_REMOVED: TemplateEvent.Kind
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_ID_FIELD_NUMBER: _ClassVar[int]
    PARTITION_FIELD_NUMBER: _ClassVar[int]
    TEMPLATE_IDS_FIELD_NUMBER: _ClassVar[int]
    VECTORS_FIELD_NUMBER: _ClassVar[int]
    DIMENSION_FIELD_NUMBER: _ClassVar[int]
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    OCCURRED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    event_id: str
    kind: TemplateEvent.Kind
    subject_id: str
    partition: int
    template_ids: _containers.RepeatedScalarFieldContainer[int]
    vectors: bytes
    dimension: int
    model_id: str
    occurred_at_ms: int
    def __init__(self, event_id: _Optional[str] = ..., kind: _Optional[_Union[TemplateEvent.Kind, str]] = ..., subject_id: _Optional[str] = ..., partition: _Optional[int] = ..., template_ids: _Optional[_Iterable[int]] = ..., vectors: _Optional[bytes] = ..., dimension: _Optional[int] = ..., model_id: _Optional[str] = ..., occurred_at_ms: _Optional[int] = ...) -> None: ...
