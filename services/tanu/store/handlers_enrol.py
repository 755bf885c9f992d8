"""The store's enrolment operations: subjects put (one, or an operator
batch), enrolment de-duplicated in the store, the adjudication cases it
refers, encounters added, changed, erased and moved, and the galleries
over them; each request checked, then run on the database thread.

``EnrolHandlers`` is a mixin of ``handlers.StoreHandlers``.
"""

from __future__ import annotations

import numpy as np

from tanu.core import errors, ids, logs
from tanu.policy.subjects import is_minor, parse_dob
from tanu.v1 import cases_pb2, common_pb2, encounters_pb2, store_pb2

from .encounters import encounters_of
from .handlers_core import HandlerCore

log = logs.get(__name__)

_ENCOUNTER = encounters_pb2.Encounter
MAX_SUBJECTS_PER_BATCH = 2000


class EnrolHandlers(HandlerCore):
    """Enrolment, adjudication cases, encounters and galleries."""

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
