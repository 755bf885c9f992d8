"""The store service: the system of record behind ``tanu.store.<op>`` (NATS)
and the internal ``tanu.v1.Store`` gRPC service, with its outbox relay."""

from __future__ import annotations

import numpy as np

from tanu.core import bus, clusterconfig, errors, logs, subjects, vectors
from tanu.core.config import StoreConfig
from tanu.core.metrics import Metrics
from tanu.core.service import ServiceBase
from tanu.v1 import common_pb2, store_pb2, store_pb2_grpc

from .db import SqliteStore
from .relay import OutboxRelay

log = logs.get(__name__)

MAX_TEMPLATES_PER_SUBJECT = 32


class StoreHandlers:
    """The operations, shared by the NATS and gRPC front doors."""

    def __init__(self, db: SqliteStore, relay: OutboxRelay | None) -> None:
        self.db = db
        self.relay = relay

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
        subject_id = vectors.check_subject_id(req.subject_id)
        vecs = self._vectors(req.templates)
        subject = await self.db.run(self.db.put_subject, subject_id, vecs)
        self._changed()
        log.info("subject_stored", partition=subject.partition, templates=subject.template_count)
        return subject

    async def get(self, req: store_pb2.GetSubjectRecordRequest) -> common_pb2.Subject:
        return await self.db.run(self.db.get_subject, vectors.check_subject_id(req.subject_id))

    async def templates(self, req: store_pb2.GetTemplatesRequest) -> store_pb2.GetTemplatesResponse:
        return await self.db.run(self.db.get_templates, vectors.check_subject_id(req.subject_id))

    async def delete(self, req: store_pb2.DeleteSubjectRequest) -> store_pb2.DeleteSubjectResponse:
        reply = await self.db.run(
            self.db.delete_subject, vectors.check_subject_id(req.subject_id), req.reason
        )
        self._changed()
        log.info(
            "subject_deleted", partition=reply.subject.partition, templates=len(reply.template_ids)
        )
        return reply


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


class StoreService(ServiceBase):
    """A running store: database, relay, NATS responders and gRPC server."""

    name = "store"

    def __init__(self, config: StoreConfig, metrics: Metrics | None = None) -> None:
        super().__init__(config.common, metrics)
        self.config = config
        self.db: SqliteStore | None = None
        self.relay: OutboxRelay | None = None

    async def start(self) -> StoreService:
        cfg, common = self.config, self.config.common
        self.db = SqliteStore(cfg.db_path, common.layout)
        nc = await self.connect("tanu-store")
        js = nc.jetstream()
        await clusterconfig.ensure_layout(js, common.layout, "store")
        await bus.ensure_events_stream(
            js, subjects.EVENTS_STREAM, [subjects.EVENTS_WILDCARD], common.stream_replicas,
            common.stream_duplicate_window_s,
        )  # fmt: skip
        if cfg.relay_enabled:
            self.relay = OutboxRelay(self.db, js, batch=cfg.relay_batch, poll_s=cfg.relay_poll_s,
                                     metrics=self.metrics)  # fmt: skip
            self.relay.start()
        handlers = StoreHandlers(self.db, self.relay)
        for op, req_type, fn in (
            ("put", store_pb2.PutSubjectRequest, handlers.put),
            ("get", store_pb2.GetSubjectRecordRequest, handlers.get),
            ("templates", store_pb2.GetTemplatesRequest, handlers.templates),
            ("delete", store_pb2.DeleteSubjectRequest, handlers.delete),
        ):
            await self.responder.serve(subjects.store(op), subjects.STORE_QUEUE, req_type, fn)
        await self.serve_grpc(
            store_pb2_grpc.add_StoreServicer_to_server, StoreServicer(handlers), "tanu.v1.Store"
        )
        log.info(
            "store_started", db=str(cfg.db_path), subjects=await self.db.run(self.db.count_subjects)
        )
        return self

    async def release(self) -> None:
        if self.relay:
            await self.relay.stop()

    def close(self) -> None:
        if self.db:
            self.db.close()
