"""Reconciliation on the store's side (``tanu reconcile``, the rebalance's
verification): the digest of the template ids a partition must hold, and
re-publishing template events that a searcher lacks or must drop.

The digest is ``tanu.core.digest``'s (count, XOR, sum of a mix of each id),
the same a searcher replica computes over its index, so the two compare
without any id list crossing the bus (a range lists its ids only when it is
small, for the last step of narrowing a difference down)."""

from __future__ import annotations

import uuid

import numpy as np

from tanu.core import digest, errors, ids
from tanu.v1 import common_pb2, store_pb2

from .outbox import REMOVED, Outbox
from .schema import now_ms
from .status import SubjectStatus

MAX_REPUBLISH = 1000


class Digests(SubjectStatus, Outbox):
    """Reads ``templates`` by partition; queues events in the outbox."""

    def _partition_ids(self, partitions: int, partition: int) -> np.ndarray:
        (stored,) = self._one("SELECT value FROM meta WHERE key = 'partitions'")
        if partitions == int(stored):
            rows = self._all(
                "SELECT t.template_id FROM templates t JOIN subjects s ON s.subject_id = t.subject_id "
                "WHERE s.partition = ?",
                (partition,),
            )
            return np.fromiter((r[0] for r in rows), np.int64, len(rows))
        # Another layout (a rebalance's target): the partition is computed here.
        out = []
        for sid, tid in self._all("SELECT subject_id, template_id FROM templates"):
            if ids.partition_of(sid, partitions) == partition:
                out.append(tid)
        return np.asarray(out, dtype=np.int64)

    def digest(self, req: common_pb2.DigestRequest) -> common_pb2.DigestResponse:
        """The digest of each requested id range of one partition."""
        if not 1 <= req.partitions <= 4096 or req.partition >= req.partitions:
            raise errors.InvalidArgument(f"no partition {req.partition} of {req.partitions}")
        bounds = digest.check_request(req)
        held = self._tx(lambda _c: self._partition_ids(req.partitions, req.partition))
        return common_pb2.DigestResponse(
            partition=req.partition, partitions=req.partitions, caught_up=True,
            ranges=digest.ranges(held, bounds, req.list_below),
        )  # fmt: skip

    def republish(self, req: store_pb2.RepublishRequest) -> store_pb2.RepublishResponse:
        """Queues again the ADDED event of every subject holding one of
        ``template_ids``, and a REMOVED event for ``remove_template_ids``
        that the store does not hold (searchers apply both idempotently)."""
        if len(req.template_ids) + len(req.remove_template_ids) > MAX_REPUBLISH:
            raise errors.InvalidArgument(f"at most {MAX_REPUBLISH} template ids per request")
        if req.remove_template_ids and req.partition >= self.layout.partitions:
            raise errors.InvalidArgument(f"no partition {req.partition}")

        def tx(_c) -> store_pb2.RepublishResponse:
            ts = now_ms()
            subjects = sorted({r[0] for t in req.template_ids for r in self._all(
                "SELECT subject_id FROM templates WHERE template_id = ?", (t,))})  # fmt: skip
            count = 0
            for sid in subjects:
                subject = self._subject_row(sid)
                # With their galleries and status (``tanu.store.encounters``,
                # a part of the composed ``Store``): a re-published event
                # never resets a template's membership.
                count += self._requeue_kept(sid, subject.partition, ts)
            # Never an id the store may still issue: a removal would block it.
            (top,) = self._one("SELECT COALESCE(MAX(template_id), 0) FROM templates")
            foreign = [t for t in req.remove_template_ids
                       if self._one("SELECT 1 FROM templates WHERE template_id = ?", (t,)) is None]  # fmt: skip
            extra = [t for t in foreign if 0 <= t <= top]
            if extra:
                # No subject id: a searcher applies an anonymous removal
                # whichever partition it keeps (tombstoning an id no
                # subject holds harms nothing).
                self._queue_event(store_pb2.TemplateEvent(
                    event_id=uuid.uuid4().hex, kind=REMOVED, partition=req.partition,
                    template_ids=extra, model_id=self.layout.model_id, occurred_at_ms=ts,
                ))  # fmt: skip
            return store_pb2.RepublishResponse(subjects=len(subjects), templates=count,
                                               removed=len(extra),
                                               refused=len(foreign) - len(extra))  # fmt: skip

        return self._tx(tx)
