from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class DetectRequest(_message.Message):
    __slots__ = ("image", "max_faces", "tenant", "chips", "chip_min_score")
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    MAX_FACES_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    CHIPS_FIELD_NUMBER: _ClassVar[int]
    CHIP_MIN_SCORE_FIELD_NUMBER: _ClassVar[int]
    image: bytes
    max_faces: int
    tenant: str
    chips: int
    chip_min_score: float
    def __init__(self, image: _Optional[bytes] = ..., max_faces: _Optional[int] = ..., tenant: _Optional[str] = ..., chips: _Optional[int] = ..., chip_min_score: _Optional[float] = ...) -> None: ...

class Chip(_message.Message):
    __slots__ = ("pixels", "side", "template")
    PIXELS_FIELD_NUMBER: _ClassVar[int]
    SIDE_FIELD_NUMBER: _ClassVar[int]
    TEMPLATE_FIELD_NUMBER: _ClassVar[int]
    pixels: bytes
    side: int
    template: str
    def __init__(self, pixels: _Optional[bytes] = ..., side: _Optional[int] = ..., template: _Optional[str] = ...) -> None: ...

class Point(_message.Message):
    __slots__ = ("x", "y")
    X_FIELD_NUMBER: _ClassVar[int]
    Y_FIELD_NUMBER: _ClassVar[int]
    x: float
    y: float
    def __init__(self, x: _Optional[float] = ..., y: _Optional[float] = ...) -> None: ...

class Box(_message.Message):
    __slots__ = ("x1", "y1", "x2", "y2")
    X1_FIELD_NUMBER: _ClassVar[int]
    Y1_FIELD_NUMBER: _ClassVar[int]
    X2_FIELD_NUMBER: _ClassVar[int]
    Y2_FIELD_NUMBER: _ClassVar[int]
    x1: float
    y1: float
    x2: float
    y2: float
    def __init__(self, x1: _Optional[float] = ..., y1: _Optional[float] = ..., x2: _Optional[float] = ..., y2: _Optional[float] = ...) -> None: ...

class Quality(_message.Message):
    __slots__ = ("face_size_px", "sharpness", "pose", "exposure")
    FACE_SIZE_PX_FIELD_NUMBER: _ClassVar[int]
    SHARPNESS_FIELD_NUMBER: _ClassVar[int]
    POSE_FIELD_NUMBER: _ClassVar[int]
    EXPOSURE_FIELD_NUMBER: _ClassVar[int]
    face_size_px: float
    sharpness: float
    pose: float
    exposure: float
    def __init__(self, face_size_px: _Optional[float] = ..., sharpness: _Optional[float] = ..., pose: _Optional[float] = ..., exposure: _Optional[float] = ...) -> None: ...

class Face(_message.Message):
    __slots__ = ("box", "landmarks", "score", "quality", "chip")
    BOX_FIELD_NUMBER: _ClassVar[int]
    LANDMARKS_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    QUALITY_FIELD_NUMBER: _ClassVar[int]
    CHIP_FIELD_NUMBER: _ClassVar[int]
    box: Box
    landmarks: _containers.RepeatedCompositeFieldContainer[Point]
    score: float
    quality: Quality
    chip: Chip
    def __init__(self, box: _Optional[_Union[Box, _Mapping]] = ..., landmarks: _Optional[_Iterable[_Union[Point, _Mapping]]] = ..., score: _Optional[float] = ..., quality: _Optional[_Union[Quality, _Mapping]] = ..., chip: _Optional[_Union[Chip, _Mapping]] = ...) -> None: ...

class DetectResponse(_message.Message):
    __slots__ = ("faces", "width", "height")
    FACES_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    faces: _containers.RepeatedCompositeFieldContainer[Face]
    width: int
    height: int
    def __init__(self, faces: _Optional[_Iterable[_Union[Face, _Mapping]]] = ..., width: _Optional[int] = ..., height: _Optional[int] = ...) -> None: ...
