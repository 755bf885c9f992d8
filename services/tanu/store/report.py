"""What a citizen may ask of the store about themselves: the report of
every record held about them, and the history of who used their data (read
from the audit log).

Whether the subject is a minor is ``tanu.policy.subjects.is_minor``'s rule.
"""

from __future__ import annotations

import json

from tanu.core import errors
from tanu.policy.subjects import is_minor
from tanu.v1 import common_pb2

from .datakeys import DataKeys
from .status import SubjectStatus


class CitizenReport(SubjectStatus, DataKeys):
    """Reads over ``subjects``, ``consents``, ``subject_keys`` and ``audit``."""

    def report(self, subject_id: str) -> common_pb2.SubjectReport:
        """Everything the store holds about the subject, for the subject."""
        subject = self._subject_row(subject_id)
        st = self._status(subject_id)
        (updated,) = self._one(
            "SELECT updated_at_ms FROM subjects WHERE subject_id = ?", (subject_id,)
        )
        key = self._key_ids(subject_id)
        consents = [
            common_pb2.Consent(
                consent_id=r[0],
                purposes=json.loads(r[1]),
                given_by=r[2],
                guardian_subject_id=r[3],
                relationship=r[4],
                evidence_ref=r[5],
                tenant=r[6],
                client=r[7],
                granted_at_ms=r[8],
                revoked_at_ms=r[9],
                revoked_by=r[10],
            )  # fmt: skip
            for r in self._all(
                "SELECT consent_id, purposes, given_by, guardian_subject_id, relationship, "
                "evidence_ref, tenant, client, granted_at_ms, revoked_at_ms, revoked_by "
                "FROM consents WHERE subject_id = ? ORDER BY consent_id",
                (subject_id,),
            )
        ]
        return common_pb2.SubjectReport(
            subject=subject,
            date_of_birth=st.date_of_birth,
            minor=bool(st.date_of_birth) and is_minor(st.date_of_birth),
            records={
                "templates": subject.template_count,
                "consents": len(consents),
                "data_key": 1 if key[0] else 0,
            },
            updated_at_ms=updated,
            data_key_id=key[0],
            master_key_id=key[1],
            consents=consents,
            biometric_locked=st.biometric_locked,
            verification_locked=st.verification_locked,
            failed_verifications=st.failed_verifications,
        )

    def access_history(
        self, subject_id: str, page_size: int, page_token: str
    ) -> common_pb2.AccessHistory:
        """Who used the subject's data, from the audit log, a page at a time
        (``page_token``: the last seq of the previous page)."""
        size = min(max(page_size or 50, 1), 500)
        try:
            after = int(page_token) if page_token else 0
        except ValueError:
            raise errors.InvalidArgument(f"page_token {page_token!r} is not valid") from None
        rows = self._all(
            "SELECT seq, ts_ms, tenant, client, operation, purpose, result FROM audit "
            "WHERE subject_id = ? AND seq > ? ORDER BY seq LIMIT ?",
            (subject_id, after, size + 1),
        )
        more = len(rows) > size
        rows = rows[:size]
        return common_pb2.AccessHistory(
            entries=[
                common_pb2.AccessEntry(
                    seq=r[0],
                    at_ms=r[1],
                    tenant=r[2],
                    client=r[3],
                    operation=r[4],
                    purpose=r[5],
                    result=r[6],
                )  # fmt: skip
                for r in rows
            ],
            next_page_token=str(rows[-1][0]) if more else "",
        )
