"""Conformance of the OSIA facade, proven by schemathesis against the
running facade on a real cluster (store, searchers, gateway, and the real
detector and embedder, so generated images are decoded for real):

1. the UNMODIFIED spec (services/tanu/gateway/osia/osia-abis-1.6.0.yaml),
   all 22 operations: ``not_a_server_error`` and
   ``response_schema_conformance`` on every generated case;
2. Tanu's published OpenAPI (``GET /openapi.json``: the spec plus Tanu's
   documented responses): the same plus ``status_code_conformance``;
3. stateful sequences over the unmodified spec: it declares no OpenAPI
   links, so the links are those schemathesis infers from it (a 202's
   taskId into readTaskStatus / redeliverTaskResult, a listed encounter's
   ids into readEncounter, updateEncounter, deleteEncounter, moveEncounter,
   identifyFromEncounterId, a gallery name into readGalleryContent and
   identify, ...), each step checked as above.

0 server errors and 0 schema violations; the number of generated cases is
printed. A documented 501 (a feature Tanu does not support: a template
format other than Tanu's, a modality other than FACE, references instead
of inline data) is the spec's Error body, not a server error.

``OSIA_EXAMPLES`` examples per operation (default 12, inside the
``make test`` budget); ``make test-osia`` runs a larger set.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import os
import threading
from pathlib import Path

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import checks

from tanu.core import secrets
from tanu.gateway.osia import openapi

from conftest import Cluster, env_for, operator_token, unit_vectors
from helpers import enroll

EXAMPLES = int(os.environ.get("OSIA_EXAMPLES", "12"))
SPEC = Path(openapi.__file__).with_name(openapi.SPEC_FILE)
UNSUPPORTED = ("not supported", "Tanu matches faces only", "not available")


class Background:
    """A real cluster on its own event loop in a thread, for the synchronous schemathesis."""

    def __init__(self, tmp: Path) -> None:
        from tanu.ops.natsd import NatsServer

        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.nats = NatsServer(tmp / "nats").start()
        models = Path(__file__).resolve().parents[1] / "var" / "models"
        env = env_for(self.nats.url, tmp, TANU_REST_PORT="0", TANU_MODEL_DIR=str(models),
                      TANU_ERASURE_WAIT_S="0.5")  # fmt: skip
        doc = json.loads(Path(env["TANU_TENANTS_FILE"]).read_text())
        doc["tenants"][0].update(rate_per_s=1e6, burst=1e6)
        Path(env["TANU_TENANTS_FILE"]).write_text(json.dumps(doc))
        self.env = env
        self.c = Cluster(env)
        self.run(self._start())
        self.url = f"http://127.0.0.1:{self.c.gateway.rest.port}"
        self.headers = {"Authorization": f"Bearer {operator_token(env)}",
                        "X-Tanu-Purpose": secrets.DEFAULT_PURPOSE}  # fmt: skip

    def run(self, coro, timeout: float = 120):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    async def _start(self) -> None:
        from tanu.core import config as cfg
        from tanu.detector.service import DetectorService
        from tanu.embedder.service import EmbedderService

        self.det = await DetectorService(cfg.from_env(cfg.DetectorConfig, self.env)).start()
        self.emb = await EmbedderService(cfg.from_env(cfg.EmbedderConfig, self.env)).start()
        await self.c.start_all()
        await self.c.stub.Enroll(enroll("known", KNOWN[0], wait_indexed=True, encounter_id="k1"))

    async def _stop(self) -> None:
        await self.c.stop()
        await self.emb.stop()
        await self.det.stop()

    def close(self) -> None:
        try:
            self.run(self._stop())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
            self.nats.stop()


@pytest.fixture(scope="module")
def bg(tmp_path_factory):
    b = Background(tmp_path_factory.mktemp("osia-conformance"))
    try:
        yield b
    finally:
        b.close()


def _documented_501(response) -> bool:
    if response.status_code != 501:
        return False
    body = response.json()
    return body.get("code") == 501 and any(w in body.get("message", "") for w in UNSUPPORTED)


class Tally:
    """Cases run and failures, by operation and check."""

    def __init__(self) -> None:
        self.cases = 0
        self.statuses: dict[int, int] = {}
        self.failures: list[str] = []
        self.refusals: dict[str, int] = {}  # 4xx/501 messages, for the printed summary

    def check(self, case, response, with_status: bool) -> None:
        self.cases += 1
        self.statuses[response.status_code] = self.statuses.get(response.status_code, 0) + 1
        if response.status_code >= 400:
            try:
                message = response.json().get("message", "")
            except Exception:  # noqa: BLE001 - not JSON: the checks below say so
                message = "(not JSON)"
            key = f"{case.operation.label} {response.status_code} {message[:70]}"
            self.refusals[key] = self.refusals.get(key, 0) + 1
        run = [checks.response_schema_conformance]
        if not _documented_501(response):
            run.append(checks.not_a_server_error)
        if with_status:
            run.append(checks.status_code_conformance)
        try:
            case.validate_response(response, checks=run)
        except Exception as exc:  # noqa: BLE001 - schemathesis' failure group, recorded
            self.failures.append(f"{case.operation.label} -> {response.status_code}: "
                                 f"{str(exc)[:400]}")  # fmt: skip


KNOWN = unit_vectors(2, seed=170)
TEMPLATE = base64.b64encode(KNOWN[1].tobytes()).decode()
FACE = [{"biometricType": "FACE", "template": TEMPLATE}]


def steered(case, n: int):
    """Half the generated cases are steered onto data that exists, so the
    success replies are checked against the spec too: the known person and
    encounter (or one made for the case), ALL, a valid FACE template, a
    person's extension fields, sane query numbers, no callback. Everything
    else stays as generated."""
    path = case.path_parameters or {}
    for name in ("personId", "personIdTarget"):
        if name in path:
            path[name] = "known"
    if case.method.upper() == "DELETE" and case.operation.path == "/v1/persons/{personId}":
        path["personId"] = f"gone-{n}"  # the known person stays
    if "personIdSource" in path:
        path["personIdSource"] = f"src-{n}"
    if "encounterId" in path:
        path["encounterId"] = "k1"
    if "galleryId" in path:
        path["galleryId"] = "ALL"
    q = case.query if case.query is not None else {}
    q["transactionId"] = f"conformance-{n}"
    for name in ("callback", "threshold", "priority", "serviceLevel", "offset", "limit"):
        q.pop(name, None)
    if "maxNbCand" in q:
        q["maxNbCand"] = 5
    if "status" in q:
        q["status"] = "ACTIVE"
    body = case.body
    if isinstance(body, dict):
        body.pop("encryption", None)
        for key in ("biometricData", "biometricData1", "biometricData2"):
            if key in body:
                body[key] = list(FACE)
        if "encounterType" in body or "galleries" in body:  # an Encounter
            body.update(status="ACTIVE", galleries=["ALL"], encounterId=path.get("encounterId", ""),
                        biographicData={"dateOfBirth": "1990-01-01"},
                        contextualData={"consent": {"purposes": [secrets.DEFAULT_PURPOSE],
                                                    "evidenceRef": "conformance"}})  # fmt: skip
            body.pop("clientData", None)
    return case


def _run_operations(schema, bg: Background, with_status: bool, label: str) -> Tally:
    tally = Tally()
    session = requests.Session()
    counter = itertools.count()
    ops = [r.ok() for r in schema.get_all_operations()]
    ops = [op for op in ops if not op.path.startswith(("/healthz", "/openapi.json"))]
    for op in ops:

        @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
                  suppress_health_check=list(HealthCheck))  # fmt: skip
        @given(case=op.as_strategy(), steer=st.booleans())
        def run(case, steer):
            if steer:
                case = steered(case, next(counter))
            response = case.call(base_url=bg.url, session=session, headers=bg.headers, timeout=30)
            tally.check(case, response, with_status)

        run()
    print(f"\n{label}: {len(ops)} operations, {tally.cases} generated cases, "
          f"statuses {dict(sorted(tally.statuses.items()))}, {len(tally.failures)} failures")  # fmt: skip
    for key, n in sorted(tally.refusals.items(), key=lambda kv: -kv[1])[
        : int(os.environ.get("OSIA_SHOW", "0"))
    ]:
        print(f"  {n:4d} {key}")
    return tally, len(ops)


def test_the_unmodified_spec_all_22_operations_no_server_error_no_schema_violation(bg):
    text = SPEC.read_text()
    assert "version: 1.6.0" in text and "(c) Secure Identity Alliance" in text
    schema = schemathesis.openapi.from_path(str(SPEC))
    tally, n_ops = _run_operations(schema, bg, with_status=False, label="OSIA 1.6.0 (unmodified)")
    assert n_ops == 22
    assert tally.cases >= 22 and not tally.failures, "\n".join(tally.failures[:20])


def test_tanus_published_openapi_with_status_codes(bg):
    doc = requests.get(bg.url + "/openapi.json", timeout=10).json()
    schema = schemathesis.openapi.from_dict(doc)
    tally, n_ops = _run_operations(schema, bg, with_status=True, label="Tanu's published OpenAPI")
    assert n_ops == 23  # the 22 and Tanu's report route
    assert tally.cases >= 23 and not tally.failures, "\n".join(tally.failures[:20])


def test_stateful_sequences_over_the_links_inferred_from_the_spec(bg):
    schema = schemathesis.openapi.from_path(str(SPEC))
    workflow = schema.as_state_machine()
    tally = Tally()
    session = requests.Session()

    class Workflow(workflow):  # (not steered: a sequence must replay alike)
        def get_call_kwargs(self, case):
            return {"base_url": bg.url, "headers": bg.headers, "session": session, "timeout": 30}

        def validate_response(self, response, case, additional_checks=None, **kwargs):
            tally.check(case, response, with_status=False)

    Workflow.run(settings=settings(max_examples=EXAMPLES, stateful_step_count=5, deadline=None,
                                   database=None, derandomize=True,
                                   suppress_health_check=list(HealthCheck)))  # fmt: skip
    print(
        f"\nstateful (inferred links): {tally.cases} calls, "
        f"statuses {dict(sorted(tally.statuses.items()))}, {len(tally.failures)} failures"
    )
    assert tally.cases > 0 and not tally.failures, "\n".join(tally.failures[:20])
