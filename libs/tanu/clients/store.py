"""The store's operations, declared once, and its typed client over NATS
(``tanu.store.<op>``, queue group ``store``)."""

from __future__ import annotations

from tanu.core import natsnames
from tanu.v1 import cases_pb2, common_pb2, encounters_pb2, store_pb2, tasks_pb2

from .operations import BusClient, Operation


class StoreClient(BusClient):
    """Every store operation; each attribute is the typed call on an instance
    and the ``Operation`` on the class (which the store registers)."""

    put = Operation("put", store_pb2.PutSubjectRequest, common_pb2.Subject, "PutSubject")
    put_batch = Operation(
        "put.batch", store_pb2.PutSubjectsRequest, store_pb2.PutSubjectsResponse, "PutSubjects"
    )
    get = Operation("get", store_pb2.GetSubjectRecordRequest, common_pb2.Subject, "GetSubject")
    templates = Operation(
        "templates", store_pb2.GetTemplatesRequest, store_pb2.GetTemplatesResponse, "GetTemplates"
    )
    delete = Operation(
        "delete", store_pb2.DeleteSubjectRequest, store_pb2.DeleteSubjectResponse, "DeleteSubject"
    )
    seal_receipt = Operation(
        "receipt", store_pb2.SealReceiptRequest, common_pb2.ErasureReceipt, "SealReceipt"
    )
    get_receipt = Operation(
        "receipt.get", store_pb2.GetReceiptRequest, common_pb2.ErasureReceipt, "GetReceipt"
    )
    digest = Operation("digest", common_pb2.DigestRequest, common_pb2.DigestResponse, "Digest")
    republish = Operation(
        "republish", store_pb2.RepublishRequest, store_pb2.RepublishResponse, "Republish"
    )
    list_dead_letters = Operation(
        "deadletters.list", store_pb2.ListDeadLettersRequest, store_pb2.ListDeadLettersResponse,
        "ListDeadLetters",
    )  # fmt: skip
    requeue_dead_letters = Operation(
        "deadletters.requeue", store_pb2.RequeueDeadLettersRequest,
        store_pb2.RequeueDeadLettersResponse, "RequeueDeadLetters",
    )  # fmt: skip
    status = Operation("status", store_pb2.StatusRequest, store_pb2.StatusResponse, "Status")
    record_verification = Operation(
        "verification", store_pb2.VerificationOutcome, store_pb2.SubjectStatus, "RecordVerification"
    )
    admit_attempt = Operation(
        "verification.admit", store_pb2.AdmitAttemptRequest, store_pb2.AdmitAttemptResponse,
        "AdmitAttempt",
    )  # fmt: skip
    grant_consent = Operation(
        "consent.grant", store_pb2.ConsentRecordRequest, store_pb2.SubjectStatus, "GrantConsent"
    )
    revoke_consent = Operation(
        "consent.revoke", store_pb2.ConsentRecordRequest, store_pb2.SubjectStatus, "RevokeConsent"
    )
    set_lock = Operation("lock", store_pb2.LockRequest, store_pb2.SubjectStatus, "SetBiometricLock")
    report = Operation(
        "report", store_pb2.GetSubjectRecordRequest, common_pb2.SubjectReport, "Report"
    )
    history = Operation(
        "history", common_pb2.AccessHistoryRequest, common_pb2.AccessHistory, "GetAccessHistory"
    )
    append_audit = Operation(
        "audit", store_pb2.AppendAuditRequest, store_pb2.AppendAuditResponse, "AppendAudit"
    )
    screen_audit = Operation(
        "audit.screen", store_pb2.ScreenAuditRequest, store_pb2.ScreenAuditResponse,
        "ScreenAudit",
    )  # fmt: skip
    rewrap = Operation(
        "keys.rewrap", store_pb2.RewrapKeysRequest, store_pb2.RewrapKeysResponse, "RewrapKeys"
    )

    list_templates = Operation(
        "templates.list", store_pb2.ListTemplatesRequest, store_pb2.ListTemplatesResponse,
        "ListTemplates",
    )  # fmt: skip
    migrate_layout = Operation(
        "layout.migrate", store_pb2.MigrateLayoutRequest, store_pb2.MigrateLayoutResponse,
        "MigrateLayout",
    )  # fmt: skip

    enrol = Operation("enrol", store_pb2.PutSubjectRequest, store_pb2.EnrolOutcome, "EnrolSubject")
    list_cases = Operation(
        "cases.list", cases_pb2.ListCasesRequest, cases_pb2.ListCasesResponse, "ListCases"
    )
    get_case = Operation("cases.get", cases_pb2.GetCaseRequest, cases_pb2.Case, "GetCase")
    decide_case = Operation(
        "cases.decide", cases_pb2.DecideCaseRequest, cases_pb2.DecideCaseResponse, "DecideCase"
    )

    # The OSIA facade's asynchronous tasks (``tanu.store.tasks``).
    create_task = Operation(
        "tasks.create", tasks_pb2.CreateTaskRequest, tasks_pb2.CreateTaskResponse
    )
    claim_tasks = Operation(
        "tasks.claim", tasks_pb2.ClaimTasksRequest, tasks_pb2.ClaimTasksResponse
    )
    update_task = Operation("tasks.update", tasks_pb2.UpdateTaskRequest, tasks_pb2.Task)
    get_task = Operation("tasks.get", tasks_pb2.GetTaskRequest, tasks_pb2.Task)
    redeliver_task = Operation("tasks.redeliver", tasks_pb2.RedeliverTaskRequest, tasks_pb2.Task)
    # Encounters and galleries (tanu.store.encounters, tanu.store.galleries).
    add_encounter = Operation(
        "encounters.add", store_pb2.AddEncounterRecord, store_pb2.AddEncounterOutcome,
        "AddEncounter",
    )  # fmt: skip
    list_encounters = Operation(
        "encounters.list", encounters_pb2.ListEncountersRequest,
        encounters_pb2.ListEncountersResponse, "ListEncounters",
    )  # fmt: skip
    get_encounter = Operation(
        "encounters.get", encounters_pb2.GetEncounterRequest, encounters_pb2.Encounter,
        "GetEncounter",
    )  # fmt: skip
    update_encounter = Operation(
        "encounters.update", store_pb2.EncounterChange, encounters_pb2.Encounter,
        "UpdateEncounter",
    )  # fmt: skip
    delete_encounter = Operation(
        "encounters.delete", store_pb2.EncounterErasureRequest, store_pb2.EncounterErasure,
        "DeleteEncounter",
    )  # fmt: skip
    move_encounters = Operation(
        "encounters.move", store_pb2.MoveEncountersRequest, store_pb2.MoveEncountersOutcome,
        "MoveEncounters",
    )  # fmt: skip
    list_galleries = Operation(
        "galleries.list", store_pb2.GalleryQuery, encounters_pb2.ListGalleriesResponse,
        "ListGalleries",
    )  # fmt: skip
    gallery_content = Operation(
        "galleries.content", store_pb2.GalleryQuery, encounters_pb2.GetGalleryContentResponse,
        "GetGalleryContent",
    )  # fmt: skip

    def subject(self, op: Operation) -> str:
        return natsnames.store(op.name)

    def label(self, op: Operation) -> str:
        return f"store.{op.name}"
