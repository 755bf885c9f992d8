from tanu.v1 import cases_pb2 as _cases_pb2
from tanu.v1 import common_pb2 as _common_pb2
from tanu.v1 import encounters_pb2 as _encounters_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Idempotency(_message.Message):
    __slots__ = ("tenant", "key", "operation", "request_sha256", "client")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    OPERATION_FIELD_NUMBER: _ClassVar[int]
    REQUEST_SHA256_FIELD_NUMBER: _ClassVar[int]
    CLIENT_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    key: str
    operation: str
    request_sha256: str
    client: str
    def __init__(self, tenant: _Optional[str] = ..., key: _Optional[str] = ..., operation: _Optional[str] = ..., request_sha256: _Optional[str] = ..., client: _Optional[str] = ...) -> None: ...

class DedupCheck(_message.Message):
    __slots__ = ("candidates", "threshold", "certain_threshold", "allow_duplicate", "tenant", "client", "purpose", "searched_sequences")
    class SearchedSequencesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: int
        value: int
        def __init__(self, key: _Optional[int] = ..., value: _Optional[int] = ...) -> None: ...
    CANDIDATES_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    CERTAIN_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    ALLOW_DUPLICATE_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    CLIENT_FIELD_NUMBER: _ClassVar[int]
    PURPOSE_FIELD_NUMBER: _ClassVar[int]
    SEARCHED_SEQUENCES_FIELD_NUMBER: _ClassVar[int]
    candidates: _containers.RepeatedCompositeFieldContainer[_common_pb2.Candidate]
    threshold: float
    certain_threshold: float
    allow_duplicate: bool
    tenant: str
    client: str
    purpose: str
    searched_sequences: _containers.ScalarMap[int, int]
    def __init__(self, candidates: _Optional[_Iterable[_Union[_common_pb2.Candidate, _Mapping]]] = ..., threshold: _Optional[float] = ..., certain_threshold: _Optional[float] = ..., allow_duplicate: _Optional[bool] = ..., tenant: _Optional[str] = ..., client: _Optional[str] = ..., purpose: _Optional[str] = ..., searched_sequences: _Optional[_Mapping[int, int]] = ...) -> None: ...

class EnrolOutcome(_message.Message):
    __slots__ = ("outcome", "subject", "match", "case_id", "match_status", "match_tenants")
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    MATCH_FIELD_NUMBER: _ClassVar[int]
    CASE_ID_FIELD_NUMBER: _ClassVar[int]
    MATCH_STATUS_FIELD_NUMBER: _ClassVar[int]
    MATCH_TENANTS_FIELD_NUMBER: _ClassVar[int]
    outcome: str
    subject: _common_pb2.Subject
    match: _common_pb2.Candidate
    case_id: str
    match_status: SubjectStatus
    match_tenants: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, outcome: _Optional[str] = ..., subject: _Optional[_Union[_common_pb2.Subject, _Mapping]] = ..., match: _Optional[_Union[_common_pb2.Candidate, _Mapping]] = ..., case_id: _Optional[str] = ..., match_status: _Optional[_Union[SubjectStatus, _Mapping]] = ..., match_tenants: _Optional[_Iterable[str]] = ...) -> None: ...

class SubjectStatus(_message.Message):
    __slots__ = ("subject_id", "enrolled", "date_of_birth", "purposes", "biometric_locked", "verification_locked", "failed_verifications", "retry_after_ms", "guardians", "owner")
    SUBJECT_ID_FIELD_NUMBER: _ClassVar[int]
    ENROLLED_FIELD_NUMBER: _ClassVar[int]
    DATE_OF_BIRTH_FIELD_NUMBER: _ClassVar[int]
    PURPOSES_FIELD_NUMBER: _ClassVar[int]
    BIOMETRIC_LOCKED_FIELD_NUMBER: _ClassVar[int]
    VERIFICATION_LOCKED_FIELD_NUMBER: _ClassVar[int]
    FAILED_VERIFICATIONS_FIELD_NUMBER: _ClassVar[int]
    RETRY_AFTER_MS_FIELD_NUMBER: _ClassVar[int]
    GUARDIANS_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    subject_id: str
    enrolled: bool
    date_of_birth: str
    purposes: _containers.RepeatedScalarFieldContainer[str]
    biometric_locked: bool
    verification_locked: bool
    failed_verifications: int
    retry_after_ms: int
    guardians: _containers.RepeatedScalarFieldContainer[str]
    owner: str
    def __init__(self, subject_id: _Optional[str] = ..., enrolled: _Optional[bool] = ..., date_of_birth: _Optional[str] = ..., purposes: _Optional[_Iterable[str]] = ..., biometric_locked: _Optional[bool] = ..., verification_locked: _Optional[bool] = ..., failed_verifications: _Optional[int] = ..., retry_after_ms: _Optional[int] = ..., guardians: _Optional[_Iterable[str]] = ..., owner: _Optional[str] = ...) -> None: ...

class StatusRequest(_message.Message):
    __slots__ = ("subject_ids",)
    SUBJECT_IDS_FIELD_NUMBER: _ClassVar[int]
    subject_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, subject_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class StatusResponse(_message.Message):
    __slots__ = ("statuses",)
    STATUSES_FIELD_NUMBER: _ClassVar[int]
    statuses: _containers.RepeatedCompositeFieldContainer[SubjectStatus]
    def __init__(self, statuses: _Optional[_Iterable[_Union[SubjectStatus, _Mapping]]] = ...) -> None: ...

class VerificationOutcome(_message.Message):
    __slots__ = ("subject_id", "matched")
    SUBJECT_ID_FIELD_NUMBER: _ClassVar[int]
    MATCHED_FIELD_NUMBER: _ClassVar[int]
    subject_id: str
    matched: bool
    def __init__(self, subject_id: _Optional[str] = ..., matched: _Optional[bool] = ...) -> None: ...

class AdmitAttemptRequest(_message.Message):
    __slots__ = ("subject_id", "unlocking")
    SUBJECT_ID_FIELD_NUMBER: _ClassVar[int]
    UNLOCKING_FIELD_NUMBER: _ClassVar[int]
    subject_id: str
    unlocking: bool
    def __init__(self, subject_id: _Optional[str] = ..., unlocking: _Optional[bool] = ...) -> None: ...

class AdmitAttemptResponse(_message.Message):
    __slots__ = ("status", "admitted", "refusal")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    ADMITTED_FIELD_NUMBER: _ClassVar[int]
    REFUSAL_FIELD_NUMBER: _ClassVar[int]
    status: SubjectStatus
    admitted: bool
    refusal: str
    def __init__(self, status: _Optional[_Union[SubjectStatus, _Mapping]] = ..., admitted: _Optional[bool] = ..., refusal: _Optional[str] = ...) -> None: ...

class ConsentRecordRequest(_message.Message):
    __slots__ = ("subject_id", "consent", "idempotency")
    SUBJECT_ID_FIELD_NUMBER: _ClassVar[int]
    CONSENT_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_FIELD_NUMBER: _ClassVar[int]
    subject_id: str
    consent: _common_pb2.Consent
    idempotency: Idempotency
    def __init__(self, subject_id: _Optional[str] = ..., consent: _Optional[_Union[_common_pb2.Consent, _Mapping]] = ..., idempotency: _Optional[_Union[Idempotency, _Mapping]] = ...) -> None: ...

class LockRequest(_message.Message):
    __slots__ = ("subject_id", "locked", "idempotency")
    SUBJECT_ID_FIELD_NUMBER: _ClassVar[int]
    LOCKED_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_FIELD_NUMBER: _ClassVar[int]
    subject_id: str
    locked: bool
    idempotency: Idempotency
    def __init__(self, subject_id: _Optional[str] = ..., locked: _Optional[bool] = ..., idempotency: _Optional[_Union[Idempotency, _Mapping]] = ...) -> None: ...

class SealReceiptRequest(_message.Message):
    __slots__ = ("receipt_id", "replicas")
    RECEIPT_ID_FIELD_NUMBER: _ClassVar[int]
    REPLICAS_FIELD_NUMBER: _ClassVar[int]
    receipt_id: str
    replicas: _containers.RepeatedCompositeFieldContainer[ReplicaConfirmation]
    def __init__(self, receipt_id: _Optional[str] = ..., replicas: _Optional[_Iterable[_Union[ReplicaConfirmation, _Mapping]]] = ...) -> None: ...

class ReplicaConfirmation(_message.Message):
    __slots__ = ("replica", "partition", "partitions", "index_removed", "snapshot_purged", "applied_sequence")
    REPLICA_FIELD_NUMBER: _ClassVar[int]
    PARTITION_FIELD_NUMBER: _ClassVar[int]
    PARTITIONS_FIELD_NUMBER: _ClassVar[int]
    INDEX_REMOVED_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOT_PURGED_FIELD_NUMBER: _ClassVar[int]
    APPLIED_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    replica: str
    partition: int
    partitions: int
    index_removed: bool
    snapshot_purged: bool
    applied_sequence: int
    def __init__(self, replica: _Optional[str] = ..., partition: _Optional[int] = ..., partitions: _Optional[int] = ..., index_removed: _Optional[bool] = ..., snapshot_purged: _Optional[bool] = ..., applied_sequence: _Optional[int] = ...) -> None: ...

class GetReceiptRequest(_message.Message):
    __slots__ = ("receipt_id",)
    RECEIPT_ID_FIELD_NUMBER: _ClassVar[int]
    receipt_id: str
    def __init__(self, receipt_id: _Optional[str] = ...) -> None: ...

class RepublishRequest(_message.Message):
    __slots__ = ("template_ids", "remove_template_ids", "partition", "partitions")
    TEMPLATE_IDS_FIELD_NUMBER: _ClassVar[int]
    REMOVE_TEMPLATE_IDS_FIELD_NUMBER: _ClassVar[int]
    PARTITION_FIELD_NUMBER: _ClassVar[int]
    PARTITIONS_FIELD_NUMBER: _ClassVar[int]
    template_ids: _containers.RepeatedScalarFieldContainer[int]
    remove_template_ids: _containers.RepeatedScalarFieldContainer[int]
    partition: int
    partitions: int
    def __init__(self, template_ids: _Optional[_Iterable[int]] = ..., remove_template_ids: _Optional[_Iterable[int]] = ..., partition: _Optional[int] = ..., partitions: _Optional[int] = ...) -> None: ...

class RepublishResponse(_message.Message):
    __slots__ = ("subjects", "templates", "removed", "refused", "outbox_last_seq", "outbox_oldest_seq")
    SUBJECTS_FIELD_NUMBER: _ClassVar[int]
    TEMPLATES_FIELD_NUMBER: _ClassVar[int]
    REMOVED_FIELD_NUMBER: _ClassVar[int]
    REFUSED_FIELD_NUMBER: _ClassVar[int]
    OUTBOX_LAST_SEQ_FIELD_NUMBER: _ClassVar[int]
    OUTBOX_OLDEST_SEQ_FIELD_NUMBER: _ClassVar[int]
    subjects: int
    templates: int
    removed: int
    refused: int
    outbox_last_seq: int
    outbox_oldest_seq: int
    def __init__(self, subjects: _Optional[int] = ..., templates: _Optional[int] = ..., removed: _Optional[int] = ..., refused: _Optional[int] = ..., outbox_last_seq: _Optional[int] = ..., outbox_oldest_seq: _Optional[int] = ...) -> None: ...

class ListDeadLettersRequest(_message.Message):
    __slots__ = ("limit",)
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    limit: int
    def __init__(self, limit: _Optional[int] = ...) -> None: ...

class DeadLetter(_message.Message):
    __slots__ = ("seq", "event_id", "subject", "kind", "reason", "created_at_ms", "dead_at_ms")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    DEAD_AT_MS_FIELD_NUMBER: _ClassVar[int]
    seq: int
    event_id: str
    subject: str
    kind: TemplateEvent.Kind
    reason: str
    created_at_ms: int
    dead_at_ms: int
    def __init__(self, seq: _Optional[int] = ..., event_id: _Optional[str] = ..., subject: _Optional[str] = ..., kind: _Optional[_Union[TemplateEvent.Kind, str]] = ..., reason: _Optional[str] = ..., created_at_ms: _Optional[int] = ..., dead_at_ms: _Optional[int] = ...) -> None: ...

class ListDeadLettersResponse(_message.Message):
    __slots__ = ("letters", "total")
    LETTERS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    letters: _containers.RepeatedCompositeFieldContainer[DeadLetter]
    total: int
    def __init__(self, letters: _Optional[_Iterable[_Union[DeadLetter, _Mapping]]] = ..., total: _Optional[int] = ...) -> None: ...

class RequeueDeadLettersRequest(_message.Message):
    __slots__ = ("seqs", "all")
    SEQS_FIELD_NUMBER: _ClassVar[int]
    ALL_FIELD_NUMBER: _ClassVar[int]
    seqs: _containers.RepeatedScalarFieldContainer[int]
    all: bool
    def __init__(self, seqs: _Optional[_Iterable[int]] = ..., all: _Optional[bool] = ...) -> None: ...

class RequeueDeadLettersResponse(_message.Message):
    __slots__ = ("requeued", "subjects", "templates", "removals", "dropped")
    REQUEUED_FIELD_NUMBER: _ClassVar[int]
    SUBJECTS_FIELD_NUMBER: _ClassVar[int]
    TEMPLATES_FIELD_NUMBER: _ClassVar[int]
    REMOVALS_FIELD_NUMBER: _ClassVar[int]
    DROPPED_FIELD_NUMBER: _ClassVar[int]
    requeued: int
    subjects: int
    templates: int
    removals: int
    dropped: int
    def __init__(self, requeued: _Optional[int] = ..., subjects: _Optional[int] = ..., templates: _Optional[int] = ..., removals: _Optional[int] = ..., dropped: _Optional[int] = ...) -> None: ...

class AuditRecord(_message.Message):
    __slots__ = ("at_ms", "tenant", "client", "operation", "purpose", "subject_id", "result", "detail_json")
    AT_MS_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    CLIENT_FIELD_NUMBER: _ClassVar[int]
    OPERATION_FIELD_NUMBER: _ClassVar[int]
    PURPOSE_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_ID_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    DETAIL_JSON_FIELD_NUMBER: _ClassVar[int]
    at_ms: int
    tenant: str
    client: str
    operation: str
    purpose: str
    subject_id: str
    result: str
    detail_json: str
    def __init__(self, at_ms: _Optional[int] = ..., tenant: _Optional[str] = ..., client: _Optional[str] = ..., operation: _Optional[str] = ..., purpose: _Optional[str] = ..., subject_id: _Optional[str] = ..., result: _Optional[str] = ..., detail_json: _Optional[str] = ...) -> None: ...

class AppendAuditRequest(_message.Message):
    __slots__ = ("records",)
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    records: _containers.RepeatedCompositeFieldContainer[AuditRecord]
    def __init__(self, records: _Optional[_Iterable[_Union[AuditRecord, _Mapping]]] = ...) -> None: ...

class AppendAuditResponse(_message.Message):
    __slots__ = ("last_seq",)
    LAST_SEQ_FIELD_NUMBER: _ClassVar[int]
    last_seq: int
    def __init__(self, last_seq: _Optional[int] = ...) -> None: ...

class ScreenedUse(_message.Message):
    __slots__ = ("subject_id", "result")
    SUBJECT_ID_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    subject_id: str
    result: str
    def __init__(self, subject_id: _Optional[str] = ..., result: _Optional[str] = ...) -> None: ...

class ScreenedAudit(_message.Message):
    __slots__ = ("record", "purpose", "uses", "use_detail_json", "further")
    RECORD_FIELD_NUMBER: _ClassVar[int]
    PURPOSE_FIELD_NUMBER: _ClassVar[int]
    USES_FIELD_NUMBER: _ClassVar[int]
    USE_DETAIL_JSON_FIELD_NUMBER: _ClassVar[int]
    FURTHER_FIELD_NUMBER: _ClassVar[int]
    record: AuditRecord
    purpose: str
    uses: _containers.RepeatedCompositeFieldContainer[ScreenedUse]
    use_detail_json: str
    further: _containers.RepeatedCompositeFieldContainer[ScreenedUse]
    def __init__(self, record: _Optional[_Union[AuditRecord, _Mapping]] = ..., purpose: _Optional[str] = ..., uses: _Optional[_Iterable[_Union[ScreenedUse, _Mapping]]] = ..., use_detail_json: _Optional[str] = ..., further: _Optional[_Iterable[_Union[ScreenedUse, _Mapping]]] = ...) -> None: ...

class ScreenAuditRequest(_message.Message):
    __slots__ = ("audits",)
    AUDITS_FIELD_NUMBER: _ClassVar[int]
    audits: _containers.RepeatedCompositeFieldContainer[ScreenedAudit]
    def __init__(self, audits: _Optional[_Iterable[_Union[ScreenedAudit, _Mapping]]] = ...) -> None: ...

class ScreenedAuditResult(_message.Message):
    __slots__ = ("usable", "last_seq")
    USABLE_FIELD_NUMBER: _ClassVar[int]
    LAST_SEQ_FIELD_NUMBER: _ClassVar[int]
    usable: _containers.RepeatedScalarFieldContainer[bool]
    last_seq: int
    def __init__(self, usable: _Optional[_Iterable[bool]] = ..., last_seq: _Optional[int] = ...) -> None: ...

class ScreenAuditResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[ScreenedAuditResult]
    def __init__(self, results: _Optional[_Iterable[_Union[ScreenedAuditResult, _Mapping]]] = ...) -> None: ...

class RewrapKeysRequest(_message.Message):
    __slots__ = ("batch",)
    BATCH_FIELD_NUMBER: _ClassVar[int]
    batch: int
    def __init__(self, batch: _Optional[int] = ...) -> None: ...

class RewrapKeysResponse(_message.Message):
    __slots__ = ("rewrapped", "active_key_id", "key_ids_in_use")
    REWRAPPED_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_KEY_ID_FIELD_NUMBER: _ClassVar[int]
    KEY_IDS_IN_USE_FIELD_NUMBER: _ClassVar[int]
    rewrapped: int
    active_key_id: str
    key_ids_in_use: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, rewrapped: _Optional[int] = ..., active_key_id: _Optional[str] = ..., key_ids_in_use: _Optional[_Iterable[str]] = ...) -> None: ...

class PutSubjectRequest(_message.Message):
    __slots__ = ("subject_id", "templates", "date_of_birth", "consent", "dedup", "idempotency", "encounter")
    SUBJECT_ID_FIELD_NUMBER: _ClassVar[int]
    TEMPLATES_FIELD_NUMBER: _ClassVar[int]
    DATE_OF_BIRTH_FIELD_NUMBER: _ClassVar[int]
    CONSENT_FIELD_NUMBER: _ClassVar[int]
    DEDUP_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_FIELD_NUMBER: _ClassVar[int]
    ENCOUNTER_FIELD_NUMBER: _ClassVar[int]
    subject_id: str
    templates: _containers.RepeatedCompositeFieldContainer[_common_pb2.Template]
    date_of_birth: str
    consent: _common_pb2.Consent
    dedup: DedupCheck
    idempotency: Idempotency
    encounter: _encounters_pb2.EncounterFields
    def __init__(self, subject_id: _Optional[str] = ..., templates: _Optional[_Iterable[_Union[_common_pb2.Template, _Mapping]]] = ..., date_of_birth: _Optional[str] = ..., consent: _Optional[_Union[_common_pb2.Consent, _Mapping]] = ..., dedup: _Optional[_Union[DedupCheck, _Mapping]] = ..., idempotency: _Optional[_Union[Idempotency, _Mapping]] = ..., encounter: _Optional[_Union[_encounters_pb2.EncounterFields, _Mapping]] = ...) -> None: ...

class PutSubjectsRequest(_message.Message):
    __slots__ = ("subjects", "idempotency")
    SUBJECTS_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_FIELD_NUMBER: _ClassVar[int]
    subjects: _containers.RepeatedCompositeFieldContainer[PutSubjectRequest]
    idempotency: Idempotency
    def __init__(self, subjects: _Optional[_Iterable[_Union[PutSubjectRequest, _Mapping]]] = ..., idempotency: _Optional[_Union[Idempotency, _Mapping]] = ...) -> None: ...

class PutSubjectsResponse(_message.Message):
    __slots__ = ("refusals", "stored")
    REFUSALS_FIELD_NUMBER: _ClassVar[int]
    STORED_FIELD_NUMBER: _ClassVar[int]
    refusals: _containers.RepeatedScalarFieldContainer[str]
    stored: int
    def __init__(self, refusals: _Optional[_Iterable[str]] = ..., stored: _Optional[int] = ...) -> None: ...

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
    __slots__ = ("template_id", "template", "encounter_id", "inactive")
    TEMPLATE_ID_FIELD_NUMBER: _ClassVar[int]
    TEMPLATE_FIELD_NUMBER: _ClassVar[int]
    ENCOUNTER_ID_FIELD_NUMBER: _ClassVar[int]
    INACTIVE_FIELD_NUMBER: _ClassVar[int]
    template_id: int
    template: _common_pb2.Template
    encounter_id: str
    inactive: bool
    def __init__(self, template_id: _Optional[int] = ..., template: _Optional[_Union[_common_pb2.Template, _Mapping]] = ..., encounter_id: _Optional[str] = ..., inactive: _Optional[bool] = ...) -> None: ...

class GetTemplatesResponse(_message.Message):
    __slots__ = ("subject", "templates", "status")
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    TEMPLATES_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    subject: _common_pb2.Subject
    templates: _containers.RepeatedCompositeFieldContainer[StoredTemplate]
    status: SubjectStatus
    def __init__(self, subject: _Optional[_Union[_common_pb2.Subject, _Mapping]] = ..., templates: _Optional[_Iterable[_Union[StoredTemplate, _Mapping]]] = ..., status: _Optional[_Union[SubjectStatus, _Mapping]] = ...) -> None: ...

class DeleteSubjectRequest(_message.Message):
    __slots__ = ("subject_id", "reason", "tenant", "client", "idempotency")
    SUBJECT_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    CLIENT_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_FIELD_NUMBER: _ClassVar[int]
    subject_id: str
    reason: str
    tenant: str
    client: str
    idempotency: Idempotency
    def __init__(self, subject_id: _Optional[str] = ..., reason: _Optional[str] = ..., tenant: _Optional[str] = ..., client: _Optional[str] = ..., idempotency: _Optional[_Union[Idempotency, _Mapping]] = ...) -> None: ...

class DeleteSubjectResponse(_message.Message):
    __slots__ = ("subject", "template_ids", "deleted_at_ms", "data_key_id", "master_key_id", "stream_messages", "consents_removed", "removal_event_id", "audit_seq", "receipt_id", "partitions")
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    TEMPLATE_IDS_FIELD_NUMBER: _ClassVar[int]
    DELETED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    DATA_KEY_ID_FIELD_NUMBER: _ClassVar[int]
    MASTER_KEY_ID_FIELD_NUMBER: _ClassVar[int]
    STREAM_MESSAGES_FIELD_NUMBER: _ClassVar[int]
    CONSENTS_REMOVED_FIELD_NUMBER: _ClassVar[int]
    REMOVAL_EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    AUDIT_SEQ_FIELD_NUMBER: _ClassVar[int]
    RECEIPT_ID_FIELD_NUMBER: _ClassVar[int]
    PARTITIONS_FIELD_NUMBER: _ClassVar[int]
    subject: _common_pb2.Subject
    template_ids: _containers.RepeatedScalarFieldContainer[int]
    deleted_at_ms: int
    data_key_id: str
    master_key_id: str
    stream_messages: int
    consents_removed: int
    removal_event_id: str
    audit_seq: int
    receipt_id: str
    partitions: int
    def __init__(self, subject: _Optional[_Union[_common_pb2.Subject, _Mapping]] = ..., template_ids: _Optional[_Iterable[int]] = ..., deleted_at_ms: _Optional[int] = ..., data_key_id: _Optional[str] = ..., master_key_id: _Optional[str] = ..., stream_messages: _Optional[int] = ..., consents_removed: _Optional[int] = ..., removal_event_id: _Optional[str] = ..., audit_seq: _Optional[int] = ..., receipt_id: _Optional[str] = ..., partitions: _Optional[int] = ...) -> None: ...

class TemplateEvent(_message.Message):
    __slots__ = ("event_id", "kind", "subject_id", "partition", "template_ids", "vectors", "dimension", "model_id", "occurred_at_ms", "galleries", "inactive")
    class Kind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        KIND_UNSPECIFIED: _ClassVar[TemplateEvent.Kind]
        KIND_ADDED: _ClassVar[TemplateEvent.Kind]
        KIND_REMOVED: _ClassVar[TemplateEvent.Kind]
        KIND_MEMBERSHIP: _ClassVar[TemplateEvent.Kind]
    KIND_UNSPECIFIED: TemplateEvent.Kind
    KIND_ADDED: TemplateEvent.Kind
    KIND_REMOVED: TemplateEvent.Kind
    KIND_MEMBERSHIP: TemplateEvent.Kind
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_ID_FIELD_NUMBER: _ClassVar[int]
    PARTITION_FIELD_NUMBER: _ClassVar[int]
    TEMPLATE_IDS_FIELD_NUMBER: _ClassVar[int]
    VECTORS_FIELD_NUMBER: _ClassVar[int]
    DIMENSION_FIELD_NUMBER: _ClassVar[int]
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    OCCURRED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    GALLERIES_FIELD_NUMBER: _ClassVar[int]
    INACTIVE_FIELD_NUMBER: _ClassVar[int]
    event_id: str
    kind: TemplateEvent.Kind
    subject_id: str
    partition: int
    template_ids: _containers.RepeatedScalarFieldContainer[int]
    vectors: bytes
    dimension: int
    model_id: str
    occurred_at_ms: int
    galleries: _containers.RepeatedScalarFieldContainer[str]
    inactive: bool
    def __init__(self, event_id: _Optional[str] = ..., kind: _Optional[_Union[TemplateEvent.Kind, str]] = ..., subject_id: _Optional[str] = ..., partition: _Optional[int] = ..., template_ids: _Optional[_Iterable[int]] = ..., vectors: _Optional[bytes] = ..., dimension: _Optional[int] = ..., model_id: _Optional[str] = ..., occurred_at_ms: _Optional[int] = ..., galleries: _Optional[_Iterable[str]] = ..., inactive: _Optional[bool] = ...) -> None: ...

class ListTemplatesRequest(_message.Message):
    __slots__ = ("after_subject_id", "limit")
    AFTER_SUBJECT_ID_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    after_subject_id: str
    limit: int
    def __init__(self, after_subject_id: _Optional[str] = ..., limit: _Optional[int] = ...) -> None: ...

class SubjectTemplateIds(_message.Message):
    __slots__ = ("subject_id", "template_ids")
    SUBJECT_ID_FIELD_NUMBER: _ClassVar[int]
    TEMPLATE_IDS_FIELD_NUMBER: _ClassVar[int]
    subject_id: str
    template_ids: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, subject_id: _Optional[str] = ..., template_ids: _Optional[_Iterable[int]] = ...) -> None: ...

class ListTemplatesResponse(_message.Message):
    __slots__ = ("subjects", "next_after_subject_id")
    SUBJECTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_AFTER_SUBJECT_ID_FIELD_NUMBER: _ClassVar[int]
    subjects: _containers.RepeatedCompositeFieldContainer[SubjectTemplateIds]
    next_after_subject_id: str
    def __init__(self, subjects: _Optional[_Iterable[_Union[SubjectTemplateIds, _Mapping]]] = ..., next_after_subject_id: _Optional[str] = ...) -> None: ...

class MigrateLayoutRequest(_message.Message):
    __slots__ = ("partitions",)
    PARTITIONS_FIELD_NUMBER: _ClassVar[int]
    partitions: int
    def __init__(self, partitions: _Optional[int] = ...) -> None: ...

class MigrateLayoutResponse(_message.Message):
    __slots__ = ("subjects_moved",)
    SUBJECTS_MOVED_FIELD_NUMBER: _ClassVar[int]
    subjects_moved: int
    def __init__(self, subjects_moved: _Optional[int] = ...) -> None: ...

class AddEncounterRecord(_message.Message):
    __slots__ = ("subject_id", "template", "encounter", "dedup", "idempotency")
    SUBJECT_ID_FIELD_NUMBER: _ClassVar[int]
    TEMPLATE_FIELD_NUMBER: _ClassVar[int]
    ENCOUNTER_FIELD_NUMBER: _ClassVar[int]
    DEDUP_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_FIELD_NUMBER: _ClassVar[int]
    subject_id: str
    template: _common_pb2.Template
    encounter: _encounters_pb2.EncounterFields
    dedup: DedupCheck
    idempotency: Idempotency
    def __init__(self, subject_id: _Optional[str] = ..., template: _Optional[_Union[_common_pb2.Template, _Mapping]] = ..., encounter: _Optional[_Union[_encounters_pb2.EncounterFields, _Mapping]] = ..., dedup: _Optional[_Union[DedupCheck, _Mapping]] = ..., idempotency: _Optional[_Union[Idempotency, _Mapping]] = ...) -> None: ...

class AddEncounterOutcome(_message.Message):
    __slots__ = ("outcome", "encounter", "match", "match_status", "match_tenants")
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    ENCOUNTER_FIELD_NUMBER: _ClassVar[int]
    MATCH_FIELD_NUMBER: _ClassVar[int]
    MATCH_STATUS_FIELD_NUMBER: _ClassVar[int]
    MATCH_TENANTS_FIELD_NUMBER: _ClassVar[int]
    outcome: str
    encounter: _encounters_pb2.Encounter
    match: _common_pb2.Candidate
    match_status: SubjectStatus
    match_tenants: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, outcome: _Optional[str] = ..., encounter: _Optional[_Union[_encounters_pb2.Encounter, _Mapping]] = ..., match: _Optional[_Union[_common_pb2.Candidate, _Mapping]] = ..., match_status: _Optional[_Union[SubjectStatus, _Mapping]] = ..., match_tenants: _Optional[_Iterable[str]] = ...) -> None: ...

class EncounterChange(_message.Message):
    __slots__ = ("subject_id", "encounter_id", "template", "encounter", "update_fields", "tenant", "client", "operation", "idempotency")
    SUBJECT_ID_FIELD_NUMBER: _ClassVar[int]
    ENCOUNTER_ID_FIELD_NUMBER: _ClassVar[int]
    TEMPLATE_FIELD_NUMBER: _ClassVar[int]
    ENCOUNTER_FIELD_NUMBER: _ClassVar[int]
    UPDATE_FIELDS_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    CLIENT_FIELD_NUMBER: _ClassVar[int]
    OPERATION_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_FIELD_NUMBER: _ClassVar[int]
    subject_id: str
    encounter_id: str
    template: _common_pb2.Template
    encounter: _encounters_pb2.EncounterFields
    update_fields: _containers.RepeatedScalarFieldContainer[str]
    tenant: str
    client: str
    operation: str
    idempotency: Idempotency
    def __init__(self, subject_id: _Optional[str] = ..., encounter_id: _Optional[str] = ..., template: _Optional[_Union[_common_pb2.Template, _Mapping]] = ..., encounter: _Optional[_Union[_encounters_pb2.EncounterFields, _Mapping]] = ..., update_fields: _Optional[_Iterable[str]] = ..., tenant: _Optional[str] = ..., client: _Optional[str] = ..., operation: _Optional[str] = ..., idempotency: _Optional[_Union[Idempotency, _Mapping]] = ...) -> None: ...

class EncounterErasureRequest(_message.Message):
    __slots__ = ("subject_id", "encounter_id", "reason", "tenant", "client", "idempotency")
    SUBJECT_ID_FIELD_NUMBER: _ClassVar[int]
    ENCOUNTER_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    CLIENT_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_FIELD_NUMBER: _ClassVar[int]
    subject_id: str
    encounter_id: str
    reason: str
    tenant: str
    client: str
    idempotency: Idempotency
    def __init__(self, subject_id: _Optional[str] = ..., encounter_id: _Optional[str] = ..., reason: _Optional[str] = ..., tenant: _Optional[str] = ..., client: _Optional[str] = ..., idempotency: _Optional[_Union[Idempotency, _Mapping]] = ...) -> None: ...

class EncounterErasure(_message.Message):
    __slots__ = ("encounter", "template_ids", "deleted_at_ms", "receipt_id", "partition", "partitions", "stream_messages")
    ENCOUNTER_FIELD_NUMBER: _ClassVar[int]
    TEMPLATE_IDS_FIELD_NUMBER: _ClassVar[int]
    DELETED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    RECEIPT_ID_FIELD_NUMBER: _ClassVar[int]
    PARTITION_FIELD_NUMBER: _ClassVar[int]
    PARTITIONS_FIELD_NUMBER: _ClassVar[int]
    STREAM_MESSAGES_FIELD_NUMBER: _ClassVar[int]
    encounter: _encounters_pb2.Encounter
    template_ids: _containers.RepeatedScalarFieldContainer[int]
    deleted_at_ms: int
    receipt_id: str
    partition: int
    partitions: int
    stream_messages: int
    def __init__(self, encounter: _Optional[_Union[_encounters_pb2.Encounter, _Mapping]] = ..., template_ids: _Optional[_Iterable[int]] = ..., deleted_at_ms: _Optional[int] = ..., receipt_id: _Optional[str] = ..., partition: _Optional[int] = ..., partitions: _Optional[int] = ..., stream_messages: _Optional[int] = ...) -> None: ...

class MoveEncountersRequest(_message.Message):
    __slots__ = ("subject_id", "source_subject_id", "encounter_id", "reason", "tenant", "client", "idempotency", "operation")
    SUBJECT_ID_FIELD_NUMBER: _ClassVar[int]
    SOURCE_SUBJECT_ID_FIELD_NUMBER: _ClassVar[int]
    ENCOUNTER_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    CLIENT_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_FIELD_NUMBER: _ClassVar[int]
    OPERATION_FIELD_NUMBER: _ClassVar[int]
    subject_id: str
    source_subject_id: str
    encounter_id: str
    reason: str
    tenant: str
    client: str
    idempotency: Idempotency
    operation: str
    def __init__(self, subject_id: _Optional[str] = ..., source_subject_id: _Optional[str] = ..., encounter_id: _Optional[str] = ..., reason: _Optional[str] = ..., tenant: _Optional[str] = ..., client: _Optional[str] = ..., idempotency: _Optional[_Union[Idempotency, _Mapping]] = ..., operation: _Optional[str] = ...) -> None: ...

class MoveEncountersOutcome(_message.Message):
    __slots__ = ("subject", "moved", "removed_template_ids", "source_partition", "source_erased", "source_erasure", "case_id")
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    MOVED_FIELD_NUMBER: _ClassVar[int]
    REMOVED_TEMPLATE_IDS_FIELD_NUMBER: _ClassVar[int]
    SOURCE_PARTITION_FIELD_NUMBER: _ClassVar[int]
    SOURCE_ERASED_FIELD_NUMBER: _ClassVar[int]
    SOURCE_ERASURE_FIELD_NUMBER: _ClassVar[int]
    CASE_ID_FIELD_NUMBER: _ClassVar[int]
    subject: _common_pb2.Subject
    moved: _containers.RepeatedCompositeFieldContainer[_encounters_pb2.Encounter]
    removed_template_ids: _containers.RepeatedScalarFieldContainer[int]
    source_partition: int
    source_erased: bool
    source_erasure: DeleteSubjectResponse
    case_id: str
    def __init__(self, subject: _Optional[_Union[_common_pb2.Subject, _Mapping]] = ..., moved: _Optional[_Iterable[_Union[_encounters_pb2.Encounter, _Mapping]]] = ..., removed_template_ids: _Optional[_Iterable[int]] = ..., source_partition: _Optional[int] = ..., source_erased: _Optional[bool] = ..., source_erasure: _Optional[_Union[DeleteSubjectResponse, _Mapping]] = ..., case_id: _Optional[str] = ...) -> None: ...

class GalleryQuery(_message.Message):
    __slots__ = ("owner", "every_owner", "gallery", "page_size", "page_token")
    OWNER_FIELD_NUMBER: _ClassVar[int]
    EVERY_OWNER_FIELD_NUMBER: _ClassVar[int]
    GALLERY_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    owner: str
    every_owner: bool
    gallery: str
    page_size: int
    page_token: str
    def __init__(self, owner: _Optional[str] = ..., every_owner: _Optional[bool] = ..., gallery: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...
