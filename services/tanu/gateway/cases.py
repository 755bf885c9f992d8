"""Adjudication (scope ``adjudicate``): list, open and decide the
enrolments de-duplication held as cases in the store. A case shows both
records' metadata and the score, never a template; the decision is
recorded in both subjects' access histories by the store."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tanu.v1 import cases_pb2

if TYPE_CHECKING:
    from .gateway import Gateway
    from .guard import Call


async def list_cases(
    gw: Gateway, req: cases_pb2.ListCasesRequest, call: Call
) -> cases_pb2.ListCasesResponse:
    out = await gw.store.list_cases(req)
    call.detail = {"cases": len(out.cases)}
    return out


async def get_case(gw: Gateway, req: cases_pb2.GetCaseRequest, call: Call) -> cases_pb2.Case:
    case = await gw.store.get_case(cases_pb2.GetCaseRequest(case_id=req.case_id))
    call.subject_id = case.enrolment.subject_id
    call.detail = {"case_id": case.case_id}
    call.extra = [(case.matched.subject_id, "case_read")]
    return case


async def decide_case(
    gw: Gateway, req: cases_pb2.DecideCaseRequest, call: Call
) -> cases_pb2.DecideCaseResponse:
    """Decides a case as the caller (never as whoever the request names)."""
    q = cases_pb2.DecideCaseRequest()
    q.CopyFrom(req)
    q.decided_by_tenant = call.principal.tenant_id
    q.decided_by_client = call.principal.client
    out = await gw.store.decide_case(q)
    call.subject_id = out.case.enrolment.subject_id
    call.detail = {"case_id": out.case.case_id, "decision": out.case.state}
    return out
