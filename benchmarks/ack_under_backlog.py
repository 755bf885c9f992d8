"""Single writes acknowledged while a bulk import keeps the store busy: how
long each waits (for the database thread, and for its event to be on the
stream), and how many are acknowledged late (``tanu_relay_flush_late_total``:
past the flush bound, without read-your-writes).

    .venv/bin/python benchmarks/ack_under_backlog.py [--seconds 20] [--batch 1000]

A real nats-server (JetStream, authenticated) and one store (SQLite, its
relay on, the default relay batch) in this process. An importer sends
``put_batch`` batches of ``--batch`` subjects back to back, two in flight,
as ``tanu gallery import`` does; meanwhile one single-subject write
(``put``: the store's write path of an enrolment, without the
de-duplication window, which with no searcher here would hold the whole
import) every ``--every`` seconds. Reference in the same run: the same
writes with no import running. Prints JSON: acknowledgement p50/p99/max,
late acknowledgements, import rows/s.
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


def _vectors(rng: np.random.Generator, n: int) -> np.ndarray:
    v = rng.standard_normal((n, DIM)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _subject(sid: str, v: np.ndarray) -> store_pb2.PutSubjectRequest:
    return store_pb2.PutSubjectRequest(
        subject_id=sid, date_of_birth="1980-01-01",
        consent=common_pb2.Consent(purposes=["kyc"], evidence_ref="f", given_by="self", tenant="t"),
        templates=[common_pb2.Template(vector=vectors.to_bytes(v))],
    )  # fmt: skip


async def run(folder: Path, args, importing: bool) -> dict:
    alone = await StoreAlone(folder, DIM).start()
    store = alone.store
    op = await alone.connect("operator")
    writes, importer = StoreClient(op, 10.0), StoreClient(op, 60.0)
    rng = np.random.default_rng(7)
    acks: list[float] = []
    imported = 0
    stop = asyncio.Event()

    async def importing_loop() -> None:
        b = 0

        async def one(b: int) -> None:
            nonlocal imported
            v = _vectors(rng, args.batch)
            req = store_pb2.PutSubjectsRequest(subjects=[
                _subject(f"imp-{b}-{i}", v[i]) for i in range(args.batch)])  # fmt: skip
            reply = await importer.put_batch(req)
            imported += reply.stored

        pending: list[asyncio.Task] = []
        while not stop.is_set():
            pending.append(asyncio.create_task(one(b)))
            b += 1
            if len(pending) >= 2:
                await pending.pop(0)
        await asyncio.gather(*pending)

    try:
        task = asyncio.create_task(importing_loop()) if importing else None
        await asyncio.sleep(2 if importing else 0)  # the import under way
        t0 = time.perf_counter()
        i = 0
        while time.perf_counter() - t0 < args.seconds:
            t = time.perf_counter()
            try:
                await writes.put(_subject(f"one-{i}", _vectors(rng, 1)[0]))
                acks.append(time.perf_counter() - t)
            except errors.TanuError as exc:
                print(f"write refused: {exc}", file=sys.stderr)
            i += 1
            await asyncio.sleep(max(0.0, args.every - (time.perf_counter() - t)))
        wall = time.perf_counter() - t0
        stop.set()
        if task:
            await task
        late = store.metrics.registry.get_sample_value("tanu_relay_flush_late_total")
    finally:
        await op.close()
        await alone.stop()
    return {
        "import_running": importing, "writes": len(acks),
        "ack_p50_ms": round(pct(acks, 50) * 1e3, 1), "ack_p99_ms": round(pct(acks, 99) * 1e3, 1),
        "ack_max_ms": round(max(acks) * 1e3, 1),
        "late_acks": None if late is None else int(late),  # None: a store without the counter
        "import_rows_per_s": round(imported / (wall + 2), 1) if importing else 0,
    }  # fmt: skip


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--every", type=float, default=0.1, help="seconds between enrolments")
    args = ap.parse_args()
    logs.configure("ack_under_backlog", "warning")
    runs = []
    for importing in (False, True):
        with tempfile.TemporaryDirectory(prefix="tanu-ack-") as tmp:
            runs.append(asyncio.run(run(Path(tmp), args, importing)))
    print(json.dumps({"load_before": os.getloadavg(), "cpus": os.cpu_count(), "runs": runs},
                     indent=1))  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
