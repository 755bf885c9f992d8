"""The gallery's records: enrolment (a subject with its consent, data key
and sealed templates), reading the templates back, and erasure.

Every write here also queues its template event in the outbox
(``tanu.store.outbox``) in the same transaction; erasure deletes the
subject's data key (crypto-shredding, ``tanu.store.datakeys``) and appends
an audit entry (``tanu.store.audit_log``) in that transaction too.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import numpy as np

from tanu.core import audit, envelope, errors, ids, vectors
from tanu.v1 import common_pb2, store_pb2

from . import encounter_rules
from .encounter_rules import EncounterMeta
from .erasures import Erasures
from .outbox import ADDED, REMOVED, TRACKED
from .schema import now_ms
from .status import SubjectStatus


class Subjects(SubjectStatus, Erasures):
    """The ``subjects`` and ``templates`` tables: enrol, read, erase."""

    def _insert_subject(
        self,
        subject_id: str,
        vecs: np.ndarray,
        dob: str = "",
        consent: common_pb2.Consent | None = None,
        encounters: Sequence[EncounterMeta] | None = None,
    ) -> None:
        """Writes one subject, its consent, data key and sealed templates
        (each one encounter), and queues its template event, in the
        caller's transaction."""
        lay = self.layout
        ts = now_ms()
        part = ids.partition_of(subject_id, lay.partitions)
        try:
            self._x(
                "INSERT INTO subjects(subject_id, partition, model_id, date_of_birth, created_at_ms, "
                "updated_at_ms, owner) VALUES (?, ?, ?, ?, ?, ?, ?)",
                # The owning agency is the tenant that enrolled the subject
                # (the consent record's tenant): tanu.policy.access.
                (subject_id, part, lay.model_id, dob, ts, ts, consent.tenant if consent else ""),
            )
        except self.dialect.integrity:
            raise errors.AlreadyExists(f"subject {subject_id!r} is already enrolled") from None
        if consent is not None:
            self._insert_consent(subject_id, consent, ts)
        self._add_templates(subject_id, part, vecs, self._new_dek(subject_id, ts), ts, encounters)

    def _add_templates(
        self,
        subject_id: str,
        partition: int,
        vecs: np.ndarray,
        dek: bytes,
        ts: int,
        encounters: Sequence[EncounterMeta] | None = None,
    ) -> list[int]:
        """Seals and writes ``vecs`` as the subject's templates, each one
        encounter (``encounters[i]``, or a generated one), and queues their
        events (one per gallery set and status), in the caller's
        transaction; returns their ids."""
        lay = self.layout
        template_ids = []
        metas = list(encounters or ())
        metas += [EncounterMeta.generated() for _ in range(len(vecs) - len(metas))]
        for row, meta in zip(vecs, metas, strict=True):
            try:
                (tid,) = self._one(
                    "INSERT INTO templates(subject_id, model_id, dimension, sealed, created_at_ms, "
                    "encounter_id, encounter_type, inactive, updated_at_ms, encounter_data) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING template_id",
                    (subject_id, lay.model_id, lay.dimension,
                     envelope.seal_template(dek, subject_id, vectors.to_bytes(row)), ts,
                     meta.encounter_id, meta.encounter_type, int(meta.inactive), ts,
                     encounter_rules.seal_data(dek, subject_id, meta.data)),
                )  # fmt: skip
            except self.dialect.integrity:
                raise errors.AlreadyExists(
                    f"subject {subject_id!r} already has an encounter {meta.encounter_id!r}"
                ) from None
            for g in meta.galleries:
                self._x("INSERT INTO template_galleries(template_id, gallery, subject_id) "
                        "VALUES (?, ?, ?)", (tid, g, subject_id))  # fmt: skip
            template_ids.append(tid)
        self._queue_added(subject_id, partition, template_ids, vecs, metas, dek, ts)
        return template_ids

    def _queue_added(self, subject_id: str, partition: int, template_ids: Sequence[int],
                     vecs: np.ndarray, metas: Sequence[EncounterMeta], dek: bytes,
                     ts: int) -> None:  # fmt: skip
        """Queues the ADDED events of templates: one per (galleries, status)."""
        lay = self.layout
        groups: dict[tuple[tuple[str, ...], bool], list[int]] = {}
        for i, meta in enumerate(metas):
            groups.setdefault((meta.galleries, meta.inactive), []).append(i)
        for (galleries, inactive), rows in groups.items():
            self._queue_event(
                store_pb2.TemplateEvent(
                    event_id=uuid.uuid4().hex, kind=ADDED, subject_id=subject_id,
                    partition=partition, template_ids=[template_ids[i] for i in rows],
                    vectors=vectors.to_bytes(vecs[rows]), dimension=lay.dimension,
                    model_id=lay.model_id, occurred_at_ms=ts, galleries=galleries,
                    inactive=inactive,
                ),
                dek,
            )  # fmt: skip

    def put_subject(
        self,
        subject_id: str,
        vecs: np.ndarray,
        dob: str = "",
        consent: common_pb2.Consent | None = None,
    ) -> common_pb2.Subject:
        """Enrols a subject with its consent and templates, and queues the event."""

        def tx(_c) -> common_pb2.Subject:
            self._insert_subject(subject_id, vecs, dob, consent)
            return self._subject_row(subject_id)

        return self._tx(tx)

    def put_many(
        self,
        items: Sequence[tuple[str, np.ndarray]],
        dob: str = "",
        consent: common_pb2.Consent | None = None,
    ) -> int:
        """Bulk enrolment in one transaction (imports, benchmarks); one event
        per subject. Without ``consent`` the subjects are in the gallery
        (de-duplication sees them) but no purpose may match them.
        Returns the number of subjects written."""

        def tx(_c) -> int:
            for subject_id, vecs in items:
                self._insert_subject(subject_id, vecs, dob, consent)
            return len(items)

        return self._tx(tx)

    def put_batch(
        self, rows: Sequence[tuple[str, np.ndarray, str, common_pb2.Consent]]
    ) -> list[str]:
        """Operator puts of many checked subjects in one transaction (``tanu
        gallery import``): each row under a savepoint, so a refused row
        leaves nothing and the others commit. Returns one refusal per row:
        "" stored, "duplicate_id" (already enrolled, or earlier in the
        batch), "consent" (an incomplete consent, or a guardian who is not
        enrolled)."""

        def tx(_c) -> list[str]:
            out = []
            for subject_id, vecs, dob, consent in rows:
                if (
                    consent.given_by == "guardian"
                    and self._one(
                        "SELECT 1 FROM subjects WHERE subject_id = ?",
                        (consent.guardian_subject_id,),
                    )
                    is None
                ):
                    out.append("consent")
                    continue
                self._x("SAVEPOINT put_row")
                try:
                    self._insert_subject(subject_id, vecs, dob, consent)
                except (errors.AlreadyExists, errors.InvalidArgument) as exc:
                    self._x("ROLLBACK TO SAVEPOINT put_row")
                    out.append(
                        "duplicate_id" if isinstance(exc, errors.AlreadyExists) else "consent"
                    )
                else:
                    out.append("")
                self._x("RELEASE SAVEPOINT put_row")
            return out

        return self._tx(tx)

    def get_templates(self, subject_id: str) -> store_pb2.GetTemplatesResponse:
        subject = self._subject_row(subject_id)
        dek = self._dek(subject_id)
        rows = self._all(
            "SELECT template_id, model_id, sealed, encounter_id, inactive FROM templates "
            "WHERE subject_id = ? ORDER BY template_id",
            (subject_id,),
        )
        return store_pb2.GetTemplatesResponse(
            subject=subject,
            templates=[
                store_pb2.StoredTemplate(
                    template_id=tid,
                    template=common_pb2.Template(
                        vector=envelope.open_template(dek, subject_id, bytes(blob)), model_id=mid
                    ),
                    encounter_id=eid,
                    inactive=bool(inactive),
                )  # fmt: skip
                for tid, mid, blob, eid, inactive in rows
            ],
            status=self._status(subject_id),
        )

    def delete_subject(
        self, subject_id: str, reason: str, tenant: str = "", client: str = ""
    ) -> store_pb2.DeleteSubjectResponse:
        """Erases a subject: templates, consents and data key (crypto-
        shredding) in one transaction with its removal event, its unpublished
        template events, its published ones queued for deletion from the
        stream, an audit entry, and the erasure record its receipts are
        built from (``tanu.store.erasures``)."""

        def tx(_c) -> store_pb2.DeleteSubjectResponse:
            subject = self._subject_row(subject_id)
            template_ids = [r[0] for r in self._all(
                "SELECT template_id FROM templates WHERE subject_id = ?", (subject_id,))]  # fmt: skip
            key = self._key_ids(subject_id)
            (consents,) = self._one(
                "SELECT COUNT(*) FROM consents WHERE subject_id = ?", (subject_id,)
            )
            seqs = [r[0] for r in self._all(
                "SELECT stream_seq FROM published WHERE subject_id = ?", (subject_id,))]  # fmt: skip
            self._queue_stream_erasures(seqs)
            self._x("DELETE FROM published WHERE subject_id = ?", (subject_id,))
            # Unpublished events are dropped; one the relay is publishing right
            # now is queued for deletion from the stream when it is acknowledged.
            (unpublished,) = self._one(
                "SELECT COUNT(*) FROM outbox WHERE subject_id = ? AND kind IN (?, ?)",
                (subject_id, *TRACKED),
            )
            self._x(
                "DELETE FROM outbox WHERE subject_id = ? AND kind IN (?, ?)", (subject_id, *TRACKED)
            )
            # Set-aside events too (``tanu.store.dead_letters``): none can be requeued.
            dead = self._drop_dead_letters(subject_id)
            for table in ("templates", "consents", "subject_keys", "subjects"):
                self._x(f"DELETE FROM {table} WHERE subject_id = ?", (subject_id,))
            ts = now_ms()
            event_id = uuid.uuid4().hex
            (parts,) = self._one("SELECT value FROM meta WHERE key = 'partitions'")
            self._queue_event(
                store_pb2.TemplateEvent(
                    event_id=event_id,
                    kind=REMOVED,
                    subject_id=subject_id,
                    partition=subject.partition,
                    template_ids=template_ids,
                    model_id=subject.model_id,
                    occurred_at_ms=ts,
                )
            )
            seq = self._append_audit(
                [
                    store_pb2.AuditRecord(
                        at_ms=ts, tenant=tenant, client=client, operation="erase",
                        subject_id=subject_id, result="ok",
                        detail_json=audit.detail_json({
                            "reason": reason[:200], "templates": len(template_ids), "data_key_id": key[0],
                            "master_key_id": key[1], "stream_messages": len(seqs),
                            "consents": consents, "removal_event_id": event_id,
                        }),
                    )
                ]
            )  # fmt: skip
            receipt_id = ids.receipt_id(subject_id, ts)
            self._record_erasure(receipt_id, subject_id, ts, {
                "reason": reason[:200], "requested_by": {"tenant": tenant[:64], "client": client[:64]},
                "partition": subject.partition, "partitions": int(parts),
                "removal_event_id": event_id, "unpublished_events": unpublished,
                "dead_letters": dead,
                "store": {"templates_removed": template_ids, "consents_removed": consents,
                          "data_key_destroyed": {"data_key_id": key[0], "master_key_id": key[1]},
                          "audit_seq": seq},
            }, seqs)  # fmt: skip
            return store_pb2.DeleteSubjectResponse(
                subject=subject, template_ids=template_ids, deleted_at_ms=ts, data_key_id=key[0],
                master_key_id=key[1], stream_messages=len(seqs), consents_removed=consents,
                removal_event_id=event_id, audit_seq=seq, receipt_id=receipt_id,
                partitions=int(parts),
            )  # fmt: skip

        return self._tx(tx)
