from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Task(_message.Message):
    __slots__ = ("task_id", "tenant", "client", "operation", "transaction_id", "request_sha256", "status", "priority", "callback", "request", "result_status", "result_type", "result", "has_result", "attempts", "next_attempt_ms", "created_at_ms", "updated_at_ms", "last_error")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    CLIENT_FIELD_NUMBER: _ClassVar[int]
    OPERATION_FIELD_NUMBER: _ClassVar[int]
    TRANSACTION_ID_FIELD_NUMBER: _ClassVar[int]
    REQUEST_SHA256_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    CALLBACK_FIELD_NUMBER: _ClassVar[int]
    REQUEST_FIELD_NUMBER: _ClassVar[int]
    RESULT_STATUS_FIELD_NUMBER: _ClassVar[int]
    RESULT_TYPE_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    HAS_RESULT_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_ATTEMPT_MS_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    LAST_ERROR_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    tenant: str
    client: str
    operation: str
    transaction_id: str
    request_sha256: str
    status: str
    priority: int
    callback: str
    request: bytes
    result_status: int
    result_type: str
    result: bytes
    has_result: bool
    attempts: int
    next_attempt_ms: int
    created_at_ms: int
    updated_at_ms: int
    last_error: str
    def __init__(self, task_id: _Optional[str] = ..., tenant: _Optional[str] = ..., client: _Optional[str] = ..., operation: _Optional[str] = ..., transaction_id: _Optional[str] = ..., request_sha256: _Optional[str] = ..., status: _Optional[str] = ..., priority: _Optional[int] = ..., callback: _Optional[str] = ..., request: _Optional[bytes] = ..., result_status: _Optional[int] = ..., result_type: _Optional[str] = ..., result: _Optional[bytes] = ..., has_result: _Optional[bool] = ..., attempts: _Optional[int] = ..., next_attempt_ms: _Optional[int] = ..., created_at_ms: _Optional[int] = ..., updated_at_ms: _Optional[int] = ..., last_error: _Optional[str] = ...) -> None: ...

class CreateTaskRequest(_message.Message):
    __slots__ = ("task",)
    TASK_FIELD_NUMBER: _ClassVar[int]
    task: Task
    def __init__(self, task: _Optional[_Union[Task, _Mapping]] = ...) -> None: ...

class CreateTaskResponse(_message.Message):
    __slots__ = ("task", "existed")
    TASK_FIELD_NUMBER: _ClassVar[int]
    EXISTED_FIELD_NUMBER: _ClassVar[int]
    task: Task
    existed: bool
    def __init__(self, task: _Optional[_Union[Task, _Mapping]] = ..., existed: _Optional[bool] = ...) -> None: ...

class ClaimTasksRequest(_message.Message):
    __slots__ = ("owner", "limit", "lease_ms")
    OWNER_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    LEASE_MS_FIELD_NUMBER: _ClassVar[int]
    owner: str
    limit: int
    lease_ms: int
    def __init__(self, owner: _Optional[str] = ..., limit: _Optional[int] = ..., lease_ms: _Optional[int] = ...) -> None: ...

class ClaimTasksResponse(_message.Message):
    __slots__ = ("tasks",)
    TASKS_FIELD_NUMBER: _ClassVar[int]
    tasks: _containers.RepeatedCompositeFieldContainer[Task]
    def __init__(self, tasks: _Optional[_Iterable[_Union[Task, _Mapping]]] = ...) -> None: ...

class UpdateTaskRequest(_message.Message):
    __slots__ = ("task_id", "owner", "status", "set_result", "result_status", "result_type", "result", "attempts", "next_attempt_ms", "last_error", "release")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    SET_RESULT_FIELD_NUMBER: _ClassVar[int]
    RESULT_STATUS_FIELD_NUMBER: _ClassVar[int]
    RESULT_TYPE_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_ATTEMPT_MS_FIELD_NUMBER: _ClassVar[int]
    LAST_ERROR_FIELD_NUMBER: _ClassVar[int]
    RELEASE_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    owner: str
    status: str
    set_result: bool
    result_status: int
    result_type: str
    result: bytes
    attempts: int
    next_attempt_ms: int
    last_error: str
    release: bool
    def __init__(self, task_id: _Optional[str] = ..., owner: _Optional[str] = ..., status: _Optional[str] = ..., set_result: _Optional[bool] = ..., result_status: _Optional[int] = ..., result_type: _Optional[str] = ..., result: _Optional[bytes] = ..., attempts: _Optional[int] = ..., next_attempt_ms: _Optional[int] = ..., last_error: _Optional[str] = ..., release: _Optional[bool] = ...) -> None: ...

class GetTaskRequest(_message.Message):
    __slots__ = ("task_id", "tenant")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    tenant: str
    def __init__(self, task_id: _Optional[str] = ..., tenant: _Optional[str] = ...) -> None: ...

class RedeliverTaskRequest(_message.Message):
    __slots__ = ("task_id", "tenant")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    tenant: str
    def __init__(self, task_id: _Optional[str] = ..., tenant: _Optional[str] = ...) -> None: ...
