from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Encounter(_message.Message):
    __slots__ = ("subject_id", "encounter_id", "status", "encounter_type", "galleries", "created_at_ms", "updated_at_ms", "data_json", "model_id", "template_id")
    SUBJECT_ID_FIELD_NUMBER: _ClassVar[int]
    ENCOUNTER_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    ENCOUNTER_TYPE_FIELD_NUMBER: _ClassVar[int]
    GALLERIES_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    DATA_JSON_FIELD_NUMBER: _ClassVar[int]
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    TEMPLATE_ID_FIELD_NUMBER: _ClassVar[int]
    subject_id: str
    encounter_id: str
    status: str
    encounter_type: str
    galleries: _containers.RepeatedScalarFieldContainer[str]
    created_at_ms: int
    updated_at_ms: int
    data_json: str
    model_id: str
    template_id: int
    def __init__(self, subject_id: _Optional[str] = ..., encounter_id: _Optional[str] = ..., status: _Optional[str] = ..., encounter_type: _Optional[str] = ..., galleries: _Optional[_Iterable[str]] = ..., created_at_ms: _Optional[int] = ..., updated_at_ms: _Optional[int] = ..., data_json: _Optional[str] = ..., model_id: _Optional[str] = ..., template_id: _Optional[int] = ...) -> None: ...

class EncounterFields(_message.Message):
    __slots__ = ("encounter_id", "encounter_type", "galleries", "data_json", "status")
    ENCOUNTER_ID_FIELD_NUMBER: _ClassVar[int]
    ENCOUNTER_TYPE_FIELD_NUMBER: _ClassVar[int]
    GALLERIES_FIELD_NUMBER: _ClassVar[int]
    DATA_JSON_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    encounter_id: str
    encounter_type: str
    galleries: _containers.RepeatedScalarFieldContainer[str]
    data_json: str
    status: str
    def __init__(self, encounter_id: _Optional[str] = ..., encounter_type: _Optional[str] = ..., galleries: _Optional[_Iterable[str]] = ..., data_json: _Optional[str] = ..., status: _Optional[str] = ...) -> None: ...

class ListEncountersRequest(_message.Message):
    __slots__ = ("subject_id",)
    SUBJECT_ID_FIELD_NUMBER: _ClassVar[int]
    subject_id: str
    def __init__(self, subject_id: _Optional[str] = ...) -> None: ...

class ListEncountersResponse(_message.Message):
    __slots__ = ("subject_id", "encounters")
    SUBJECT_ID_FIELD_NUMBER: _ClassVar[int]
    ENCOUNTERS_FIELD_NUMBER: _ClassVar[int]
    subject_id: str
    encounters: _containers.RepeatedCompositeFieldContainer[Encounter]
    def __init__(self, subject_id: _Optional[str] = ..., encounters: _Optional[_Iterable[_Union[Encounter, _Mapping]]] = ...) -> None: ...

class GetEncounterRequest(_message.Message):
    __slots__ = ("subject_id", "encounter_id")
    SUBJECT_ID_FIELD_NUMBER: _ClassVar[int]
    ENCOUNTER_ID_FIELD_NUMBER: _ClassVar[int]
    subject_id: str
    encounter_id: str
    def __init__(self, subject_id: _Optional[str] = ..., encounter_id: _Optional[str] = ...) -> None: ...

class Gallery(_message.Message):
    __slots__ = ("name", "encounters", "active_encounters", "subjects")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ENCOUNTERS_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_ENCOUNTERS_FIELD_NUMBER: _ClassVar[int]
    SUBJECTS_FIELD_NUMBER: _ClassVar[int]
    name: str
    encounters: int
    active_encounters: int
    subjects: int
    def __init__(self, name: _Optional[str] = ..., encounters: _Optional[int] = ..., active_encounters: _Optional[int] = ..., subjects: _Optional[int] = ...) -> None: ...

class ListGalleriesResponse(_message.Message):
    __slots__ = ("galleries",)
    GALLERIES_FIELD_NUMBER: _ClassVar[int]
    galleries: _containers.RepeatedCompositeFieldContainer[Gallery]
    def __init__(self, galleries: _Optional[_Iterable[_Union[Gallery, _Mapping]]] = ...) -> None: ...

class GalleryMember(_message.Message):
    __slots__ = ("subject_id", "encounter_id", "status")
    SUBJECT_ID_FIELD_NUMBER: _ClassVar[int]
    ENCOUNTER_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    subject_id: str
    encounter_id: str
    status: str
    def __init__(self, subject_id: _Optional[str] = ..., encounter_id: _Optional[str] = ..., status: _Optional[str] = ...) -> None: ...

class GetGalleryContentResponse(_message.Message):
    __slots__ = ("gallery", "members", "next_page_token")
    GALLERY_FIELD_NUMBER: _ClassVar[int]
    MEMBERS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    gallery: str
    members: _containers.RepeatedCompositeFieldContainer[GalleryMember]
    next_page_token: str
    def __init__(self, gallery: _Optional[str] = ..., members: _Optional[_Iterable[_Union[GalleryMember, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...
