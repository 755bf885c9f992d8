"""The adjudication queue: an enrolment that de-duplication matched with an
enrolled subject is held here as a case (its templates sealed with a data
key of the case's own, its consent and metadata kept, nothing searchable)
until an adjudicator decides it:

- ``duplicate``: refused; the held templates, key and consent are destroyed.
- ``merge``: the held templates become further templates of the matched
  subject (sealed with its data key, published through the outbox).
- ``distinct``: enrolled as a new subject, through the normal outbox path.

Both subjects' access histories get an audit entry for the case and for
the decision (``case_opened`` / ``dedup_hit``, ``case_decided``). A case
never leaves the store with a template in it.
"""

from __future__ import annotations

import uuid

import numpy as np

from tanu.core import audit, envelope, errors, ids, vectors
from tanu.v1 import cases_pb2, common_pb2, encounters_pb2, store_pb2

from .encounter_rules import EncounterMeta
from .schema import now_ms
from .subjects import Subjects

DECISIONS = {"duplicate": "duplicate", "merge": "merged", "distinct": "distinct"}
MAX_NOTE = 500
DEFAULT_PAGE, MAX_PAGE = 50, 500
MAX_TEMPLATES_PER_SUBJECT = 32
_ENCOUNTER_AAD = "\nencounter"

_COLS = (
    "case_id, state, subject_id, date_of_birth, consent, template_count, matched_subject_id, "
    "score, threshold, tenant, client, purpose, created_at_ms, decided_at_ms, decided_by, note"
)


class Cases(Subjects):
    """The ``cases`` table."""

    DDL = """
CREATE TABLE IF NOT EXISTS cases (
    case_id TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    subject_id TEXT NOT NULL,
    date_of_birth TEXT NOT NULL,
    consent {blob} NOT NULL,
    template_count INTEGER NOT NULL,
    master_key_id TEXT NOT NULL,
    wrapped {blob} NOT NULL,
    sealed {blob} NOT NULL,
    matched_subject_id TEXT NOT NULL,
    score REAL NOT NULL,
    threshold REAL NOT NULL,
    tenant TEXT NOT NULL,
    client TEXT NOT NULL,
    purpose TEXT NOT NULL,
    created_at_ms {big} NOT NULL,
    decided_at_ms {big} NOT NULL DEFAULT 0,
    decided_by TEXT NOT NULL DEFAULT '',
    note TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS cases_by_state ON cases(state, created_at_ms);
CREATE INDEX IF NOT EXISTS cases_by_subject ON cases(subject_id)
"""

    def _case_audit(self, case_id, subjects, operation, result, tenant, client, purpose, extra):
        """One audit entry per subject of a case, in the caller's transaction."""
        ts = now_ms()
        detail = audit.detail_json({"case_id": case_id, **extra})
        return self._append_audit([
            store_pb2.AuditRecord(at_ms=ts, tenant=tenant, client=client, operation=operation,
                                  purpose=purpose, subject_id=sid, result=result,
                                  detail_json=detail)
            for sid in subjects
        ])  # fmt: skip

    def _hold(
        self, req: store_pb2.PutSubjectRequest, vecs: np.ndarray, matched: str, score: float
    ) -> str:
        """Holds an enrolment as an open case, in the caller's transaction;
        returns the case id."""
        d = req.dedup
        case_id = "case-" + uuid.uuid4().hex[:20]
        dek = envelope.new_data_key()
        kid = self.keys.active_id()
        self._x(
            f"INSERT INTO cases({_COLS}, master_key_id, wrapped, sealed) "
            "VALUES (?, 'open', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, '', '', ?, ?, ?)",
            (case_id, req.subject_id, req.date_of_birth, req.consent.SerializeToString(),
             len(vecs), matched, float(score), float(d.threshold), d.tenant, d.client, d.purpose,
             now_ms(), kid, self.keys.wrap(kid, dek, case_id.encode()),
             envelope.seal_template(dek, case_id, vectors.to_bytes(vecs))),
        )  # fmt: skip
        if req.HasField("encounter"):  # its encounter (OSIA), kept for the decision
            self._x("UPDATE cases SET encounter = ? WHERE case_id = ?",
                    (envelope.seal_template(dek, case_id + _ENCOUNTER_AAD,
                                            req.encounter.SerializeToString()), case_id))  # fmt: skip
        self._case_audit(case_id, [req.subject_id], "case_opened", "referred", d.tenant,
                         d.client, d.purpose, {"score": round(float(score), 6)})  # fmt: skip
        return case_id

    def _case_row(self, case_id: str) -> dict:
        row = self._one(f"SELECT {_COLS} FROM cases WHERE case_id = ?", (case_id,))
        if row is None:
            raise errors.NotFound(f"no adjudication case {case_id!r}")
        return dict(zip([c.strip() for c in _COLS.split(",")], row, strict=True))

    def _case_message(self, r: dict) -> cases_pb2.Case:
        lay = self.layout
        consent = common_pb2.Consent.FromString(bytes(r["consent"])) if r["consent"] else None
        enrolment = cases_pb2.CaseRecord(
            subject_id=r["subject_id"], date_of_birth=r["date_of_birth"],
            purposes=sorted(consent.purposes) if consent else [],
            tenants=[consent.tenant or r["tenant"]] if consent else [r["tenant"]],
            created_at_ms=r["created_at_ms"], template_count=r["template_count"],
            partition=ids.partition_of(r["subject_id"], lay.partitions), present=bool(consent),
        )  # fmt: skip
        return cases_pb2.Case(
            case_id=r["case_id"], state=r["state"], created_at_ms=r["created_at_ms"],
            enrolment=enrolment, matched=self._matched_record(r["matched_subject_id"]),
            score=r["score"], threshold=r["threshold"], metric=vectors.METRIC_PROTO[lay.metric],
            tenant=r["tenant"], client=r["client"], purpose=r["purpose"],
            decided_at_ms=r["decided_at_ms"], decided_by=r["decided_by"], note=r["note"],
        )  # fmt: skip

    def _matched_record(self, subject_id: str) -> cases_pb2.CaseRecord:
        st = self._status(subject_id)
        if not st.enrolled:
            return cases_pb2.CaseRecord(subject_id=subject_id, present=False)
        s = self._subject_row(subject_id)
        return cases_pb2.CaseRecord(
            subject_id=subject_id, date_of_birth=st.date_of_birth, purposes=st.purposes,
            tenants=self.consent_tenants(subject_id), created_at_ms=s.created_at_ms,
            partition=s.partition, template_count=s.template_count,
            biometric_locked=st.biometric_locked, present=True,
        )  # fmt: skip

    def consent_tenants(self, subject_id: str) -> list[str]:
        """The tenants of a subject's consent records, the earliest (the enrolling agency) first."""
        out: list[str] = []
        for (t,) in self._all(
            "SELECT tenant FROM consents WHERE subject_id = ? ORDER BY consent_id", (subject_id,)
        ):
            if t and t not in out:
                out.append(t)
        return out

    def get_case(self, case_id: str) -> cases_pb2.Case:
        """A case: both records' metadata and the score, never a template."""
        return self._case_message(self._case_row(case_id))

    def list_cases(
        self, state: str, page_size: int, page_token: str
    ) -> cases_pb2.ListCasesResponse:
        """A page of cases, oldest first; ``state`` open (default), decided or all."""
        state = state or "open"
        where = {"open": "state = 'open'", "decided": "state <> 'open'", "all": "1 = 1"}.get(state)
        if where is None:
            raise errors.InvalidArgument(f"state must be open, decided or all, not {state[:40]!r}")
        size = page_size or DEFAULT_PAGE
        if not 1 <= size <= MAX_PAGE:
            raise errors.InvalidArgument(f"page_size must be 1..{MAX_PAGE}, got {page_size}")
        if page_token and not (page_token.isdigit() and len(page_token) <= 12):
            raise errors.InvalidArgument("page_token is not one this service issued")
        offset = int(page_token or 0)
        rows = self._all(
            f"SELECT {_COLS} FROM cases WHERE {where} ORDER BY created_at_ms, case_id "
            "LIMIT ? OFFSET ?",
            (size + 1, offset),
        )
        keys = [c.strip() for c in _COLS.split(",")]
        cases = [self._case_message(dict(zip(keys, r, strict=True))) for r in rows[:size]]
        nxt = str(offset + size) if len(rows) > size else ""
        return cases_pb2.ListCasesResponse(cases=cases, next_page_token=nxt)

    def decide_case(self, req: cases_pb2.DecideCaseRequest) -> cases_pb2.DecideCaseResponse:
        """Decides an open case (duplicate, merge or distinct), in one
        transaction with its effect and both subjects' audit entries."""
        state = DECISIONS.get(req.decision)
        if state is None:
            raise errors.InvalidArgument(
                f"decision must be one of {sorted(DECISIONS)}, not {req.decision[:40]!r}"
            )
        if len(req.note) > MAX_NOTE:
            raise errors.InvalidArgument(
                f"note is {len(req.note)} characters; the limit is {MAX_NOTE}"
            )

        def tx(_c) -> cases_pb2.DecideCaseResponse:
            self._dedup_lock()
            r = self._case_row(req.case_id)
            if r["state"] != "open":
                raise errors.FailedPrecondition(
                    f"case {req.case_id!r} was decided already ({r['state']})"
                )
            subject = self._apply_decision(req.decision, r)
            who = f"{req.decided_by_tenant}/{req.decided_by_client}"
            self._x(
                "UPDATE cases SET state = ?, decided_at_ms = ?, decided_by = ?, note = ?, "
                "consent = ?, wrapped = ?, sealed = ?, encounter = NULL WHERE case_id = ?",
                (state, now_ms(), who, req.note, b"", b"", b"", req.case_id),
            )
            subjects = [r["subject_id"], r["matched_subject_id"]]
            self._case_audit(req.case_id, subjects, "case_decided", state, req.decided_by_tenant,
                             req.decided_by_client, "adjudication", {})  # fmt: skip
            out = cases_pb2.DecideCaseResponse(case=self._case_message(self._case_row(req.case_id)))
            if subject is not None:
                out.subject.CopyFrom(subject)
            return out

        return self._tx(tx)

    def _held_vectors(self, r: dict) -> np.ndarray:
        mk, wrapped, sealed = self._one(
            "SELECT master_key_id, wrapped, sealed FROM cases WHERE case_id = ?", (r["case_id"],)
        )
        dek = self.keys.unwrap(mk, bytes(wrapped), r["case_id"].encode())
        raw = envelope.open_template(dek, r["case_id"], bytes(sealed))
        return vectors.from_bytes(raw, self.layout.dimension).copy()

    def _held_encounters(self, r: dict, count: int) -> list[EncounterMeta] | None:
        """The held enrolment's encounters (as enrolled with it), or None."""
        mk, wrapped, sealed = self._one(
            "SELECT master_key_id, wrapped, encounter FROM cases WHERE case_id = ?", (r["case_id"],)
        )
        if not sealed:
            return None
        dek = self.keys.unwrap(mk, bytes(wrapped), r["case_id"].encode())
        raw = envelope.open_template(dek, r["case_id"] + _ENCOUNTER_AAD, bytes(sealed))
        first = EncounterMeta.of(encounters_pb2.EncounterFields.FromString(raw))
        return [first] + [first.others() for _ in range(count - 1)]

    def _apply_decision(self, decision: str, r: dict) -> common_pb2.Subject | None:
        if decision == "duplicate":
            return None
        vecs = self._held_vectors(r)
        metas = self._held_encounters(r, len(vecs))
        if decision == "distinct":
            consent = common_pb2.Consent.FromString(bytes(r["consent"]))
            self._insert_subject(r["subject_id"], vecs, r["date_of_birth"], consent, metas)
            return self._subject_row(r["subject_id"])
        return self._merge(r["matched_subject_id"], vecs, metas)

    def _merge(self, subject_id: str, vecs: np.ndarray, metas=None) -> common_pb2.Subject:
        """Adds ``vecs`` to an enrolled subject as further templates (its
        encounters ``metas``: one whose id the subject holds already gets a
        generated one), and queues their event."""
        subject = self._subject_row(subject_id)
        if subject.template_count + len(vecs) > MAX_TEMPLATES_PER_SUBJECT:
            raise errors.FailedPrecondition(
                f"subject would hold more than {MAX_TEMPLATES_PER_SUBJECT} templates; "
                "decide duplicate instead"
            )
        metas = [m.others() if self._one(
            "SELECT 1 FROM templates WHERE subject_id = ? AND encounter_id = ?",
            (subject_id, m.encounter_id)) else m for m in metas or ()]  # fmt: skip
        self._add_templates(subject_id, subject.partition, vecs, self._dek(subject_id), now_ms(),
                            metas or None)  # fmt: skip
        return self._subject_row(subject_id)

    def _close_case(self, case_id: str, state: str, tenant: str, client: str, purpose: str):
        """Closes an open case without enrolling it (the held record destroyed), audited."""
        r = self._case_row(case_id)
        self._x(
            "UPDATE cases SET state = ?, decided_at_ms = ?, decided_by = ?, consent = ?, "
            "wrapped = ?, sealed = ?, encounter = NULL WHERE case_id = ?",
            (state, now_ms(), f"{tenant}/{client}", b"", b"", b"", case_id),
        )
        self._case_audit(case_id, [r["subject_id"], r["matched_subject_id"]], "case_decided",
                         state, tenant, client, purpose, {})  # fmt: skip

    def erase_held(self, subject_id: str, tenant: str, client: str) -> int:
        """Closes (``erased``) the open case holding an enrolment of
        ``subject_id``, destroying the held record: an erasure reaches
        held enrolments too. Returns how many cases it closed (0 or 1)."""

        def tx(_c) -> int:
            held = self.open_case_for(subject_id)
            if held:
                self._close_case(held, "erased", tenant, client, "erasure")
            return int(bool(held))

        return self._tx(tx)

    def open_case_for(self, subject_id: str) -> str:
        """The open case holding an enrolment of ``subject_id``; "" when none."""
        row = self._one(
            "SELECT case_id FROM cases WHERE subject_id = ? AND state = 'open'", (subject_id,)
        )
        return row[0] if row else ""

    def _dedup_lock(self) -> None:
        raise NotImplementedError  # tanu.store.dedup
