"""Encounters (the OSIA data model): every template of a subject is one
encounter, with an id unique per subject, a type, galleries (besides the
implicit ``ALL``; table ``template_galleries``), a status (an INACTIVE
encounter is never searched) and the caller's encounter data (a JSON
object, sealed with the subject's data key like the templates).

Every change reaches the searchers as template events in the outbox, in
the change's own transaction: a new template as KIND_ADDED carrying its
galleries and status, a gallery or status change as KIND_MEMBERSHIP (no
vectors), a template erased or moved as KIND_REMOVED. A template leaving a
subject also leaves the event stream: every message of the subject that
carried vectors is queued for deletion (``stream_erasures``; those the
relay is publishing at that moment through ``withdrawn_events``) and the
templates the subject keeps are queued again in fresh ADDED events
(applying them is idempotent), so no stream message keeps a vector the
store no longer holds, and the stream still rebuilds every index.

- ``add_encounter``: another template of an enrolled subject,
  de-duplicated against every OTHER subject under the enrolment lock (the
  gateway's candidates and the window's exact comparison); a match is
  refused unless ``allow_duplicate`` (no case: the subject exists already).
- ``update_encounter``: a new template (a new template id; the old one is
  removed) and/or new fields.
- ``delete_encounter``: an erasure of one template, with its erasure record
  (``tanu.store.erasures``: a signed receipt like a subject's); the last
  encounter of a subject is refused (FAILED_PRECONDITION): the subject's
  erasure (DeleteSubject) is the way to remove it.
- ``move_encounters``: one encounter, or all (a merge), re-sealed under the
  target's data key with new template ids; a source left empty is erased
  (``delete_subject``: its receipt). A merge whose source is an enrolment
  held as an open adjudication case against the target decides the case
  ``merge`` (``tanu.store.cases``). Audited on both subjects.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import numpy as np

from tanu.core import audit, envelope, errors, ids, vectors
from tanu.v1 import cases_pb2, common_pb2, encounters_pb2, store_pb2

from . import encounter_rules as rules
from .dedup import MAX_CANDIDATES, Dedup
from .encounter_rules import EncounterMeta
from .outbox import MEMBERSHIP, REMOVED, TRACKED
from .schema import now_ms
from .window import better

MAX_TEMPLATES_PER_SUBJECT = 32
# A relay's publish of one batch takes seconds at most: a withdrawn event is
# remembered far longer than that, then forgotten (``purge_withdrawn``).
WITHDRAWN_KEEP_MS = 3_600_000

_COLS = (
    "t.template_id, t.encounter_id, t.encounter_type, t.inactive, t.created_at_ms, "
    "t.updated_at_ms, t.encounter_data, t.model_id"
)


class Encounters(Dedup):
    """The encounter columns of ``templates``, ``template_galleries`` and ``withdrawn_events``."""

    DDL = """
CREATE TABLE IF NOT EXISTS template_galleries (
    template_id {big} NOT NULL REFERENCES templates(template_id) ON DELETE CASCADE,
    gallery TEXT NOT NULL,
    subject_id TEXT NOT NULL,
    PRIMARY KEY (template_id, gallery)
);
CREATE INDEX IF NOT EXISTS template_galleries_by_gallery ON template_galleries(gallery, template_id);
CREATE TABLE IF NOT EXISTS withdrawn_events (
    event_id TEXT PRIMARY KEY,
    withdrawn_at_ms {big} NOT NULL
)
"""
    # Templates of databases older than encounters become one encounter each.
    MIGRATE = """
UPDATE templates SET encounter_id = 'e' || CAST(template_id AS TEXT) WHERE encounter_id = '';
UPDATE templates SET updated_at_ms = created_at_ms WHERE updated_at_ms = 0;
CREATE UNIQUE INDEX IF NOT EXISTS templates_by_encounter ON templates(subject_id, encounter_id)
"""

    # -- reading ---------------------------------------------------------------

    def _galleries_of(self, template_id: int) -> tuple[str, ...]:
        return tuple(r[0] for r in self._all(
            "SELECT gallery FROM template_galleries WHERE template_id = ? ORDER BY gallery",
            (template_id,)))  # fmt: skip

    def _encounter_rows(self, subject_id: str, encounter_id: str = "") -> list:
        q = f"SELECT {_COLS} FROM templates t WHERE t.subject_id = ?"
        args: list = [subject_id]
        if encounter_id:
            q += " AND t.encounter_id = ?"
            args.append(encounter_id)
        return self._all(q + " ORDER BY t.template_id", args)

    def _encounter_row(self, subject_id: str, encounter_id: str):
        self._subject_row(subject_id)
        rows = self._encounter_rows(subject_id, rules.check_encounter_id(encounter_id))
        if not rows:
            raise errors.NotFound(f"subject {subject_id!r} has no encounter {encounter_id!r}")
        return rows[0]

    def _meta(self, subject_id: str, row, dek: bytes) -> EncounterMeta:
        tid, eid, etype, inactive, _c, _u, data, _m = row
        sealed = rules.open_data(dek, subject_id, data)
        return EncounterMeta(eid, etype, self._galleries_of(tid), bool(inactive), sealed.encode())

    def _encounter(self, subject_id: str, row, dek: bytes) -> encounters_pb2.Encounter:
        tid, eid, etype, inactive, created, updated, data, model_id = row
        return encounters_pb2.Encounter(
            subject_id=subject_id, encounter_id=eid, encounter_type=etype,
            status=rules.INACTIVE if inactive else rules.ACTIVE,
            galleries=self._galleries_of(tid), created_at_ms=created, updated_at_ms=updated,
            data_json=rules.open_data(dek, subject_id, data), model_id=model_id, template_id=tid,
        )  # fmt: skip

    def list_encounters(self, subject_id: str) -> encounters_pb2.ListEncountersResponse:
        """A subject's encounters, oldest first: metadata and data, never templates."""
        self._subject_row(subject_id)
        dek = self._dek(subject_id)
        return encounters_pb2.ListEncountersResponse(
            subject_id=subject_id,
            encounters=[
                self._encounter(subject_id, r, dek) for r in self._encounter_rows(subject_id)
            ],  # fmt: skip
        )

    def get_encounter(self, subject_id: str, encounter_id: str) -> encounters_pb2.Encounter:
        row = self._encounter_row(subject_id, encounter_id)
        return self._encounter(subject_id, row, self._dek(subject_id))

    def _template_count(self, subject_id: str) -> int:
        return self._one("SELECT COUNT(*) FROM templates WHERE subject_id = ?", (subject_id,))[0]

    # -- events ----------------------------------------------------------------

    def _queue_membership(self, subject_id: str, partition: int, template_id: int,
                          meta: EncounterMeta, ts: int) -> None:  # fmt: skip
        self._queue_event(store_pb2.TemplateEvent(
            event_id=uuid.uuid4().hex, kind=MEMBERSHIP, subject_id=subject_id,
            partition=partition, template_ids=[template_id], model_id=self.layout.model_id,
            occurred_at_ms=ts, galleries=meta.galleries, inactive=meta.inactive,
        ))  # fmt: skip

    def _drop_templates(self, subject_id: str, partition: int, template_ids: Sequence[int],
                        ts: int) -> dict:  # fmt: skip
        """Removes some of a subject's templates (not all: ``delete_subject``
        does that) in the caller's transaction: the rows, a REMOVED event,
        every stream message of the subject that carried vectors queued for
        deletion (unpublished ones withdrawn), and fresh ADDED events for
        the templates it keeps. Returns what the erasure record states."""
        seqs = [r[0] for r in self._all(
            "SELECT stream_seq FROM published WHERE subject_id = ?", (subject_id,))]  # fmt: skip
        self._queue_stream_erasures(seqs)
        self._x("DELETE FROM published WHERE subject_id = ?", (subject_id,))
        pending = [r[0] for r in self._all(
            "SELECT event_id FROM outbox WHERE subject_id = ? AND kind IN (?, ?)",
            (subject_id, *TRACKED))]  # fmt: skip
        for eid in pending:  # a relay publishing one right now deletes it from the stream after
            self._x("INSERT INTO withdrawn_events(event_id, withdrawn_at_ms) VALUES (?, ?)",
                    (eid, ts))  # fmt: skip
        self._x("DELETE FROM outbox WHERE subject_id = ? AND kind IN (?, ?)",
                (subject_id, *TRACKED))  # fmt: skip
        # Set-aside events may carry the dropped templates: gone too (the
        # kept ones are queued again below; ``tanu.store.dead_letters``).
        dead = self._drop_dead_letters(subject_id)
        for tid in template_ids:
            self._x("DELETE FROM template_galleries WHERE template_id = ?", (tid,))
            self._x("DELETE FROM templates WHERE template_id = ?", (tid,))
        event_id = uuid.uuid4().hex
        self._queue_event(store_pb2.TemplateEvent(
            event_id=event_id, kind=REMOVED, subject_id=subject_id, partition=partition,
            template_ids=list(template_ids), model_id=self.layout.model_id, occurred_at_ms=ts,
        ))  # fmt: skip
        self._requeue_kept(subject_id, partition, ts)
        return {"stream_seqs": seqs, "unpublished": len(pending), "removal_event_id": event_id,
                "dead_letters": dead}  # fmt: skip

    def _requeue_kept(self, subject_id: str, partition: int, ts: int) -> int:
        """Fresh ADDED events for every template the subject holds (with
        their galleries and status); returns how many templates."""
        dek = self._dek(subject_id)
        rows = self._all(
            f"SELECT {_COLS}, t.sealed FROM templates t WHERE t.subject_id = ? "
            "ORDER BY t.template_id",
            (subject_id,),
        )
        if not rows:
            return 0
        vecs = vectors.from_bytes(
            b"".join(envelope.open_template(dek, subject_id, bytes(r[-1])) for r in rows),
            self.layout.dimension,
        )
        metas = [self._meta(subject_id, r[:-1], dek) for r in rows]
        self._queue_added(subject_id, partition, [r[0] for r in rows], vecs, metas, dek, ts)
        return len(rows)

    def _open_template(self, subject_id: str, template_id: int, dek: bytes) -> np.ndarray:
        (sealed,) = self._one("SELECT sealed FROM templates WHERE template_id = ?", (template_id,))
        raw = envelope.open_template(dek, subject_id, bytes(sealed))
        return vectors.from_bytes(raw, self.layout.dimension).copy()

    def _audit(self, subjects, operation: str, result: str, tenant: str, client: str,
               detail: dict) -> int:  # fmt: skip
        ts = now_ms()
        return self._append_audit([
            store_pb2.AuditRecord(at_ms=ts, tenant=tenant[:64], client=client[:64],
                                  operation=operation, subject_id=sid, result=result,
                                  detail_json=audit.detail_json(detail))
            for sid in subjects
        ])  # fmt: skip

    def purge_withdrawn(self, older_than_ms: int = WITHDRAWN_KEEP_MS) -> int:
        """Forgets withdrawn events no relay can still be publishing; returns how many."""

        def tx(_c) -> int:
            cut = now_ms() - older_than_ms
            return self._x(
                "DELETE FROM withdrawn_events WHERE withdrawn_at_ms < ?", (cut,)
            ).rowcount

        return self._tx(tx)

    # -- writes ----------------------------------------------------------------

    def add_encounter(
        self, req: store_pb2.AddEncounterRecord, vecs: np.ndarray
    ) -> store_pb2.AddEncounterOutcome:
        """Adds one template as an encounter of an enrolled subject, or
        refuses it (it matches another subject), under the enrolment lock."""
        meta = EncounterMeta.of(req.encounter if req.HasField("encounter") else None)
        d, metric, sid = req.dedup, self.layout.metric, req.subject_id

        def tx(_c) -> store_pb2.AddEncounterOutcome:
            self._dedup_lock()
            subject = self._subject_row(sid)
            if subject.template_count + 1 > MAX_TEMPLATES_PER_SUBJECT:
                raise errors.FailedPrecondition(
                    f"subject {sid!r} holds {subject.template_count} encounters; the limit "
                    f"is {MAX_TEMPLATES_PER_SUBJECT}"
                )
            if self._encounter_rows(sid, meta.encounter_id):
                raise errors.AlreadyExists(
                    f"subject {sid!r} already has an encounter {meta.encounter_id!r}"
                )
            found = self._window_best(vecs, exclude=sid, searched=d.searched_sequences)
            for c in d.candidates[:MAX_CANDIDATES]:  # best first: the best other one enrolled
                if (
                    c.subject_id
                    and c.subject_id != sid
                    and self._one("SELECT 1 FROM subjects WHERE subject_id = ?", (c.subject_id,))
                ):
                    if found is None or better(c.score, found[1], metric):
                        found = (c.subject_id, float(c.score))
                    break
            match = found if found and vectors.is_match(found[1], d.threshold, metric) else None
            out = store_pb2.AddEncounterOutcome(outcome="added")
            if match is not None:
                out.match.CopyFrom(common_pb2.Candidate(
                    subject_id=match[0], score=match[1], is_match=True,
                    partition=self._subject_row(match[0]).partition))  # fmt: skip
                out.match_status.CopyFrom(self._status(match[0]))
                out.match_tenants.extend(self.consent_tenants(match[0]))
                self._case_audit("", [match[0]], "dedup_hit",
                                 "added" if d.allow_duplicate else "refused", d.tenant,
                                 d.client, d.purpose, {"score": round(match[1], 6)})  # fmt: skip
                if not d.allow_duplicate:
                    out.outcome = "refused"
                    return out
            ts = now_ms()
            (tid,) = self._add_templates(sid, subject.partition, vecs, self._dek(sid), ts, [meta])
            self._x("UPDATE subjects SET updated_at_ms = ? WHERE subject_id = ?", (ts, sid))
            out.encounter.CopyFrom(self.get_encounter(sid, meta.encounter_id))
            return out

        return self._tx(tx)

    def update_encounter(
        self, req: store_pb2.EncounterChange, vecs: np.ndarray | None
    ) -> encounters_pb2.Encounter:
        """A new template for the encounter (``vecs``: a new template id, the
        old one removed everywhere) and/or new field values (a membership
        event when its galleries or status change)."""
        given = tuple(req.update_fields)
        fields = rules.check_fields(given) if (given or vecs is None) else ()
        sid = req.subject_id

        def tx(_c) -> encounters_pb2.Encounter:
            row = self._encounter_row(sid, req.encounter_id)
            subject = self._subject_row(sid)
            dek = self._dek(sid)
            old = self._meta(sid, row, dek)
            new = old.updated(req.encounter, fields)
            tid, ts = row[0], now_ms()
            if vecs is not None:
                self._drop_templates(sid, subject.partition, [tid], ts)
                self._add_templates(sid, subject.partition, vecs, dek, ts, [new])
            elif new != old:
                self._x(
                    "UPDATE templates SET encounter_type = ?, inactive = ?, encounter_data = ?, "
                    "updated_at_ms = ? WHERE template_id = ?",
                    (new.encounter_type, int(new.inactive), rules.seal_data(dek, sid, new.data),
                     ts, tid),
                )  # fmt: skip
                if (new.galleries, new.inactive) != (old.galleries, old.inactive):
                    self._x("DELETE FROM template_galleries WHERE template_id = ?", (tid,))
                    for g in new.galleries:
                        self._x("INSERT INTO template_galleries(template_id, gallery, subject_id) "
                                "VALUES (?, ?, ?)", (tid, g, sid))  # fmt: skip
                    self._queue_membership(sid, subject.partition, tid, new, ts)
            self._x("UPDATE subjects SET updated_at_ms = ? WHERE subject_id = ?", (ts, sid))
            return self.get_encounter(sid, new.encounter_id)

        return self._tx(tx)

    def delete_encounter(
        self, req: store_pb2.EncounterErasureRequest
    ) -> store_pb2.EncounterErasure:
        """Erases one encounter (its template everywhere), audited, with
        the erasure record its signed receipts are built from."""
        sid = req.subject_id

        def tx(_c) -> store_pb2.EncounterErasure:
            row = self._encounter_row(sid, req.encounter_id)
            subject = self._subject_row(sid)
            if subject.template_count <= 1:
                raise errors.FailedPrecondition(
                    "this is the subject's last encounter: erase the subject instead (Delete)"
                )
            encounter = self._encounter(sid, row, self._dek(sid))
            ts = now_ms()
            tid = row[0]
            dropped = self._drop_templates(sid, subject.partition, [tid], ts)
            seqs = dropped["stream_seqs"]
            reason = req.reason[:200]
            seq = self._audit([sid], "erase_encounter", "ok", req.tenant, req.client, {
                "reason": reason, "encounter_id": encounter.encounter_id, "templates": 1,
                "stream_messages": len(seqs), "removal_event_id": dropped["removal_event_id"],
            })  # fmt: skip
            (parts,) = self._one("SELECT value FROM meta WHERE key = 'partitions'")
            receipt_id = ids.receipt_id(sid, ts)
            self._record_erasure(receipt_id, sid, ts, {
                "reason": reason, "requested_by": {"tenant": req.tenant[:64], "client": req.client[:64]},
                "partition": subject.partition, "partitions": int(parts),
                "removal_event_id": dropped["removal_event_id"],
                "unpublished_events": dropped["unpublished"],
                "dead_letters": dropped["dead_letters"],
                "store": {"encounter_id": encounter.encounter_id, "templates_removed": [tid],
                          "consents_removed": 0, "data_key_destroyed": None, "audit_seq": seq},
            }, seqs)  # fmt: skip
            self._x("UPDATE subjects SET updated_at_ms = ? WHERE subject_id = ?", (ts, sid))
            encounter.ClearField("data_json")
            return store_pb2.EncounterErasure(
                encounter=encounter, template_ids=[tid], deleted_at_ms=ts, receipt_id=receipt_id,
                partition=subject.partition, partitions=int(parts), stream_messages=len(seqs),
            )  # fmt: skip

        return self._tx(tx)

    def move_encounters(
        self, req: store_pb2.MoveEncountersRequest
    ) -> store_pb2.MoveEncountersOutcome:
        """Moves one encounter (``encounter_id``) or every one (a merge) of
        the source to the target, in one transaction under the enrolment
        lock; a source left empty is erased. Audited on both subjects."""
        target, source = req.subject_id, req.source_subject_id
        if target == source:
            raise errors.InvalidArgument("the source and the target are the same subject")
        if req.encounter_id:
            rules.check_encounter_id(req.encounter_id)
        operation = req.operation or ("MoveEncounter" if req.encounter_id else "MergeSubjects")

        def tx(_c) -> store_pb2.MoveEncountersOutcome:
            self._dedup_lock()
            t = self._subject_row(target)
            if not req.encounter_id and not self._one(
                "SELECT 1 FROM subjects WHERE subject_id = ?", (source,)
            ):
                return self._merge_held(req, t)
            s = self._subject_row(source)
            rows = self._encounter_rows(source, req.encounter_id)
            if not rows:
                raise errors.NotFound(f"subject {source!r} has no encounter {req.encounter_id!r}")
            if t.template_count + len(rows) > MAX_TEMPLATES_PER_SUBJECT:
                raise errors.FailedPrecondition(
                    f"subject {target!r} would hold more than {MAX_TEMPLATES_PER_SUBJECT} encounters"
                )
            clash = [r[1] for r in rows if self._encounter_rows(target, r[1])]
            if clash:
                raise errors.AlreadyExists(
                    f"subject {target!r} already has an encounter {clash[0]!r}"
                )
            sdek, tdek = self._dek(source), self._dek(target)
            metas = [self._meta(source, r, sdek) for r in rows]
            vecs = np.concatenate([self._open_template(source, r[0], sdek) for r in rows])
            old_ids = [r[0] for r in rows]
            ts = now_ms()
            out = store_pb2.MoveEncountersOutcome(removed_template_ids=old_ids,
                                                  source_partition=s.partition)  # fmt: skip
            reason = req.reason[:200]
            if len(rows) == s.template_count:  # the source is left empty: erased
                out.source_erased = True
                out.source_erasure.CopyFrom(self.delete_subject(
                    source, f"merged_into: {reason}"[:200], req.tenant, req.client))  # fmt: skip
            else:
                self._drop_templates(source, s.partition, old_ids, ts)
            new_ids = self._add_templates(target, t.partition, vecs, tdek, ts, metas)
            self._x("UPDATE subjects SET updated_at_ms = ? WHERE subject_id = ?", (ts, target))
            detail = {"reason": reason, "source_subject_id": source, "target_subject_id": target,
                      "encounter_ids": [m.encounter_id for m in metas][:32],
                      "source_erased": out.source_erased}  # fmt: skip
            self._audit([target, source], operation, "ok", req.tenant, req.client, detail)
            out.subject.CopyFrom(self._subject_row(target))
            by_id = {r[0]: r for r in self._encounter_rows(target)}
            out.moved.extend(self._encounter(target, by_id[i], tdek) for i in new_ids)
            return out

        return self._tx(tx)

    def _merge_held(self, req: store_pb2.MoveEncountersRequest,
                    target: common_pb2.Subject) -> store_pb2.MoveEncountersOutcome:  # fmt: skip
        """A merge whose source is not enrolled: the open adjudication case
        holding it against the target, decided ``merge``; else NotFound."""
        case_id = self.open_case_for(req.source_subject_id)
        if not case_id or self._case_row(case_id)["matched_subject_id"] != target.subject_id:
            raise errors.NotFound(f"subject {req.source_subject_id!r} is not enrolled")
        before = {r[0] for r in self._encounter_rows(target.subject_id)}
        decided = self.decide_case(cases_pb2.DecideCaseRequest(
            case_id=case_id, decision="merge", note=req.reason[:200],
            decided_by_tenant=req.tenant, decided_by_client=req.client,
        ))  # fmt: skip
        dek = self._dek(target.subject_id)
        out = store_pb2.MoveEncountersOutcome(subject=decided.subject, case_id=case_id)
        out.moved.extend(self._encounter(target.subject_id, r, dek)
                         for r in self._encounter_rows(target.subject_id) if r[0] not in before)  # fmt: skip
        return out


def encounters_of(req: store_pb2.PutSubjectRequest, count: int) -> list[EncounterMeta] | None:
    """The encounters of an enrolment's ``count`` templates (checked), or
    None when it names none: the first gets the request's fields, the
    others the same with generated ids."""
    if not req.HasField("encounter"):
        return None
    first = EncounterMeta.of(req.encounter)
    return [first] + [first.others() for _ in range(count - 1)]
