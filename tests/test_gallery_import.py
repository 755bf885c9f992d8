"""``tanu gallery import`` against a real small cluster (NATS with roles,
the store, two searchers, the gateway): hostile rows refused by reason,
every good row searchable by Identify afterwards, and an importer killed
with SIGKILL mid-way then resumed stores every row exactly once."""

from __future__ import annotations

import asyncio
import contextlib
import csv
import json
import os
import signal
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from pg import schema_dsn

from tanu.clients.store import StoreClient
from tanu.core import bus, errors, natsnames, natsroles, vectors
from tanu.core.config import Layout
from tanu.store import Store
from tanu.v1 import common_pb2, identity_pb2, searcher_pb2, store_pb2

from conftest import DIM, nats_url_as, unit_vectors

HEADER = [
    "subject_id",
    "date_of_birth",
    "consent_evidence_ref",
    "guardian_subject_id",
    "relationship",
]
PURPOSES = "identity_verification,kyc"


def write_gallery(folder: Path, rows: list[list[str]], vecs: np.ndarray) -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    t, c = folder / "templates.npy", folder / "subjects.csv"
    np.save(t, vecs.astype(np.float32))
    with open(c, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(HEADER)
        w.writerows(rows)
    return t, c


def command(env: dict, templates: Path, subjects: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "tanu.ops.cli", "gallery", "import",
            "--templates", str(templates), "--csv", str(subjects), "--purposes", PURPOSES,
            "--skip-dedup", "--nats", nats_url_as(env, natsroles.OPERATOR), "--json", *extra]  # fmt: skip


def child_env(env: dict) -> dict:
    return {**os.environ, "TANU_TENANTS_FILE": env["TANU_TENANTS_FILE"],
            "TANU_DIMENSION": str(DIM), "TANU_LOG_LEVEL": "warning"}  # fmt: skip


async def run_import(env: dict, *args) -> tuple[int, dict]:
    p = await asyncio.create_subprocess_exec(
        *command(env, *args), env=child_env(env),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await p.communicate()
    assert p.returncode in (0, 1) and out, err.decode()[-2000:]
    return p.returncode, json.loads(out)


async def held(cluster) -> tuple[list[int], list[int]]:
    """(template ids the store holds, template ids the searchers hold), over
    every partition, once every searcher has applied the stream."""
    parts = cluster.layout.partitions
    nc = await bus.connect(nats_url_as(cluster.env), "test-import")
    try:
        store = StoreClient(nc, 10)
        in_store: list[int] = []
        for p in range(parts):
            d = await store.digest(common_pb2.DigestRequest(partitions=parts, partition=p))
            in_store.append(sum(r.count for r in d.ranges))
        for _ in range(200):
            stats = [await bus.request(nc, natsnames.searcher_stats(parts, p),
                                       searcher_pb2.StatsRequest(include_template_ids=True),
                                       searcher_pb2.StatsResponse, 5) for p in range(parts)]  # fmt: skip
            if sum(s.gallery_size for s in stats) >= sum(in_store):
                break
            await asyncio.sleep(0.1)
        ids = [t for s in stats for t in s.template_ids]
        return in_store, ids
    finally:
        await nc.close()


async def test_import_refuses_hostile_rows_and_every_good_row_is_searchable(cluster, tmp_path):
    n_good = 200
    good = unit_vectors(n_good, seed=11)
    rows = [[f"NAT-{i:06d}", "1980-05-17", f"form-{i}", "", ""] for i in range(n_good)]
    vecs = list(good)
    expected = Counter()
    rng = np.random.default_rng(3)

    def hostile(row, vec, reason):
        rows.append(row)
        vecs.append(vec if vec is not None else rng.standard_normal(DIM).astype(np.float32))
        expected[reason] += 1

    nan, inf = np.full(DIM, np.nan, np.float32), np.ones(DIM, np.float32)
    inf[7] = np.inf
    for sid in ["", " padded", "bidi\u202eid", "x" * 129, "ctl\x07id", "zero\u200bwidth"]:
        hostile([sid, "1980-01-01", "form", "", ""], None, "bad_id")
    for dob in ["2999-01-01", "1990-02-30", "19900101", "1870-01-01", "yesterday"]:
        hostile([f"DOB-{dob}", dob, "form", "", ""], None, "bad_dob")
    hostile(["NAN-1", "1980-01-01", "form", "", ""], nan, "nan_vector")
    hostile(["INF-1", "1980-01-01", "form", "", ""], inf, "nan_vector")
    hostile(["ZERO-1", "1980-01-01", "form", "", ""], np.zeros(DIM, np.float32), "zero_vector")
    huge = np.full(DIM, 0.01, np.float32)
    huge[3] = 1e20  # finite, but past any template (and the fp16 index)
    hostile(["HUGE-1", "1980-01-01", "form", "", ""], huge, "big_vector")
    hostile(
        ["NAT-000003", "1980-01-01", "form", "", ""], None, "duplicate_id"
    )  # an earlier row's id
    hostile(["EMPTY-EVIDENCE", "1980-01-01", "  ", "", ""], None, "consent")
    hostile(["MINOR-ALONE", "2019-01-01", "form", "", ""], None, "consent")
    hostile(["MINOR-ORPHAN", "2019-01-01", "form", "NOT-ENROLLED", "parent"], None, "consent")
    hostile(["MINOR-BADREL", "2019-01-01", "form", "NAT-000001", "uncle"], None, "consent")
    hostile(["SHORT-ROW", "1980-01-01"], None, "bad_row")
    # A minor whose guardian was imported earlier is stored (and searchable).
    rows.append(["MINOR-OK", "2019-01-01", "form-minor", "NAT-000001", "parent"])
    kid = unit_vectors(1, seed=99)[0]
    vecs.append(kid)
    order = rng.permutation(len(rows) - n_good - 1) + n_good  # hostile rows spread among good ones
    perm = (
        list(range(n_good // 2)) + list(order) + list(range(n_good // 2, n_good)) + [len(rows) - 1]
    )
    rows, vecs = [rows[i] for i in perm], np.stack([vecs[i] for i in perm])
    for dup in ["NAT-000150", "NAT-000150"]:  # after its original: refused; twice in one batch
        rows.append([dup, "1980-01-01", "form", "", ""])
        vecs = np.vstack([vecs, good[150]])
        expected["duplicate_id"] += 1
    t, c = write_gallery(tmp_path / "in", rows, vecs)

    code, summary = await run_import(cluster.env, t, c, "--batch", "37")
    assert code == 1  # some rows were refused
    assert summary["refused"] == dict(expected)
    assert summary["stored"] == n_good + 1
    assert summary["rows"] == len(rows)

    in_store, in_searchers = await held(cluster)
    assert sum(in_store) == n_good + 1
    assert sorted(in_searchers) == sorted(set(in_searchers)) and len(in_searchers) == n_good + 1

    for i in range(n_good):
        r = await cluster.stub.Identify(identity_pb2.IdentifyRequest(
            sample=common_pb2.BiometricSample(template=common_pb2.Template(
                vector=vectors.to_bytes(good[i]))), top_k=1))  # fmt: skip
        assert r.candidates and r.candidates[0].subject_id == f"NAT-{i:06d}"
    r = await cluster.stub.Identify(identity_pb2.IdentifyRequest(
        sample=common_pb2.BiometricSample(template=common_pb2.Template(
            vector=vectors.to_bytes(kid))), top_k=1))  # fmt: skip
    assert r.candidates[0].subject_id == "MINOR-OK"


async def test_import_killed_mid_way_resumes_without_duplicates_or_loss(cluster, tmp_path):
    n, batch = 300, 10
    vecs = unit_vectors(n, seed=21)
    rows = [[f"K-{i:05d}", "1975-03-09", f"doc-{i}", "", ""] for i in range(n)]
    t, c = write_gallery(tmp_path / "in", rows, vecs)
    cp_path = tmp_path / "import.checkpoint.json"
    p = await asyncio.create_subprocess_exec(
        *command(cluster.env, t, c, "--batch", str(batch), "--max-rate", "120",
                 "--checkpoint", str(cp_path)),
        env=child_env(cluster.env), stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    for _ in range(3000):
        if cp_path.exists() and json.loads(cp_path.read_text())["next_row"] >= 60:
            break
        await asyncio.sleep(0.01)
    os.kill(p.pid, signal.SIGKILL)
    await p.wait()
    assert p.returncode == -signal.SIGKILL
    cp = json.loads(cp_path.read_text())
    assert 60 <= cp["next_row"] < n, cp

    # As if the kill had come after the store committed the last batch but
    # before its checkpoint was written: the resume sends that batch again.
    cp["next_row"] -= batch
    cp["stored"] -= batch
    cp_path.write_text(json.dumps(cp))

    code, summary = await run_import(cluster.env, t, c, "--batch", str(batch),
                                     "--checkpoint", str(cp_path))  # fmt: skip
    assert code == 0, summary
    assert summary["stored"] == n and summary["refused"] == {}
    assert summary["rows_this_run"] == n - cp["next_row"]

    in_store, in_searchers = await held(cluster)
    assert sum(in_store) == n
    assert len(in_searchers) == n and len(set(in_searchers)) == n

    # A second run over a finished checkpoint writes nothing.
    code, again = await run_import(cluster.env, t, c, "--batch", str(batch),
                                   "--checkpoint", str(cp_path))  # fmt: skip
    assert code == 0 and again["rows_this_run"] == 0 and again["stored"] == n
    assert sum((await held(cluster))[0]) == n


async def test_import_needs_the_dedup_decision_and_the_models_dimension(cluster, tmp_path):
    t, c = write_gallery(
        tmp_path / "in", [["A-1", "1980-01-01", "f", "", ""]], unit_vectors(1, dim=DIM + 1)
    )
    cmd = command(cluster.env, t, c)
    for argv in ([a for a in cmd if a != "--skip-dedup"], cmd):
        p = await asyncio.create_subprocess_exec(
            *argv, env=child_env(cluster.env),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        _, err = await p.communicate()
        assert p.returncode == 2
        assert b"--skip-dedup" in err or b"wrong_dimension" in err
    assert sum((await held(cluster))[0]) == 0


async def test_only_the_operator_may_put_batches(cluster, tmp_path):
    req = store_pb2.PutSubjectsRequest(subjects=[store_pb2.PutSubjectRequest(
        subject_id="GW-1", date_of_birth="1980-01-01",
        templates=[common_pb2.Template(vector=vectors.to_bytes(unit_vectors(1)[0]))],
        consent=common_pb2.Consent(purposes=["kyc"], evidence_ref="f", tenant="operator"),
    )])  # fmt: skip
    nc = await bus.connect(nats_url_as(cluster.env, "gateway"), "gw")
    try:
        with pytest.raises(errors.DeadlineExceeded):  # dropped by the NATS server
            await StoreClient(nc, 0.5).put_batch(req)
    finally:
        await nc.close()
    nc = await bus.connect(nats_url_as(cluster.env, natsroles.OPERATOR), "op")
    try:
        reply = await StoreClient(nc, 5).put_batch(req)
        assert list(reply.refusals) == [""] and reply.stored == 1
        too_many = store_pb2.PutSubjectsRequest(subjects=[req.subjects[0]] * 2001)
        with pytest.raises(errors.InvalidArgument):
            await StoreClient(nc, 5).put_batch(too_many)
    finally:
        await nc.close()


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_a_refused_row_leaves_nothing_and_the_rest_of_its_batch_commits(backend, tmp_path):
    with contextlib.ExitStack() as stack:
        target = (str(tmp_path / "s.sqlite3") if backend == "sqlite"
                  else stack.enter_context(schema_dsn()))  # fmt: skip
        db = Store(target, Layout(partitions=2))
        stack.callback(db.close)
        v = unit_vectors(5, seed=8)
        ok = common_pb2.Consent(purposes=["kyc"], evidence_ref="f", tenant="operator")
        kid = common_pb2.Consent(purposes=["kyc"], evidence_ref="f", given_by="guardian",
                                 guardian_subject_id="P-1", relationship="parent")  # fmt: skip
        no_purpose = common_pb2.Consent(evidence_ref="f")
        out = db.put_batch([
            ("P-1", v[0:1], "1980-01-01", ok),
            ("P-1", v[1:2], "1980-01-01", ok),  # the same id again in the batch
            ("C-1", v[2:3], "2019-01-01", kid),  # guardian stored earlier in the batch
            ("C-2", v[3:4], "2019-01-01", common_pb2.Consent(
                purposes=["kyc"], evidence_ref="f", given_by="guardian",
                guardian_subject_id="NOBODY", relationship="parent")),  # fmt: skip
            ("X-1", v[4:5], "1980-01-01", no_purpose),  # refused by the consent rules
        ])  # fmt: skip
        assert out == ["", "duplicate_id", "", "consent", "consent"]
        for sid in ("P-1", "C-1"):
            assert len(db.get_templates(sid).templates) == 1
        for sid in ("C-2", "X-1"):
            with pytest.raises(errors.NotFound):
                db.get_templates(sid)
        assert db.put_batch([("P-1", v[0:1], "1980-01-01", ok)]) == ["duplicate_id"]
