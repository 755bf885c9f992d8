"""Enrolment rate in the store right after a bulk import: every enrolment
is compared exactly with the de-duplication window (``tanu.store.dedup``).

    .venv/bin/python benchmarks/dedup_window.py [--imported 20000] [--enrolments 200]

One SQLite store: ``--imported`` subjects put as ``tanu gallery import``
does (``put_batch``), their events published (stream sequences recorded as
the relay does), then ``--enrolments`` distinct enrolments, each in its own
transaction under the enrolment lock, twice in the same run:

- reference: the gateway reports no searched sequences (an older gateway):
  the window holds every imported template;
- searched: the gateway reports that each partition's searcher had applied
  the import: the window holds only what the search may not have seen.

Prints JSON: enrolments per second for each, the ratio, the window sizes.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

from tanu.core.config import Layout
from tanu.store import Store
from tanu.v1 import common_pb2, store_pb2

DIM = 512
PARTITIONS = 2


def faces(n: int, seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


_stream = [0]


def publish_all(db: Store) -> int:
    """What the relay does, with stream sequences counted here; returns the last."""
    while rows := db.outbox_batch(2000):
        seqs = list(range(_stream[0] + 1, _stream[0] + 1 + len(rows)))
        db.outbox_done(rows, seqs)
        _stream[0] = seqs[-1]
    return _stream[0]


def enrol(db: Store, prefix: str, vecs: np.ndarray, searched: dict[int, int]) -> float:
    consent = common_pb2.Consent(purposes=["kyc"], evidence_ref="f", tenant="t")
    start = time.perf_counter()
    for i, v in enumerate(vecs):
        req = store_pb2.PutSubjectRequest(
            subject_id=f"{prefix}-{i}", date_of_birth="1980-01-01", consent=consent,
            dedup=store_pb2.DedupCheck(threshold=0.6, searched_sequences=searched),
        )  # fmt: skip
        out = db.enrol_subject(req, v[None, :])
        assert out.outcome == "enrolled", out.outcome
    return len(vecs) / (time.perf_counter() - start)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--imported", type=int, default=20_000)
    ap.add_argument("--enrolments", type=int, default=200)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        db = Store(str(Path(tmp) / "s.sqlite3"), Layout(partitions=PARTITIONS, dimension=DIM))
        consent = common_pb2.Consent(purposes=["kyc"], evidence_ref="f", tenant="operator")
        imp = faces(a.imported, 1)
        t = time.perf_counter()
        for s in range(0, a.imported, 2000):
            rows = [(f"imp-{i}", imp[i : i + 1], "1980-01-01", consent)
                    for i in range(s, min(s + 2000, a.imported))]  # fmt: skip
            assert not any(db.put_batch(rows))
        import_s = time.perf_counter() - t
        last = publish_all(db)
        # The reference first (it opens the imported templates once, as a
        # store does on its first enrolment after the import: not timed).
        enrol(db, "warm", faces(1, 2), {})
        publish_all(db)
        ref = enrol(db, "ref", faces(a.enrolments, 3), {})
        ref_window = len(db._recent)
        last = publish_all(db)
        applied = {p: last for p in range(PARTITIONS)}
        new = enrol(db, "new", faces(a.enrolments, 4), applied)
        new_window = len(db._recent)
        db.close()
    print(json.dumps({
        "imported": a.imported, "enrolments": a.enrolments, "dimension": DIM,
        "import_s": round(import_s, 1),
        "reference_enrolments_per_s": round(ref, 1), "reference_window": ref_window,
        "searched_enrolments_per_s": round(new, 1), "searched_window": new_window,
        "ratio": round(new / ref, 1),
        "cpus": os.cpu_count(), "python": platform.python_version(),
    }, indent=1))  # fmt: skip


if __name__ == "__main__":
    main()
