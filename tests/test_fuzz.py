"""Property-based fuzzing (hypothesis) of every Identity method over gRPC
(request bytes through a generic channel call: real messages with hostile
values, mutated encodings, random bytes) and every REST route, against a
real cluster: no INTERNAL or UNKNOWN, no HTTP 5xx, and the services still
healthy afterwards. A few hundred examples here; ``make test-fuzz``
(tests/fuzz_run.py) runs a million against ``tanu up``.

The cluster has no face pipeline, so image samples over gRPC are answered
UNAVAILABLE (which names the missing detector); REST bodies carry templates
only, since REST maps that to 503."""

from __future__ import annotations

import asyncio
import collections
import json
import random
import threading
from pathlib import Path

import aiohttp
import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tanu.core import secrets

from conftest import Cluster, env_for, operator_token, unit_vectors
from fuzzcases import BAD_GRPC, METHODS, body, grpc_metadata, http_case
from helpers import enroll, identify

EXAMPLES = 300


class Background:
    """A real cluster on its own event loop in a thread, so that hypothesis
    (synchronous) can drive it one example at a time."""

    def __init__(self, tmp: Path) -> None:
        from tanu.ops.natsd import NatsServer

        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.nats = NatsServer(tmp / "nats").start()
        env = env_for(self.nats.url, tmp, TANU_REST_PORT="0", TANU_ERASURE_WAIT_S="0.5")
        doc = json.loads(Path(env["TANU_TENANTS_FILE"]).read_text())
        doc["tenants"][0].update(rate_per_s=1e6, burst=1e6)
        Path(env["TANU_TENANTS_FILE"]).write_text(json.dumps(doc))
        self.c = Cluster(env)
        self.token = operator_token(env)
        self.run(self._start())

    def run(self, coro, timeout: float = 60):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    async def _start(self) -> None:
        await self.c.start_all()
        for sid, seed in (
            ("fuzz-known", 78),
            ("health-probe", 77),
        ):  # the fuzz never names the probe
            await self.c.stub.Enroll(enroll(sid, unit_vectors(1, seed=seed)[0], wait_indexed=True))
        self.raw = grpc.aio.insecure_channel(f"127.0.0.1:{self.c.gateway.port}")
        self.http = aiohttp.ClientSession()
        self.url = f"http://127.0.0.1:{self.c.gateway.rest.port}"

    async def _stop(self) -> None:
        await self.http.close()
        await self.raw.close()
        await self.c.stop()

    def close(self) -> None:
        try:
            self.run(self._stop())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
            self.nats.stop()

    async def grpc_call(self, method: str, data: bytes, md) -> str:
        call = self.raw.unary_unary(f"/tanu.v1.Identity/{method}")
        try:
            await call(data, metadata=md, timeout=20)
            return "OK"
        except grpc.aio.AioRpcError as exc:
            return exc.code().name

    async def http_call(self, case) -> int:
        async with self.http.request(case.method, self.url + case.path, headers=case.headers,
                                     data=case.data) as r:  # fmt: skip
            text = await r.text()
            if r.content_type == "application/json":
                json.loads(text, parse_constant=lambda c: pytest.fail(f"{c} in a reply"))
            return r.status


@pytest.fixture(scope="module")
def bg(tmp_path_factory):
    b = Background(tmp_path_factory.mktemp("fuzz"))
    try:
        yield b
    finally:
        b.close()


def test_no_input_yields_internal_unknown_or_5xx_and_the_services_stay_healthy(bg):
    seen: collections.Counter = collections.Counter()

    @settings(max_examples=EXAMPLES, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))  # fmt: skip
    # A seed per example, not st.randoms(): hypothesis's own random
    # repeats itself too much to reach the rarer combinations.
    @given(st.sampled_from(sorted(METHODS)), st.integers(0, 2**64), st.binary(max_size=48))
    def one(method: str, seed: int, junk: bytes) -> None:
        r = random.Random(seed)
        data = junk if r.random() < 0.1 else body(method, r)
        code = bg.run(bg.grpc_call(method, data, grpc_metadata(r, bg.token)))
        assert code not in BAD_GRPC, (method, data[:200], code)
        case = http_case(r, bg.token, images=False)
        status = bg.run(bg.http_call(case))
        # 501: an OSIA feature Tanu does not support (documented), not a failure
        assert status < 500 or status == 501, (
            case.method,
            case.path[:200],
            case.data[:200],
            status,
        )
        seen[method] += 1
        route = case.path.split("?")[0]  # (the query may hold a callback URL's slashes)
        seen[route.split("/")[2] if route.count("/") > 1 else "root"] += 1

    one()
    assert set(METHODS) <= set(seen), seen
    assert {"verify", "identify", "persons"} <= set(seen), seen

    async def healthy() -> None:
        c = bg.c
        r = await c.stub.Identify(identify(unit_vectors(1, seed=77)[0]))
        assert r.complete and r.candidates[0].subject_id == "health-probe"
        ch = secrets.aio_channel(f"127.0.0.1:{c.gateway.port}", bg.token)
        try:
            h = await health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest())
            assert h.status == health_pb2.HealthCheckResponse.SERVING
        finally:
            await ch.close()
        async with bg.http.get(bg.url + "/healthz") as resp:
            assert resp.status == 200

    bg.run(healthy())
