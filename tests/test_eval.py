"""Accuracy evaluation: on synthetic template sets whose genuine and
impostor distance distributions are known in closed form, the computed
rates match the analytic ones; on the photo set it runs end to end; and a
calibrated threshold reaches the gateway's decisions.

The synthetic model: identity centres c ~ N(0, s² I_D), samples c + n with
n ~ N(0, σ² I_D). A genuine comparison's squared distance over 2σ² is
chi-squared with D degrees of freedom; an impostor's over 2(s² + σ²) too.
For a non-mated search of a gallery of N, given the probe p, distances to
the gallery entries are independent, with ||g − p||²/(s² + σ²) noncentral
chi-squared (D, λ = ||p||²/(s² + σ²)), and λ itself is chi-squared (D).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from scipy import optimize, stats

from tanu.core import bus, clusterconfig
from tanu.eval import metrics, report, run
from tanu.v1 import common_pb2

from conftest import nats_url_as, unit_vectors
from helpers import ROOT, identify, verify

D, SIGMA, S = 32, 0.10, 0.12


def synthetic(
    identities: int, per_identity: int, seed: int, sigma: float = SIGMA, s: float = S
) -> run.Dataset:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((identities, D)) * s
    samples = [
        run.Sample(
            f"id{i:05d}",
            f"{k:02d}",
            template=(centres[i] + rng.standard_normal(D) * sigma).astype(np.float32),
        )
        for i in range(identities)
        for k in range(per_identity)
    ]
    return run.Dataset("synthetic", samples)


def tolerance(p: float, n: int) -> float:
    """4 binomial standard deviations over the independent units (probes),
    plus a floor: comparisons that share a probe are correlated."""
    return 4 * np.sqrt(max(p * (1 - p), 1e-4) / n) + 0.003


def test_verification_rates_match_the_analytic_values():
    ds = synthetic(500, 5, seed=1)
    sp = run.split(ds.samples)
    gen, imp = run.verify_scores(sp, "l2")
    assert len(gen) == 2000 and len(imp) == 2000 * 499
    r = metrics.verification(gen, imp)

    def fnmr(t):
        return stats.chi2.sf(t**2 / (2 * SIGMA**2), D)

    def fmr(t):
        return stats.chi2.cdf(t**2 / (2 * (S**2 + SIGMA**2)), D)

    for t in (0.6, 0.7, 0.8, 0.9, 1.0):
        got_fmr, got_fnmr = r.at(t)
        assert abs(got_fmr - fmr(t)) < tolerance(fmr(t), 2000), (t, got_fmr, fmr(t))
        assert abs(got_fnmr - fnmr(t)) < tolerance(fnmr(t), 2000), (t, got_fnmr, fnmr(t))
    t_eer = optimize.brentq(lambda t: fmr(t) - fnmr(t), 0.3, 2.0)
    assert abs(r.eer - fmr(t_eer)) < tolerance(fmr(t_eer), 2000)
    # calibration: the threshold chosen for FMR 1e-3 has analytic FMR near 1e-3
    t, resolved = metrics.threshold_for_rate(imp, 1e-3)
    assert resolved and abs(fmr(t) - 1e-3) < 5e-4, fmr(t)


def test_identification_rates_match_the_analytic_values():
    # 300 enrolled identities; every other identity held out for non-mated searches.
    ds = synthetic(600, 4, seed=2, sigma=0.08)
    sc = run.identify_scores(ds.samples, "l2", 0.5, top_k=20)
    assert sc.gallery_size == 300
    r = metrics.identification(
        sc.mate_d, sc.mate_rank, sc.nonmated_best_d, sc.gallery_size, sc.candidates
    )
    sigma, s2 = 0.08, S**2 + 0.08**2
    lam = stats.chi2.rvs(D, size=20_000, random_state=np.random.default_rng(3))

    def fpir(t):
        per = stats.ncx2.cdf(t**2 / s2, D, lam)
        return float(np.mean(-np.expm1(300 * np.log1p(-np.minimum(per, 1 - 1e-15)))))

    def fnir(t):
        return stats.chi2.sf(t**2 / (2 * sigma**2), D)

    for t in (0.55, 0.6, 0.65, 0.7):
        got_fpir, got_fnir = r.at(t)
        assert abs(got_fpir - fpir(t)) < tolerance(fpir(t), r.nonmated), (t, got_fpir, fpir(t))
        assert abs(got_fnir - fnir(t)) < tolerance(fnir(t), r.mated), (t, got_fnir, fnir(t))
    assert 0.85 < r.rank1 <= 1.0  # no closed form; the mates mostly rank first at this noise level
    t_star = optimize.brentq(lambda t: fpir(t) - 0.003, 0.3, 1.2)
    rep, _ = report.identify_report(ds, "l2", "synthetic", 0.003, None, 0.5, 20)
    assert abs(rep["fnir_at_fpir_0.003"] - fnir(t_star)) < tolerance(fnir(t_star), r.mated) + 0.01


def test_calibration_for_a_larger_deployed_gallery_is_stricter_and_says_when_unresolved():
    ds = synthetic(400, 4, seed=4)
    at_eval, _ = report.identify_report(ds, "l2", "m", 0.003, None, 0.5, 20)
    at_20m, _ = report.identify_report(ds, "l2", "m", 0.003, 20_000_000, 0.5, 20)
    assert at_20m["calibration"]["threshold"] < at_eval["calibration"]["threshold"]
    assert at_20m["calibration"]["per_comparison_fmr"] == pytest.approx(1.5e-10, rel=0.01)
    assert (
        not at_20m["calibration"]["resolved"] and "cannot measure" in at_20m["calibration"]["note"]
    )


def test_metrics_are_reported_per_group():
    ds = synthetic(200, 3, seed=5)
    # group B is noisier: its genuine comparisons fail more often
    rng = np.random.default_rng(6)
    for smp in ds.samples:
        if int(smp.identity[2:]) % 2:
            smp.template = smp.template + rng.standard_normal(D).astype(np.float32) * 0.08
    ds.groups = {f"id{i:05d}": {"band": "B" if i % 2 else "A"} for i in range(200)}
    rep, _ = report.verify_report(ds, "l2", "m", 1e-2)
    a, b = rep["groups"]["band"]["A"], rep["groups"]["band"]["B"]
    assert a["identities"] == b["identities"] == 100
    assert b["fnmr"] > a["fnmr"] + 0.05


def test_eval_runs_on_the_photo_augmentations(tmp_path):
    from photos import originals, variants

    root = tmp_path / "lfw"
    for name, a in originals().items():
        (root / name).mkdir(parents=True)
        for i, (v, data) in enumerate(variants(a).items()):
            (root / name / f"{i:02d}_{v}.jpg").write_bytes(data)
    (root / "groups.csv").write_text("identity,sex\nastronaut,F\nhopper,F\ncameraman,M\n")
    out = tmp_path / "out"
    env = {
        **os.environ,
        "TANU_MODEL_DIR": str(ROOT / "var" / "models"),
    }
    cmd = [
        sys.executable,
        "-m",
        "tanu.ops.cli",
        "eval",
        "verify",
        str(root),
        "--out",
        str(out),
        "--quiet",
    ]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    rep = json.loads((out / "report_verify.json").read_text())
    # The near-profile cameraman fails the enrolment quality bar; the others separate perfectly.
    assert rep["fte"] == pytest.approx(1 / 3) and rep["fta"] == 0
    assert any("pose" in f["reason"] for f in rep["failures"])
    assert (
        rep["eer"] == 0 and rep["genuine_comparisons"] == 12 and rep["impostor_comparisons"] == 24
    )
    assert not rep["calibration"]["resolved"], "24 impostor comparisons cannot resolve FMR 1e-3"
    assert set(rep["groups"]["sex"]) == {"F", "M"}
    assert (out / "det_verify.png").read_bytes()[:4] == b"\x89PNG"
    assert "EER" in (out / "summary_verify.txt").read_text()


async def test_a_calibrated_threshold_reaches_the_gateways_decisions(cluster, tmp_path):
    ds = synthetic(200, 3, seed=7)
    npz = tmp_path / "set.npz"
    np.savez(npz, templates=np.stack([s.template for s in ds.samples]),
             labels=np.array([s.identity for s in ds.samples]), model_id="dlib-resnet-v1")  # fmt: skip
    # D-dimensional synthetic templates stand in for the score space here: the
    # calibration is stored per model id and the gateway reads it back.
    cmd = [sys.executable, "-m", "tanu.ops.cli", "eval", "verify", str(npz), "--out", str(tmp_path / "o"),
           "--target-fmr", "0.01", "--apply", "--nats", nats_url_as(cluster.env, "operator"), "--quiet"]  # fmt: skip
    # in a thread: the services under test share this event loop
    r = await asyncio.to_thread(subprocess.run, cmd, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    stored = json.loads((tmp_path / "o" / "report_verify.json").read_text())["calibration"][
        "threshold"
    ]
    assert "stored: verify threshold" in r.stdout
    gw = cluster.gateway.gateway
    await gw.refresh_thresholds()
    assert gw.calibrated["verify"]["threshold"] == pytest.approx(stored)
    v = unit_vectors(1, seed=8)[0]
    await cluster.stub.Enroll(__import__("helpers").enroll("cal", v, wait_indexed=True))
    rv = await cluster.stub.Verify(verify("cal", v))
    assert rv.threshold == pytest.approx(stored, rel=1e-6) and rv.threshold_source == "calibrated"
    ri = await cluster.stub.Identify(identify(v))
    assert ri.threshold_source == "default", "identify has no calibration yet"
    own = await cluster.stub.Verify(verify("cal", v, threshold=0.3))
    assert own.threshold_source == "request" and own.threshold == pytest.approx(0.3)
    nc = await bus.connect(nats_url_as(cluster.env), "t")
    try:
        await clusterconfig.write_threshold(
            nc.jetstream(), "dlib-resnet-v1", "identify", {"threshold": 0.5}
        )
        assert (await clusterconfig.read_thresholds(nc.jetstream(), "other-model")) == {}
    finally:
        await nc.close()
    await gw.refresh_thresholds()
    ri = await cluster.stub.Identify(identify(v))
    assert ri.threshold_source == "calibrated" and ri.threshold == pytest.approx(0.5)
    assert ri.decision == common_pb2.DECISION_MATCH


def test_cosine_evaluation_scores_unnormalised_templates_as_similarities():
    ds = synthetic(200, 3, seed=11)
    for smp in ds.samples:
        smp.template = smp.template * 25.0  # raw embeddings are not unit length
    sc = run.identify_scores(ds.samples, "cosine", 0.5, 10)
    found = sc.mate_d[np.isfinite(sc.mate_d)]
    assert len(found) and (found >= -1 - 1e-4).all() and (found <= 1 + 1e-4).all()
    assert (sc.nonmated_best_d >= -1 - 1e-4).all()


def test_bad_targets_are_refused():
    with pytest.raises(ValueError, match="between 0 and 1"):
        metrics.threshold_for_rate(np.arange(100.0), -0.001)
    with pytest.raises(ValueError, match="between 0 and 1"):
        metrics.threshold_for_rate(np.arange(100.0), 1.5)
    with pytest.raises(ValueError, match="at least 1"):
        metrics.fmr_for_fpir(0.003, -5)
    r = subprocess.run([sys.executable, "-m", "tanu.ops.cli", "eval", "identify", "nowhere", "--target-fpir", "2"],
                       capture_output=True, text=True, timeout=60)  # fmt: skip
    assert r.returncode == 2 and "--target-fpir must be between 0 and 1" in r.stderr


def test_extrapolating_to_a_larger_gallery_matches_the_analytic_fmr():
    ds = synthetic(600, 4, seed=12)
    rep, _ = report.identify_report(
        ds, "l2", "m", 0.05, 600, 0.5, 20
    )  # twice the evaluated gallery of 300
    c = rep["calibration"]
    assert c["resolved"] and c["per_comparison_fmr"] == pytest.approx(
        metrics.fmr_for_fpir(0.05, 600)
    )
    t = c["threshold"]
    analytic = stats.chi2.cdf(t**2 / (2 * (S**2 + SIGMA**2)), D)
    assert abs(analytic - c["per_comparison_fmr"]) < 0.3 * c["per_comparison_fmr"] + 2e-5, (
        analytic,
        c,
    )


def test_an_unmeasured_threshold_is_not_applied_without_force(tmp_path):
    ds = synthetic(20, 2, seed=13)
    npz = tmp_path / "small.npz"
    np.savez(
        npz,
        templates=np.stack([s.template for s in ds.samples]),
        labels=np.array([s.identity for s in ds.samples]),
    )
    base = [
        sys.executable,
        "-m",
        "tanu.ops.cli",
        "eval",
        "verify",
        str(npz),
        "--out",
        str(tmp_path / "o"),
        "--quiet",
    ]
    r = subprocess.run(base, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "--model-id" in r.stderr
    r = subprocess.run([*base, "--model-id", "m", "--target-fmr", "1e-4", "--apply", "--nats", "nats://127.0.0.1:1"],
                       capture_output=True, text=True, timeout=60)  # fmt: skip
    assert r.returncode == 3 and "too small to measure" in r.stderr and "--force" in r.stderr


async def test_threshold_records_never_leak_between_model_ids(nats_server):
    nc = await bus.connect(nats_server.url_for("test"), "t")
    try:
        js = nc.jetstream()
        assert clusterconfig.thresholds_key("a.b") != clusterconfig.thresholds_key("a_b")
        await clusterconfig.write_threshold(js, "a.b", "verify", {"threshold": 0.4, "metric": "l2"})
        await clusterconfig.write_threshold(
            js, "a.b", "identify", {"threshold": 0.3, "metric": "l2"}
        )
        assert await clusterconfig.read_thresholds(js, "a_b") == {}
        got = await clusterconfig.read_thresholds(js, "a.b")
        assert got["verify"]["threshold"] == 0.4 and got["identify"]["threshold"] == 0.3
        kv = await clusterconfig.bucket(js)
        await kv.put(clusterconfig.thresholds_key("broken"), b"{not json")
        assert await clusterconfig.read_thresholds(js, "broken") == {}
    finally:
        await nc.close()
