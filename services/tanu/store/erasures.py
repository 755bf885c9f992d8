"""Erasure records and their signed receipts (table ``erasures``).

``delete_subject`` writes the record in the erasure's own transaction: what
the store removed (template ids, consents, the data key), the stream
messages queued for deletion, the removal event and who asked. A receipt is
only ever built from that record: ``seal_receipt`` takes a receipt id and
the searcher replicas' confirmations, checks they are plausible (the
record's partition and layout, bounded, one per replica), merges them with
those confirmed before (a confirmation is never withdrawn), counts the
stream messages the relay has actually deleted, and signs the body it
assembles itself. No caller-written body is ever signed.

``complete``: the store's records and the data key are gone, the removal
event is published, every queued stream message is deleted, and every
replica that answered has the removal in its index. ``snapshots_purged``
(the final receipt): also no replica's snapshot file holds the vectors.
"""

from __future__ import annotations

import hashlib
import json
import re

from tanu.core import audit, errors, signing
from tanu.v1 import common_pb2, store_pb2

from .audit_log import AuditLog
from .outbox import Outbox
from .schema import now_ms

MAX_REPLICAS = 64
_REPLICA = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


def _canonical(body: dict) -> str:
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


class Erasures(Outbox, AuditLog):
    """The ``erasures`` table: one record per erasure, and its latest receipt."""

    def _record_erasure(self, receipt_id: str, subject_id: str, ts: int, record: dict,
                        stream_seqs: list[int]) -> None:  # fmt: skip
        """Writes the erasure record in the caller's (the erasure's) transaction."""
        self._x(
            "INSERT INTO erasures(receipt_id, subject_id, erased_at_ms, record, stream_seqs) "
            "VALUES (?, ?, ?, ?, ?)",
            (receipt_id, subject_id, ts, _canonical(record), json.dumps(sorted(stream_seqs))),
        )

    def _erasure_row(self, receipt_id: str):
        row = self._one(
            "SELECT subject_id, erased_at_ms, record, stream_seqs, replicas, body, signature, "
            "key_id, audit_seq, complete, purged FROM erasures WHERE receipt_id = ?",
            (receipt_id,),
        )
        if row is None:
            raise errors.NotFound("no such erasure receipt")
        return row

    @staticmethod
    def _receipt(receipt_id: str, row) -> common_pb2.ErasureReceipt:
        subject_id, erased_at, _rec, _seqs, _reps, body, sig, key_id, seq, complete, purged = row
        return common_pb2.ErasureReceipt(
            receipt_id=receipt_id, subject_id=subject_id, erased_at_ms=erased_at,
            complete=bool(complete), body_json=body, signature=bytes.fromhex(sig),
            signing_key_id=key_id, audit_seq=seq,
            index_removed=bool(body) and json.loads(body)["index_removed"],
            snapshots_purged=bool(purged),
        )  # fmt: skip

    def get_receipt(self, receipt_id: str) -> common_pb2.ErasureReceipt:
        """The latest signed receipt of an erasure."""
        row = self._erasure_row(receipt_id)
        if not row[5]:
            raise errors.NotFound("no such erasure receipt")
        return self._receipt(receipt_id, row)

    @staticmethod
    def _check_confirmations(record: dict, replicas) -> dict[str, dict]:
        if len(replicas) > MAX_REPLICAS:
            raise errors.InvalidArgument(f"at most {MAX_REPLICAS} replica confirmations")
        out: dict[str, dict] = {}
        for r in replicas:
            if not _REPLICA.match(r.replica):
                raise errors.InvalidArgument("a replica name must be 1-64 of [A-Za-z0-9._:-]")
            if r.replica in out:
                raise errors.InvalidArgument(f"replica {r.replica!r} confirms twice")
            if r.partition != record["partition"] or r.partitions != record["partitions"]:
                raise errors.InvalidArgument(
                    f"replica {r.replica!r} is of partition {r.partition}/{r.partitions}; the "
                    f"erasure is of partition {record['partition']}/{record['partitions']}"
                )
            out[r.replica] = {"replica": r.replica, "index_removed": r.index_removed,
                              "snapshot_purged": r.snapshot_purged and r.index_removed,
                              "applied_sequence": r.applied_sequence}  # fmt: skip
        return out

    def seal_receipt(self, receipt_id: str, replicas, signer) -> common_pb2.ErasureReceipt:
        """Builds the receipt from the erasure record and the replicas'
        confirmations, signs it and records it (its hash) in the audit log;
        the stored receipt as it is when nothing changed since."""

        def tx(_c) -> common_pb2.ErasureReceipt:
            row = self._erasure_row(receipt_id)
            subject_id, erased_at, rec_json, seqs_json, reps_json = row[:5]
            record = json.loads(rec_json)
            new = self._check_confirmations(record, replicas)
            if row[10]:  # final: every snapshot purge confirmed; never signed again
                return self._receipt(receipt_id, row)
            merged = {r["replica"]: r for r in json.loads(reps_json)}
            for name, c in new.items():
                old = merged.get(name, {})
                c["index_removed"] |= old.get("index_removed", False)
                c["snapshot_purged"] |= old.get("snapshot_purged", False)
                c["applied_sequence"] = max(c["applied_sequence"], old.get("applied_sequence", 0))
                merged[name] = c
            reps = [merged[k] for k in sorted(merged)]
            seqs = json.loads(seqs_json)
            deleted = sum(1 for q in seqs if self._one(
                "SELECT 1 FROM stream_erasures WHERE stream_seq = ?", (q,)) is None)  # fmt: skip
            published = self._one("SELECT 1 FROM outbox WHERE event_id = ?",
                                  (record["removal_event_id"],)) is None  # fmt: skip
            index_removed = bool(reps) and all(r["index_removed"] for r in reps)
            # An event unpublished at the erasure may have been in flight: its
            # stream message is queued for deletion before the removal event
            # goes out (the relay works in outbox order), so once that is
            # published, no queued deletion left means no copy left.
            in_flight = 0
            if record.get("unpublished_events") and published:
                (in_flight,) = self._one("SELECT COUNT(*) FROM stream_erasures")
            complete = index_removed and published and deleted == len(seqs) and not in_flight
            purged = complete and all(r["snapshot_purged"] for r in reps)
            body = {
                "receipt_id": receipt_id, "subject_id": subject_id, "reason": record["reason"],
                "requested_by": record["requested_by"], "erased_at_ms": erased_at,
                "partition": record["partition"], "partitions": record["partitions"],
                "store": record["store"],
                "event_stream": {"template_messages_queued": len(seqs),
                                 "template_messages_deleted": deleted,
                                 "removal_event_id": record["removal_event_id"],
                                 "removal_event_published": published,
                                 "unpublished_events_dropped": record.get("unpublished_events", 0),
                                 "dead_letters_dropped": record.get("dead_letters", 0),
                                 "stream_deletions_pending": in_flight},
                "searchers": reps, "index_removed": index_removed, "complete": complete,
                "snapshots_purged": purged,
            }  # fmt: skip
            text = _canonical(body)
            if text == row[5]:
                return self._receipt(receipt_id, row)
            sig = signer.sign(text.encode())
            seq = self._append_audit([store_pb2.AuditRecord(
                at_ms=now_ms(), operation="erasure_receipt", subject_id=subject_id, result="ok",
                detail_json=audit.detail_json({"receipt_id": receipt_id, "complete": complete,
                                               "snapshots_purged": purged,
                                               "sha256": hashlib.sha256(text.encode()).hexdigest()}),
            )])  # fmt: skip
            key_id = signing.key_id(signer.public_key())
            self._x(
                "UPDATE erasures SET replicas = ?, body = ?, signature = ?, key_id = ?, "
                "audit_seq = ?, complete = ?, purged = ? WHERE receipt_id = ?",
                (json.dumps(reps), text, sig.hex(), key_id, seq, int(complete), int(purged),
                 receipt_id),
            )  # fmt: skip
            return self._receipt(receipt_id, self._erasure_row(receipt_id))

        return self._tx(tx)
