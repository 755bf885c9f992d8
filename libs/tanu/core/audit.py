"""The tamper-evident audit log: entries hash-chained to their predecessor,
sealed by periodic Ed25519-signed checkpoints, and the verifier that says
where a log was edited, cut, extended or reordered.

Entry ``n`` stores ``hash_n = SHA-256(hash_{n-1} || canonical(entry_n))``
with ``hash_0`` = 64 zeros, and ``canonical`` covering every field including
the sequence number. A checkpoint signs ``(seq, hash_seq, time)``. So:

- an edited entry no longer matches its hash;
- a deleted, inserted or moved entry breaks the sequence or the chain;
- rewriting the chain from some entry on (recomputing every hash) is caught
  by the first signed checkpoint after it, which the writer of the log
  cannot forge without the signing key;
- cutting entries off the end is caught when the last checkpoint names a
  sequence the log no longer holds. Entries after the last checkpoint are
  protected by the chain only until the next checkpoint seals them.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from tanu.v1 import store_pb2

from . import signing

GENESIS = "0" * 64
FIELDS = (
    "seq",
    "ts_ms",
    "tenant",
    "client",
    "operation",
    "purpose",
    "subject_id",
    "result",
    "detail",
)


@dataclass(frozen=True)
class Entry:
    """One audit log entry with its place in the chain."""

    seq: int
    ts_ms: int
    tenant: str
    client: str
    operation: str
    purpose: str
    subject_id: str
    result: str
    detail: str  # JSON text
    prev_hash: str = ""
    hash: str = ""


@dataclass(frozen=True)
class Checkpoint:
    """A signature over the chain up to entry ``seq``."""

    seq: int
    hash: str
    ts_ms: int
    key_id: str
    signature: bytes


def entry_hash(prev_hash: str, e: Entry) -> str:
    """The hash entry ``e`` must carry when it follows ``prev_hash``."""
    body = json.dumps([getattr(e, f) for f in FIELDS], separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(prev_hash.encode() + b"\n" + body.encode()).hexdigest()


def checkpoint_message(seq: int, hash_: str, ts_ms: int) -> bytes:
    return f"tanu-audit-checkpoint:{seq}:{hash_}:{ts_ms}".encode()


def sign_checkpoint(key: Ed25519PrivateKey, seq: int, hash_: str, ts_ms: int) -> Checkpoint:
    return Checkpoint(
        seq,
        hash_,
        ts_ms,
        signing.key_id(key.public_key()),
        key.sign(checkpoint_message(seq, hash_, ts_ms)),
    )


def subject_entries(
    own: store_pb2.AuditRecord, uses: Iterable[tuple[str, str]], detail: str
) -> list[store_pb2.AuditRecord]:
    """One entry per further subject a request used (subject id, result),
    with the request's own entry's time, caller, operation and purpose, and
    ``detail`` (a detail JSON) each."""
    return [
        store_pb2.AuditRecord(
            at_ms=own.at_ms, tenant=own.tenant, client=own.client, operation=own.operation,
            purpose=own.purpose, subject_id=sid, result=res, detail_json=detail,
        )
        for sid, res in uses
    ]  # fmt: skip


def detail_json(detail: dict | None) -> str:
    """An entry's ``detail`` as canonical JSON text (sorted keys, no spaces)."""
    return json.dumps(detail or {}, separators=(",", ":"), sort_keys=True, ensure_ascii=False)


@dataclass
class Report:
    """What ``verify`` found: counts, the last entry a valid checkpoint
    seals, and every problem, named."""

    entries: int = 0
    checkpoints: int = 0
    last_sealed_seq: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def verify(
    entries: Iterable[Entry], checkpoints: Iterable[Checkpoint], public_key: Ed25519PublicKey
) -> Report:
    """Checks the chain and every checkpoint; names each problem and where."""
    rep = Report()
    hashes: dict[int, str] = {}
    prev_seq, prev_hash = 0, GENESIS
    for e in entries:
        rep.entries += 1
        if e.seq != prev_seq + 1:
            if e.seq > prev_seq + 1:
                rep.problems.append(
                    f"entries {prev_seq + 1}..{e.seq - 1} are missing (deleted) before entry {e.seq}"
                )
            else:
                rep.problems.append(f"entry {e.seq} is out of order after entry {prev_seq}")
        if e.prev_hash != prev_hash:
            rep.problems.append(
                f"entry {e.seq} does not link to the entry before it "
                f"(an entry was inserted, deleted or moved here)"
            )
        if entry_hash(e.prev_hash, e) != e.hash:
            rep.problems.append(f"entry {e.seq} was edited: its content does not match its hash")
        hashes[e.seq] = e.hash
        prev_seq, prev_hash = e.seq, e.hash
    for c in checkpoints:
        rep.checkpoints += 1
        if not signing.verify_signature(
            public_key, c.signature, checkpoint_message(c.seq, c.hash, c.ts_ms)
        ):
            rep.problems.append(
                f"checkpoint at entry {c.seq} has an invalid signature (forged or altered)"
            )
            continue
        if c.seq > prev_seq:
            rep.problems.append(
                f"checkpoint at entry {c.seq} seals entries the log no longer holds "
                f"(entries {prev_seq + 1}..{c.seq} were cut off the end)"
            )
        elif hashes.get(c.seq) != c.hash:
            rep.problems.append(
                f"entries up to {c.seq} were rewritten: the chain no longer matches the signed "
                f"checkpoint at entry {c.seq}"
            )
        else:
            rep.last_sealed_seq = max(rep.last_sealed_seq, c.seq)
    return rep
