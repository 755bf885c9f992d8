from tanu.v1 import common_pb2 as _common_pb2
from tanu.v1 import detector_pb2 as _detector_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class EmbedRequest(_message.Message):
    __slots__ = ("tenant", "chips")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    CHIPS_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    chips: _containers.RepeatedCompositeFieldContainer[_detector_pb2.Chip]
    def __init__(self, tenant: _Optional[str] = ..., chips: _Optional[_Iterable[_Union[_detector_pb2.Chip, _Mapping]]] = ...) -> None: ...

class EmbedResponse(_message.Message):
    __slots__ = ("templates",)
    TEMPLATES_FIELD_NUMBER: _ClassVar[int]
    templates: _containers.RepeatedCompositeFieldContainer[_common_pb2.Template]
    def __init__(self, templates: _Optional[_Iterable[_Union[_common_pb2.Template, _Mapping]]] = ...) -> None: ...
