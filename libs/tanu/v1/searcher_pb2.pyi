from tanu.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SearchRequest(_message.Message):
    __slots__ = ("queries", "count", "top_k", "model_id", "gallery", "bulk")
    QUERIES_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    TOP_K_FIELD_NUMBER: _ClassVar[int]
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    GALLERY_FIELD_NUMBER: _ClassVar[int]
    BULK_FIELD_NUMBER: _ClassVar[int]
    queries: bytes
    count: int
    top_k: int
    model_id: str
    gallery: str
    bulk: bool
    def __init__(self, queries: _Optional[bytes] = ..., count: _Optional[int] = ..., top_k: _Optional[int] = ..., model_id: _Optional[str] = ..., gallery: _Optional[str] = ..., bulk: _Optional[bool] = ...) -> None: ...

class Hits(_message.Message):
    __slots__ = ("candidates",)
    CANDIDATES_FIELD_NUMBER: _ClassVar[int]
    candidates: _containers.RepeatedCompositeFieldContainer[_common_pb2.Candidate]
    def __init__(self, candidates: _Optional[_Iterable[_Union[_common_pb2.Candidate, _Mapping]]] = ...) -> None: ...

class SearchResponse(_message.Message):
    __slots__ = ("partition", "results", "gallery_size", "applied_sequence")
    PARTITION_FIELD_NUMBER: _ClassVar[int]
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    GALLERY_SIZE_FIELD_NUMBER: _ClassVar[int]
    APPLIED_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    partition: int
    results: _containers.RepeatedCompositeFieldContainer[Hits]
    gallery_size: int
    applied_sequence: int
    def __init__(self, partition: _Optional[int] = ..., results: _Optional[_Iterable[_Union[Hits, _Mapping]]] = ..., gallery_size: _Optional[int] = ..., applied_sequence: _Optional[int] = ...) -> None: ...

class StatsRequest(_message.Message):
    __slots__ = ("include_template_ids",)
    INCLUDE_TEMPLATE_IDS_FIELD_NUMBER: _ClassVar[int]
    include_template_ids: bool
    def __init__(self, include_template_ids: _Optional[bool] = ...) -> None: ...

class StatsResponse(_message.Message):
    __slots__ = ("partition", "replica", "gallery_size", "applied_sequence", "caught_up", "index_kind", "dimension", "metric", "model_id", "template_ids", "snapshot_sequence")
    PARTITION_FIELD_NUMBER: _ClassVar[int]
    REPLICA_FIELD_NUMBER: _ClassVar[int]
    GALLERY_SIZE_FIELD_NUMBER: _ClassVar[int]
    APPLIED_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    CAUGHT_UP_FIELD_NUMBER: _ClassVar[int]
    INDEX_KIND_FIELD_NUMBER: _ClassVar[int]
    DIMENSION_FIELD_NUMBER: _ClassVar[int]
    METRIC_FIELD_NUMBER: _ClassVar[int]
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    TEMPLATE_IDS_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOT_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    partition: int
    replica: str
    gallery_size: int
    applied_sequence: int
    caught_up: bool
    index_kind: str
    dimension: int
    metric: _common_pb2.Metric
    model_id: str
    template_ids: _containers.RepeatedScalarFieldContainer[int]
    snapshot_sequence: int
    def __init__(self, partition: _Optional[int] = ..., replica: _Optional[str] = ..., gallery_size: _Optional[int] = ..., applied_sequence: _Optional[int] = ..., caught_up: _Optional[bool] = ..., index_kind: _Optional[str] = ..., dimension: _Optional[int] = ..., metric: _Optional[_Union[_common_pb2.Metric, str]] = ..., model_id: _Optional[str] = ..., template_ids: _Optional[_Iterable[int]] = ..., snapshot_sequence: _Optional[int] = ...) -> None: ...

class ErasureCheckRequest(_message.Message):
    __slots__ = ("template_ids", "partitions")
    TEMPLATE_IDS_FIELD_NUMBER: _ClassVar[int]
    PARTITIONS_FIELD_NUMBER: _ClassVar[int]
    template_ids: _containers.RepeatedScalarFieldContainer[int]
    partitions: int
    def __init__(self, template_ids: _Optional[_Iterable[int]] = ..., partitions: _Optional[int] = ...) -> None: ...

class ErasureCheckResponse(_message.Message):
    __slots__ = ("partition", "replica", "caught_up", "applied_sequence", "pending_template_ids", "snapshot_sequence", "index_pending_template_ids", "snapshot_pending_template_ids", "partitions", "staging")
    PARTITION_FIELD_NUMBER: _ClassVar[int]
    REPLICA_FIELD_NUMBER: _ClassVar[int]
    CAUGHT_UP_FIELD_NUMBER: _ClassVar[int]
    APPLIED_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    PENDING_TEMPLATE_IDS_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOT_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    INDEX_PENDING_TEMPLATE_IDS_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOT_PENDING_TEMPLATE_IDS_FIELD_NUMBER: _ClassVar[int]
    PARTITIONS_FIELD_NUMBER: _ClassVar[int]
    STAGING_FIELD_NUMBER: _ClassVar[int]
    partition: int
    replica: str
    caught_up: bool
    applied_sequence: int
    pending_template_ids: _containers.RepeatedScalarFieldContainer[int]
    snapshot_sequence: int
    index_pending_template_ids: _containers.RepeatedScalarFieldContainer[int]
    snapshot_pending_template_ids: _containers.RepeatedScalarFieldContainer[int]
    partitions: int
    staging: bool
    def __init__(self, partition: _Optional[int] = ..., replica: _Optional[str] = ..., caught_up: _Optional[bool] = ..., applied_sequence: _Optional[int] = ..., pending_template_ids: _Optional[_Iterable[int]] = ..., snapshot_sequence: _Optional[int] = ..., index_pending_template_ids: _Optional[_Iterable[int]] = ..., snapshot_pending_template_ids: _Optional[_Iterable[int]] = ..., partitions: _Optional[int] = ..., staging: _Optional[bool] = ...) -> None: ...
