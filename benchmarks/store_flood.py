"""A flood of concurrent enrolments on one store: what back-pressure
(TANU_STORE_MAX_QUEUE) does to the replies.

    .venv/bin/python benchmarks/store_flood.py [--enrolments 1000] [--max-queue 256]

A real nats-server and one store (SQLite, its relay on) in this process;
``--enrolments`` distinct enrolments sent at once over NATS as the gateway
sends them (``StoreClient.enrol``, the 5 s bus deadline), twice: with
TANU_STORE_MAX_QUEUE=0 (the reference: no refusal, as before) and with
``--max-queue``. Prints JSON per run: enrolled, refused (RESOURCE_EXHAUSTED),
past the deadline (the caller cannot tell whether they were written), and
reply times of each kind.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from tanu.clients.store import StoreClient
from tanu.core import errors, logs, vectors
from tanu.v1 import common_pb2, store_pb2

sys.path.insert(0, str(Path(__file__).resolve().parent))
from loadgen import pct  # noqa: E402
from store_alone import StoreAlone  # noqa: E402

DIM = 128


def request(i: int, v: np.ndarray) -> store_pb2.PutSubjectRequest:
    return store_pb2.PutSubjectRequest(
        subject_id=f"flood-{i}", date_of_birth="1980-01-01",
        consent=common_pb2.Consent(purposes=["kyc"], evidence_ref="f", tenant="t"),
        templates=[common_pb2.Template(vector=vectors.to_bytes(v))],
        dedup=store_pb2.DedupCheck(threshold=0.6),
    )  # fmt: skip


async def flood(folder: Path, n: int, max_queue: int) -> dict:
    alone = await StoreAlone(folder, DIM, TANU_STORE_MAX_QUEUE=str(max_queue)).start()
    store = alone.store
    nc = await alone.connect("gateway")
    client = StoreClient(nc, 5.0)
    rng = np.random.default_rng(max_queue)
    faces = rng.standard_normal((n, DIM)).astype(np.float32)
    faces /= np.linalg.norm(faces, axis=1, keepdims=True)
    times: dict[str, list[float]] = {"enrolled": [], "refused": [], "deadline": [], "other": []}

    async def one(i: int) -> None:
        t = time.perf_counter()
        try:
            await client.enrol(request(i, faces[i]))
            kind = "enrolled"
        except errors.ResourceExhausted:
            kind = "refused"
        except errors.DeadlineExceeded:
            kind = "deadline"
        except errors.TanuError:
            kind = "other"
        times[kind].append(time.perf_counter() - t)

    t0 = time.perf_counter()
    try:
        await asyncio.gather(*(one(i) for i in range(n)))
        wall = time.perf_counter() - t0
        await asyncio.sleep(6)  # what was past the deadline may still commit
        stored = await store.db.run(store.db.count_subjects)
    finally:
        await nc.close()
        await alone.stop()
    out = {"max_queue": max_queue, "wall_s": round(wall, 2), "stored": stored}
    for kind, ts in times.items():
        out[kind] = len(ts)
        if ts:
            out[f"{kind}_p50_ms"] = round(pct(ts, 50) * 1e3, 1)
            out[f"{kind}_max_ms"] = round(max(ts) * 1e3, 1)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    ap.add_argument("--enrolments", type=int, default=1000)
    ap.add_argument("--max-queue", type=int, default=256)
    a = ap.parse_args()
    logs.configure("store_flood", "warning")
    load = os.getloadavg()
    runs = []
    for q in (0, a.max_queue):
        with tempfile.TemporaryDirectory(prefix="tanu-flood-") as tmp:
            runs.append(asyncio.run(flood(Path(tmp), a.enrolments, q)))
    print(json.dumps({"enrolments": a.enrolments, "load_before": load,
                      "cpus": os.cpu_count(), "runs": runs}, indent=1))  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
