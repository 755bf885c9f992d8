"""Asynchronous OSIA requests on a real cluster with a real HTTP receiver
(an aiohttp server on port 0): 202 {taskId}, the result POSTed to the
callback with the spec's query, retries with backoff until 2xx,
RESPONSE_ERROR after the last attempt, redelivery, a task that survives a
gateway restart, tasks visible to their own tenant only, and callbacks
refused outside the tenant's allow-list (no SSRF). The store's task table
(priority order, leases) on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from pg import schema_dsn

from tanu.core import auth, envelope, signing
from tanu.core import config as cfg
from tanu.gateway.rest import WorkerSettings
from tanu.store.db import Store
from tanu.v1 import tasks_pb2

from conftest import Cluster, env_for, near, operator_token, unit_vectors
from helpers import enroll

FAST = WorkerSettings(poll_s=0.05, lease_s=2.0, max_attempts=3, backoff_s=0.05, max_backoff_s=0.2)


class Receiver:
    """A callback receiver: records every POST; fails the first ``failures``."""

    def __init__(self, failures: int = 0) -> None:
        self.failures = failures
        self.got: list[tuple[dict, str, bytes]] = []
        self.arrived = asyncio.Event()
        app = web.Application()
        app.router.add_post("/cb", self.handle)
        self.runner = web.AppRunner(app)

    async def start(self) -> str:
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}/cb"

    async def handle(self, request: web.Request) -> web.Response:
        self.got.append((dict(request.query), request.content_type, await request.read()))
        if len(self.got) <= self.failures:
            return web.Response(status=500)
        self.arrived.set()
        return web.Response(status=204)

    async def wait(self, n: int = 1, timeout: float = 15.0) -> None:
        async def enough():
            while sum(1 for _ in self.got) < n:
                await asyncio.sleep(0.02)

        await asyncio.wait_for(enough(), timeout)


def _tenants(env: dict) -> None:
    path = Path(env["TANU_TENANTS_FILE"])
    doc = json.loads(path.read_text())
    doc["tenants"] += [
        {"id": "registry", "kind": "government", "purposes": ["identity_verification"],
         "callbacks": ["http://127.0.0.1"]},
        {"id": "partner", "kind": "government", "purposes": ["identity_verification"],
         "callbacks": ["https://partner.example:8443"]},
    ]  # fmt: skip
    path.write_text(json.dumps(doc))


@pytest.fixture
async def tasks(nats_server, tmp_path):
    env = env_for(nats_server.url, tmp_path, TANU_REST_PORT="0")
    _tenants(env)
    c = Cluster(env)
    await c.start_all()
    c.gateway.rest.worker.settings = FAST
    issuer = signing.load_signing_key(tmp_path / "keys" / "issuer.pem")
    c.tok = {t: auth.issue_token(issuer, t, "app", ["identify", "enrol", "verify"])
             for t in ("registry", "partner")}  # fmt: skip
    c.tok["operator"] = operator_token(env)
    c.http = aiohttp.ClientSession()
    c.receivers = []
    try:
        yield c
    finally:
        await c.http.close()
        for r in c.receivers:
            await r.runner.cleanup()
        await c.stop()


def url(c) -> str:
    return f"http://127.0.0.1:{c.gateway.rest.port}"


def hdr(c, tenant: str = "operator") -> dict:
    return {"Authorization": f"Bearer {c.tok[tenant]}", "X-Tanu-Purpose": "identity_verification"}


def probe(v) -> dict:
    return {"filter": {}, "biometricData": [
        {"biometricType": "FACE", "template": base64.b64encode(v.tobytes()).decode()}]}  # fmt: skip


async def receiver(c, failures: int = 0) -> tuple[Receiver, str]:
    r = Receiver(failures)
    c.receivers.append(r)
    return r, await r.start()


async def post(c, path: str, tenant: str = "operator", **kw):
    async with c.http.post(url(c) + path, headers=hdr(c, tenant), **kw) as r:
        return r.status, await r.json()


async def status_of(c, task_id: str, tenant: str = "operator"):
    async with c.http.get(url(c) + f"/v1/tasks/{task_id}/status?transactionId=s",
                          headers=hdr(c, tenant)) as r:  # fmt: skip
        return r.status, await r.json()


async def until_status(c, task_id: str, want: str, timeout: float = 15.0) -> list[str]:
    seen: list[str] = []

    async def poll():
        while True:
            _, s = await status_of(c, task_id)
            if not seen or seen[-1] != s:
                seen.append(s)
            if s == want:
                return
            await asyncio.sleep(0.01)

    await asyncio.wait_for(poll(), timeout)
    return seen


async def test_async_identify_calls_back_with_the_result(tasks):
    c = tasks
    v = unit_vectors(1, seed=160)[0]
    await c.stub.Enroll(enroll("cb-1", v, wait_indexed=True))
    rec, cb = await receiver(c)
    st, body = await post(c, f"/v1/identify/ALL?transactionId=as-1&priority=7&callback={cb}?x=1",
                          json=probe(near(v)))  # fmt: skip
    assert st == 202 and set(body) == {"taskId"}, body
    await rec.wait()
    query, ctype, data = rec.got[0]
    assert query == {"x": "1", "transactionId": "as-1", "taskId": body["taskId"]}
    assert ctype == "application/json" and json.loads(data)[0]["personId"] == "cb-1"
    await until_status(c, body["taskId"], "COMPLETED")
    # the same transaction and body: the same task; another body: 409
    st, again = await post(c, f"/v1/identify/ALL?transactionId=as-1&priority=7&callback={cb}?x=1",
                           json=probe(near(v)))  # fmt: skip
    assert st == 202 and again["taskId"] == body["taskId"]
    st, err = await post(c, f"/v1/identify/ALL?transactionId=as-1&callback={cb}", json=probe(v))
    assert st == 409 and err["code"] == 409
    # redeliver sends the result again
    async with c.http.post(url(c) + f"/v1/tasks/{body['taskId']}/redeliver?transactionId=r",
                           headers=hdr(c)) as r:  # fmt: skip
        assert r.status == 204
    await rec.wait(2)
    assert rec.got[1][2] == data and rec.got[1][0]["taskId"] == body["taskId"]
    await until_status(c, body["taskId"], "COMPLETED")
    # a task is its tenant's only
    st, err = await status_of(c, body["taskId"], "registry")
    assert st == 404 and err["code"] == 404


async def test_a_failing_receiver_is_retried_until_it_accepts(tasks):
    c = tasks
    v = unit_vectors(1, seed=161)[0]
    await c.stub.Enroll(enroll("cb-2", v, wait_indexed=True))
    rec, cb = await receiver(c, failures=2)
    c.gateway.rest.worker.settings = WorkerSettings(
        poll_s=0.05, lease_s=2.0, max_attempts=5, backoff_s=0.3, max_backoff_s=1.0
    )
    st, body = await post(c, f"/v1/identify/ALL?transactionId=rt-1&callback={cb}", json=probe(v))
    assert st == 202
    seen = await until_status(c, body["taskId"], "COMPLETED")
    assert "RESPONSE_RETRY" in seen, seen
    assert len(rec.got) == 3 and rec.got[0][2] == rec.got[2][2]


async def test_errors_are_called_back_and_a_dead_receiver_ends_in_response_error(tasks):
    c = tasks
    rec, cb = await receiver(c, failures=100)
    v = unit_vectors(1, seed=164)[0]
    face = {"biometricData": probe(v)["biometricData"]}
    st, body = await post(c, f"/v1/verify/ALL/nobody?transactionId=er-1&callback={cb}", json=face)
    assert st == 202
    await until_status(c, body["taskId"], "RESPONSE_ERROR")
    assert len(rec.got) == FAST.max_attempts
    _query, ctype, data = rec.got[0]
    err = json.loads(data)
    assert ctype == "application/error+json" and err["code"] == 404 and err["message"]


async def test_a_pending_task_is_completed_after_a_gateway_restart(tasks):
    c = tasks
    v = unit_vectors(1, seed=162)[0]
    await c.stub.Enroll(enroll("cb-3", v, wait_indexed=True))
    rec, cb = await receiver(c)
    await c.gateway.rest.worker.stop()  # this gateway accepts but will not run it
    st, body = await post(c, f"/v1/identify/ALL?transactionId=rs-1&callback={cb}", json=probe(v))
    assert st == 202
    assert (await status_of(c, body["taskId"]))[1] == "PENDING"
    await c.gateway.stop()
    await c.channel.close()
    await c.start_gateway()
    c.gateway.rest.worker.settings = FAST
    await rec.wait()
    assert json.loads(rec.got[0][2])[0]["personId"] == "cb-3"
    await until_status(c, body["taskId"], "COMPLETED")


async def test_callbacks_outside_the_allow_list_are_refused(tasks):
    c = tasks
    v = unit_vectors(1, seed=163)[0]
    _rec, cb = await receiver(c)
    refused = [
        ("operator", "http://169.254.169.254/latest/meta-data/"),  # cloud metadata
        ("operator", "http://example.com/cb"),  # not allow-listed
        ("operator", "ftp://127.0.0.1/cb"),
        ("operator", "http://user:pw@127.0.0.1/cb"),
        ("operator", "not a url"),
        ("partner", cb),  # loopback is not in the partner's list
        ("partner", "https://partner.example:9999/cb"),  # another port
        ("partner", "https://partner.example:8443/cb"),  # does not resolve here
    ]
    for tenant, target in refused:
        st, body = await post(c, "/v1/identify/ALL?transactionId=sf-1", tenant,
                              params={"callback": target}, json=probe(v))  # fmt: skip
        assert st == 400 and body["code"] == 400 and "callback" in body["message"], (target, body)
    st, body = await post(c, "/v1/identify/ALL?transactionId=sf-2", "registry",
                          params={"callback": cb}, json=probe(v))  # fmt: skip
    assert st == 202


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_the_store_claims_by_priority_then_age_under_a_lease(backend, tmp_path):
    with contextlib.ExitStack() as stack:
        target = (stack.enter_context(schema_dsn()) if backend == "postgres"
                  else str(tmp_path / "s.sqlite3"))  # fmt: skip
        _claims(target)


def _claims(target: str) -> None:
    s = Store(target, cfg.Layout(partitions=2, dimension=128),
              envelope.LocalKeyProvider({"k": envelope.new_data_key()}, "k"))  # fmt: skip
    try:
        for i, prio in enumerate((0, 9, 5, 9)):
            s.create_task(tasks_pb2.Task(
                task_id=f"task-000{i}", tenant="t", client="c", operation="identify",
                transaction_id=f"x{i}", request_sha256="0" * 64, priority=prio,
                callback="http://127.0.0.1/cb", request=b"secret-request"))  # fmt: skip
        got = s.claim_tasks("gw-a", 3, 5000).tasks
        assert [t.task_id for t in got] == ["task-0001", "task-0003", "task-0002"]
        assert got[0].request == b"secret-request"
        assert [t.task_id for t in s.claim_tasks("gw-b", 10, 5000).tasks] == ["task-0000"]
        assert s.claim_tasks("gw-b", 10, 5000).tasks == []  # all leased, even to itself
        with pytest.raises(Exception, match="another owner"):
            s.update_task(tasks_pb2.UpdateTaskRequest(task_id="task-0001", owner="gw-b",
                                                      status="COMPLETED"))  # fmt: skip
        done = s.update_task(tasks_pb2.UpdateTaskRequest(
            task_id="task-0001", owner="gw-a", status="COMPLETED", set_result=True,
            result_status=200, result_type="application/json", result=b"[]", release=True))  # fmt: skip
        assert done.status == "COMPLETED" and done.result == b"[]"
        assert s.get_task("task-0001", "t").result == b"[]"
        with pytest.raises(Exception, match="no such task"):
            s.get_task("task-0001", "another-tenant")
        # nothing readable at rest
        raw = s._all("SELECT request, result FROM osia_tasks")
        assert all(b"secret-request" not in bytes(r[0]) for r in raw)
        with pytest.raises(Exception, match="another"):  # same transaction, another request
            s.create_task(tasks_pb2.Task(
                task_id="task-0009", tenant="t", client="c", operation="identify",
                transaction_id="x0", request_sha256="1" * 64, callback="http://h/cb"))  # fmt: skip
        assert s.redeliver_task("task-0001", "t").status == "RESPONSE_SCHEDULED"
        assert [t.task_id for t in s.claim_tasks("gw-a", 10, 5000).tasks] == ["task-0001"]
        s.update_task(tasks_pb2.UpdateTaskRequest(task_id="task-0001", owner="gw-a",
                                                  status="COMPLETED"))  # fmt: skip
        assert s.purge_tasks() == 0  # kept for a week
        assert (
            s.purge_tasks(now=s.get_task("task-0001", "t").updated_at_ms + s.task_ttl_ms + 1) == 1
        )
        with pytest.raises(Exception, match="no such task"):
            s.get_task("task-0001", "t")
    finally:
        s.close()
