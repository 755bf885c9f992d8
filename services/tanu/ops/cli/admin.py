"""Security operations: ``tanu audit verify`` (run by the store's own admin
tool, ``tanu.store.admin``), ``tanu keys init|rotate`` and ``tanu tokens
issue``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from .client import nats_url


def cmd_audit(args) -> int:
    """Verifies the audit log's hash chain and signed checkpoints: the store's
    admin tool reads its database; its output and exit code are this command's."""
    key_file = args.public_key or str(Path(args.var) / "keys" / "audit.pem.pub")
    target = args.dsn or args.db or str(Path(args.var) / "store.sqlite3")
    if not args.dsn and not Path(target).exists():
        print(f"error: no store database at {target}", file=sys.stderr)
        return 2
    cmd = [sys.executable, "-m", "tanu.store.admin", "audit-verify",
           "--target", target, "--public-key", key_file]  # fmt: skip
    if args.json:
        cmd.append("--json")
    sys.stdout.flush()
    sys.stderr.flush()
    return subprocess.run(cmd, check=False).returncode


def cmd_keys(args) -> int:
    """init: creates the missing secrets; rotate: adds a master key version,
    has the running store re-wrap every data key, then (--retire) drops
    the versions no data key uses any more."""
    import asyncio

    from tanu.clients.store import StoreClient
    from tanu.core import bus, envelope, secrets
    from tanu.v1 import store_pb2

    folder = Path(args.var) / "keys"
    if args.action == "init":
        from tanu.core import natsroles

        env = secrets.provision(folder)
        # One NATS identity per service role (var/keys/nats/<role>.password, 0600).
        env["TANU_NATS_CREDENTIALS_DIR"] = str(
            natsroles.provision(folder / "nats", args.partitions)
        )
        for k, v in env.items():
            print(f"{k}={v}")
        return 0
    keyring = args.keyring or str(folder / "master.keyring")
    old, new = envelope.add_key_version(keyring)
    print(f"master key {new} added and active (was {old}); re-wrapping data keys ...")

    async def rewrap():
        nc = await bus.connect(nats_url(args), "tanu-keys")
        try:
            return await StoreClient(nc, args.timeout).rewrap(store_pb2.RewrapKeysRequest())
        finally:
            await nc.close()

    try:
        r = asyncio.run(rewrap())
    except Exception as exc:  # noqa: BLE001 - report, do not trace
        print(f"error: the store did not re-wrap ({exc}); the new key is active for new "
              f"subjects; run `tanu keys rotate` again when the store is up", file=sys.stderr)  # fmt: skip
        return 1
    print(f"re-wrapped {r.rewrapped} data key(s); master keys in use: {list(r.key_ids_in_use)}")
    if args.retire:
        gone = envelope.retire_key_versions(keyring, set(r.key_ids_in_use))
        print(f"retired: {gone or 'none'}")
    return 0


def cmd_tokens(args) -> int:
    from tanu.core import auth, signing

    key = signing.load_signing_key(args.issuer_key or str(Path(args.var) / "keys" / "issuer.pem"))
    scopes = [x for x in args.scopes.split(",") if x]
    purposes = [x for x in args.purposes.split(",") if x]
    try:
        print(auth.issue_token(key, args.tenant, args.client, scopes, purposes, args.ttl,
                               subject=args.subject))  # fmt: skip
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


def add_parsers(sub) -> None:
    au = sub.add_parser("audit", help="verify the audit log's hash chain and signed checkpoints")
    au.set_defaults(run=cmd_audit)
    au.add_argument("action", choices=["verify"])
    au.add_argument("--db", help="SQLite store file (default: var/store.sqlite3)")
    au.add_argument("--dsn", help="PostgreSQL DSN of the store")
    au.add_argument("--public-key", help="audit public key PEM (default: var/keys/audit.pem.pub)")
    au.add_argument("--json", action="store_true")
    k = sub.add_parser("keys", help="init the secrets, or rotate the master key while serving")
    k.set_defaults(run=cmd_keys)
    k.add_argument("action", choices=["init", "rotate"])
    k.add_argument("--keyring", help="master keyring (default: var/keys/master.keyring)")
    k.add_argument("--retire", action="store_true",
                   help="rotate: drop master key versions no data key uses any more")  # fmt: skip
    k.add_argument("--nats", help="NATS URL (default: the local cluster's, or TANU_NATS_URL)")
    k.add_argument("--partitions", type=int, default=int(os.environ.get("TANU_PARTITIONS", "4")),
                   help="init: searcher NATS identities for partitions 0..P-1")  # fmt: skip
    k.add_argument("--timeout", type=float, default=600.0)
    t = sub.add_parser("tokens", help="issue a signed tenant token")
    t.set_defaults(run=cmd_tokens)
    t.add_argument("action", choices=["issue"])
    t.add_argument("--tenant", required=True)
    t.add_argument("--client", required=True)
    t.add_argument("--scopes", default="verify", help="comma-separated scopes")
    t.add_argument("--purposes", default="", help="comma-separated purposes (empty: the tenant's)")
    t.add_argument("--ttl", type=float, default=3600.0, help="seconds the token is valid")
    t.add_argument("--subject", default="",
                   help="bind the token to one subject (the citizen portal's signed-in citizen)")  # fmt: skip
    t.add_argument("--issuer-key", help="issuer private key (default: var/keys/issuer.pem)")
