"""Tanu's exact batched top-k kernel gives exactly what an exhaustive search
gives: the same ids in the same order, scores within float rounding, ties
broken towards the lower position; and the partition index gives the same
answers through it as through FAISS, across additions, removals and a
snapshot restore."""

from __future__ import annotations

import faiss
import numpy as np
import pytest

from tanu.index import PartitionIndex, kernel

from conftest import unit_vectors


def exhaustive(gallery: np.ndarray, queries: np.ndarray, k: int, metric: str):
    """(scores, positions) by brute force: a stable sort of every score."""
    g = gallery.astype(np.float64)
    q = queries.astype(np.float64)
    if metric == "l2":
        s = (q**2).sum(1)[:, None] + (g**2).sum(1)[None, :] - 2 * q @ g.T
        order = np.argsort(s, axis=1, kind="stable")[:, :k]
    else:
        s = q @ g.T
        order = np.argsort(-s, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(s, order, axis=1), order


@pytest.mark.parametrize("metric", ["l2", "ip"])
@pytest.mark.parametrize("dtype", [np.float32, np.float16, "float16-finite"])
def test_the_kernel_matches_an_exhaustive_search(metric, dtype, monkeypatch):
    finite = dtype == "float16-finite"
    dtype = np.float16 if finite else dtype
    monkeypatch.setattr(kernel, "BLOCK_ROWS", 1000)  # many blocks on a small gallery
    monkeypatch.setattr(kernel, "FIRST_BLOCK_ROWS", 300)
    gallery = unit_vectors(5000, seed=3).astype(dtype)
    queries = unit_vectors(40, seed=4)
    g32 = gallery.astype(np.float32)
    sq = np.einsum("ij,ij->i", g32, g32)
    scores, pos = kernel.topk(gallery, queries, 25, metric, sq if metric == "l2" else None,
                              finite_halves=finite)  # fmt: skip
    want_s, want_p = exhaustive(g32, queries, 25, metric)
    assert np.array_equal(pos, want_p)
    assert np.allclose(scores, want_s, atol=1e-5)


def test_widening_halves_by_bits_is_exact_for_every_finite_half():
    every = np.arange(65536, dtype=np.uint16).view(np.float16)
    finite = every[np.isfinite(every)].reshape(-1, 1)  # 63,488 values, subnormals and -0 included
    want = finite.astype(np.float32)
    got = np.empty_like(want)
    kernel.widen(finite, got, finite=True)
    assert np.array_equal(got.view(np.uint32), want.view(np.uint32))  # bit for bit
    # Not known finite: infinities and NaNs come through as they are.
    odd = np.array([[np.inf, -np.inf, np.nan, 1.5]], np.float16)
    out = np.empty(odd.shape, np.float32)
    kernel.widen(odd, out)
    assert (
        np.isposinf(out[0, 0])
        and np.isneginf(out[0, 1])
        and np.isnan(out[0, 2])
        and out[0, 3] == 1.5
    )


def test_an_fp16_template_past_the_half_range_keeps_the_kernel_exact():
    # 70,000 overflows a half: FAISS stores infinity. The kernel must then
    # widen by numpy's cast (its fast path assumes finite halves) and rank
    # as FAISS does.
    rng = np.random.default_rng(8)
    vecs = rng.standard_normal((500, 16)).astype(np.float32)
    vecs[123, 3] = 70_000
    queries = rng.standard_normal((8, 16)).astype(np.float32)
    through_kernel = PartitionIndex(16, "l2", "fp16", kernel_min_batch=1)
    through_faiss = PartitionIndex(16, "l2", "fp16", kernel_min_batch=0)
    for index in (through_kernel, through_faiss):
        index.add(np.arange(1, 501), [f"s{i}" for i in range(500)], vecs)
    a_s, a_i = through_kernel.search(queries, 10)
    b_s, b_i = through_faiss.search(queries, 10)
    assert np.array_equal(a_i, b_i) and 123 + 1 not in a_i
    assert np.allclose(a_s, b_s, rtol=1e-4)
    restored = PartitionIndex(16, "l2", "fp16", kernel_min_batch=1)
    restored.restore(through_faiss.export(1))
    c_s, c_i = restored.search(queries, 10)
    assert np.array_equal(c_i, b_i)


def test_ties_go_to_the_lower_position_and_short_galleries_pad():
    # 0/1 vectors: every inner product is an exact small integer, so many tie.
    rng = np.random.default_rng(5)
    gallery = (rng.random((3000, 16)) < 0.3).astype(np.float32)
    queries = (rng.random((17, 16)) < 0.5).astype(np.float32)
    for metric in ("ip", "l2"):
        sq = (gallery**2).sum(1)
        scores, pos = kernel.topk(gallery, queries, 50, metric, sq)
        want_s, want_p = exhaustive(gallery, queries, 50, metric)
        assert np.array_equal(pos, want_p), metric
        assert np.array_equal(scores, want_s.astype(np.float32)), metric
    scores, pos = kernel.topk(gallery[:3], queries, 5, "l2", sq[:3])
    assert (pos[:, 3:] == -1).all() and np.isinf(scores[:, 3:]).all()
    assert sorted(pos[0, :3]) == [0, 1, 2]


def test_an_adversarial_order_still_gives_the_exact_answer(monkeypatch):
    # Each block better than the last: the threshold never filters anything.
    monkeypatch.setattr(kernel, "BLOCK_ROWS", 512)
    base = unit_vectors(1, seed=9)[0]
    q = base[None, :]
    gallery = np.stack([base * (i / 4096) for i in range(4096)]).astype(np.float32)
    scores, pos = kernel.topk(gallery, q, 10, "ip")
    assert pos[0].tolist() == list(range(4095, 4085, -1))


@pytest.mark.parametrize("kind", ["flat", "fp16"])
@pytest.mark.parametrize("metric", ["l2", "cosine"])
def test_the_partition_index_answers_the_same_through_the_kernel_and_through_faiss(kind, metric):
    through_kernel = PartitionIndex(128, metric, kind, kernel_min_batch=1)
    through_faiss = PartitionIndex(128, metric, kind, kernel_min_batch=0)
    vecs = unit_vectors(3000, seed=11)
    ids = np.arange(1, 3001)
    queries = unit_vectors(32, seed=12)
    for index in (through_kernel, through_faiss):
        index.add(ids[:2000], [f"s{i}" for i in ids[:2000]], vecs[:2000])
    assert through_kernel.uses_kernel(32) and not through_faiss.uses_kernel(32)
    through_kernel.search(queries, 5)  # the kernel's norms exist from here on
    for index in (through_kernel, through_faiss):
        index.add(ids[2000:], [f"s{i}" for i in ids[2000:]], vecs[2000:])
        index.remove(ids[::7])
    a_s, a_i = through_kernel.search(queries, 20)
    b_s, b_i = through_faiss.search(queries, 20)
    assert np.array_equal(a_i, b_i)
    assert np.allclose(a_s, b_s, atol=1e-4)
    restored = PartitionIndex(128, metric, kind, kernel_min_batch=1)
    restored.restore(through_faiss.export(1))
    c_s, c_i = restored.search(queries, 20)
    assert np.array_equal(c_i, b_i) and np.allclose(c_s, b_s, atol=1e-4)


def test_faiss_and_the_kernel_read_the_same_stored_vectors():
    index = faiss.IndexScalarQuantizer(8, faiss.ScalarQuantizer.QT_fp16, faiss.METRIC_L2)
    x = unit_vectors(10, seed=2, dim=8)
    index.add(x)
    pi = PartitionIndex(8, "l2", "fp16", kernel_min_batch=1)
    pi.add(np.arange(10), [str(i) for i in range(10)], x)
    s, i = pi.search(x, 1)
    assert i[:, 0].tolist() == list(range(10)) and np.allclose(s[:, 0], 0, atol=1e-3)


@pytest.mark.parametrize("metric", ["l2", "cosine"])
def test_the_ivf_re_rank_scores_are_exact_against_the_stored_halves(metric):
    # The re-rank gathers the candidates' fp16 codes itself (not through
    # FAISS's reconstruct): its scores must be the exact ones.
    vecs = unit_vectors(12_000, seed=21, dim=16)
    index = PartitionIndex(16, metric, "ivf", nlist=64, nprobe=8, rerank=8)
    index.add(np.arange(1, 12_001), [f"s{i}" for i in range(12_000)], vecs)
    assert index.trained
    queries = unit_vectors(16, seed=22, dim=16)
    scores, ids = index.search(queries, 10)
    halves = vecs.astype(np.float16).astype(np.float64)
    got = halves[ids - 1]  # ids are rows + 1
    if metric == "l2":
        want = np.sqrt(((got - queries[:, None, :]) ** 2).sum(-1))
    else:
        want = np.einsum("nkd,nd->nk", got, queries)
    assert (ids > 0).all()
    assert np.allclose(scores, want, atol=1e-5)
