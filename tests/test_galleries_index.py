"""Galleries inside the partition index: a search of one gallery (or of ALL
while some templates are inactive) is restricted inside the search, so it
returns the exact top-k over the allowed templates only, min(k, members)
of them, for every index kind and search path (the exact kernel gathered
or masked, FAISS with an id selector, IVF, a device copy). Checked against
a brute-force search over only the members."""

from __future__ import annotations

import io
import os

import faiss
import numpy as np
import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from tanu.index import PartitionIndex, kernel, snapshot
from tanu.index.galleries import MAX_PER_TEMPLATE, Galleries, Memberships, PackedBits

D = 32


def gallery_of(n: int, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, D)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def queries_near(x: np.ndarray, count: int, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    q = x[rng.integers(0, len(x), count)] + 0.3 * rng.standard_normal((count, D))
    return q.astype(np.float32)


def stored(x: np.ndarray, kind: str, metric: str) -> np.ndarray:
    """The vectors as the index holds them (unit for cosine, fp16-rounded)."""
    y = x / np.linalg.norm(x, axis=1, keepdims=True) if metric == "cosine" else x
    return y.astype(np.float16).astype(np.float32) if kind != "flat" else y


def brute_force(x, ids, allowed, q, k, metric):
    """Exact top-k scores and ids over the allowed rows only."""
    cand = np.flatnonzero(allowed)
    if metric == "cosine":
        qn = q / np.linalg.norm(q, axis=1, keepdims=True)
        s = qn.astype(np.float64) @ x[cand].T.astype(np.float64)
        order = np.argsort(-s, axis=1, kind="stable")[:, :k]
    else:
        s = np.sqrt(((q[:, None, :].astype(np.float64) - x[cand][None]) ** 2).sum(-1))
        order = np.argsort(s, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(s, order, 1), ids[cand][order], s, ids[cand]


def assert_exact(scores, got, x, ids, allowed, q, k, metric, tol=2e-3):
    """``got`` is an exact top-k over the allowed rows: min(k, members)
    hits, all allowed, distinct, scores equal to the brute-force ones, and
    every member strictly better than the k-th best is among them."""
    members = int(allowed.sum())
    want = min(k, members)
    ref_s, _, all_s, all_ids = brute_force(x, ids, allowed, q, k, metric)
    allowed_ids = set(ids[allowed].tolist())
    for r in range(len(q)):
        hits = got[r][got[r] >= 0]
        assert len(hits) == want, (len(hits), want)
        assert len(set(hits.tolist())) == want
        assert set(hits.tolist()) <= allowed_ids
        np.testing.assert_allclose(scores[r, :want], ref_s[r, :want], atol=tol, rtol=1e-4)
        if want:
            kth = ref_s[r, want - 1]
            better = all_s[r] > kth + tol if metric == "cosine" else all_s[r] < kth - tol
            assert set(all_ids[better].tolist()) <= set(hits.tolist())


def build(kind, metric, n, allowed_share, inactive_share=0.0, seed=0, **kw):
    x = gallery_of(n, seed)
    ids = np.arange(10, 10 + n, dtype=np.int64) * 3  # ids are not positions
    rng = np.random.default_rng(seed + 100)
    in_g = rng.random(n) < allowed_share
    inactive = rng.random(n) < inactive_share
    idx = PartitionIndex(D, metric, kind, **kw)
    runs = [
        (1, ["G", "OTHER"] if g else ["OTHER"], bool(i))
        for g, i in zip(in_g, inactive, strict=True)
    ]
    idx.add(ids, [f"s{i}" for i in range(n)], x, Memberships.of_runs(runs))
    return idx, x, ids, in_g, inactive


@pytest.fixture
def small_blocks(monkeypatch):
    """Several kernel blocks at test sizes."""
    monkeypatch.setattr(kernel, "FIRST_BLOCK_ROWS", 256)
    monkeypatch.setattr(kernel, "BLOCK_ROWS", 700)


@pytest.mark.parametrize("kind", ["flat", "fp16"])
@pytest.mark.parametrize("metric", ["l2", "cosine"])
@pytest.mark.parametrize("path", ["kernel", "faiss"])
@pytest.mark.parametrize("share", [0.1, 0.7])
def test_a_gallery_search_is_the_exact_top_k_over_its_active_members(
    kind, metric, path, share, small_blocks
):
    kmb = 1 if path == "kernel" else 0
    idx, x, ids, in_g, inactive = build(kind, metric, 3000, share, 0.1, kernel_min_batch=kmb,
                                        kernel_min_batch_restricted=kmb)  # fmt: skip
    q = queries_near(x, 9)
    assert idx.uses_kernel(len(q)) == (path == "kernel")
    xs = stored(x, kind, metric)
    for k in (1, 10, 50):
        s, got = idx.search(q, k, "G")
        assert_exact(s, got, xs, ids, in_g & ~inactive, q, k, metric)
        s, got = idx.search(q, k, "ALL")  # ALL: every active template
        assert_exact(s, got, xs, ids, ~inactive, q, k, metric)
        s, got = idx.search(q, k, "")
        assert_exact(s, got, xs, ids, ~inactive, q, k, metric)


@pytest.mark.parametrize("kind", ["flat", "fp16"])
@pytest.mark.parametrize("path", ["kernel", "faiss"])
def test_tombstones_stay_excluded_and_positions_keep_their_galleries(kind, path, small_blocks):
    kmb = 1 if path == "kernel" else 0
    idx, x, ids, in_g, inactive = build(kind, "l2", 2500, 0.2, 0.05, kernel_min_batch=kmb,
                                        kernel_min_batch_restricted=kmb)  # fmt: skip
    gone = ids[in_g][::3]  # a third of the gallery, and others, erased
    gone = np.union1d(gone, ids[::17])
    idx.remove(gone)
    live = ~np.isin(ids, gone)
    x, ids, in_g, inactive = x[live], ids[live], in_g[live], inactive[live]
    q = queries_near(x, 7, seed=5)
    s, got = idx.search(q, 20, "G")
    assert not np.isin(got, gone).any()
    assert_exact(s, got, stored(x, kind, "l2"), ids, in_g & ~inactive, q, 20, "l2")
    # re-adding an erased template (a replayed event) brings nothing back
    idx.add(gone[:5], ["x"] * 5, gallery_of(5, 9), Memberships.uniform(5, ["G"]))
    assert not np.isin(idx.search(q, 20, "G")[1], gone).any()


def test_ties_are_broken_within_the_members_only(small_blocks):
    # Many identical vectors: members and non-members tie on every score.
    base = gallery_of(40, seed=3)
    x = np.repeat(base, 50, axis=0)  # 2000 rows, each vector 50 times
    n = len(x)
    ids = np.arange(1, n + 1, dtype=np.int64)
    in_g = np.zeros(n, bool)
    in_g[np.random.default_rng(4).choice(n, 300, replace=False)] = True
    for kind, kmb in (("flat", 1), ("flat", 0), ("fp16", 0), ("fp16", 1)):
        idx = PartitionIndex(
            D, "cosine", kind, kernel_min_batch=kmb, kernel_min_batch_restricted=kmb
        )
        idx.add(
            ids, ["s"] * n, x, Memberships.of_runs([(1, ["G"] if g else [], False) for g in in_g])
        )
        q = base[:6] + 0.01
        s, got = idx.search(q, 30, "G")
        assert_exact(s, got, stored(x, kind, "cosine"), ids, in_g, q, 30, "cosine")


@pytest.mark.parametrize("kind,kmb", [("flat", 1), ("flat", 0), ("fp16", 0), ("fp16", 1)])
def test_a_gallery_smaller_than_k_returns_all_its_active_members(kind, kmb):
    x = gallery_of(1500, seed=6)
    ids = np.arange(1, 1501, dtype=np.int64)
    idx = PartitionIndex(D, "l2", kind, kernel_min_batch=kmb, kernel_min_batch_restricted=kmb)
    idx.add(ids, ["s"] * 1500, x)
    members = np.array([3, 77, 500, 1499, 1500])
    idx.set_memberships(members, Memberships.uniform(5, ["WATCHLIST"]))
    idx.set_memberships(np.array([77]), Memberships.uniform(1, ["WATCHLIST"], inactive=True))
    s, got = idx.search(queries_near(x, 4), 100, "WATCHLIST")
    assert got.shape == (4, 4)  # min(k, active members)
    for row in got:
        assert sorted(row.tolist()) == [3, 500, 1499, 1500]
    assert np.all(np.diff(s, axis=1) >= 0)  # best first (distances ascending)
    # a gallery never seen, or emptied: no hits, not an error
    assert (idx.search(x[:2], 5, "NEVER")[1] == -1).all()
    idx.set_memberships(members, Memberships.uniform(5, []))
    assert (idx.search(x[:2], 5, "WATCHLIST")[1] == -1).all()


def test_inactive_templates_are_never_returned_and_membership_changes_apply():
    x = gallery_of(800, seed=7)
    ids = np.arange(1, 801, dtype=np.int64)
    idx = PartitionIndex(D, "cosine", "flat")
    idx.add(ids, [f"s{i}" for i in range(800)], x)
    q = x[:5]  # each query's best is itself
    assert (idx.search(q, 1)[1][:, 0] == ids[:5]).all()
    assert idx.galleries.allowed("")[0] is None  # nothing masked: the unrestricted path
    idx.set_memberships(ids[:5], Memberships.uniform(5, ["A"], inactive=True))
    for g in ("", "ALL", "A"):
        got = idx.search(q, 10, g)[1]
        assert not np.isin(got, ids[:5]).any()
    assert (idx.search(q, 10, "A")[1] == -1).all()
    # re-activated (the same event applied twice changes nothing more)
    for _ in range(2):
        idx.set_memberships(ids[:5], Memberships.uniform(5, ["A", "B"]))
    assert (idx.search(q, 1, "A")[1][:, 0] == ids[:5]).all()
    assert (idx.search(q, 1, "B")[1][:, 0] == ids[:5]).all()
    assert idx.galleries.inactive_count == 0 and idx.galleries.allowed("")[0] is None
    # an id given twice in one batch takes its last row; unknown ids are ignored
    m = Memberships.of_runs([(1, ["A"], False), (1, ["C"], False), (1, ["C"], False)])
    assert idx.set_memberships(np.array([1, 1, 999_999]), m) == 1
    assert idx.galleries.galleries_at(0) == ["C"]


def test_junk_gallery_names_are_dropped_and_the_name_count_is_bounded():
    names = ["ok", "ALL", "", "x" * 65, "bad name", "bad/slash", "é", "ok", "v1.2-a_b"]
    names += [f"g{i:02d}" for i in range(40)]
    m = Memberships.uniform(3, names)
    ((kept, inactive),) = m.sets
    valid = sorted({"ok", "v1.2-a_b", *(f"g{i:02d}" for i in range(40))})
    assert list(kept) == valid[:MAX_PER_TEMPLATE]  # the first 32 valid ones, in order
    ((few, _),) = Memberships.uniform(1, names[:9]).sets
    assert few == ("ok", "v1.2-a_b")  # junk and ALL dropped


def test_an_emptied_gallerys_slot_is_reused_and_bitmaps_follow_removals():
    g = Galleries()
    g.grow(20, Memberships.of_runs([(10, ["A"], False), (10, ["B"], True)]))
    assert g.members("A") == 10 and g.members("B") == 10 and g.inactive_count == 10
    g.delete(np.array([0, 1, 12]))
    assert g.n == 17 and g.members("A") == 8 and g.members("B") == 9 and g.inactive_count == 9
    assert g.galleries_at(7) == ["A"] and g.galleries_at(8) == ["B"]
    g.update(np.arange(8), Memberships.uniform(8, []))  # A emptied
    g.update(np.array([0]), Memberships.uniform(1, ["C"]))  # takes A's slot
    assert g.members("A") == 0 and g.members("C") == 1 and len(g._bits) == 2
    bits, count = g.allowed("A")
    assert count == 0 and not bits.any()
    bits, count = g.allowed("B")
    assert count == 0  # all of B is inactive
    bits, count = g.allowed("")
    assert count == 8 and np.unpackbits(bits, count=17, bitorder="little")[:8].all()


def test_packed_bits_match_a_bool_array_through_grows_sets_and_deletes():
    rng = np.random.default_rng(11)
    ref = np.zeros(0, bool)
    b = PackedBits()
    for _ in range(30):
        add = int(rng.integers(1, 50))
        b.grow(add)
        ref = np.r_[ref, np.zeros(add, bool)]
        on = rng.choice(len(ref), min(len(ref), 10), replace=False)
        b.set(on, True)
        ref[on] = True
        off = rng.choice(len(ref), min(len(ref), 5), replace=False)
        b.set(off, False)
        ref[off] = False
        drop = np.unique(rng.choice(len(ref), min(len(ref), 3), replace=False))
        b.delete(drop)
        ref = np.delete(ref, drop)
        assert np.array_equal(b.bools(), ref) and b.count() == ref.sum()
        # FAISS reads the same layout
        sel = faiss.IDSelectorBitmap(len(b.packed), faiss.swig_ptr(b.packed))
        assert [sel.is_member(i) for i in range(len(ref))] == ref.tolist()


@pytest.mark.parametrize("metric", ["l2", "cosine"])
def test_ivf_gallery_search_has_high_recall_and_small_galleries_are_exact(metric):
    # Faces cluster (one person's templates, lookalikes): IVF is used on such data.
    n, rng = 11_000, np.random.default_rng(12)
    centres = rng.standard_normal((300, D)).astype(np.float32)
    x = (centres[rng.integers(0, 300, n)] + 0.25 * rng.standard_normal((n, D))).astype(np.float32)
    ids = np.arange(n, dtype=np.int64) * 3 + 30
    in_g, inactive = rng.random(n) < 0.4, rng.random(n) < 0.05
    idx = PartitionIndex(D, metric, "ivf", nlist=64, nprobe=8)
    idx.add(
        ids,
        ["s"] * n,
        x,
        Memberships.of_runs(
            [(1, ["G"] if g else [], bool(i)) for g, i in zip(in_g, inactive, strict=True)]
        ),
    )
    assert idx.trained
    q = (x[rng.integers(0, n, 40)] + 0.05 * rng.standard_normal((40, D))).astype(np.float32)
    xs = stored(x, "fp16", metric)
    allowed = in_g & ~inactive
    assert allowed.sum() > n * idx.nprobe // idx.nlist  # the IVF selector path

    def recall(gallery, allowed):
        _, got = idx.search(q, 10, gallery)
        assert set(got[got >= 0].tolist()) <= set(ids[allowed].tolist())
        assert ((got >= 0).sum(1) == 10).all()  # always k hits
        _, ref_ids, _, _ = brute_force(xs, ids, allowed, q, 10, metric)
        return np.mean(
            [len(set(a) & set(b)) / 10 for a, b in zip(got.tolist(), ref_ids.tolist(), strict=True)]
        )

    unrestricted = recall("", ~inactive)
    assert recall("G", allowed) >= min(0.95, unrestricted - 0.03), unrestricted
    # A small gallery: searched exactly over its members.
    few = ids[::500]
    idx.set_memberships(few, Memberships.uniform(len(few), ["FEW"]))
    s, got = idx.search(q, 10, "FEW")
    assert_exact(s, got, xs, ids, np.isin(ids, few) & ~inactive, q, 10, metric)


def test_ivf_falls_back_to_exact_when_its_probed_lists_hold_too_few_members():
    # A gallery in one cluster far from the queries: the lists IVF probes
    # hold none of its members, yet each query gets its k best members.
    n, rng = 11_000, np.random.default_rng(20)
    centres = rng.standard_normal((300, D)).astype(np.float32) * 3
    centres[0] += 12  # far from every other
    label = rng.integers(1, 300, n)
    label[:250] = 0
    x = (centres[label] + 0.2 * rng.standard_normal((n, D))).astype(np.float32)
    ids = np.arange(n, dtype=np.int64) + 1
    # rerank 4: the 250 members are more than IVF scans, so IVF is tried first
    idx = PartitionIndex(D, "l2", "ivf", nlist=256, nprobe=1, rerank=4)
    far = label == 0
    idx.add(ids, ["s"] * n, x, Memberships.of_runs([(1, ["FAR"] if f else [], False) for f in far]))
    assert idx.trained and far.sum() > max(4 * 10 * idx.rerank, n * idx.nprobe // idx.nlist)
    q = (x[~far][:20] + 0.01).astype(np.float32)
    s, got = idx.search(q, 10, "FAR")
    assert_exact(s, got, stored(x, "fp16", "l2"), ids, far, q, 10, "l2")


@pytest.mark.parametrize("kind", ["flat", "fp16"])
def test_a_device_copy_answers_gallery_searches_like_the_cpu_index(kind):
    x = gallery_of(4000, seed=14)
    ids = np.arange(1, 4001, dtype=np.int64)
    rng = np.random.default_rng(15)
    runs = [(1, ["G"] if rng.random() < share else [], rng.random() < 0.05)
            for share in np.r_[np.full(3000, 0.3), np.full(1000, 0.003)]]  # fmt: skip
    ref = PartitionIndex(D, "l2", kind, kernel_min_batch=0)
    dev = PartitionIndex(D, "l2", kind, device="cpu-copy", compact_floor=10_000)
    for idx in (ref, dev):
        idx.add(ids, ["s"] * 4000, x, Memberships.of_runs(runs))
        idx.remove(ids[::11])  # tombstones in the device copy
    assert dev.device_tombstones > 0
    # a rare gallery: too few members for the device's over-fetch
    rare = ids[3001::97]
    for idx in (ref, dev):
        idx.set_memberships(rare, Memberships.uniform(len(rare), ["RARE"]))
    q = queries_near(x, 12, seed=16)
    for g, k in (("G", 10), ("G", 200), ("RARE", 10), ("", 25)):
        rs, ri = ref.search(q, k, g)
        ds, di = dev.search(q, k, g)
        assert np.array_equal(ri, di), g
        np.testing.assert_allclose(rs, ds, rtol=1e-3, atol=1e-3)
    live = ~np.isin(ids, ids[::11])
    in_g = np.array([bool(g) and not i for _, g, i in runs])[live]
    ds, di = dev.search(q, 10, "G")
    assert_exact(ds, di, stored(x[live], kind, "l2"), ids[live], in_g, q, 10, "l2")


def _roundtrip(idx: PartitionIndex, tmp_path, binding) -> PartitionIndex:
    key = os.urandom(32)
    path = tmp_path / "p.snap"
    snapshot.write(path, key, binding, idx.export(42))
    back = PartitionIndex(D, idx.metric, idx.kind)
    back.restore(snapshot.read(path, key, binding))
    return back


def test_a_snapshot_keeps_galleries_and_inactive_flags(tmp_path):
    idx, x, ids, in_g, inactive = build("fp16", "l2", 2000, 0.25, 0.1, seed=17)
    idx.remove(ids[5:50])  # positions moved
    binding = {"format": 2, "partition": 0}
    back = _roundtrip(idx, tmp_path, binding)
    q = queries_near(x, 8, seed=18)
    for g in ("G", "OTHER", "", "NONE"):
        a, b = idx.search(q, 15, g), back.search(q, 15, g)
        assert np.array_equal(a[1], b[1]) and np.allclose(a[0], b[0])
    assert back.galleries.inactive_count == idx.galleries.inactive_count > 0
    assert back.galleries.names == ["G", "OTHER"]
    # and the restored index keeps applying membership changes
    back.set_memberships(ids[100:110], Memberships.uniform(10, ["NEW"]))
    assert set(back.search(q, 50, "NEW")[1].ravel().tolist()) - {-1} <= set(ids[100:110].tolist())


def test_a_format_2_snapshot_still_loads_as_all_active(tmp_path):
    """A snapshot written before galleries (format 2: no membership parts)
    restores every template into ALL only, active."""
    x = gallery_of(300, seed=19)
    ids = np.arange(1, 301, dtype=np.int64)
    idx = PartitionIndex(D, "l2", "flat")
    idx.add(ids, [f"s{i}" for i in range(300)], x)
    snap = idx.export(7)
    buf = io.BytesIO()
    np.savez(buf, index=faiss.serialize_index(snap.index), ids=snap.template_ids, codes=snap.codes,
             blob=np.frombuffer(snap.blob, np.uint8), starts=snap.starts, removed=snap.removed,
             sequence=np.array([7], np.int64))  # fmt: skip
    key, nonce, binding = os.urandom(32), os.urandom(12), {"format": 2, "partition": 0}
    path = tmp_path / "old.snap"
    path.write_bytes(
        b"TANUSNAP2\n" + nonce + AESGCM(key).encrypt(nonce, buf.getvalue(), snapshot._aad(binding))
    )
    old = snapshot.read(path, key, binding)
    assert old.gallery_bits is None and old.sequence == 7
    back = PartitionIndex(D, "l2", "flat")
    back.restore(old)
    assert back.galleries.inactive_count == 0 and back.galleries.names == []
    assert np.array_equal(back.search(x[:4], 3)[1], idx.search(x[:4], 3)[1])
    assert (back.search(x[:4], 3, "G")[1] == -1).all()
    back.set_memberships(ids[:2], Memberships.uniform(2, ["G"]))
    assert back.search(x[:1], 1, "G")[1][0, 0] == ids[0]


@pytest.mark.parametrize("kind", ["flat", "ivf"])
def test_an_export_is_a_consistent_cut_while_the_index_goes_on_adding(kind, tmp_path):
    """The searcher writes a snapshot on another thread while its index
    thread goes on applying events: what is written is the index as it was
    exported, matching the exported id map (found at 20M: the file held
    more vectors than ids, and the searcher could not restart from it)."""
    x = gallery_of(12_000, seed=31)
    ids = np.arange(1, 12_001, dtype=np.int64)
    subs = [f"s{i}" for i in range(12_000)]
    idx = PartitionIndex(D, "l2", kind, nlist=16, nprobe=16, rerank=4)
    idx.add(ids[:10_000], subs[:10_000], x[:10_000])
    snap = idx.export(5)
    idx.add(ids[10_000:], subs[10_000:], x[10_000:])  # after the cut, before the write
    key, binding = os.urandom(32), {"format": 2, "kind": kind}
    snapshot.write(tmp_path / "s.snap", key, binding, snap)
    back = PartitionIndex(D, "l2", kind, nlist=16, nprobe=16, rerank=4)
    back.restore(snapshot.read(tmp_path / "s.snap", key, binding))
    assert len(back) == 10_000
    _, found = back.search(x[9_990:10_010], 1)
    assert np.array_equal(found[:10, 0], ids[9_990:10_000])
    assert not np.isin(found[10:], ids[10_000:]).any()


def test_a_snapshot_of_another_kind_is_named_as_such_and_an_edited_binding_is_refused(tmp_path):
    """Format 4 carries its binding in the clear: a snapshot written for
    another index kind is a SnapshotMismatch naming the kind (what an
    operator sees after changing TANU_INDEX_KIND), not "altered"; editing
    the clear binding to pass as this searcher's fails authentication."""
    idx, *_ = build("flat", "l2", 100, 0.5)
    key, path = os.urandom(32), tmp_path / "s.snap"
    flat, ivf = (
        {"format": 2, "partition": 0, "kind": "flat"},
        {"format": 2, "partition": 0, "kind": "ivf"},
    )
    snapshot.write(path, key, flat, idx.export(3))
    assert snapshot.read(path, key, flat).sequence == 3
    with pytest.raises(snapshot.SnapshotMismatch) as got:
        snapshot.read(path, key, ivf)
    assert got.value.differs == {"kind": ("flat", "ivf")}
    assert "kind flat (this searcher: ivf)" in str(got.value)

    blob = path.read_bytes()
    edited = blob.replace(b'"kind": "flat"', b'"kind": "ivf"', 1)
    assert edited != blob and len(edited) != len(blob)
    size = int.from_bytes(blob[len(snapshot.MAGIC) : len(snapshot.MAGIC) + 4], "big") - 1
    at = len(snapshot.MAGIC)
    path.write_bytes(edited[:at] + size.to_bytes(4, "big") + edited[at + 4 :])
    with pytest.raises(snapshot.SnapshotError) as got:
        snapshot.read(path, key, ivf)
    assert not isinstance(got.value, snapshot.SnapshotMismatch)
    assert "does not decrypt" in str(got.value)
    path.write_bytes(blob[: len(snapshot.MAGIC) + 2])  # cut inside the binding's length
    with pytest.raises(snapshot.SnapshotError, match="not a Tanu snapshot"):
        snapshot.read(path, key, flat)


def test_a_snapshot_with_inconsistent_galleries_is_refused(tmp_path):
    idx, *_ = build("flat", "l2", 100, 0.5)
    snap = idx.export(3)
    snap.galleries = ["G", "bad name"]
    key, binding = os.urandom(32), {"format": 2}
    snapshot.write(tmp_path / "s.snap", key, binding, snap)
    with pytest.raises(snapshot.SnapshotError):
        snapshot.read(tmp_path / "s.snap", key, binding)


def test_memory_per_template_stays_small():
    g = Galleries()
    n = 1_000_000
    g.grow(n, Memberships.of_runs([(n // 2, ["A", "B"], False), (n - n // 2, ["C"], True)]))
    per = g.memory_bytes() / n
    assert per <= (3 + 1) / 8 * 1.1, per  # a bit per gallery and one for the flag
