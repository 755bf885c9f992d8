"""The shared libraries: configuration, hashing, micro-batching, the
partition index, and the gRPC interceptors (request id, metrics, errors)."""

from __future__ import annotations

import asyncio
import dataclasses
import urllib.request

import grpc
import numpy as np
import pytest

from tanu.core import config as cfg
from tanu.core import errors, tls
from tanu.core.batching import MicroBatcher
from tanu.core.ids import partition_of
from tanu.core.metrics import Metrics
from tanu.index import PartitionIndex

from conftest import unit_vectors
from helpers import identify


def test_config_comes_from_the_injected_environment_only():
    c = cfg.from_env(
        cfg.SearcherConfig,
        {
            "TANU_PARTITIONS": "8",
            "TANU_PARTITION": "7",
            "TANU_METRIC": "cosine",
            "TANU_RELAY_ENABLED": "no",
        },
    )
    assert (
        c.partition == 7 and c.common.layout.partitions == 8 and c.common.layout.metric == "cosine"
    )
    assert cfg.from_env(cfg.StoreConfig, {"TANU_RELAY_ENABLED": "no"}).relay_enabled is False
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.partition = 1  # type: ignore[misc]
    assert cfg.from_env(cfg.GatewayConfig, {}).common.layout.dimension == 128


@pytest.mark.parametrize(
    ("cls", "env", "message"),
    [
        (
            cfg.SearcherConfig,
            {"TANU_PARTITIONS": "four"},
            "TANU_PARTITIONS='four' is not a valid int",
        ),
        (cfg.SearcherConfig, {"TANU_PARTITIONS": "0"}, "TANU_PARTITIONS must be at least 1"),
        (cfg.GatewayConfig, {"TANU_METRIC": "manhattan"}, "TANU_METRIC must be one of"),
        (
            cfg.SearcherConfig,
            {"TANU_PARTITIONS": "2", "TANU_PARTITION": "2"},
            "TANU_PARTITION=2 is outside 0..1",
        ),
        (cfg.StoreConfig, {"TANU_RELAY_ENABLED": "perhaps"}, "expected true/false"),
    ],
)
def test_bad_configuration_is_refused_with_the_variable_named(cls, env, message):
    with pytest.raises(ValueError) as info:
        cfg.from_env(cls, env)
    assert message in str(info.value)


def test_every_setting_is_documented():
    for cls in (cfg.StoreConfig, cfg.SearcherConfig, cfg.GatewayConfig):
        for var, _default, doc in cfg.describe(cls):
            assert var.startswith("TANU_") and doc


def test_partition_hash_is_stable_and_spreads_subjects():
    # Fixed values: a change here would move every subject to another partition.
    assert [partition_of(s, 4) for s in ("alice", "bob", "KZ-880101300123")] == [1, 0, 3]
    assert partition_of("alice", 1000003) == 783082
    counts = np.bincount([partition_of(f"citizen-{i}", 8) for i in range(8000)], minlength=8)
    assert counts.min() > 850 and counts.max() < 1150


async def test_micro_batcher_combines_concurrent_calls_into_one():
    calls: list[int] = []

    async def double(items: list[int]) -> list[int]:
        calls.append(len(items))
        await asyncio.sleep(0.01)
        return [2 * i for i in items]

    b = MicroBatcher(double, name="t", max_batch=64, max_wait_s=0.005, metrics=Metrics.create())
    results = await asyncio.gather(*(b.submit(i) for i in range(100)))
    assert results == [2 * i for i in range(100)]
    assert max(calls) > 1 and sum(calls) == 100 and all(c <= 64 for c in calls)
    await b.close()
    with pytest.raises(errors.Unavailable):
        await b.submit(1)


async def test_micro_batcher_hands_a_failure_to_every_caller_and_keeps_going():
    async def fail_on_negative(items: list[int]) -> list[int]:
        if any(i < 0 for i in items):
            raise errors.InvalidArgument("negative")
        return items

    b = MicroBatcher(fail_on_negative, name="t", max_batch=8, max_wait_s=0.001)
    with pytest.raises(errors.InvalidArgument):
        await b.submit(-1)
    assert await b.submit(3) == 3
    await b.close()


async def test_direct_micro_batcher_runs_a_lone_item_in_the_callers_task_and_batches_the_rest():
    """``direct=True``: an item on an idle batcher runs in its caller's own
    task; items that arrive together, or while it runs, go in one batch;
    under that load items are batched, never run directly; a failure of a
    direct run reaches its caller and the batcher keeps going."""
    seen: list[tuple[list[int], asyncio.Task | None]] = []
    gate = asyncio.Event()

    async def double(items: list[int]) -> list[int]:
        seen.append((list(items), asyncio.current_task()))
        if items == [0]:
            await gate.wait()
        if -1 in items:
            raise errors.InvalidArgument("negative")
        return [2 * i for i in items]

    m = Metrics.create()
    b = MicroBatcher(double, name="d", max_batch=64, max_wait_s=0.005, metrics=m, direct=True)
    first = asyncio.create_task(b.submit(0))
    for _ in range(3):
        await asyncio.sleep(0)
    assert seen == [([0], first)]  # started at once, in the caller's task
    rest = [asyncio.create_task(b.submit(i)) for i in range(1, 6)]
    await asyncio.sleep(0.01)
    assert len(seen) == 1  # the others wait for the running one
    gate.set()
    assert await first == 0 and [await t for t in rest] == [2, 4, 6, 8, 10]
    assert [items for items, _ in seen] == [[0], [1, 2, 3, 4, 5]]
    assert seen[1][1] not in (first, *rest)  # the batch ran in the batcher's worker
    # The last batch held 5: the next lone item is batched (the worker), not direct.
    assert await b.submit(7) == 14 and seen[-1][1] is not asyncio.current_task()
    # Idle again after a batch of one: direct, in this very task.
    assert await b.submit(8) == 16 and seen[-1][1] is asyncio.current_task()
    with pytest.raises(errors.InvalidArgument):
        await b.submit(-1)
    assert await b.submit(9) == 18
    # Two at once on an idle batcher: one batch of both.
    assert await asyncio.gather(b.submit(20), b.submit(21)) == [40, 42]
    assert sorted(seen[-1][0]) == [20, 21]
    assert m.registry.get_sample_value("tanu_batch_size_sum", {"batcher": "d"}) == 12
    await b.close()
    with pytest.raises(errors.Unavailable):
        await b.submit(1)


@pytest.mark.parametrize("kind", ["flat", "fp16"])
def test_index_applies_events_idempotently_and_never_revives_a_deleted_template(kind):
    idx = PartitionIndex(128, "l2", kind)
    v = unit_vectors(5)
    ids = np.arange(10, 15, dtype=np.int64)
    assert idx.add(ids, [f"s{i}" for i in range(5)], v) == 5
    assert idx.add(ids, [f"s{i}" for i in range(5)], v) == 0
    assert idx.remove(np.array([11, 99], dtype=np.int64)) == 1
    assert idx.add(ids[1:2], ["s1"], v[1:2]) == 0, (
        "a redelivered add must not revive a removed template"
    )
    assert len(idx) == 4 and idx.template_ids() == [10, 12, 13, 14]
    scores, found = idx.search(v[2:3], 2)
    assert found[0, 0] == 12 and scores[0, 0] == pytest.approx(0.0, abs=2e-2)
    assert idx.subject(12) == "s2"


@pytest.mark.parametrize("kind", ["flat", "fp16"])
def test_cosine_index_returns_similarities(kind):
    idx = PartitionIndex(128, "cosine", kind)
    v = unit_vectors(3) * 5.0  # unnormalised on the way in
    idx.add(np.arange(3, dtype=np.int64), ["a", "b", "c"], v)
    scores, found = idx.search(unit_vectors(3)[1:2], 1)
    assert found[0, 0] == 1 and scores[0, 0] == pytest.approx(1.0, abs=1e-3)


async def test_interceptor_returns_the_request_id_and_counts_rpcs(cluster):
    call = cluster.stub.Identify(
        identify(unit_vectors(1)[0]), metadata=(("x-request-id", "req-123"),)
    )
    await call
    trailing = dict(await call.trailing_metadata())
    assert trailing["x-request-id"] == "req-123"
    m, rpc = cluster.gateway.metrics, {"service": "gateway", "method": "Identify"}
    assert m.sample("tanu_rpc_requests_total", **rpc, code="OK") >= 1
    try:
        await cluster.stub.Identify(identify(unit_vectors(1, dim=3)[0]))
    except grpc.aio.AioRpcError:
        pass
    assert m.sample("tanu_rpc_requests_total", **rpc, code="INVALID_ARGUMENT") == 1


def test_tls_settings_that_cannot_work_are_refused_naming_the_problem(tmp_path):
    assert tls.server_credentials(cfg.Common()) is None  # plaintext unless configured
    with pytest.raises(errors.FailedPrecondition, match="needs TANU_TLS_CERT_FILE"):
        tls.server_credentials(cfg.from_env(cfg.Common, {"TANU_TLS_CLIENT_CA_FILE": "ca.pem"}))
    missing = str(tmp_path / "missing.pem")
    env = {"TANU_TLS_CERT_FILE": missing, "TANU_TLS_KEY_FILE": missing}
    with pytest.raises(errors.FailedPrecondition, match="cannot read a TLS file"):
        tls.server_credentials(cfg.from_env(cfg.Common, env))
    assert isinstance(tls.channel_credentials(), grpc.ChannelCredentials)  # the system's roots
    with pytest.raises(errors.FailedPrecondition, match="cannot read a TLS file"):
        tls.channel_credentials(ca_file=missing)
    with pytest.raises(errors.FailedPrecondition, match="needs both"):
        tls.channel_credentials(cert_file=missing)


def test_metrics_are_served_on_their_own_port():
    m = Metrics.create()
    m.gallery_templates.labels("0", "r0").set(42)
    port = m.serve(0)
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    assert 'tanu_gallery_templates{partition="0",replica="r0"} 42.0' in body


def test_the_store_refuses_to_open_with_another_layout(tmp_path):
    from tanu.store import Store

    path = tmp_path / "s.sqlite3"
    Store(path, cfg.Layout(partitions=4)).close()
    with pytest.raises(errors.FailedPrecondition, match="partitions: stored '4', configured '8'"):
        Store(path, cfg.Layout(partitions=8))


def test_the_production_nats_config_is_accepted_by_nats_server():
    import os
    import subprocess

    from tanu.ops.natsd import ROOT_CONF, find_binary

    r = subprocess.run(
        [find_binary(), "-t", "-c", str(ROOT_CONF)], capture_output=True, text=True, timeout=30,
        env={**os.environ, "TANU_JS_KEY": "a-32-byte-key-from-the-secrets!!"},
    )  # fmt: skip
    assert r.returncode == 0 and "is valid" in (r.stdout + r.stderr), r.stderr
    text = ROOT_CONF.read_text()
    assert "sync_interval: always" in text
    assert "cipher: chachapoly" in text and "key: $TANU_JS_KEY" in text


def test_fp16_scores_stay_within_rounding_of_exact():
    gallery, probes = unit_vectors(2000, seed=4), unit_vectors(20, seed=5)
    exact, half = PartitionIndex(128, "l2", "flat"), PartitionIndex(128, "l2", "fp16")
    ids = np.arange(2000, dtype=np.int64)
    for idx in (exact, half):
        idx.add(ids, [f"s{i}" for i in range(2000)], gallery)
    e_scores, e_ids = exact.search(probes, 5)
    h_scores, h_ids = half.search(probes, 5)
    assert np.abs(e_scores - h_scores).max() < 2e-3
    assert (e_ids[:, 0] == h_ids[:, 0]).all()
    with pytest.raises(ValueError, match="unknown index kind"):
        PartitionIndex(128, "l2", "lsh")


def _clustered(n: int, seed: int, modes: int = 256) -> np.ndarray:
    """Face-like templates: subjects around Zipf-weighted population modes
    (as benchmarks/search/national_services.py generates them)."""
    rng = np.random.default_rng(seed)
    c = rng.standard_normal((modes, 128)).astype(np.float32)
    c /= np.linalg.norm(c, axis=1, keepdims=True)
    w = 1.0 / np.arange(1, modes + 1) ** 0.8
    v = c[rng.choice(modes, size=n, p=w / w.sum())]
    v = v + 0.06 * rng.standard_normal((n, 128)).astype(np.float32)
    return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)


def test_the_default_ivf_settings_reach_recall_0_99_on_clustered_templates():
    # The searcher's defaults (TANU_IVF_NPROBE, TANU_IVF_RERANK), a small nlist
    # so that the index trains on 10k templates: recall@10 against exact search.
    config = cfg.from_env(cfg.SearcherConfig, {"TANU_INDEX_KIND": "ivf", "TANU_IVF_NLIST": "256"})
    n = 12_000
    gallery = _clustered(n, seed=31)
    ids = np.arange(n, dtype=np.int64)
    subjects = [f"s{i}" for i in range(n)]
    idx = PartitionIndex(128, "l2", config.index_kind, config.ivf_nlist, config.ivf_nprobe,
                         config.ivf_rerank)  # fmt: skip
    idx.add(ids, subjects, gallery)
    assert idx.trained
    exact = PartitionIndex(128, "l2", "flat")
    exact.add(ids, subjects, gallery)
    rng = np.random.default_rng(32)
    probes = gallery[rng.integers(0, n, 200)]
    probes = probes + rng.standard_normal(probes.shape).astype(np.float32) * 0.02
    _, found = idx.search(probes, 10)
    _, truth = exact.search(probes, 10)
    recall = np.mean([len(set(f) & set(t)) / 10 for f, t in zip(found, truth, strict=True)])
    assert recall >= 0.99, recall


@pytest.mark.parametrize("metric", ["l2", "cosine"])
def test_ivf_index_trains_finds_matches_re_ranked_exactly_and_honours_deletes(metric, tmp_path):
    import base64
    import os

    from tanu.index import snapshot

    n = 10_500
    gallery = unit_vectors(n, seed=21)
    ids = np.arange(n, dtype=np.int64) * 3 + 1
    subjects = [f"s{i}" for i in range(n)]
    idx = PartitionIndex(128, metric, "ivf", nlist=64, nprobe=16, rerank=4)
    idx.add(ids[:5000], subjects[:5000], gallery[:5000])
    assert not idx.trained, "searches exhaustively until there is enough to train on"
    idx.add(ids[5000:], subjects[5000:], gallery[5000:])
    assert idx.trained and len(idx) == n
    exact = PartitionIndex(128, metric, "flat")
    exact.add(ids, subjects, gallery)
    rng = np.random.default_rng(22)
    picks = rng.integers(0, n, 200)
    probes = gallery[picks] + rng.standard_normal((200, 128)).astype(np.float32) * 0.01
    scores, found = idx.search(probes, 5)
    e_scores, _ = exact.search(probes, 5)
    assert (found[:, 0] == ids[picks]).mean() >= 0.99  # the mate, found through the inverted lists
    assert np.abs(scores[:, 0] - e_scores[:, 0]).max() < 2e-3  # ... and scored exactly (fp16)
    # deletes, and a redelivered add after a delete
    gone = ids[picks[:50]]
    idx.remove(gone)
    idx.add(gone, ["x"] * 50, gallery[picks[:50]])
    _, after = idx.search(probes[:50], 5)
    assert not np.isin(after, gone).any()
    # the trained index survives a snapshot round trip
    key = base64.b64decode(base64.b64encode(os.urandom(32)))
    binding = {"partition": 0, "kind": "ivf"}
    snapshot.write(tmp_path / "s.snap", key, binding, idx.export(7))
    back = PartitionIndex(128, metric, "ivf", nlist=64, nprobe=16, rerank=4)
    back.restore(snapshot.read(tmp_path / "s.snap", key, binding))
    assert back.trained and len(back) == len(idx)
    b_scores, b_found = back.search(probes[50:], 5)
    s2, f2 = idx.search(probes[50:], 5)
    assert (b_found == f2).all() and np.allclose(b_scores, s2)
