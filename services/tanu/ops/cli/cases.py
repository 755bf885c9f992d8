"""``tanu cases list|show|decide``: the adjudication queue (scope
``adjudicate``). A case shows both records' metadata and the score, never
a template; a decision is ``duplicate`` (the held enrolment is destroyed),
``merge`` (its template joins the matched subject) or ``distinct`` (it is
enrolled)."""

from __future__ import annotations

import time

from tanu.v1 import cases_pb2

from .client import add_client_parser, all_pages, call, show


def not_enrolled(r, lead: str = "duplicate of") -> str:
    """Why an EnrollResponse did not enrol: a duplicate referred (with its
    case) or refused, naming the matched subject only when the gateway did."""
    d = r.duplicate_of
    who = (
        f"{d.subject_id} (score {d.score:.4f})"
        if d.subject_id
        else "an enrolled subject (withheld)"
    )
    if r.outcome == "referred":
        return f"{lead} {who}: referred to adjudication as case {r.case_id}"
    return f"{lead} {who}: refused"


def _when(ms: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ms / 1000)) if ms else "-"


def _line(c: cases_pb2.Case) -> str:
    return (f"  {c.case_id}  {c.state:<10} {_when(c.created_at_ms)}  {c.enrolment.subject_id} ~ "
            f"{c.matched.subject_id}  score {c.score:.4f}  by {c.tenant}")  # fmt: skip


def _record(name: str, r: cases_pb2.CaseRecord) -> str:
    if not r.present:
        return f"  {name}: {r.subject_id} (no longer held)"
    return (f"  {name}: {r.subject_id}, born {r.date_of_birth}, purposes {list(r.purposes)}, "
            f"tenants {list(r.tenants)}, {r.template_count} template(s), partition {r.partition}, "
            f"since {_when(r.created_at_ms)}{', biometrics LOCKED' if r.biometric_locked else ''}")  # fmt: skip


def _details(c: cases_pb2.Case) -> str:
    lines = [f"case {c.case_id}: {c.state}, opened {_when(c.created_at_ms)} for "
             f"{c.tenant}/{c.client} ({c.purpose}); score {c.score:.4f} "
             f"(threshold {c.threshold:.4f})",
             _record("held enrolment", c.enrolment), _record("matched subject", c.matched)]  # fmt: skip
    if c.state != "open":
        lines.append(f"  decided {_when(c.decided_at_ms)} by {c.decided_by}: {c.note or '-'}")
    return "\n".join(lines)


def cmd_list(args) -> int:
    cases = all_pages(args, lambda s, token: s.ListCases(
        cases_pb2.ListCasesRequest(state=args.state, page_size=500, page_token=token),
        timeout=args.timeout), "cases")  # fmt: skip
    out = cases_pb2.ListCasesResponse(cases=cases)
    show(args, out, f"{len(cases)} case(s) ({args.state})\n" + "\n".join(map(_line, cases)))
    return 0


def cmd_show(args) -> int:
    req = cases_pb2.GetCaseRequest(case_id=args.case_id)
    r = call(args, lambda s: s.GetCase(req, timeout=args.timeout))
    show(args, r, _details(r))
    return 0


def cmd_decide(args) -> int:
    req = cases_pb2.DecideCaseRequest(case_id=args.case_id, decision=args.decision, note=args.note)
    r = call(args, lambda s: s.DecideCase(req, timeout=args.timeout))
    extra = f"; subject {r.subject.subject_id} holds {r.subject.template_count} template(s)" \
        if r.subject.subject_id else ""  # fmt: skip
    show(args, r, f"case {r.case.case_id}: {r.case.state}{extra}")
    return 0


def add_parsers(sub) -> None:
    p = sub.add_parser(
        "cases", help="the adjudication queue: enrolments held as possible duplicates"
    )
    verbs = p.add_subparsers(dest="cases_command", required=True)
    ls = add_client_parser(verbs, "list", "cases, oldest first")
    ls.set_defaults(run=cmd_list)
    ls.add_argument("--state", default="open", choices=("open", "decided", "all"))
    sh = add_client_parser(verbs, "show", "one case: both records' metadata and the score")
    sh.set_defaults(run=cmd_show)
    sh.add_argument("case_id")
    de = add_client_parser(verbs, "decide", "decide a case")
    de.set_defaults(run=cmd_decide)
    de.add_argument("case_id")
    de.add_argument("decision", choices=("duplicate", "merge", "distinct"))
    de.add_argument("--note", default="", help="why (kept in the audit log)")
