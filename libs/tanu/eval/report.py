"""Evaluation reports: operating points, calibrated thresholds, per-group
figures, DET curves as PNG, a JSON report and a short text summary."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from tanu.eval import metrics
from tanu.eval.run import Dataset, identify_scores, nonmated_identities, split, verify_scores

FMR_POINTS = (1e-1, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6)
FPIR_POINTS = (1e-1, 1e-2, 3e-3, 1e-3)


def _resolution_note(count: int, target: float) -> str:
    need = int(np.ceil(1 / target))
    return "" if count * target >= 1 else (
        f"unresolved: {count} comparisons cannot measure a rate of {target:g} (needs at least {need}); "
        "the threshold sits below every observed one and the true rate is unknown"
    )  # fmt: skip


def _groups(ds: Dataset) -> dict[str, dict[str, set[str]]]:
    """group name -> value -> identities."""
    out: dict[str, dict[str, set[str]]] = {}
    for ident, gs in ds.groups.items():
        for name, value in gs.items():
            out.setdefault(name, {}).setdefault(value, set()).add(ident)
    return out


def verify_report(ds: Dataset, metric: str, model_id: str, target_fmr: float) -> tuple[dict, dict]:
    """(report, curves) for 1:1."""
    sp = split(ds.samples)
    gen, imp = verify_scores(sp, metric)
    r = metrics.verification(gen, imp)
    t, resolved = metrics.threshold_for_rate(imp, target_fmr)
    fmr_t, fnmr_t = r.at(t)
    points = []
    for f in FMR_POINTS:
        tt, ok = metrics.threshold_for_rate(imp, f)
        points.append(
            {
                "fmr": f,
                "fnmr": r.at(tt)[1],
                "threshold": metrics.from_distance(tt, metric),
                "resolved": ok,
            }
        )
    report = {
        "mode": "verify",
        "genuine_comparisons": r.genuine,
        "impostor_comparisons": r.impostor,
        "fte": sp.fte, "fte_count": sp.fte_count, "fta": sp.fta, "fta_count": sp.fta_count,
        "eer": r.eer, "eer_threshold": metrics.from_distance(r.eer_threshold, metric),
        "genuine_score_range": sorted(metrics.from_distance(float(v), metric) for v in (gen.min(), gen.max())),
        "impostor_score_range": sorted(metrics.from_distance(float(v), metric) for v in (imp.min(), imp.max())),
        "operating_points": points,
        "calibration": {
            "target_fmr": target_fmr, "threshold": metrics.from_distance(t, metric),
            "fmr": fmr_t, "fnmr": fnmr_t, "resolved": resolved,
            "note": _resolution_note(len(imp), target_fmr),
        },
        "groups": {},
        "failures": [{"identity": i, "sample": n, "reason": why} for i, n, why in sp.failures],
    }  # fmt: skip
    for gname, values in _groups(ds).items():
        report["groups"][gname] = {}
        for value, idents in sorted(values.items()):
            sub = [s for s in ds.samples if s.identity in idents]
            g_sp = split(sub)
            g_gen, g_imp = verify_scores(g_sp, metric)
            entry = {"identities": len(idents), "genuine_comparisons": len(g_gen),
                     "impostor_comparisons": len(g_imp), "fte": g_sp.fte, "fta": g_sp.fta}  # fmt: skip
            if len(g_gen) and len(g_imp):
                gr = metrics.verification(g_gen, g_imp)
                entry.update(fmr=gr.at(t)[0], fnmr=gr.at(t)[1], eer=gr.eer)
            report["groups"][gname][value] = entry
    curves = {"x": r.fmr, "y": r.fnmr, "xlabel": "FMR", "ylabel": "FNMR"}
    return report, curves


def identify_report(
    ds: Dataset,
    metric: str,
    model_id: str,
    target_fpir: float,
    deployed: int | None,
    fraction: float,
    top_k: int,
) -> tuple[dict, dict]:
    held_out = nonmated_identities(ds.identities, fraction)
    sc = identify_scores(ds.samples, metric, fraction, top_k, held_out)
    r = metrics.identification(
        sc.mate_d, sc.mate_rank, sc.nonmated_best_d, sc.gallery_size, sc.candidates
    )
    points = []
    for f in FPIR_POINTS:
        tt, ok = metrics.threshold_for_rate(sc.nonmated_best_d, f)
        points.append(
            {
                "fpir": f,
                "fnir": r.at(tt)[1],
                "threshold": metrics.from_distance(tt, metric),
                "resolved": ok,
            }
        )
    t003, ok003 = metrics.threshold_for_rate(sc.nonmated_best_d, 0.003)
    deployed = deployed or sc.gallery_size
    if deployed == sc.gallery_size:
        t, resolved = metrics.threshold_for_rate(sc.nonmated_best_d, target_fpir)
        how = "non-mated searches at the evaluated gallery size"
        need_fmr = None
        note = _resolution_note(len(sc.nonmated_best_d), target_fpir)
    else:
        need_fmr = metrics.fmr_for_fpir(target_fpir, deployed)
        t, resolved = metrics.threshold_for_rate(sc.nonmated_all_d, need_fmr)
        how = (f"per-comparison FMR {need_fmr:.3g} = 1-(1-FPIR)^(1/N) for N={deployed}, from "
               f"{len(sc.nonmated_all_d)} non-mated comparisons (assumes independent comparisons)")  # fmt: skip
        note = _resolution_note(len(sc.nonmated_all_d), need_fmr)
    fpir_eval, fnir_t = r.at(t)
    report = {
        "mode": "identify",
        "gallery_size": sc.gallery_size, "candidate_list": sc.candidates,
        "mated_searches": r.mated, "nonmated_searches": r.nonmated,
        "fte": sc.fte, "fta": sc.fta,
        "rank1": r.rank1,
        "fnir_at_fpir_0.003": r.at(t003)[1], "fnir_at_fpir_0.003_resolved": ok003,
        "operating_points": points,
        "calibration": {
            "target_fpir": target_fpir, "deployed_gallery_size": deployed, "method": how,
            "per_comparison_fmr": need_fmr, "threshold": metrics.from_distance(t, metric),
            "fpir_at_evaluated_size": fpir_eval, "fnir": fnir_t, "resolved": resolved, "note": note,
        },
        "groups": {},
        "failures": [{"identity": i, "sample": n, "reason": why} for i, n, why in sc.failures],
    }  # fmt: skip
    for gname, values in _groups(ds).items():
        report["groups"][gname] = {}
        for value, idents in sorted(values.items()):
            sub = [s for s in ds.samples if s.identity in idents]
            try:
                g = identify_scores(sub, metric, fraction, top_k, held_out)
                gr = metrics.identification(
                    g.mate_d, g.mate_rank, g.nonmated_best_d, g.gallery_size, g.candidates
                )
                fpir_g, fnir_g = gr.at(t)
                report["groups"][gname][value] = {
                    "identities": len(idents), "gallery_size": g.gallery_size, "rank1": gr.rank1,
                    "fpir": fpir_g, "fnir": fnir_g, "fte": g.fte, "fta": g.fta,
                }  # fmt: skip
            except ValueError as exc:
                report["groups"][gname][value] = {"identities": len(idents), "error": str(exc)}
    curves = {"x": r.fpir, "y": r.fnir, "xlabel": "FPIR", "ylabel": "FNIR"}
    return report, curves


def det_png(path: Path, curves: dict, title: str, mark: tuple[float, float] | None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x, y = np.asarray(curves["x"]), np.asarray(curves["y"])
    shown = (x > 0) & (y > 0)  # a zero rate has no place on log axes
    fig, ax = plt.subplots(figsize=(6, 5), dpi=110)
    ax.plot(x[shown], y[shown], lw=1.8, drawstyle="steps-post")
    if mark and mark[0] > 0 and mark[1] > 0:
        ax.plot([mark[0]], [mark[1]], "o", color="crimson", label="calibrated threshold")
        ax.legend(loc="upper right")
    if not shown.any():
        ax.set_xlim(1e-6, 1)
        ax.set_ylim(1e-6, 1)
        ax.text(0.5, 0.5, "no errors observed at any threshold\n(too little data to draw a DET curve)",
                ha="center", va="center", transform=ax.transAxes)  # fmt: skip
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(curves["xlabel"])
    ax.set_ylabel(curves["ylabel"])
    ax.set_title(title, fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _point_lines(points: list[dict], false_rate: str, miss_rate: str, negatives: str) -> list[str]:
    out = []
    for p in points:
        flag = "" if p["resolved"] else f"  (unresolved: too few {negatives})"
        out.append(f"  {false_rate.upper()} {p[false_rate]:<7g} {miss_rate.upper()} {p[miss_rate]:.4f}  "
                   f"threshold {p['threshold']:.4f}{flag}")  # fmt: skip
    return out


def summary(report: dict, ds: Dataset, model_id: str) -> str:
    lines = [f"tanu eval {report['mode']}: {ds.source}", f"model {model_id}; {len(ds.identities)} identities, "
             f"{len(ds.samples)} samples; FTE {report['fte']:.3%}, FTA {report['fta']:.3%}"]  # fmt: skip
    c = report["calibration"]
    if report["mode"] == "verify":
        lines.append(f"{report['genuine_comparisons']} genuine, {report['impostor_comparisons']} impostor comparisons; "
                     f"EER {report['eer']:.3%} at {report['eer_threshold']:.4f}")  # fmt: skip
        lines += _point_lines(report["operating_points"], "fmr", "fnmr", "impostor comparisons")
        lines.append(f"calibrated for FMR {c['target_fmr']:g}: threshold {c['threshold']:.4f} "
                     f"(FMR {c['fmr']:.2e}, FNMR {c['fnmr']:.4f})")  # fmt: skip
    else:
        lines.append(f"gallery {report['gallery_size']}; {report['mated_searches']} mated, "
                     f"{report['nonmated_searches']} non-mated searches; rank-1 {report['rank1']:.4f}; "
                     f"FNIR at FPIR 0.003: {report['fnir_at_fpir_0.003']:.4f}"
                     f"{'' if report['fnir_at_fpir_0.003_resolved'] else ' (unresolved)'}")  # fmt: skip
        lines += _point_lines(report["operating_points"], "fpir", "fnir", "non-mated searches")
        lines.append(f"calibrated for FPIR {c['target_fpir']:g} at gallery size {c['deployed_gallery_size']}: "
                     f"threshold {c['threshold']:.4f} (FNIR {c['fnir']:.4f}; {c['method']})")  # fmt: skip
    if c["note"]:
        lines.append(f"  note: {c['note']}")
    for gname, values in report["groups"].items():
        for value, e in values.items():
            body = ", ".join(
                f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in e.items()
            )
            lines.append(f"  group {gname}={value}: {body}")
    return "\n".join(lines)


def write(out: Path, report: dict, curves: dict, ds: Dataset, model_id: str, metric: str) -> str:
    out.mkdir(parents=True, exist_ok=True)
    report = {"dataset": ds.source, "model_id": model_id, "metric": metric,
              "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **report}  # fmt: skip
    c = report["calibration"]
    mark = (
        (c["fmr"], c["fnmr"])
        if report["mode"] == "verify"
        else (c["fpir_at_evaluated_size"], c["fnir"])
    )
    det_png(out / f"det_{report['mode']}.png", curves, f"{report['mode']}: {model_id}", mark)
    (out / f"report_{report['mode']}.json").write_text(json.dumps(report, indent=2, default=float))
    text = summary(report, ds, model_id)
    (out / f"summary_{report['mode']}.txt").write_text(text + "\n")
    return text
