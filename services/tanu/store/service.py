"""The store service: the system of record behind ``tanu.store.<op>`` (NATS)
and the internal ``tanu.v1.Store`` gRPC service, with its outbox relay, the
audit log's single writer and checkpoint signer, and erasure receipts."""

from __future__ import annotations

import asyncio
import hashlib
import os
import time

import numpy as np

from tanu.core import (
    audit,
    bus,
    clusterconfig,
    envelope,
    errors,
    ids,
    logs,
    natsnames,
    signing,
    vectors,
)
from tanu.core.config import StoreConfig
from tanu.core.metrics import Metrics
from tanu.core.service import ServiceBase
from tanu.policy.lockout import Lockout
from tanu.policy.subjects import parse_dob
from tanu.v1 import common_pb2, store_pb2, store_pb2_grpc

from .db import Store
from .relay import OutboxRelay

log = logs.get(__name__)

MAX_TEMPLATES_PER_SUBJECT = 32


class StoreHandlers:
    """The operations, shared by the NATS and gRPC front doors."""

    def __init__(
        self, db: Store, relay: OutboxRelay | None, signer, metrics: Metrics | None = None
    ) -> None:
        self.db = db
        self.relay = relay
        self.signer = signer
        self.metrics = metrics or Metrics.create()

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

    def _changed(self) -> None:
        if self.relay:
            self.relay.wake()

    async def put(self, req: store_pb2.PutSubjectRequest) -> common_pb2.Subject:
        subject_id = ids.check_subject_id(req.subject_id)
        vecs = self._vectors(req.templates)
        if not req.HasField("consent"):
            raise errors.FailedPrecondition("enrolment needs a consent record; none was given")
        parse_dob(req.date_of_birth)
        subject = await self.db.run(
            self.db.put_subject, subject_id, vecs, req.date_of_birth, req.consent
        )
        self._changed()
        log.info("subject_stored", partition=subject.partition, templates=subject.template_count)
        return subject

    async def get(self, req: store_pb2.GetSubjectRecordRequest) -> common_pb2.Subject:
        return await self.db.run(self.db.get_subject, ids.check_subject_id(req.subject_id))

    async def templates(self, req: store_pb2.GetTemplatesRequest) -> store_pb2.GetTemplatesResponse:
        return await self.db.run(self.db.get_templates, ids.check_subject_id(req.subject_id))

    async def delete(self, req: store_pb2.DeleteSubjectRequest) -> store_pb2.DeleteSubjectResponse:
        reply = await self.db.run(
            self.db.delete_subject, ids.check_subject_id(req.subject_id), req.reason,
            req.tenant, req.client,
        )  # fmt: skip
        self._changed()
        self.metrics.erasures.labels(req.reason.split(":")[0][:32] or "delete").inc()
        log.info(
            "subject_deleted", partition=reply.subject.partition, templates=len(reply.template_ids)
        )
        return reply

    async def seal_receipt(self, req: store_pb2.SealReceiptRequest) -> common_pb2.ErasureReceipt:
        """Signs an erasure statement and records it (its hash) in the audit log."""
        body = req.body_json.encode()
        digest = hashlib.sha256(body).hexdigest()
        rec = store_pb2.AuditRecord(
            operation="erasure_receipt", subject_id=req.subject_id, result="ok",
            detail_json=audit.detail_json({"receipt_id": req.receipt_id, "sha256": digest}),
        )  # fmt: skip
        seq = await self.db.run(self.db.append_audit, [rec])
        self.metrics.audit_entries.inc()
        return common_pb2.ErasureReceipt(
            receipt_id=req.receipt_id,
            subject_id=req.subject_id,
            body_json=req.body_json,
            signature=self.signer.sign(body),
            signing_key_id=signing.key_id(self.signer.public_key()),
            audit_seq=seq,
        )

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

    async def grant_consent(self, req: store_pb2.ConsentRecordRequest):
        return await self.db.run(
            self.db.grant_consent, ids.check_subject_id(req.subject_id), req.consent
        )

    async def revoke_consent(self, req: store_pb2.ConsentRecordRequest):
        return await self.db.run(
            self.db.revoke_consent, ids.check_subject_id(req.subject_id),
            list(req.consent.purposes), req.consent.revoked_by,
        )  # fmt: skip

    async def set_lock(self, req: store_pb2.LockRequest):
        st = await self.db.run(
            self.db.set_biometric_lock, ids.check_subject_id(req.subject_id), req.locked
        )
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
        seq = await self.db.run(self.db.append_audit, list(req.records))
        self.metrics.audit_entries.inc(len(req.records))
        return store_pb2.AppendAuditResponse(last_seq=seq)

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

    async def checkpoint(self) -> None:
        cp = await self.db.run(self.db.checkpoint, self.signer)
        if cp is not None:
            log.info("audit_checkpoint", seq=cp.seq)
        # Every entry is sealed now (by this checkpoint or an earlier one):
        # the gauge says when the log was last known fully sealed, so an idle
        # log does not look stale and a failing signer does.
        self.metrics.audit_checkpoint_timestamp.set(time.time())


class StoreServicer(store_pb2_grpc.StoreServicer):
    """gRPC front door for operators and direct use."""

    def __init__(self, handlers: StoreHandlers) -> None:
        self._h = handlers

    async def PutSubject(self, request, context):
        return await self._h.put(request)

    async def GetSubject(self, request, context):
        return await self._h.get(request)

    async def GetTemplates(self, request, context):
        return await self._h.templates(request)

    async def DeleteSubject(self, request, context):
        return await self._h.delete(request)

    async def SealReceipt(self, request, context):
        return await self._h.seal_receipt(request)

    async def Status(self, request, context):
        return await self._h.status(request)

    async def RecordVerification(self, request, context):
        return await self._h.record_verification(request)

    async def GrantConsent(self, request, context):
        return await self._h.grant_consent(request)

    async def RevokeConsent(self, request, context):
        return await self._h.revoke_consent(request)

    async def SetBiometricLock(self, request, context):
        return await self._h.set_lock(request)

    async def Report(self, request, context):
        return await self._h.report(request)

    async def GetAccessHistory(self, request, context):
        return await self._h.history(request)

    async def AppendAudit(self, request, context):
        return await self._h.append_audit(request)

    async def RewrapKeys(self, request, context):
        return await self._h.rewrap(request)


class StoreService(ServiceBase):
    """A running store: database, relay, NATS responders and gRPC server."""

    name = "store"

    def __init__(self, config: StoreConfig, metrics: Metrics | None = None) -> None:
        super().__init__(config.common, metrics)
        self.config = config
        self.db: Store | None = None
        self.relay: OutboxRelay | None = None
        self.handlers: StoreHandlers | None = None
        self._checkpoints: asyncio.Task[None] | None = None

    async def start(self) -> StoreService:
        cfg, common = self.config, self.config.common
        provider = envelope.LocalKeyProvider.from_settings(cfg.master_key_file, cfg.master_key)
        if not cfg.audit_key_file:
            raise errors.FailedPrecondition(
                "the audit log is signed: set TANU_AUDIT_KEY_FILE (an Ed25519 PEM key, "
                "`tanu keys init` makes one)"
            )
        signer = signing.load_signing_key(cfg.audit_key_file)
        self.db = Store(cfg.dsn or cfg.db_path, common.layout, provider,
                        Lockout(cfg.lockout_after, cfg.lock_after))  # fmt: skip
        if not self.db.is_postgres:
            self.metrics.watch_disk(os.path.dirname(cfg.db_path) or ".")
        self.metrics.audit_checkpoint_timestamp.set(
            await self.db.run(self.db.last_checkpoint_ms) / 1000
        )
        nc = await self.connect("tanu-store")
        js = nc.jetstream()
        await clusterconfig.ensure_layout(js, common.layout, "store")
        await bus.ensure_events_stream(
            js, natsnames.EVENTS_STREAM, [natsnames.EVENTS_WILDCARD], common.stream_replicas,
            common.stream_duplicate_window_s,
        )  # fmt: skip
        if cfg.relay_enabled:
            self.relay = OutboxRelay(self.db, js, batch=cfg.relay_batch, poll_s=cfg.relay_poll_s,
                                     metrics=self.metrics)  # fmt: skip
            self.relay.start()
        self.handlers = handlers = StoreHandlers(self.db, self.relay, signer, self.metrics)
        for op, req_type, fn in (
            ("put", store_pb2.PutSubjectRequest, handlers.put),
            ("get", store_pb2.GetSubjectRecordRequest, handlers.get),
            ("templates", store_pb2.GetTemplatesRequest, handlers.templates),
            ("delete", store_pb2.DeleteSubjectRequest, handlers.delete),
            ("receipt", store_pb2.SealReceiptRequest, handlers.seal_receipt),
            ("status", store_pb2.StatusRequest, handlers.status),
            ("verification", store_pb2.VerificationOutcome, handlers.record_verification),
            ("consent.grant", store_pb2.ConsentRecordRequest, handlers.grant_consent),
            ("consent.revoke", store_pb2.ConsentRecordRequest, handlers.revoke_consent),
            ("lock", store_pb2.LockRequest, handlers.set_lock),
            ("report", store_pb2.GetSubjectRecordRequest, handlers.report),
            ("history", common_pb2.AccessHistoryRequest, handlers.history),
            ("audit", store_pb2.AppendAuditRequest, handlers.append_audit),
            ("keys.rewrap", store_pb2.RewrapKeysRequest, handlers.rewrap),
        ):
            await self.responder.serve(natsnames.store(op), natsnames.STORE_QUEUE, req_type, fn)
        await self.serve_grpc(
            store_pb2_grpc.add_StoreServicer_to_server, StoreServicer(handlers), "tanu.v1.Store"
        )
        self._checkpoints = asyncio.create_task(self._checkpoint_loop(), name="audit-checkpoints")
        log.info(
            "store_started", db=self.db.describe(),
            subjects=await self.db.run(self.db.count_subjects),
        )  # fmt: skip
        return self

    async def _checkpoint_loop(self) -> None:
        while not self._stopping:
            await asyncio.sleep(self.config.audit_checkpoint_s)
            try:
                await self.handlers.checkpoint()
            except Exception as exc:  # noqa: BLE001 - retried next round; the age alert fires
                log.error("audit_checkpoint_failed", error=str(exc))

    async def release(self) -> None:
        if self._checkpoints:
            self._checkpoints.cancel()
        if self.handlers:
            try:  # seal what was appended since the last checkpoint
                await self.handlers.checkpoint()
            except Exception as exc:  # noqa: BLE001
                log.error("audit_checkpoint_failed", error=str(exc))
        if self.relay:
            await self.relay.stop()

    def close(self) -> None:
        if self.db:
            self.db.close()
