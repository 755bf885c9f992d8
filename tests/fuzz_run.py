"""``make test-fuzz``: a million generated inputs (tests/fuzzcases.py) against
a real local cluster (``tanu up``: NATS, store, searchers, detector,
embedder, gateway with its REST facade, each its own process), many in
flight at once; half over gRPC (request bytes for every Identity method),
half over REST (every route).

Prints the count, the replies by status, the number of INTERNAL/UNKNOWN/5xx
(goal 0), the services' restarts (goal 0) and whether they still serve;
exits 1 unless all three hold. Up to 20 offending inputs are written to
``<var>/fuzz-failures.jsonl`` to reproduce them (the temporary cluster
folder is removed only when the run passed).

    python tests/fuzz_run.py --count 1000000 [--concurrency 256] [--seed 1]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import collections
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import aiohttp
import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fuzzcases import BAD_GRPC, METHODS, body, grpc_metadata, http_case  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
METHOD_NAMES = sorted(METHODS)


def start_cluster(var: Path, partitions: int) -> subprocess.Popen:
    """``tanu up`` in ``var``, with an operator tenant whose rate limit the
    fuzzer does not hit (so inputs reach the use cases)."""
    keys = var / "keys"
    keys.mkdir(parents=True, exist_ok=True)
    (keys / "tenants.json").write_text(json.dumps({"tenants": [
        {"id": "operator", "kind": "operator", "rate_per_s": 1e7, "burst": 1e7,
         "purposes": ["identity_verification", "kyc", "border_control", "social_services",
                      "law_enforcement"]},
    ]}))  # fmt: skip
    env = {**os.environ, "TANU_PARTITIONS": str(partitions), "TANU_LOG_LEVEL": "warning",
           "TANU_MODEL_DIR": os.environ.get("TANU_MODEL_DIR", str(ROOT / "var" / "models")),
           "TANU_ERASURE_WAIT_S": "1"}  # fmt: skip
    proc = subprocess.Popen(
        [sys.executable, "-m", "tanu.ops.cli", "--var", str(var), "up", "--port", "0",
         "--nats-port", "0", "--partitions", str(partitions)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
        start_new_session=True,
    )  # fmt: skip
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            raise SystemExit(f"tanu up exited ({proc.poll()}) before it was up")
        if "Tanu is up" in line:
            # keep reading, so that the supervisor never blocks on a full pipe
            threading.Thread(target=lambda: [None for _ in proc.stdout], daemon=True).start()
            return proc
    raise SystemExit("tanu up did not come up within 300 s")


class Fuzzer:
    def __init__(self, state: dict, token: str, seed: int) -> None:
        self.state = state
        self.token = token
        self.seed = seed
        self.replies: collections.Counter = collections.Counter()
        self.bad: list[dict] = []
        self.done = 0

    async def run(self, count: int, concurrency: int) -> float:
        self.channel = grpc.aio.insecure_channel(
            self.state["gateway"], options=[("grpc.max_send_message_length", 16 * 1024 * 1024)]
        )
        conn = aiohttp.TCPConnector(limit=concurrency)
        self.http = aiohttp.ClientSession(connector=conn, timeout=aiohttp.ClientTimeout(total=60))
        self.calls = {m: self.channel.unary_unary(f"/tanu.v1.Identity/{m}") for m in METHOD_NAMES}
        queue = iter(range(count))
        start = time.perf_counter()
        last = [start]

        async def worker(w: int) -> None:
            for i in queue:
                r = random.Random(self.seed * 1_000_003 + i)
                try:
                    await (self.one_grpc(r, i) if i % 2 == 0 else self.one_http(r, i))
                except Exception as exc:  # noqa: BLE001 - a client-side failure is counted, not fatal
                    self.replies[f"client:{type(exc).__name__}"] += 1
                self.done += 1
                now = time.perf_counter()
                if now - last[0] > 30:
                    last[0] = now
                    rate = self.done / (now - start)
                    print(f"  {self.done:,} inputs, {rate:,.0f}/s, bad {len(self.bad)}", flush=True)

        try:
            await asyncio.gather(*(worker(w) for w in range(concurrency)))
        finally:
            await self.http.close()
            await self.channel.close()
        return time.perf_counter() - start

    def _bad(self, kind: str, status: str, detail: dict) -> None:
        if len(self.bad) < 20:
            self.bad.append({"kind": kind, "status": status, **detail})
        else:
            self.bad.append({})

    async def one_grpc(self, r: random.Random, i: int) -> None:
        method = METHOD_NAMES[r.randrange(len(METHOD_NAMES))]
        data = r.randbytes(r.randint(0, 48)) if r.random() < 0.05 else body(method, r)
        try:
            await self.calls[method](data, metadata=grpc_metadata(r, self.token), timeout=30)
            code = "OK"
        except grpc.aio.AioRpcError as exc:
            code = exc.code().name
        self.replies[f"grpc:{code}"] += 1
        if code in BAD_GRPC:
            self._bad("grpc", code, {"method": method, "seed": i,
                                     "body_b64": base64.b64encode(data[:4096]).decode()})  # fmt: skip

    async def one_http(self, r: random.Random, i: int) -> None:
        case = http_case(r, self.token)
        async with self.http.request(case.method, self.state["rest"] + case.path,
                                     headers=case.headers, data=case.data) as resp:  # fmt: skip
            text = await resp.text()
            status = resp.status
        self.replies[f"http:{status}"] += 1
        bad_json = False
        if text and resp.content_type == "application/json":
            try:
                json.loads(text, parse_constant=lambda c: (_ for _ in ()).throw(ValueError(c)))
            except ValueError:
                bad_json = True
                self.replies["http:invalid_json_reply"] += 1
        if (status >= 500 and status != 501) or bad_json:  # 501: an OSIA feature not supported
            self._bad("http", str(status), {"method": case.method, "path": case.path[:300],
                                            "seed": i, "body": case.data[:2000].decode("latin-1")})  # fmt: skip


async def healthy(state: dict) -> bool:
    ch = grpc.aio.insecure_channel(state["gateway"])
    try:
        h = await health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=5)
        grpc_ok = h.status == health_pb2.HealthCheckResponse.SERVING
    except grpc.aio.AioRpcError:
        grpc_ok = False
    finally:
        await ch.close()
    async with aiohttp.ClientSession() as s, s.get(state["rest"] + "/healthz") as resp:
        return grpc_ok and resp.status == 200


def restarts(var: Path, first: dict) -> int:
    """Service restarts since the start: the supervisor's count, and any
    service whose first process is gone."""
    now = json.loads((var / "cluster.json").read_text())
    n = sum(s.get("restarts", 0) for s in now["services"])
    gone = 0
    for s in first["services"]:
        try:
            os.kill(s["pid"], 0)
        except OSError:
            gone += 1
    return max(n, gone)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--count", type=int, default=1_000_000)
    ap.add_argument("--concurrency", type=int, default=256)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--partitions", type=int, default=2)
    ap.add_argument("--var", help="cluster folder (default: a fresh temporary one)")
    args = ap.parse_args(argv)
    var = Path(args.var or tempfile.mkdtemp(prefix="tanu-fuzz-"))
    print(f"starting tanu up in {var} ...", flush=True)
    proc = start_cluster(var, args.partitions)
    try:
        state = json.loads((var / "cluster.json").read_text())
        token = (var / "keys" / "operator.token").read_text().strip()
        fz = Fuzzer(state, token, args.seed)
        print(f"fuzzing {args.count:,} inputs, {args.concurrency} in flight ...", flush=True)
        elapsed = asyncio.run(fz.run(args.count, args.concurrency))
        ok = asyncio.run(healthy(state))
        n_restarts = restarts(var, state)
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
    bad = sum(v for k, v in fz.replies.items()
              if k.split(":")[1] in BAD_GRPC or (k.startswith("http:") and k[5:].isdigit()
                                                 and int(k[5:]) >= 500 and k != "http:501")
              or k == "http:invalid_json_reply")  # fmt: skip
    print(f"\ninputs: {fz.done:,} in {elapsed:,.0f} s ({fz.done / elapsed:,.0f}/s), "
          f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")  # fmt: skip
    print("replies by status:")
    for k, v in sorted(fz.replies.items()):
        print(f"  {k:32} {v:>10,}")
    print(f"INTERNAL/UNKNOWN/5xx/invalid JSON: {bad}")
    print(f"service restarts: {n_restarts}")
    print(f"still serving: {ok}")
    if fz.bad:
        out = var / "fuzz-failures.jsonl"
        out.write_text("".join(json.dumps(b) + "\n" for b in fz.bad if b))
        print(f"offending inputs: {out}")
    passed = bad == 0 and n_restarts == 0 and ok
    if passed and not args.var:
        shutil.rmtree(var, ignore_errors=True)
    return 0 if passed else 1


if __name__ == "__main__":
    raise SystemExit(main())
