"""``tanu gallery import``: the command line of ``tanu.ops.gallery_import``
(an existing gallery migrated through the store's operator put, resumable).

    tanu gallery import --templates T.npy --csv SUBJECTS.csv --purposes kyc,border_control \\
        --skip-dedup [--tenant operator] [--checkpoint FILE] [--batch 1000] [--json]

The CSV's header is ``subject_id,date_of_birth,consent_evidence_ref``
(optionally ``,guardian_subject_id,relationship`` for minors); row i is
template row i. Every imported subject's consent names ``--purposes`` and
is recorded for ``--tenant`` (default: the operator tenant), which becomes
the subject's owner. Exit code 0 when every row was stored, 1 when some
were refused (the summary says why), 2 when the import could not run.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import sys
from pathlib import Path

from tanu.core import auth, errors, logs, secrets
from tanu.core import config as cfg
from tanu.policy import consent

from .. import gallery_import
from .client import nats_url


def _tenants_file(args) -> Path | None:
    path = os.environ.get("TANU_TENANTS_FILE") or str(Path(args.var) / "keys" / "tenants.json")
    return Path(path) if Path(path).exists() else None


def cmd_import(args) -> int:
    # Log lines (a NATS reconnect) go to stderr, never into the summary on stdout.
    logs.configure("tanu-gallery-import", os.environ.get("TANU_LOG_LEVEL", "warning"))
    if not args.skip_dedup:
        print("error: tanu gallery import does not de-duplicate (1:N) the rows it loads; pass "
              "--skip-dedup to confirm the gallery was de-duplicated by its previous system, or "
              "enrol through the gateway (tanu enroll), which de-duplicates", file=sys.stderr)  # fmt: skip
        return 2
    purposes = sorted({p.strip() for p in args.purposes.split(",") if p.strip()})
    if not purposes:
        print("error: --purposes names no purpose", file=sys.stderr)
        return 2
    tenants = _tenants_file(args)
    if tenants is not None:  # the consent may name only purposes the tenant holds
        try:
            registry = auth.Registry.from_file(tenants)
            tenant = registry.tenants.get(args.tenant)
            if tenant is None:
                raise errors.FailedPrecondition(f"tenant {args.tenant!r} is not in {tenants}")
            consent.check_purposes_held(purposes, tenant.purposes, args.tenant)
        except errors.TanuError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    layout = cfg.from_env(cfg.Layout, os.environ)
    if args.dimension:
        layout = dataclasses.replace(layout, dimension=args.dimension)
    templates = Path(args.templates)
    opts = gallery_import.Options(
        templates=templates, csv=Path(args.csv),
        checkpoint=Path(args.checkpoint or f"{templates}.import-checkpoint.json"),
        purposes=purposes, tenant=args.tenant, layout=layout, model_id=args.model_id,
        batch=args.batch,
        inflight=args.inflight, max_rate=args.max_rate, timeout_s=args.timeout, quiet=args.quiet,
    )  # fmt: skip
    try:
        summary = asyncio.run(gallery_import.run(nats_url(args), opts))
    except gallery_import.ImportError_ as exc:
        print(exc.code, file=sys.stderr)
        return 2
    except errors.TanuError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(summary, indent=1) if args.json else gallery_import.summary_text(summary))
    return 1 if summary["refused"] else 0


def add_parsers(sub) -> None:
    g = sub.add_parser("gallery", help="bulk operations on the gallery")
    gsub = g.add_subparsers(dest="gallery_command", required=True)
    p = gsub.add_parser("import", help="migrate an existing gallery (templates + CSV) through the store",
                        description=__doc__.split("\n\n", 1)[1].split("\n\n", 1)[1])  # fmt: skip
    p.set_defaults(run=cmd_import)
    p.add_argument(
        "--templates", required=True, help=".npy (N x d float32) or .npz of the templates"
    )
    p.add_argument("--csv", required=True,
                   help="subject_id,date_of_birth,consent_evidence_ref[,guardian_subject_id,relationship]")  # fmt: skip
    p.add_argument("--purposes", required=True,
                   help="comma-separated purposes every imported consent names")  # fmt: skip
    p.add_argument("--tenant", default=secrets.OPERATOR,
                   help="the tenant recording the consents and owning the subjects (default operator)")  # fmt: skip
    p.add_argument("--skip-dedup", action="store_true",
                   help="required: confirms the rows are loaded without 1:N de-duplication")  # fmt: skip
    p.add_argument("--checkpoint", help="resume file (default: TEMPLATES.import-checkpoint.json)")
    p.add_argument(
        "--batch", type=int, default=1000, help="subjects per store transaction (1..2000)"
    )
    p.add_argument("--inflight", type=int, default=2, help="batches sent ahead of the last reply")
    p.add_argument("--max-rate", type=float, default=0.0,
                   help="rows per second at most (0: as fast as the store takes them)")  # fmt: skip
    p.add_argument("--dimension", type=int, default=0,
                   help="the model's template dimension (default: TANU_DIMENSION)")  # fmt: skip
    p.add_argument("--model-id", default="",
                   help="the model that made the templates; the store refuses another (default: not stated)")  # fmt: skip
    p.add_argument("--timeout", type=float, default=120.0, help="seconds per store call")
    p.add_argument("--nats", help="NATS URL (default: the local cluster's, or TANU_NATS_URL)")
    p.add_argument("--json", action="store_true", help="the summary as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress output")
