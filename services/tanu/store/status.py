"""A subject's record and status: the gallery record (``subjects``), the
consents in force, the verification lockout and the subject's own
biometric lock.

The rules live in ``tanu.policy``: who may consent for whom
(``tanu.policy.subjects.RELATIONSHIPS``) and how failed verifications delay
and then lock (``tanu.policy.lockout``, the ``Lockout`` the store was opened
with). This module stores their outcome.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from tanu.core import errors
from tanu.policy.lockout import Lockout
from tanu.policy.subjects import RELATIONSHIPS
from tanu.v1 import common_pb2, store_pb2

from .schema import Database, now_ms


class SubjectStatus(Database):
    """The ``subjects`` rows' status columns and the ``consents`` table."""

    lockout: Lockout

    def _subject_row(self, subject_id: str) -> common_pb2.Subject:
        row = self._one(
            "SELECT s.partition, s.model_id, s.created_at_ms, COUNT(t.template_id) "
            "FROM subjects s LEFT JOIN templates t ON t.subject_id = s.subject_id "
            "WHERE s.subject_id = ? GROUP BY s.subject_id, s.partition, s.model_id, s.created_at_ms",
            (subject_id,),
        )
        if row is None:
            raise errors.NotFound(f"subject {subject_id!r} is not enrolled")
        return common_pb2.Subject(
            subject_id=subject_id,
            partition=row[0],
            model_id=row[1],
            created_at_ms=row[2],
            template_count=row[3],
        )

    def get_subject(self, subject_id: str) -> common_pb2.Subject:
        """The subject's gallery record; NotFound when it is not enrolled."""
        return self._subject_row(subject_id)

    def count_subjects(self) -> int:
        return self._one("SELECT COUNT(*) FROM subjects")[0]

    def _insert_consent(self, subject_id: str, c: common_pb2.Consent, ts: int) -> None:
        purposes = sorted({p.strip() for p in c.purposes if p.strip()})
        if not purposes:
            raise errors.InvalidArgument("a consent must name at least one purpose")
        given_by = c.given_by or "self"
        if given_by not in ("self", "guardian"):
            raise errors.InvalidArgument(
                f"consent given_by must be self or guardian, not {given_by!r}"
            )
        if given_by == "guardian" and (
            not c.guardian_subject_id or c.relationship not in RELATIONSHIPS
        ):
            raise errors.InvalidArgument(
                f"a guardian's consent names the guardian and a relationship in {list(RELATIONSHIPS)}"
            )
        if not c.evidence_ref:
            raise errors.InvalidArgument("a consent needs an evidence reference (evidence_ref)")
        self._x(
            "INSERT INTO consents(subject_id, purposes, given_by, guardian_subject_id, relationship, "
            "evidence_ref, tenant, client, granted_at_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (subject_id, json.dumps(purposes), given_by, c.guardian_subject_id, c.relationship,
             c.evidence_ref[:200], c.tenant, c.client, ts),
        )  # fmt: skip

    def _status(self, subject_id: str) -> store_pb2.SubjectStatus:
        return self._statuses([subject_id])[subject_id]

    def _statuses(self, subject_ids: Sequence[str]) -> dict[str, store_pb2.SubjectStatus]:
        """Each subject's status, by id, in two queries however many there are."""
        ids = list(dict.fromkeys(subject_ids))
        if not ids:
            return {}
        marks = ", ".join("?" * len(ids))
        rows = self._all(
            "SELECT subject_id, date_of_birth, biometric_lock, failed_verifications, "
            f"retry_after_ms, verification_locked, owner FROM subjects WHERE subject_id IN ({marks})",
            ids,
        )  # fmt: skip
        purposes: dict[str, set[str]] = {r[0]: set() for r in rows}
        guardians: dict[str, set[str]] = {r[0]: set() for r in rows}
        if rows:
            for sid, p, g in self._all(
                "SELECT subject_id, purposes, guardian_subject_id FROM consents "
                f"WHERE subject_id IN ({marks}) AND revoked_at_ms = 0",
                ids,
            ):
                if sid in purposes:
                    purposes[sid].update(json.loads(p))
                    if g:
                        guardians[sid].add(g)
        out = {sid: store_pb2.SubjectStatus(subject_id=sid, enrolled=False) for sid in ids}
        for sid, dob, lock, failed, retry_after, locked, owner in rows:
            out[sid] = store_pb2.SubjectStatus(
                subject_id=sid,
                enrolled=True,
                date_of_birth=dob,
                purposes=sorted(purposes[sid]),
                biometric_locked=bool(lock),
                failed_verifications=failed,
                retry_after_ms=retry_after,
                verification_locked=bool(locked),
                guardians=sorted(guardians[sid]),
                owner=owner,
            )
        return out

    def status(self, subject_ids: Sequence[str]) -> store_pb2.StatusResponse:
        found = self._statuses(subject_ids)
        return store_pb2.StatusResponse(statuses=[found[s] for s in subject_ids])

    def admit_attempt(
        self, subject_id: str, unlocking: bool = False
    ) -> store_pb2.AdmitAttemptResponse:
        """Admits one face confirmation and counts it, in one transaction:
        refused while the lockout delays (``retry_after_ms``) or locks (but
        for the subject's own ``unlocking``, which is still delayed);
        otherwise counted as a failure at once, with the delay or lock that
        failure brings (``tanu.policy.lockout``). A matched outcome
        (``record_verification(matched=True)``) clears it; a crash between
        the two leaves it counted, the safe side. N concurrent attempts are
        N admissions, one at a time: none slips past a delay."""

        def tx(_c) -> store_pb2.AdmitAttemptResponse:
            lock = " FOR UPDATE" if self.is_postgres else ""
            row = self._one(
                "SELECT failed_verifications, retry_after_ms, verification_locked FROM subjects "
                f"WHERE subject_id = ?{lock}",
                (subject_id,),
            )
            if row is None:
                return store_pb2.AdmitAttemptResponse(
                    status=self._status(subject_id), refusal="not_enrolled"
                )
            failed, retry_after, locked = row
            ts = now_ms()
            refusal = ""
            if locked and not unlocking:
                refusal = "locked"
            elif retry_after > ts:
                refusal = "delayed"
            if refusal:
                return store_pb2.AdmitAttemptResponse(
                    status=self._status(subject_id), refusal=refusal
                )
            n = failed + 1
            retry, now_locked = self.lockout.after_failure(n, ts)
            self._x(
                "UPDATE subjects SET failed_verifications = ?, retry_after_ms = ?, "
                "verification_locked = ? WHERE subject_id = ?",
                (n, retry, int(bool(locked) or now_locked), subject_id),
            )
            return store_pb2.AdmitAttemptResponse(status=self._status(subject_id), admitted=True)

        return self._tx(tx)

    def record_verification(self, subject_id: str, matched: bool) -> store_pb2.SubjectStatus:
        """A 1:1 outcome: a match clears the count (and the lock the
        admitted attempt itself may have set); a failure not admitted by
        ``admit_attempt`` counts one (the rule: ``tanu.policy.lockout``)."""

        def tx(_c) -> store_pb2.SubjectStatus:
            self._subject_row(subject_id)
            if matched:
                self._x(
                    "UPDATE subjects SET failed_verifications = 0, retry_after_ms = 0, "
                    "verification_locked = 0 WHERE subject_id = ?",
                    (subject_id,),
                )
            else:
                (n,) = self._one(
                    "SELECT failed_verifications FROM subjects WHERE subject_id = ?", (subject_id,)
                )
                n += 1
                retry, locked = self.lockout.after_failure(n, now_ms())
                self._x(
                    "UPDATE subjects SET failed_verifications = ?, retry_after_ms = ?, "
                    "verification_locked = ? WHERE subject_id = ?",
                    (n, retry, int(locked), subject_id),
                )
            return self._status(subject_id)

        return self._tx(tx)

    def grant_consent(
        self, subject_id: str, consent: common_pb2.Consent
    ) -> store_pb2.SubjectStatus:
        def tx(_c) -> store_pb2.SubjectStatus:
            self._subject_row(subject_id)
            ts = now_ms()
            self._insert_consent(subject_id, consent, ts)
            self._x("UPDATE subjects SET updated_at_ms = ? WHERE subject_id = ?", (ts, subject_id))
            return self._status(subject_id)

        return self._tx(tx)

    def revoke_consent(
        self, subject_id: str, purposes: Sequence[str], revoked_by: str
    ) -> store_pb2.SubjectStatus:
        """Withdraws the named purposes (all when empty) from every consent in
        force; a consent left with no purpose is marked revoked."""

        def tx(_c) -> store_pb2.SubjectStatus:
            self._subject_row(subject_id)
            ts = now_ms()
            drop = set(purposes)
            for cid, p in self._all(
                "SELECT consent_id, purposes FROM consents WHERE subject_id = ? AND revoked_at_ms = 0",
                (subject_id,),
            ):
                left = [x for x in json.loads(p) if drop and x not in drop]
                if left:
                    self._x("UPDATE consents SET purposes = ? WHERE consent_id = ?",
                            (json.dumps(left), cid))  # fmt: skip
                else:
                    self._x(
                        "UPDATE consents SET revoked_at_ms = ?, revoked_by = ? WHERE consent_id = ?",
                        (ts, revoked_by, cid),
                    )
            self._x("UPDATE subjects SET updated_at_ms = ? WHERE subject_id = ?", (ts, subject_id))
            return self._status(subject_id)

        return self._tx(tx)

    def set_biometric_lock(self, subject_id: str, locked: bool) -> store_pb2.SubjectStatus:
        """Sets the subject's own lock. Unlocking also lifts a verification lockout."""

        def tx(_c) -> store_pb2.SubjectStatus:
            self._subject_row(subject_id)
            if locked:
                self._x("UPDATE subjects SET biometric_lock = 1, updated_at_ms = ? WHERE subject_id = ?",
                        (now_ms(), subject_id))  # fmt: skip
            else:
                self._x(
                    "UPDATE subjects SET biometric_lock = 0, verification_locked = 0, "
                    "failed_verifications = 0, retry_after_ms = 0, updated_at_ms = ? "
                    "WHERE subject_id = ?",
                    (now_ms(), subject_id),
                )
            return self._status(subject_id)

        return self._tx(tx)
