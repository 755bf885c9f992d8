"""The face models and their accuracy: ``tanu models prepare`` (convert
once, verify checksums) and ``tanu eval verify|identify`` (FMR/FNMR or
FPIR/FNIR on a labelled dataset, a DET curve, a calibrated threshold that
``--apply`` publishes to the gateways through the cluster configuration)."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from .client import nats_url


def cmd_models(args) -> int:
    from tanu.face.models import ModelError, prepare

    try:
        prepare(args.model_dir)
    except (ModelError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def usage_problems(args) -> list[str]:
    """What is wrong with the eval flags, if anything."""
    problems = [
        (0 < args.target_fmr < 1, f"--target-fmr must be between 0 and 1, got {args.target_fmr}"),
        (
            0 < args.target_fpir < 1,
            f"--target-fpir must be between 0 and 1, got {args.target_fpir}",
        ),
        (args.gallery_size is None or args.gallery_size >= 1, "--gallery-size must be at least 1"),
        (0 < args.nonmated_fraction < 1, "--nonmated-fraction must be between 0 and 1"),
        (args.top_k >= 1, "--top-k must be at least 1"),
    ]
    return [message for ok, message in problems if not ok]


def publish_threshold(args, model_id: str, record: dict) -> None:
    """Writes the calibrated threshold into the cluster configuration."""
    import asyncio

    from tanu.core import bus, clusterconfig

    async def store() -> None:
        nc = await bus.connect(nats_url(args), "tanu-eval")
        try:
            await clusterconfig.write_threshold(nc.jetstream(), model_id, args.mode, record)
        finally:
            await nc.close()

    asyncio.run(store())


def cmd_eval(args) -> int:
    """Measures accuracy on a labelled dataset and calibrates a threshold."""
    from tqdm import tqdm

    from tanu.eval import report as rep
    from tanu.eval import run

    problems = usage_problems(args)
    if problems:
        print(f"error: {problems[0]}", file=sys.stderr)
        return 2
    try:
        ds = run.load(args.dataset)
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    env = {**os.environ, "TANU_MODEL_DIR": os.environ.get("TANU_MODEL_DIR", args.model_dir)}
    if any(s.template is None for s in ds.samples):
        pipeline = run.FacePipeline(env)
        model_id, metric = pipeline.model_id, pipeline.metric
        first = run.enrolment_indices(ds.samples)
        if args.mode == "identify":
            held = run.nonmated_identities(ds.identities, args.nonmated_fraction)
            first = {i for i in first if ds.samples[i].identity not in held}
        with tqdm(total=len(ds.samples), unit="photo", desc="embedding", disable=args.quiet) as bar:
            pipeline.embed(ds.samples, first, bar.update)
    else:
        # Templates carry no model: a threshold must be tied to the right one.
        model_id = args.model_id or ds.model_id
        metric = args.metric
        if not model_id:
            print("error: the .npz has no model_id array; say which model made the templates with --model-id",
                  file=sys.stderr)  # fmt: skip
            return 2
        if ds.model_id and args.model_id and ds.model_id != args.model_id:
            print(
                f"error: the .npz says model {ds.model_id!r}, --model-id says {args.model_id!r}",
                file=sys.stderr,
            )
            return 2
    try:
        if args.mode == "verify":
            report, curves = rep.verify_report(ds, metric, model_id, args.target_fmr)
        else:
            report, curves = rep.identify_report(ds, metric, model_id, args.target_fpir, args.gallery_size,
                                                 args.nonmated_fraction, args.top_k)  # fmt: skip
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    out = Path(args.out)
    print(rep.write(out, report, curves, ds, model_id, metric))
    print(f"report: {out / f'report_{args.mode}.json'}; DET curve: {out / f'det_{args.mode}.png'}")
    if args.apply and not report["calibration"]["resolved"] and not args.force:
        print("error: not stored: the dataset is too small to measure the target rate (see the note); "
              "use --force to store this conservative, unmeasured threshold anyway", file=sys.stderr)  # fmt: skip
        return 3
    if args.apply:
        c = report["calibration"]
        record = {"threshold": float(c["threshold"]), "resolved": bool(c["resolved"]), "dataset": ds.source,
                  "date": report.get("date") or time.strftime("%Y-%m-%d"), "metric": metric}  # fmt: skip
        if args.mode == "verify":
            record["target_fmr"] = args.target_fmr
        else:
            record.update(target_fpir=args.target_fpir, gallery_size=c["deployed_gallery_size"])
        try:
            publish_threshold(args, model_id, record)
        except Exception as exc:  # noqa: BLE001 - report, do not trace
            print(f"error: could not store the threshold: {exc}", file=sys.stderr)
            return 1
        print(f"stored: {args.mode} threshold {record['threshold']:.4f} for model {model_id} "
              f"in the cluster configuration (gateways pick it up within TANU_THRESHOLD_REFRESH_S)")  # fmt: skip
    return 0


def add_parsers(sub) -> None:
    ev = sub.add_parser(
        "eval", help="measure accuracy (FMR/FNMR, FPIR/FNIR, DET) and calibrate thresholds"
    )
    ev.set_defaults(run=cmd_eval)
    ev.add_argument("mode", choices=["verify", "identify"])
    ev.add_argument(
        "dataset", help="folder of identity folders of photos, or .npz of templates and labels"
    )
    ev.add_argument("--out", default="eval", help="folder for the report, summary and DET plot")
    ev.add_argument("--target-fmr", type=float, default=1e-3, help="verify: calibrate for this FMR")
    ev.add_argument(
        "--target-fpir", type=float, default=0.003, help="identify: calibrate for this FPIR"
    )
    ev.add_argument(
        "--gallery-size", type=int, help="identify: the deployed gallery size (default: evaluated)"
    )
    ev.add_argument("--top-k", type=int, default=20, help="identify: candidate list length")
    ev.add_argument(
        "--nonmated-fraction", type=float, default=0.5, help="identify: identities held out"
    )
    ev.add_argument(
        "--apply", action="store_true", help="store the calibrated threshold for the gateways"
    )
    ev.add_argument(
        "--nats", help="NATS URL for --apply (default: the local cluster's, or TANU_NATS_URL)"
    )
    ev.add_argument("--model-dir", default="var/models")
    ev.add_argument("--quiet", action="store_true", help="no progress bar")
    ev.add_argument(
        "--force", action="store_true", help="--apply even when the target rate is unresolved"
    )
    ev.add_argument("--model-id", help=".npz templates: the model that made them")
    ev.add_argument(
        "--metric", choices=["l2", "cosine"], default="l2", help=".npz templates: the score metric"
    )
    m = sub.add_parser("models", help="set up the face models (convert once, verify checksums)")
    m.set_defaults(run=cmd_models)
    m.add_argument("action", choices=["prepare"])
    m.add_argument("--model-dir", default=os.environ.get("TANU_MODEL_DIR", "var/models"))
