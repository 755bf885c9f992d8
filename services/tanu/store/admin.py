"""Offline tools over a store's database, run by an operator (or by
``tanu audit verify``) without the store service:

    python -m tanu.store.admin audit-verify --target PATH_OR_POSTGRES_DSN \\
        --public-key PEMFILE [--json]

``audit-verify`` opens the database read-only and checks the audit log's
hash chain and signed checkpoints (``tanu.core.audit.verify``). Exit
status: 0 intact, 1 tampered, 2 error (``error: ...`` on stderr).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from tanu.core import audit, signing

from .db import Store
from .schema import is_postgres_target


def audit_verify(target: str, public_key: str, as_json: bool) -> int:
    """Verifies the audit log of the store at ``target`` against the
    checkpoint signing key in ``public_key``; prints the outcome."""
    if not is_postgres_target(target) and not Path(target).exists():
        print(f"error: no store database at {target}", file=sys.stderr)
        return 2
    try:
        public = signing.load_public_key(public_key)
        db = Store.open_readonly(target)
    except Exception as exc:  # noqa: BLE001 - report, do not trace
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        rep = audit.verify(db.audit_entries(), db.audit_checkpoints(), public)
    finally:
        db.close()
    if as_json:
        print(json.dumps({"ok": rep.ok, "entries": rep.entries, "checkpoints": rep.checkpoints,
                          "last_sealed_seq": rep.last_sealed_seq, "problems": rep.problems}, indent=2))  # fmt: skip
    elif rep.ok:
        print(f"audit log intact: {rep.entries} entries, {rep.checkpoints} signed checkpoints, "
              f"sealed up to entry {rep.last_sealed_seq}")  # fmt: skip
    else:
        print(f"audit log TAMPERED: {len(rep.problems)} problem(s)")
        for p in rep.problems:
            print(f"  {p}")
    return 0 if rep.ok else 1


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m tanu.store.admin", description="Offline tools over a store's database."
    )
    sub = p.add_subparsers(dest="command", required=True)
    av = sub.add_parser(
        "audit-verify", help="verify the audit log's hash chain and signed checkpoints"
    )
    av.add_argument("--target", required=True, help="the SQLite file, or a postgresql:// DSN")
    av.add_argument("--public-key", required=True, help="the audit signing key's public PEM file")
    av.add_argument("--json", action="store_true", help="print the report as JSON")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """The command line; returns the exit status (argparse exits 2 itself on bad usage)."""
    args = parser().parse_args(argv)  # one command so far: audit-verify
    return audit_verify(args.target, args.public_key, args.json)


if __name__ == "__main__":
    sys.exit(main())
