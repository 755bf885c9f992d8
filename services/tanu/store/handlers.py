"""The store's operations: requests checked, then run on the database
thread (``tanu.store.db.Store``), with their metrics and log lines.

``StoreHandlers`` has a method for every operation ``StoreClient`` declares,
of the same name; the service registers them from that table
(``tanu.clients.operations``), so a declared operation without a handler
fails at start-up. It is composed of ``handlers_core.HandlerCore`` (shared
state and checks) and ``handlers_enrol.EnrolHandlers`` (enrolment, cases,
encounters, galleries); this module holds the rest: subject records and
erasures, receipts, reconciliation, verification, consent and locks,
reports, the audit log, keys, the partition layout, the OSIA facade's
tasks, and the periodic checkpoint.
"""

from __future__ import annotations

import asyncio
import time

from tanu.core import errors, ids, logs
from tanu.v1 import common_pb2, store_pb2, tasks_pb2

from .handlers_enrol import EnrolHandlers

log = logs.get(__name__)

# Candidates screened in one request (the gateway splits a larger round).
MAX_SCREENED_USES = 16_384


class StoreHandlers(EnrolHandlers):
    """One method per operation of ``tanu.clients.store.StoreClient``, named
    as its attribute there, shared by the NATS and gRPC front doors; and the
    audit checkpoint the service runs on a timer."""

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

    async def list_dead_letters(
        self, req: store_pb2.ListDeadLettersRequest
    ) -> store_pb2.ListDeadLettersResponse:
        """The template events the relay set aside (operator only)."""
        return await self.db.run(self.db.list_dead_letters, req.limit)

    async def requeue_dead_letters(
        self, req: store_pb2.RequeueDeadLettersRequest
    ) -> store_pb2.RequeueDeadLettersResponse:
        """Set-aside events queued again from what the store holds (operator only)."""
        reply = await self.db.run(
            self.db.requeue_dead_letters, list(req.seqs), req.all, "", "operator"
        )
        self._changed()
        log.info("dead_letters_requeued", requeued=reply.requeued, subjects=reply.subjects,
                 removals=reply.removals, dropped=reply.dropped)  # fmt: skip
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
