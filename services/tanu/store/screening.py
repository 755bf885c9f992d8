"""Identify's last step in one transaction: its candidates screened for the
caller's purpose (``tanu.policy.consent.may_use``: enrolled, consented to
it, not biometrically locked) and the audit entries of the outcome
appended, the request's own entry with how many candidates it returned
and withheld, then one entry per candidate returned.

One round trip instead of two (a status look-up, then the audit append),
and the screening read and the entries naming its outcome are one
transaction: the entries say exactly what the status read allowed. The
caller is answered once that transaction has committed, so the entries are
durable before the request's reply leaves.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from tanu.core import audit, errors
from tanu.policy import consent
from tanu.v1 import store_pb2

from .audit_log import AuditLog
from .status import SubjectStatus

# Subject ids per status query (bound parameters of one ``IN (...)``).
_IDS_PER_QUERY = 500


class Screening(SubjectStatus, AuditLog):
    """``screen_audits``: screening and audit of requests' outcomes."""

    def screen_audits(
        self, groups: Sequence[Sequence[store_pb2.ScreenedAudit]]
    ) -> list[list[store_pb2.ScreenedAuditResult]]:
        """Screens every audit's uses and appends its entries, in order, in
        one transaction; returns each group's results (one per audit)."""

        def tx(_c) -> list[list[store_pb2.ScreenedAuditResult]]:
            ids = sorted({u.subject_id for g in groups for a in g for u in a.uses})
            status: dict[str, store_pb2.SubjectStatus] = {}
            for i in range(0, len(ids), _IDS_PER_QUERY):
                status.update(self._usable_statuses(ids[i : i + _IDS_PER_QUERY]))
            records: list[store_pb2.AuditRecord] = []
            results: list[list[store_pb2.ScreenedAuditResult]] = []
            ends: list[int] = []  # the number of records up to each audit's last
            for g in groups:
                results.append([])
                for a in g:
                    usable = [consent.may_use(status[u.subject_id], a.purpose) for u in a.uses]
                    records.extend(_entries(a, usable))
                    ends.append(len(records))
                    results[-1].append(store_pb2.ScreenedAuditResult(usable=usable))
            last = self._append_audit(records)
            first = last - len(records)
            flat = [r for rs in results for r in rs]
            for r, end in zip(flat, ends, strict=True):
                r.last_seq = first + end
            return results

        return self._tx(tx)

    def _usable_statuses(self, subject_ids: Sequence[str]) -> dict[str, store_pb2.SubjectStatus]:
        """What ``consent.may_use`` reads of each subject (enrolled, the
        purposes of their standing consents, the biometric lock), in one
        query: the screening's share of an Identify's one store trip."""
        out = {sid: store_pb2.SubjectStatus(subject_id=sid, enrolled=False) for sid in subject_ids}
        if not subject_ids:
            return out
        marks = ", ".join("?" * len(out))
        purposes: dict[str, set[str]] = {}
        for sid, lock, granted in self._all(
            "SELECT s.subject_id, s.biometric_lock, c.purposes FROM subjects s "
            "LEFT JOIN consents c ON c.subject_id = s.subject_id AND c.revoked_at_ms = 0 "
            f"WHERE s.subject_id IN ({marks})",
            list(out),
        ):
            st = out[sid]
            st.enrolled, st.biometric_locked = True, bool(lock)
            if granted:
                purposes.setdefault(sid, set()).update(json.loads(granted))
        for sid, ps in purposes.items():
            out[sid].purposes[:] = sorted(ps)
        return out


def _entries(a: store_pb2.ScreenedAudit, usable: list[bool]) -> list[store_pb2.AuditRecord]:
    """An audit's entries once screened: its own, with the counts in its
    detail, one per further subject, then one per usable candidate."""
    n = sum(usable)
    own = store_pb2.AuditRecord()
    own.CopyFrom(a.record)
    try:
        detail = json.loads(a.record.detail_json) if a.record.detail_json else {}
    except ValueError:
        detail = None
    if not isinstance(detail, dict):
        raise errors.InvalidArgument("an audit record's detail_json is not a JSON object")
    detail.update(candidates=n, withheld=len(usable) - n)
    own.detail_json = audit.detail_json(detail)
    named = [*a.further, *(u for u, ok in zip(a.uses, usable, strict=True) if ok)]
    return [own, *audit.subject_entries(a.record, ((u.subject_id, u.result) for u in named),
                                        a.use_detail_json)]  # fmt: skip
