"""Searching on a device copy with tombstones and compaction
(``TANU_INDEX_DEVICE``). Without a GPU here, the copy is a second CPU index
(``cpu-copy``): the same algorithm the GPU copy runs. Its results must equal
the CPU index's through additions, removals, compactions and restores."""

from __future__ import annotations

import numpy as np
import pytest

from tanu.index import PartitionIndex
from tanu.index import device as dev

from conftest import Cluster, env_for, near, unit_vectors
from helpers import enroll, identify


def pair(kind: str, metric: str, floor: int = 50):
    ref = PartitionIndex(128, metric, kind)
    on_device = PartitionIndex(128, metric, kind, device="cpu-copy", compact_floor=floor,
                               compact_share=0.01)  # fmt: skip
    return ref, on_device


def same_hits(ref: PartitionIndex, other: PartitionIndex, q: np.ndarray, k: int) -> None:
    rs, ri = ref.search(q, k)
    os_, oi = other.search(q, k)
    assert np.array_equal(ri, oi)
    np.testing.assert_allclose(rs, os_, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("kind,metric", [("flat", "l2"), ("fp16", "l2"), ("flat", "cosine")])
def test_device_copy_matches_the_cpu_index_through_removals_and_compactions(kind, metric):
    ref, d = pair(kind, metric)
    vecs = unit_vectors(3000, seed=40)
    ids = np.arange(1, 3001, dtype=np.int64)
    subs = [f"s{i}" for i in range(3000)]
    for idx in (ref, d):
        idx.add(ids[:2000], subs[:2000], vecs[:2000])
    q = near(vecs[::97], seed=41)
    same_hits(ref, d, q, 10)

    # remove the best hits of the queries: the copy tombstones them
    gone = ids[::97][:10]
    for idx in (ref, d):
        idx.remove(gone)
    assert d.device_tombstones == 10 and d.device_rebuilds == 1
    same_hits(ref, d, q, 10)
    _, got = d.search(q, 10)
    assert not np.isin(gone, got).any()

    # more additions and removals past the compaction threshold
    for idx in (ref, d):
        idx.add(ids[2000:], subs[2000:], vecs[2000:])
        idx.remove(ids[100:160])
    assert d.device_rebuilds == 2 and d.device_tombstones == 0, "compacted"
    same_hits(ref, d, q, 10)
    same_hits(ref, d, near(vecs[2000::101], seed=42), 25)
    assert len(d) == len(ref) == 3000 - 10 - 60


def test_device_copy_survives_a_snapshot_restore():
    ref, d = pair("fp16", "l2")
    vecs = unit_vectors(500, seed=43)
    ids = np.arange(10, 510, dtype=np.int64)
    for idx in (ref, d):
        idx.add(ids, [f"x{i}" for i in range(500)], vecs)
        idx.remove(ids[:7])
    snap = d.export(99)
    back = PartitionIndex(128, "l2", "fp16", device="cpu-copy")
    back.restore(snap)
    assert back.device_tombstones == 0 and len(back) == 493
    same_hits(ref, back, near(vecs[::13], seed=44), 5)


def test_wrong_device_settings_are_refused_clearly():
    with pytest.raises(ValueError, match="unknown index device"):
        PartitionIndex(128, "l2", "flat", device="tpu")
    with pytest.raises(ValueError, match="ivf"):
        PartitionIndex(128, "l2", "ivf", device="cpu-copy")
    if dev.gpus() == 0:
        with pytest.raises(RuntimeError, match="no GPU"):
            PartitionIndex(128, "l2", "flat", device="gpu")


async def test_a_searcher_on_a_device_copy_serves_and_forgets_erased_subjects(
    nats_server, tmp_path
):
    c = Cluster(env_for(nats_server.url, tmp_path, TANU_INDEX_DEVICE="cpu-copy",
                        TANU_INDEX_KIND="fp16"))  # fmt: skip
    try:
        await c.start_all()
        vecs = unit_vectors(30, seed=45)
        for i in range(30):
            r = await c.stub.Enroll(enroll(f"d{i}", vecs[i], wait_indexed=(i == 29)))
            assert r.enrolled
        r = await c.stub.Identify(identify(near(vecs[3], seed=46)))
        assert r.candidates[0].subject_id == "d3"
        await c.stub.Delete(__import__("tanu.v1.identity_pb2", fromlist=["x"]).DeleteRequest(
            subject_id="d3", reason="test"))  # fmt: skip
        r = await c.stub.Identify(identify(near(vecs[3], seed=46)))
        assert "d3" not in [x.subject_id for x in r.candidates]
        held = sum(s.index.device_tombstones for s in c.searchers.values())
        assert held == 1, "the removal is a tombstone on the device copy"
    finally:
        await c.stop()
