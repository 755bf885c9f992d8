"""Erasure: a subject's data removed everywhere, and the signed receipt
that says where.

The store erases the subject in one transaction and records the erasure
there (``tanu.store.erasures``); the gateway then asks every searcher
replica of the subject's partition, in the store's current layout, until
each that answers has the removal in its index (seconds at most), and has
the store sign the receipt it builds from its own record and those
confirmations. ``complete`` means store, data key, stream and every
replica's index are done. Snapshot files are rewritten later (within
TANU_SNAPSHOT_ERASURE_DELAY_S): a background step of this gateway keeps
asking the replicas and has the store sign the final receipt once every
snapshot is purged; GetErasureReceipt returns the latest receipt and, when
it is not final yet, asks the replicas once more first."""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING

import nats.errors

from tanu.core import errors, ids, logs
from tanu.policy import access
from tanu.v1 import common_pb2, identity_pb2, store_pb2

from . import idempotency

if TYPE_CHECKING:
    from .gateway import Gateway
    from .guard import Call

log = logs.get(__name__)

WINDOW_S = 0.15  # one round of replies from a partition's replicas
ROUND_GAP_S = 0.02  # between rounds
FINAL_EVERY_S = 2.0  # how often the background step asks about snapshots
FINAL_WAIT_S = 600.0  # how long it keeps asking before leaving it to GetErasureReceipt
MAX_FINALISING = (
    256  # background steps at once (a mass erasure leaves the rest to GetErasureReceipt)
)
_finalising: set[asyncio.Task] = set()


async def delete(
    gw: Gateway, req: identity_pb2.DeleteRequest, call: Call
) -> identity_pb2.DeleteResponse:
    """The lawful deletion of a subject (Identity.Delete)."""
    subject_id = ids.check_subject_id(req.subject_id)
    access.check("Delete", call.principal, (await gw.statuses([subject_id]))[subject_id])
    r, receipt = await erase(
        gw, subject_id, "lawful_delete: " + req.reason[:200], call, idempotency.for_call(call, req)
    )
    return identity_pb2.DeleteResponse(
        subject_id=subject_id,
        templates_removed=len(r.template_ids),
        deleted_at_ms=r.deleted_at_ms,
        partition=r.subject.partition,
        receipt=receipt,
    )


async def erase(
    gw: Gateway,
    subject_id: str,
    reason: str,
    call: Call,
    idem: store_pb2.Idempotency | None = None,
) -> tuple[store_pb2.DeleteSubjectResponse, common_pb2.ErasureReceipt]:
    """Erases a subject everywhere and returns the store's answer and the
    signed receipt (complete once every replica's index confirmed)."""
    r = await gw.store.delete(
        store_pb2.DeleteSubjectRequest(subject_id=subject_id, reason=reason,
                                       tenant=call.principal.tenant_id,
                                       client=call.principal.client, idempotency=idem)
    )  # fmt: skip
    parts = r.partitions or gw.layout.partitions
    tids = list(r.template_ids)
    receipt = await confirm(gw, r.receipt_id, parts, r.subject.partition, tids,
                            gw.config.erasure_wait_s, index_only=True)  # fmt: skip
    if not receipt.snapshots_purged and len(_finalising) < MAX_FINALISING:
        task = asyncio.create_task(
            _finalise(gw, r.receipt_id, parts, r.subject.partition, tids), name="erasure-final"
        )
        _finalising.add(task)
        task.add_done_callback(_finalising.discard)
    call.detail = {"receipt_id": r.receipt_id, "complete": receipt.complete}
    return r, receipt


async def confirm(gw: Gateway, receipt_id: str, partitions: int, partition: int,
                  template_ids: list[int], wait_s: float,
                  index_only: bool) -> common_pb2.ErasureReceipt:  # fmt: skip
    """Asks the partition's replicas, a round at a time, until each that
    answers confirms the index removal (``index_only``) or the snapshot
    purge too, or ``wait_s`` passes; then has the store sign the receipt."""
    loop = asyncio.get_running_loop()
    end = loop.time() + wait_s
    seen: dict[str, store_pb2.ReplicaConfirmation] = {}
    while True:
        # After the first round, a round ends as soon as every replica seen
        # so far has answered again.
        for st in await gw.searchers.erasure_confirmations(
            partitions, partition, template_ids, WINDOW_S, expect=len(seen)
        ):
            seen[st.replica] = store_pb2.ReplicaConfirmation(
                replica=st.replica, partition=st.partition, partitions=st.partitions,
                index_removed=not st.index_pending_template_ids,
                snapshot_purged=not st.pending_template_ids,
                applied_sequence=st.applied_sequence,
            )  # fmt: skip
        done = bool(seen) and all(
            c.index_removed if index_only else c.snapshot_purged for c in seen.values()
        )
        if done or loop.time() >= end:
            break
        await asyncio.sleep(ROUND_GAP_S)
    req = store_pb2.SealReceiptRequest(receipt_id=receipt_id, replicas=list(seen.values()))
    receipt = await gw.store.seal_receipt(req)
    if not receipt.complete and done:
        # The relay may still be deleting the stream messages: a moment more.
        for _ in range(10):
            await asyncio.sleep(0.05)
            receipt = await gw.store.seal_receipt(req)
            if receipt.complete:
                break
    return receipt


async def _finalise(gw: Gateway, receipt_id: str, partitions: int, partition: int,
                    template_ids: list[int]) -> None:  # fmt: skip
    """The background step: the final receipt once every snapshot is purged."""
    loop = asyncio.get_running_loop()
    end = loop.time() + FINAL_WAIT_S
    while loop.time() < end:
        await asyncio.sleep(FINAL_EVERY_S)
        try:
            r = await confirm(gw, receipt_id, partitions, partition, template_ids, 0.0, False)
        except errors.TanuError as exc:
            log.warning("erasure_final_failed", code=exc.code.name, error=exc.message[:200])
            continue
        except nats.errors.ConnectionClosedError:
            return  # the gateway is stopping: GetErasureReceipt finishes it later
        except Exception as exc:  # noqa: BLE001 - NATS reconnecting: ask again next round
            log.warning("erasure_final_failed", error=str(exc)[:200])
            continue
        if r.snapshots_purged:
            log.info("erasure_final", receipt_id=receipt_id)
            return


async def get_receipt(
    gw: Gateway, req: identity_pb2.GetErasureReceiptRequest, call: Call
) -> common_pb2.ErasureReceipt:
    """The latest signed receipt of one of the subject's erasures
    (Identity.GetErasureReceipt); not final yet: the replicas are asked once
    more and the store signs again if anything changed."""
    subject_id = ids.check_subject_id(req.subject_id)
    rid = req.receipt_id
    if not rid or len(rid) > 64:
        raise errors.InvalidArgument("receipt_id must be 1-64 characters")
    try:
        receipt = await gw.store.get_receipt(store_pb2.GetReceiptRequest(receipt_id=rid))
    except errors.NotFound:
        raise errors.NotFound("no such erasure receipt") from None
    if receipt.subject_id != subject_id:
        raise errors.NotFound("no such erasure receipt")
    if not receipt.snapshots_purged:
        body = json.loads(receipt.body_json)
        asked = [int(t) for t in body["store"]["templates_removed"]]
        receipt = await confirm(gw, rid, body["partitions"], body["partition"], asked, 0.0, False)
    call.detail = {"receipt_id": rid, "complete": receipt.complete,
                   "snapshots_purged": receipt.snapshots_purged}  # fmt: skip
    return receipt
