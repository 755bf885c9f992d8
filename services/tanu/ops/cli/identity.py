"""The Identity API verbs after enrolment: ``verify`` (1:1), ``identify``
(1:N), ``delete``, and what is held about a subject (``subject``,
``report``, ``history``)."""

from __future__ import annotations

import time

from tanu.v1 import common_pb2, identity_pb2

from .client import add_client_parser, all_pages, call, load_sample, show


def candidate_lines(cands) -> str:
    """A ranked candidate list, one line each."""
    if not cands:
        return "  (no candidates)"
    return "\n".join(
        f"  {i + 1:>3}. {c.subject_id:<30}"
        f"{f' score {c.score:.4f}' if c.HasField('score') else ''}{'  MATCH' if c.is_match else ''}"
        for i, c in enumerate(cands)
    )


def cmd_verify(args) -> int:
    req = identity_pb2.VerifyRequest(subject_id=args.subject_id, sample=load_sample(args.file))
    if args.threshold is not None:
        req.threshold = args.threshold
    r = call(args, lambda s: s.Verify(req, timeout=args.timeout))
    decision = common_pb2.Decision.Name(r.decision).removeprefix("DECISION_")
    score = f"score {r.score:.4f} " if r.HasField("score") else ""  # absent for relying parties
    show(args, r, f"{decision}: {score}(threshold {r.threshold:.4f})")
    return 0


def cmd_identify(args) -> int:
    req = identity_pb2.IdentifyRequest(
        sample=load_sample(args.file), top_k=args.top_k, require_complete=args.require_complete
    )
    if args.threshold is not None:
        req.threshold = args.threshold
    r = call(args, lambda s: s.Identify(req, timeout=args.timeout))
    decision = common_pb2.Decision.Name(r.decision).removeprefix("DECISION_")
    cover = (
        "whole gallery"
        if r.complete
        else f"PARTIAL: partitions {list(r.missing_partitions)} missing"
    )
    text = (
        f"{decision} (threshold {r.threshold:.4f}; {r.gallery_size} templates searched; {cover})\n"
    )
    show(args, r, text + candidate_lines(r.candidates))
    return 0


def cmd_delete(args) -> int:
    req = identity_pb2.DeleteRequest(subject_id=args.subject_id, reason=args.reason)
    r = call(args, lambda s: s.Delete(req, timeout=args.timeout))
    rec = r.receipt
    show(args, r, f"deleted {r.subject_id}: {r.templates_removed} template(s) removed; receipt "
                  f"{rec.receipt_id} complete={rec.complete} (final: tanu receipt {rec.receipt_id} "
                  f"--subject {r.subject_id})")  # fmt: skip
    return 0


def cmd_subject(args) -> int:
    req = identity_pb2.GetSubjectRequest(subject_id=args.subject_id)
    r = call(args, lambda s: s.GetSubject(req, timeout=args.timeout))
    show(
        args,
        r,
        f"{r.subject_id}: {r.template_count} template(s) of {r.model_id}, partition {r.partition}",
    )
    return 0


def cmd_report(args) -> int:
    req = identity_pb2.GetSubjectRequest(subject_id=args.subject_id)
    r = call(args, lambda s: s.GetSubjectReport(req, timeout=args.timeout))
    consents = "; ".join(
        f"{','.join(c.purposes)} by {c.given_by}{' (revoked)' if c.revoked_at_ms else ''}"
        for c in r.consents
    )
    show(args, r, f"{r.subject.subject_id}: born {r.date_of_birth}{' (minor)' if r.minor else ''}; "
                  f"records {dict(r.records)}; model {r.subject.model_id}, partition "
                  f"{r.subject.partition}; data key {r.data_key_id} under {r.master_key_id}; "
                  f"consents: {consents}; biometric lock: {r.biometric_locked}")  # fmt: skip
    return 0


def cmd_history(args) -> int:
    entries = all_pages(args, lambda s, token: s.GetAccessHistory(
        common_pb2.AccessHistoryRequest(subject_id=args.subject_id, page_size=500,
                                        page_token=token), timeout=args.timeout), "entries")  # fmt: skip
    out = common_pb2.AccessHistory(entries=entries)
    lines = [
        f"  {time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime(e.at_ms / 1000))}  {e.tenant}/{e.client}"
        f"  {e.operation:<16} {e.purpose:<22} {e.result}"
        for e in entries
    ]
    show(args, out, f"{len(entries)} use(s) of {args.subject_id}'s data\n" + "\n".join(lines))
    return 0


def add_parsers(sub) -> None:
    v = add_client_parser(sub, "verify", "1:1: does FILE match the subject?")
    v.set_defaults(run=cmd_verify)
    v.add_argument("subject_id")
    v.add_argument("file")
    v.add_argument("--threshold", type=float)
    i = add_client_parser(sub, "identify", "1:N: who in the gallery matches FILE?")
    i.set_defaults(run=cmd_identify)
    i.add_argument("file")
    i.add_argument("--top-k", type=int, default=10)
    i.add_argument("--threshold", type=float)
    i.add_argument(
        "--require-complete",
        action="store_true",
        help="fail rather than search part of the gallery",
    )
    d = add_client_parser(sub, "delete", "delete a subject and its templates everywhere")
    d.set_defaults(run=cmd_delete)
    d.add_argument("subject_id")
    d.add_argument("--reason", default="requested via CLI")
    g = add_client_parser(sub, "subject", "what is held about a subject")
    g.set_defaults(run=cmd_subject)
    g.add_argument("subject_id")
    rp = add_client_parser(
        sub, "report", "for the citizen: what is stored about them, keys and consents"
    )
    rp.set_defaults(run=cmd_report)
    rp.add_argument("subject_id")
    h = add_client_parser(sub, "history", "for the citizen: every use of their data")
    h.set_defaults(run=cmd_history)
    h.add_argument("subject_id")
