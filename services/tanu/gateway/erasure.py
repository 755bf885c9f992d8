"""Erasure: a subject's data removed everywhere, and the signed receipt
that says where: the store's transaction (templates, consents, the data
key), the event stream's template messages, and each searcher replica's
confirmation that its index and snapshot no longer hold the vectors."""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING

from tanu.core import ids
from tanu.v1 import common_pb2, identity_pb2, store_pb2

from . import idempotency

if TYPE_CHECKING:
    from .gateway import Gateway
    from .guard import Call


async def delete(
    gw: Gateway, req: identity_pb2.DeleteRequest, call: Call
) -> identity_pb2.DeleteResponse:
    """The lawful deletion of a subject (Identity.Delete)."""
    subject_id = ids.check_subject_id(req.subject_id)
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
    signed receipt."""
    r = await gw.store.delete(
        store_pb2.DeleteSubjectRequest(subject_id=subject_id, reason=reason,
                                       tenant=call.principal.tenant_id,
                                       client=call.principal.client, idempotency=idem)
    )  # fmt: skip
    replicas = await confirm_erasure(gw, r.subject.partition, list(r.template_ids))
    complete = bool(replicas) and all(x["index_removed"] and x["snapshot_purged"]
                                      for x in replicas)  # fmt: skip
    body = {
        "receipt_id": ids.receipt_id(subject_id, r.deleted_at_ms),
        "subject_id": subject_id,
        "reason": reason,
        "requested_by": {"tenant": call.principal.tenant_id, "client": call.principal.client},
        "erased_at_ms": r.deleted_at_ms,
        "partition": r.subject.partition,
        "store": {
            "templates_removed": list(r.template_ids),
            "consents_removed": r.consents_removed,
            "data_key_destroyed": {"data_key_id": r.data_key_id,
                                   "master_key_id": r.master_key_id},
            "audit_seq": r.audit_seq,
        },
        "event_stream": {
            "template_messages_deleted": r.stream_messages,
            "removal_event_id": r.removal_event_id,
        },
        "searchers": replicas,
        "complete": complete,
    }  # fmt: skip
    receipt = await gw.store.seal_receipt(
        store_pb2.SealReceiptRequest(
            receipt_id=body["receipt_id"], subject_id=subject_id,
            body_json=json.dumps(body, sort_keys=True, separators=(",", ":")),
        )
    )  # fmt: skip
    receipt.erased_at_ms, receipt.complete = r.deleted_at_ms, complete
    call.detail = {"receipt_id": body["receipt_id"], "complete": complete}
    return r, receipt


async def confirm_erasure(gw: Gateway, partition: int, template_ids: list[int]) -> list[dict]:
    """Asks every replica of the partition (each answers on its own) until
    all that answer confirm, or TANU_ERASURE_WAIT_S passes; each replica's
    confirmation as the receipt states it."""
    loop = asyncio.get_running_loop()
    end = loop.time() + gw.config.erasure_wait_s
    seen: dict[str, dict] = {}
    while True:
        for st in await gw.searchers.erasure_confirmations(partition, template_ids, 0.25):
            pending = set(st.pending_template_ids)
            seen[st.replica] = {
                "replica": st.replica,
                "index_removed": st.caught_up and not pending,
                "snapshot_purged": not pending,
                "applied_sequence": st.applied_sequence,
            }
        done = seen and all(v["snapshot_purged"] for v in seen.values())
        if done or loop.time() >= end:
            return [seen[k] for k in sorted(seen)]
        await asyncio.sleep(0.1)
