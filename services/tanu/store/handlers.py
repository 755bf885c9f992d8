"""The store's operations: requests checked, then run on the database
thread (``tanu.store.db.Store``), with their metrics and log lines.

``StoreHandlers`` has a method for every operation ``StoreClient`` declares,
of the same name; the service registers them from that table
(``tanu.clients.operations``), so a declared operation without a handler
fails at start-up.
"""

from __future__ import annotations

import asyncio
import time

import numpy as np

from tanu.core import errors, ids, logs, vectors
from tanu.core.metrics import Metrics
from tanu.policy.subjects import is_minor, parse_dob
from tanu.v1 import cases_pb2, common_pb2, encounters_pb2, store_pb2, tasks_pb2

from .audit_log import GroupCommit
from .db import Store
from .encounters import encounters_of
from .relay import OutboxRelay

log = logs.get(__name__)

MAX_TEMPLATES_PER_SUBJECT = 32
_ENCOUNTER = encounters_pb2.Encounter
MAX_SUBJECTS_PER_BATCH = 2000
# Candidates screened in one request (the gateway splits a larger round).
MAX_SCREENED_USES = 16_384


class StoreHandlers:
    """One method per operation of ``tanu.clients.store.StoreClient``, named
    as its attribute there, shared by the NATS and gRPC front doors; and the
    audit checkpoint the service runs on a timer."""

    def __init__(
        self, db: Store, relay: OutboxRelay | None, signer, metrics: Metrics | None = None,
        max_queue: int = 0,
    ) -> None:  # fmt: skip
        self.db = db
        self.relay = relay
        self.signer = signer
        self.metrics = metrics or Metrics.create()
        self.max_queue = max_queue  # TANU_STORE_MAX_QUEUE (0: never refuse)
        self._refused, self._refused_logged = 0, 0.0  # refusals since the last log line
        self._audit = GroupCommit(db, self.metrics)  # concurrent appends, one commit
        self._screen = GroupCommit(db, self.metrics, name="screen_commit",
                                   commit=db.screen_audits)  # fmt: skip

    def _admit(self) -> None:
        """Back-pressure: a new write is refused at once, before anything is
        written, while the database thread has ``max_queue`` jobs waiting
        (more than it serves within the bus deadline); erasures, reads and
        the relay's own jobs are never refused."""
        if self.max_queue and self.db.queued >= self.max_queue:
            self._refused += 1
            now = time.monotonic()
            if now - self._refused_logged >= 1.0:  # one line a second, not one per refusal
                log.warning("store_overloaded", queued=self.db.queued, refused=self._refused)
                self._refused_logged, self._refused = now, 0
            raise errors.ResourceExhausted(
                f"the store is overloaded ({self.db.queued} database jobs waiting); "
                "nothing was written: retry later"
            )

    async def close(self) -> None:
        """Finishes the audit commit under way (appends after it are refused)."""
        await self._audit.close()
        await self._screen.close()

    def _vectors(self, templates) -> np.ndarray:
        if not templates:
            raise errors.InvalidArgument("at least one template is required")
        # One subject is one event on the stream: bounded, so no event can
        # exceed the stream's message limit and block the relay.
        if len(templates) > MAX_TEMPLATES_PER_SUBJECT:
            raise errors.InvalidArgument(
                f"{len(templates)} templates for one subject; the limit is {MAX_TEMPLATES_PER_SUBJECT}"
            )
        rows = [
            vectors.parse_template(t.vector, t.model_id, self.db.layout, field=f"templates[{i}]")
            for i, t in enumerate(templates)
        ]
        return np.concatenate(rows, axis=0)

    def _idem(self, req):
        """The request's idempotency key, or None (then the write is not keyed)."""
        return req.idempotency if req.HasField("idempotency") else None

    def _changed(self) -> None:
        if self.relay:
            self.relay.wake()

    async def _published(self) -> None:
        """Returns once what was just committed is on the stream (or after
        the relay's flush bound): an acknowledged enrolment is then visible
        to every later search that checks the stream (read-your-writes)."""
        if self.relay:
            await self.relay.flush()

    async def put(self, req: store_pb2.PutSubjectRequest) -> common_pb2.Subject:
        subject_id = ids.check_subject_id(req.subject_id)
        vecs = self._vectors(req.templates)
        if not req.HasField("consent"):
            raise errors.FailedPrecondition("enrolment needs a consent record; none was given")
        parse_dob(req.date_of_birth)
        self._admit()
        subject = await self.db.run(
            self.db.idempotent, self._idem(req), subject_id, common_pb2.Subject,
            self.db.put_subject, subject_id, vecs, req.date_of_birth, req.consent,
        )  # fmt: skip
        await self._published()
        log.info("subject_stored", partition=subject.partition, templates=subject.template_count)
        return subject

    async def put_batch(self, req: store_pb2.PutSubjectsRequest) -> store_pb2.PutSubjectsResponse:
        """Operator puts of many subjects, one transaction (``tanu gallery
        import``): every row checked as ``put`` checks one, a bad row refused
        by reason while the others are stored; keyed as a whole batch."""
        if len(req.subjects) > MAX_SUBJECTS_PER_BATCH:
            raise errors.InvalidArgument(
                f"{len(req.subjects)} subjects in one batch; the limit is {MAX_SUBJECTS_PER_BATCH}"
            )
        refusals = [""] * len(req.subjects)
        rows, where = [], []
        for i, sub in enumerate(req.subjects):
            refusals[i], row = self._batch_row(sub)
            if row is not None:
                rows.append(row)
                where.append(i)

        def write() -> store_pb2.PutSubjectsResponse:
            for i, why in zip(where, self.db.put_batch(rows), strict=True):
                refusals[i] = why
            return store_pb2.PutSubjectsResponse(
                refusals=refusals, stored=sum(not r for r in refusals)
            )

        reply = await self.db.run(
            self.db.idempotent, self._idem(req), "", store_pb2.PutSubjectsResponse, write
        )
        await self._published()  # back-pressure: the stream keeps up with the import
        log.info("subjects_stored", stored=reply.stored, refused=len(req.subjects) - reply.stored)
        return reply

    def _batch_row(self, sub: store_pb2.PutSubjectRequest):
        """(refusal, row) of one batch entry: ("", the row to write) or
        (the reason, None)."""
        try:
            subject_id = ids.check_subject_id(sub.subject_id)
        except errors.InvalidArgument:
            return "bad_id", None
        try:
            parse_dob(sub.date_of_birth)
        except errors.InvalidArgument:
            return "bad_dob", None
        try:
            vecs = self._vectors(sub.templates)
        except errors.InvalidArgument:
            return "bad_template", None
        c = sub.consent
        if not sub.HasField("consent") or (
            is_minor(sub.date_of_birth) and c.given_by != "guardian"
        ):
            return "consent", None  # a minor's consent is a guardian's (tanu.policy.consent)
        if c.given_by == "guardian":
            try:
                ids.check_subject_id(c.guardian_subject_id, "guardian_subject_id")
            except errors.InvalidArgument:
                return "consent", None
        return "", (subject_id, vecs, sub.date_of_birth, c)

    async def enrol(self, req: store_pb2.PutSubjectRequest) -> store_pb2.EnrolOutcome:
        """Enrolment de-duplicated in the store (``tanu.store.dedup``):
        enrolled, referred to adjudication, or refused."""
        subject_id = ids.check_subject_id(req.subject_id)
        vecs = self._vectors(req.templates)
        if not req.HasField("consent"):
            raise errors.FailedPrecondition("enrolment needs a consent record; none was given")
        parse_dob(req.date_of_birth)
        d = req.dedup
        if not (np.isfinite(d.threshold) and np.isfinite(d.certain_threshold)
                and all(np.isfinite(c.score) for c in d.candidates)):  # fmt: skip
            raise errors.InvalidArgument("de-duplication thresholds and scores must be finite")
        metas = encounters_of(req, len(vecs))
        self._admit()
        out = await self.db.run(
            self.db.idempotent, self._idem(req), subject_id, store_pb2.EnrolOutcome,
            self.db.enrol_subject, req, vecs, metas,
        )  # fmt: skip
        if out.outcome == "enrolled":
            await self._published()
        else:
            self._changed()
        log.info("subject_enrol", outcome=out.outcome, partition=out.subject.partition)
        return out

    async def list_cases(self, req: cases_pb2.ListCasesRequest) -> cases_pb2.ListCasesResponse:
        return await self.db.run(self.db.list_cases, req.state, req.page_size, req.page_token)

    async def get_case(self, req: cases_pb2.GetCaseRequest) -> cases_pb2.Case:
        return await self.db.run(self.db.get_case, req.case_id[:64])

    async def decide_case(self, req: cases_pb2.DecideCaseRequest) -> cases_pb2.DecideCaseResponse:
        out = await self.db.run(self.db.decide_case, req)
        await self._published()  # a distinct or merged enrolment is searchable when acknowledged
        log.info("case_decided", state=out.case.state)
        return out

    async def get(self, req: store_pb2.GetSubjectRecordRequest) -> common_pb2.Subject:
        return await self.db.run(self.db.get_subject, ids.check_subject_id(req.subject_id))

    async def templates(self, req: store_pb2.GetTemplatesRequest) -> store_pb2.GetTemplatesResponse:
        return await self.db.run(self.db.get_templates, ids.check_subject_id(req.subject_id))

    async def delete(self, req: store_pb2.DeleteSubjectRequest) -> store_pb2.DeleteSubjectResponse:
        sid = ids.check_subject_id(req.subject_id)
        if await self.db.run(self.db.erase_held, sid, req.tenant, req.client):
            log.info("held_enrolment_erased")
        reply = await self.db.run(
            self.db.idempotent, self._idem(req), sid, store_pb2.DeleteSubjectResponse,
            self.db.delete_subject, sid, req.reason, req.tenant, req.client,
        )  # fmt: skip
        await self.db.run(self.db.forget_window_subject, sid)
        self._changed()
        self.metrics.erasures.labels(req.reason.split(":")[0][:32] or "delete").inc()
        log.info(
            "subject_deleted", partition=reply.subject.partition, templates=len(reply.template_ids)
        )
        return reply

    async def seal_receipt(self, req: store_pb2.SealReceiptRequest) -> common_pb2.ErasureReceipt:
        """Signs the receipt the store builds from its own erasure record and
        the replicas' confirmations (``tanu.store.erasures``); audited."""
        receipt = await self.db.run(
            self.db.seal_receipt, req.receipt_id[:64], list(req.replicas), self.signer
        )
        self.metrics.audit_entries.inc()
        return receipt

    async def get_receipt(self, req: store_pb2.GetReceiptRequest) -> common_pb2.ErasureReceipt:
        return await self.db.run(self.db.get_receipt, req.receipt_id[:64])

    async def digest(self, req: common_pb2.DigestRequest) -> common_pb2.DigestResponse:
        """The digest of the template ids one partition must hold."""
        return await self.db.run(self.db.digest, req)

    async def republish(self, req: store_pb2.RepublishRequest) -> store_pb2.RepublishResponse:
        """Re-queues template events for reconciliation's repair."""
        reply = await self.db.run(self.db.republish, req)
        self._changed()
        log.info("events_republished", subjects=reply.subjects, removed=reply.removed)
        return reply

    async def status(self, req: store_pb2.StatusRequest) -> store_pb2.StatusResponse:
        if len(req.subject_ids) > 1000:
            raise errors.InvalidArgument("at most 1000 subject ids per status request")
        return await self.db.run(self.db.status, list(req.subject_ids))

    async def record_verification(self, req: store_pb2.VerificationOutcome):
        st = await self.db.run(
            self.db.record_verification, ids.check_subject_id(req.subject_id), req.matched
        )
        if not req.matched and st.failed_verifications == self.db.lockout.lock_after:
            self.metrics.verify_lockouts.inc()
        return st

    async def admit_attempt(self, req: store_pb2.AdmitAttemptRequest):
        """One face confirmation admitted and counted atomically (``status.admit_attempt``)."""
        r = await self.db.run(
            self.db.admit_attempt, ids.check_subject_id(req.subject_id), req.unlocking
        )
        if r.admitted and r.status.failed_verifications == self.db.lockout.lock_after:
            self.metrics.verify_lockouts.inc()
        return r

    async def grant_consent(self, req: store_pb2.ConsentRecordRequest):
        sid = ids.check_subject_id(req.subject_id)
        return await self.db.run(
            self.db.idempotent, self._idem(req), sid, store_pb2.SubjectStatus,
            self.db.grant_consent, sid, req.consent,
        )  # fmt: skip

    async def revoke_consent(self, req: store_pb2.ConsentRecordRequest):
        sid = ids.check_subject_id(req.subject_id)
        return await self.db.run(
            self.db.idempotent, self._idem(req), sid, store_pb2.SubjectStatus,
            self.db.revoke_consent, sid, list(req.consent.purposes), req.consent.revoked_by,
        )  # fmt: skip

    async def set_lock(self, req: store_pb2.LockRequest):
        sid = ids.check_subject_id(req.subject_id)
        st = await self.db.run(
            self.db.idempotent, self._idem(req), sid, store_pb2.SubjectStatus,
            self.db.set_biometric_lock, sid, req.locked,
        )  # fmt: skip
        self.metrics.biometric_lock_changes.labels("lock" if req.locked else "unlock").inc()
        return st

    async def report(self, req: store_pb2.GetSubjectRecordRequest) -> common_pb2.SubjectReport:
        return await self.db.run(self.db.report, ids.check_subject_id(req.subject_id))

    async def history(self, req: common_pb2.AccessHistoryRequest) -> common_pb2.AccessHistory:
        return await self.db.run(
            self.db.access_history, ids.check_subject_id(req.subject_id), req.page_size,
            req.page_token,
        )  # fmt: skip

    async def append_audit(self, req: store_pb2.AppendAuditRequest):
        if not req.records:
            raise errors.InvalidArgument("no audit records to append")
        seq = await self._audit.append(list(req.records))
        self.metrics.audit_entries.inc(len(req.records))
        return store_pb2.AppendAuditResponse(last_seq=seq)

    async def screen_audit(self, req: store_pb2.ScreenAuditRequest):
        """Identify's candidates screened and its entries appended, in one
        transaction (``screening``), committed before the reply."""
        if not req.audits:
            raise errors.InvalidArgument("no audits to screen")
        if sum(len(a.uses) + len(a.further) for a in req.audits) > MAX_SCREENED_USES:
            raise errors.InvalidArgument(f"at most {MAX_SCREENED_USES} uses per screen request")
        results = await self._screen.append(list(req.audits))
        self.metrics.audit_entries.inc(
            sum(
                1 + len(a.further) + sum(r.usable) for a, r in zip(req.audits, results, strict=True)
            )
        )
        return store_pb2.ScreenAuditResponse(results=results)

    async def rewrap(self, req: store_pb2.RewrapKeysRequest) -> store_pb2.RewrapKeysResponse:
        """Reloads the keyring and re-wraps every data key under its active
        master key, a batch per transaction, so serving goes on meanwhile."""
        provider = self.db.keys
        if hasattr(provider, "reload"):
            provider.reload()
        total = 0
        while n := await self.db.run(self.db.rewrap_batch, req.batch or 500):
            total += n
            self.metrics.key_rewraps.inc(n)
            await asyncio.sleep(0)
        in_use = await self.db.run(self.db.master_keys_in_use)
        log.info("data_keys_rewrapped", count=total, active=provider.active_id())
        return store_pb2.RewrapKeysResponse(
            rewrapped=total, active_key_id=provider.active_id(), key_ids_in_use=in_use
        )

    async def list_templates(
        self, req: store_pb2.ListTemplatesRequest
    ) -> store_pb2.ListTemplatesResponse:
        """A page of template ids by subject (for the rebalance's verification)."""
        return await self.db.run(self.db.list_templates, req.after_subject_id, req.limit)

    async def migrate_layout(
        self, req: store_pb2.MigrateLayoutRequest
    ) -> store_pb2.MigrateLayoutResponse:
        """Records a new partition count and moves every subject to its
        partition under it (the last step of a rebalance)."""
        moved = await self.db.run(self.db.migrate_layout, req.partitions)
        log.info("store_layout_migrated", partitions=req.partitions, subjects_moved=moved)
        return store_pb2.MigrateLayoutResponse(subjects_moved=moved)

    # --- the OSIA facade's asynchronous tasks (``tanu.store.tasks``) ---------------------

    async def create_task(self, req: tasks_pb2.CreateTaskRequest) -> tasks_pb2.CreateTaskResponse:
        return await self.db.run(self.db.create_task, req.task)

    async def claim_tasks(self, req: tasks_pb2.ClaimTasksRequest) -> tasks_pb2.ClaimTasksResponse:
        return await self.db.run(self.db.claim_tasks, req.owner, req.limit, req.lease_ms)

    async def update_task(self, req: tasks_pb2.UpdateTaskRequest) -> tasks_pb2.Task:
        return await self.db.run(self.db.update_task, req)

    async def get_task(self, req: tasks_pb2.GetTaskRequest) -> tasks_pb2.Task:
        return await self.db.run(self.db.get_task, req.task_id, req.tenant)

    async def redeliver_task(self, req: tasks_pb2.RedeliverTaskRequest) -> tasks_pb2.Task:
        return await self.db.run(self.db.redeliver_task, req.task_id, req.tenant)

    # -- encounters and galleries (tanu.store.encounters, tanu.store.galleries) --

    async def add_encounter(
        self, req: store_pb2.AddEncounterRecord
    ) -> store_pb2.AddEncounterOutcome:
        sid = ids.check_subject_id(req.subject_id)
        vecs = self._vectors([req.template])
        d = req.dedup
        if not (np.isfinite(d.threshold) and all(np.isfinite(c.score) for c in d.candidates)):
            raise errors.InvalidArgument("de-duplication thresholds and scores must be finite")
        self._admit()
        out = await self.db.run(
            self.db.idempotent, self._idem(req), sid, store_pb2.AddEncounterOutcome,
            self.db.add_encounter, req, vecs,
        )  # fmt: skip
        if out.outcome == "added":
            await self._published()
        log.info("encounter_add", outcome=out.outcome)
        return out

    async def list_encounters(self, req):
        return await self.db.run(self.db.list_encounters, ids.check_subject_id(req.subject_id))

    async def get_encounter(self, req):
        return await self.db.run(
            self.db.get_encounter, ids.check_subject_id(req.subject_id), req.encounter_id
        )

    async def update_encounter(self, req: store_pb2.EncounterChange):
        sid = ids.check_subject_id(req.subject_id)
        vecs = self._vectors([req.template]) if req.HasField("template") else None
        out = await self.db.run(
            self.db.idempotent, self._idem(req), sid, _ENCOUNTER, self.db.update_encounter,
            req, vecs,
        )  # fmt: skip
        await self._published()
        return out

    async def delete_encounter(self, req: store_pb2.EncounterErasureRequest):
        sid = ids.check_subject_id(req.subject_id)
        out = await self.db.run(
            self.db.idempotent, self._idem(req), sid, store_pb2.EncounterErasure,
            self.db.delete_encounter, req,
        )  # fmt: skip
        await self.db.run(self.db.forget_window_subject, sid)
        self._changed()
        self.metrics.erasures.labels("encounter").inc()
        log.info("encounter_deleted", partition=out.partition)
        return out

    async def move_encounters(self, req: store_pb2.MoveEncountersRequest):
        target = ids.check_subject_id(req.subject_id)
        source = ids.check_subject_id(req.source_subject_id)
        out = await self.db.run(
            self.db.idempotent, self._idem(req), target, store_pb2.MoveEncountersOutcome,
            self.db.move_encounters, req,
        )  # fmt: skip
        await self.db.run(self.db.forget_window_subject, source)
        await self._published()
        log.info("encounters_moved", count=len(out.moved), source_erased=out.source_erased)
        return out

    async def list_galleries(self, req: store_pb2.GalleryQuery):
        return await self.db.run(self.db.list_galleries, req)

    async def gallery_content(self, req: store_pb2.GalleryQuery):
        return await self.db.run(self.db.gallery_content, req)

    async def checkpoint(self) -> None:
        # Erasures by other store processes leave this one's window here at the latest.
        await self.db.run(self.db.prune_window)
        purged = await self.db.run(self.db.purge_idempotency)
        if purged:
            log.info("idempotency_keys_purged", count=purged)
        purged = await self.db.run(self.db.purge_tasks)
        if purged:
            log.info("osia_tasks_purged", count=purged)
        await self.db.run(self.db.purge_withdrawn)
        cp = await self.db.run(self.db.checkpoint, self.signer)
        if cp is not None:
            log.info("audit_checkpoint", seq=cp.seq)
        # Every entry is sealed now (by this checkpoint or an earlier one):
        # the gauge says when the log was last known fully sealed, so an idle
        # log does not look stale and a failing signer does.
        self.metrics.audit_checkpoint_timestamp.set(time.time())
