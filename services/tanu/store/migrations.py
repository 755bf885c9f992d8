"""The layout migration, for ``tanu partitions rebalance``: the template ids
the store holds, per subject, a page at a time (what the staging searchers
must hold), and moving every subject to its partition under a new
partition count (``tanu.core.ids.partition_of``).

Both work on SQLite and PostgreSQL alike: the new partitions are computed
here, in Python, a batch of subjects at a time, not by a function
registered in the database.
"""

from __future__ import annotations

from tanu.core import errors, ids
from tanu.v1 import store_pb2

from .schema import Database

DEFAULT_PAGE = 1000
MAX_PAGE = 10_000


class LayoutMigration(Database):
    """Reads ``templates`` by subject; rewrites ``meta`` and ``subjects.partition``."""

    def list_templates(self, after_subject_id: str, limit: int) -> store_pb2.ListTemplatesResponse:
        """The template ids of up to ``limit`` subjects (0: ``DEFAULT_PAGE``)
        whose id sorts after ``after_subject_id`` ("" : from the first), in
        the database's order of subject ids. ``next_after_subject_id`` is
        where the next page starts, "" on the last page."""
        limit = limit or DEFAULT_PAGE
        if not 1 <= limit <= MAX_PAGE:
            raise errors.InvalidArgument(f"limit must be between 1 and {MAX_PAGE}, got {limit}")
        rows = self._all(
            "SELECT subject_id, template_id FROM templates WHERE subject_id IN ("
            "SELECT DISTINCT subject_id FROM templates WHERE subject_id > ? "
            "ORDER BY subject_id LIMIT ?) ORDER BY subject_id, template_id",
            (after_subject_id, limit + 1),
        )
        page: dict[str, list[int]] = {}
        for sid, tid in rows:
            page.setdefault(sid, []).append(tid)
        more = len(page) > limit
        subjects = list(page.items())[:limit]
        return store_pb2.ListTemplatesResponse(
            subjects=[
                store_pb2.SubjectTemplateIds(subject_id=sid, template_ids=tids)
                for sid, tids in subjects
            ],
            next_after_subject_id=subjects[-1][0] if more else "",
        )

    def migrate_layout(self, partitions: int, batch: int = 1000) -> int:
        """Records ``partitions`` as the store's partition count and moves
        every subject to ``partition_of(subject_id, partitions)``, in one
        transaction; returns how many subjects changed partition.

        Idempotent. A running store keeps enrolling under the count it was
        started with until it restarts with the new one (its layout check
        then agrees with the record): run this again after that restart to
        move the subjects enrolled in between."""
        if partitions < 1:
            raise errors.InvalidArgument(f"partitions must be at least 1, got {partitions}")

        def tx(_c) -> int:
            self._x("UPDATE meta SET value = ? WHERE key = 'partitions'", (str(partitions),))
            moved, after = 0, ""
            while rows := self._all(
                "SELECT subject_id, partition FROM subjects WHERE subject_id > ? "
                "ORDER BY subject_id LIMIT ?",
                (after, batch),
            ):
                for sid, current in rows:
                    new = ids.partition_of(sid, partitions)
                    if new != current:
                        self._x(
                            "UPDATE subjects SET partition = ? WHERE subject_id = ?", (new, sid)
                        )
                        # Its events' sequences were its old partition's: back
                        # in the de-duplication window (``tanu.store.dedup``).
                        self._x("UPDATE templates SET stream_seq = 0 WHERE subject_id = ?", (sid,))
                        moved += 1
                after = rows[-1][0]
            return moved

        return self._tx(tx)
