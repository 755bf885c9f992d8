"""What a replica answers about what it holds: the erasure check (which of
some erased template ids its index, or its snapshot file on disk, still
holds; the two told apart, so index removal is confirmed as soon as the
removal is applied, not when the snapshot is next rewritten) and the
reconciliation digest of its index (``tanu.core.digest``)."""

from __future__ import annotations

import numpy as np

from tanu.core import digest, errors
from tanu.v1 import common_pb2, searcher_pb2


def _check_layout(svc, partitions: int, partition: int | None = None) -> None:
    lay = svc.layout.partitions
    if (
        partitions
        and partitions != lay
        or (partition is not None and partition != svc.config.partition)
    ):
        raise errors.FailedPrecondition(
            f"this replica is of partition {svc.config.partition} of {lay}"
        )


async def erasure_check(
    svc, req: searcher_pb2.ErasureCheckRequest
) -> searcher_pb2.ErasureCheckResponse:
    """Of the request's ids: those not yet removed from the index, and those
    the snapshot on disk may still hold."""
    _check_layout(svc, req.partitions)
    asked = list(req.template_ids)
    if len(asked) > 10_000:
        raise errors.InvalidArgument("at most 10000 template ids per erasure check")
    ids = np.asarray(asked, dtype=np.int64)
    removed = await svc.on_index_thread(svc.index.tombstoned, ids) if asked else np.zeros(0, bool)
    index_pending = ids[~removed].tolist()
    pending = await svc.snapshots.pending_erasures(asked)
    snapshot_pending = sorted(set(pending) - set(index_pending))
    cfg = svc.config
    return searcher_pb2.ErasureCheckResponse(
        partition=cfg.partition, replica=cfg.replica, caught_up=svc.caught_up.is_set(),
        applied_sequence=svc.applied_sequence, pending_template_ids=pending,
        snapshot_sequence=svc.snapshots.sequence if svc.snapshots.on_disk else 0,
        index_pending_template_ids=index_pending, snapshot_pending_template_ids=snapshot_pending,
        partitions=svc.layout.partitions, staging=cfg.staging,
    )  # fmt: skip


async def index_digest(svc, req: common_pb2.DigestRequest) -> common_pb2.DigestResponse:
    """The digest of each requested id range over the ids in the index
    (removed ones excluded)."""
    _check_layout(svc, req.partitions, req.partition)
    bounds = digest.check_request(req)

    def compute():
        return digest.ranges(np.asarray(svc.index.template_ids(), np.int64), bounds,
                             req.list_below)  # fmt: skip

    out = await svc.on_index_thread(compute)
    cfg = svc.config
    return common_pb2.DigestResponse(
        partition=cfg.partition, replica=cfg.replica, caught_up=svc.caught_up.is_set(),
        applied_sequence=svc.applied_sequence, ranges=out, partitions=svc.layout.partitions,
    )  # fmt: skip
