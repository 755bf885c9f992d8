"""``tanu receipt RECEIPT_ID --subject SUBJECT_ID``: the latest signed
erasure receipt (the final one once every replica's snapshot is purged),
from the gateway's GetErasureReceipt, with its signature checked against
the audit key's public half when one is at hand."""

from __future__ import annotations

import json
from pathlib import Path

from tanu.core import signing
from tanu.v1 import identity_pb2

from .client import add_client_parser, call, show


def check_signature(args, receipt) -> str:
    """'valid', 'INVALID', or 'not checked' (no public key found)."""
    path = Path(args.public_key) if args.public_key else Path(args.var) / "keys" / "audit.pem.pub"
    if not path.exists():
        return "not checked (no public key; --public-key FILE)"
    public = signing.load_public_key(str(path))
    ok = signing.verify_signature(public, receipt.signature, receipt.body_json.encode())
    return "valid" if ok else "INVALID"


def cmd_receipt(args) -> int:
    req = identity_pb2.GetErasureReceiptRequest(receipt_id=args.receipt_id, subject_id=args.subject)
    r = call(args, lambda s: s.GetErasureReceipt(req, timeout=args.timeout))
    sig = check_signature(args, r)
    body = json.loads(r.body_json)
    stream = body["event_stream"]
    lines = [
        f"erasure receipt {r.receipt_id} of {r.subject_id} (erased at {r.erased_at_ms} ms)",
        f"  complete: {r.complete} (store, data key, stream, every replica's index)",
        f"  snapshots purged: {r.snapshots_purged}",
        f"  stream messages deleted: {stream['template_messages_deleted']} of "
        f"{stream['template_messages_queued']}",
        "  replicas: " + ", ".join(
            f"{x['replica']} index={x['index_removed']} snapshot={x['snapshot_purged']}"
            for x in body["searchers"]
        ),
        f"  signature ({r.signing_key_id}): {sig}",
    ]  # fmt: skip
    show(args, r, "\n".join(lines))
    return 0 if sig != "INVALID" else 3


def add_parsers(sub) -> None:
    r = add_client_parser(sub, "receipt", "an erasure's latest signed receipt")
    r.set_defaults(run=cmd_receipt)
    r.add_argument("receipt_id")
    r.add_argument("--subject", required=True, help="the erased subject's id")
    r.add_argument(
        "--public-key", help="the audit key's public half (default var/keys/audit.pem.pub)"
    )
