"""The ``tanu`` command: run a local cluster and talk to it.

    tanu up [--partitions P] [--replicas R] [--port 50051] [--nats-port 4222]
    tanu status [--json]
    tanu enroll SUBJECT_ID FILE [--allow-duplicate] [--json]
    tanu enroll --dir PHOTOS/ [--csv MAP.csv] [--workers N]
    tanu gallery import --templates T.npy --csv SUBJECTS.csv --purposes P,... --skip-dedup
    tanu models prepare [--model-dir DIR]
    tanu eval verify DATASET [--target-fmr 1e-3] [--out DIR] [--apply]
    tanu eval identify DATASET [--target-fpir 0.003] [--gallery-size N] [--out DIR] [--apply]
    tanu verify SUBJECT_ID FILE [--threshold T] [--json]
    tanu identify FILE [--top-k K] [--threshold T] [--require-complete] [--json]
    tanu delete SUBJECT_ID [--reason TEXT] [--json]
    tanu subject SUBJECT_ID [--json]
    tanu report SUBJECT_ID [--json]          what is held about a subject, for the subject
    tanu history SUBJECT_ID [--json]         every use of a subject's data
    tanu audit verify [--db FILE | --dsn DSN] [--public-key FILE]
    tanu keys init | rotate [--retire]       master keyring, audit and issuer keys
    tanu tokens issue --tenant T --client C [--scopes ...] [--purposes ...] [--ttl S] [--subject ID]
    tanu partitions rebalance --to P2 | finish | abort
    tanu receipt RECEIPT_ID --subject SUBJECT_ID [--json]   an erasure's latest signed receipt
    tanu reconcile [--repair]                store vs every searcher, by digest
    tanu deadletters list | requeue (--all | SEQ ...)   events the relay set aside
    tanu cases list [--state open|decided|all] | show CASE_ID | decide CASE_ID duplicate|merge|distinct

Every call to the gateway carries a token (``--token``, ``TANU_TOKEN``, or
the local cluster's ``var/keys/operator.token``) and a purpose
(``--purpose``, default identity_verification).

FILE is a JPEG/PNG photo or a ``.npy`` template (float32, the model's
dimension). The gateway address comes from ``--gateway``,
``TANU_GATEWAY``, or the running local cluster's ``var/cluster.json``.

Each command's arguments live beside its handler, in the module of its
kind: ``cluster`` (up, status), ``enrolment`` (enroll), ``gallery``
(import), ``eval`` (models,
eval), ``identity`` (verify, identify, delete, subject, report, history),
``receipt``, ``admin`` (audit, keys, tokens), ``partitions``, ``reconcile``,
``deadletters``, ``cases``
(adjudication); ``client`` is what the
verbs that call the cluster share.
"""

from __future__ import annotations

import argparse
import os

from . import (
    admin,
    cases,
    cluster,
    deadletters,
    enrolment,
    eval,
    gallery,
    identity,
    partitions,
    receipt,
    reconcile,
)  # fmt: skip

__all__ = ["console", "main", "parser"]

# In this order in ``tanu --help``.
_COMMAND_MODULES = (cluster, enrolment, gallery, eval, identity, receipt, admin, partitions,
                    reconcile, deadletters, cases)  # fmt: skip


def parser() -> argparse.ArgumentParser:
    """The ``tanu`` argument parser; each command carries its handler as ``run``."""
    p = argparse.ArgumentParser(
        prog="tanu", description="Tanu: face identification at national scale."
    )
    p.add_argument(
        "--var", default=os.environ.get("TANU_VAR", "var"), help="state folder of the local cluster"
    )
    sub = p.add_subparsers(dest="command", required=True)
    for module in _COMMAND_MODULES:
        module.add_parsers(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    return args.run(args)


def console() -> int:
    """The ``tanu`` program: ``main`` with the library's own log lines (a
    NATS reconnect, a retry) as JSON on stderr, warnings and worse, subject
    ids pseudonymised, so stdout carries only the command's output
    (``--json`` stays parseable)."""
    from tanu.core import logs

    logs.configure("tanu-cli", os.environ.get("TANU_LOG_LEVEL", "warning"))
    return main()
