"""The ``tanu`` command: run a local cluster and talk to it.

    tanu up [--partitions P] [--replicas R] [--port 50051] [--nats-port 4222]
    tanu status [--json]
    tanu enroll SUBJECT_ID FILE [--allow-duplicate] [--json]
    tanu enroll --dir PHOTOS/ [--csv MAP.csv] [--workers N]
    tanu models prepare [--model-dir DIR]
    tanu eval verify DATASET [--target-fmr 1e-3] [--out DIR] [--apply]
    tanu eval identify DATASET [--target-fpir 0.003] [--gallery-size N] [--out DIR] [--apply]
    tanu verify SUBJECT_ID FILE [--threshold T] [--json]
    tanu identify FILE [--top-k K] [--threshold T] [--require-complete] [--json]
    tanu delete SUBJECT_ID [--reason TEXT] [--json]
    tanu subject SUBJECT_ID [--json]
    tanu report SUBJECT_ID [--json]          what is held about a subject, for the subject
    tanu history SUBJECT_ID [--json]         every use of a subject's data
    tanu audit verify [--db FILE | --dsn DSN] [--public-key FILE]
    tanu keys init | rotate [--retire]       master keyring, audit and issuer keys
    tanu tokens issue --tenant T --client C [--scopes ...] [--purposes ...] [--ttl S]

Every call to the gateway carries a token (``--token``, ``TANU_TOKEN``, or
the local cluster's ``var/keys/operator.token``) and a purpose
(``--purpose``, default identity_verification).

FILE is a JPEG/PNG photo or a ``.npy`` template (float32, the model's
dimension). The gateway address comes from ``--gateway``,
``TANU_GATEWAY``, or the running local cluster's ``var/cluster.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import grpc
import numpy as np
from google.protobuf import json_format

from tanu.core import vectors
from tanu.v1 import common_pb2, identity_pb2, identity_pb2_grpc

from .local import STATE_FILE, health_status, up

DEFAULT_GATEWAY = "127.0.0.1:50051"


def _state(var: Path) -> dict | None:
    path = var / STATE_FILE
    if not path.exists():
        return None
    return json.loads(path.read_text())


def _gateway(args) -> str:
    if args.gateway:
        return args.gateway
    if os.environ.get("TANU_GATEWAY"):
        return os.environ["TANU_GATEWAY"]
    state = _state(Path(args.var))
    return state["gateway"] if state else DEFAULT_GATEWAY


def load_sample(path: str) -> common_pb2.BiometricSample:
    p = Path(path)
    if not p.exists():
        raise SystemExit(f"error: {path}: no such file")
    if p.suffix.lower() == ".npy":
        try:
            arr = np.load(p, allow_pickle=False)
        except (ValueError, EOFError, OSError) as exc:
            raise SystemExit(f"error: {path} is not a numpy .npy file: {exc}") from None
        arr = np.asarray(arr, dtype=np.float32).reshape(-1)
        return common_pb2.BiometricSample(
            template=common_pb2.Template(vector=vectors.to_bytes(arr))
        )
    return common_pb2.BiometricSample(image=p.read_bytes())


def _print(args, reply, text: str) -> None:
    if args.json:
        print(
            json.dumps(
                json_format.MessageToDict(
                    reply,
                    preserving_proto_field_name=True,
                    always_print_fields_with_no_presence=True,
                ),
                indent=2,
            )
        )
    else:
        print(text)


def _candidates(cands) -> str:
    if not cands:
        return "  (no candidates)"
    return "\n".join(
        f"  {i + 1:>3}. {c.subject_id:<30} score {c.score:.4f}{'  MATCH' if c.is_match else ''}"
        for i, c in enumerate(cands)
    )


class _Metadata(grpc.UnaryUnaryClientInterceptor):
    """Adds the token and purpose to every call."""

    def __init__(self, md) -> None:
        self._md = list(md)

    def intercept_unary_unary(self, continuation, details, request):
        details = details._replace(metadata=list(details.metadata or ()) + self._md)
        return continuation(details, request)


def _token(args) -> str:
    if getattr(args, "token", None):
        return args.token
    if os.environ.get("TANU_TOKEN"):
        return os.environ["TANU_TOKEN"]
    path = Path(args.var) / "keys" / "operator.token"
    if path.exists():
        return path.read_text().strip()
    raise SystemExit("error: no token: pass --token, set TANU_TOKEN, or run `tanu up` first")


def _channel(args):
    from tanu.core import secrets

    ch = grpc.insecure_channel(_gateway(args))
    md = secrets.call_metadata(_token(args), args.purpose)
    return grpc.intercept_channel(ch, _Metadata(md)), ch


def _call(args, fn):
    addr = _gateway(args)
    channel, raw = _channel(args)
    with raw:
        stub = identity_pb2_grpc.IdentityStub(channel)
        try:
            return fn(stub)
        except grpc.RpcError as exc:
            print(f"error: {exc.code().name}: {exc.details()} (gateway {addr})", file=sys.stderr)
            raise SystemExit(2) from None


def _enroll_dir(args) -> int:
    """Bulk enrolment of a folder of photos: subject id from the file name
    (or the CSV's file,subject_id rows), a progress bar, and a summary of
    what failed and why."""
    import csv
    from concurrent.futures import ThreadPoolExecutor

    from tqdm import tqdm

    folder = Path(args.dir)
    if not folder.is_dir():
        raise SystemExit(f"error: {folder} is not a folder")
    photos = sorted(
        p for p in folder.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png", ".npy")
    )
    if args.csv:
        with open(args.csv, newline="") as f:
            rows = [r for r in csv.reader(f) if r and not r[0].startswith("#")]
        if rows and rows[0][:2] == ["file", "subject_id"]:
            rows = rows[1:]
        ids = {r[0]: r[1] for r in rows if len(r) >= 2}
        dobs = {r[0]: r[2] for r in rows if len(r) >= 3 and r[2]}
        jobs = [(p, ids[p.name]) for p in photos if p.name in ids]
        unmapped = [p.name for p in photos if p.name not in ids]
    else:
        jobs, unmapped, dobs = [(p, p.stem) for p in photos], [], {}
    if not args.dob and not (dobs and len(dobs) == len(jobs)):
        raise SystemExit("error: every subject needs a date of birth: --dob, or a third CSV column")
    failures: list[tuple[str, str]] = [(n, "not listed in the CSV") for n in unmapped]
    enrolled = duplicates = 0
    channel, raw = _channel(args)
    with raw:
        stub = identity_pb2_grpc.IdentityStub(channel)

        def one(job):
            path, sid = job
            try:
                req = identity_pb2.EnrollRequest(
                    subject_id=sid,
                    sample=load_sample(str(path)),
                    date_of_birth=dobs.get(path.name) or args.dob,
                    consent=_consent(args),
                    allow_duplicate=args.allow_duplicate,
                    wait_indexed=True,  # the next photo's de-duplication must see this one
                )
                return path.name, stub.Enroll(req, timeout=args.timeout), None
            except grpc.RpcError as exc:
                return path.name, None, f"{exc.code().name}: {exc.details()}"
            except (SystemExit, OSError) as exc:
                return path.name, None, str(exc)

        with ThreadPoolExecutor(max_workers=args.workers) as pool:
            for name, reply, err in tqdm(
                pool.map(one, jobs), total=len(jobs), unit="photo", disable=args.json
            ):
                if err:
                    failures.append((name, err))
                elif reply.enrolled:
                    enrolled += 1
                else:
                    duplicates += 1
                    failures.append(
                        (
                            name,
                            f"duplicate of {reply.duplicate_of.subject_id} "
                            f"(score {reply.duplicate_of.score:.4f})",
                        )
                    )
    if args.json:
        print(
            json.dumps(
                {"enrolled": enrolled, "failed": [{"file": n, "reason": r} for n, r in failures]},
                indent=2,
            )
        )
    else:
        print(f"enrolled {enrolled} of {len(photos)}; {len(failures)} failed")
        for name, reason in failures:
            print(f"  {name}: {reason}")
    return 0 if not failures else 1


def _nats_url(args) -> str:
    if args.nats:
        return args.nats
    state = _state(Path(args.var))
    if state:
        return state["nats_url"]
    return os.environ.get("TANU_NATS_URL", "nats://127.0.0.1:4222")


def cmd_eval(args) -> int:
    """Measures accuracy on a labelled dataset and calibrates a threshold."""
    import asyncio

    from tqdm import tqdm

    from tanu.eval import report as rep
    from tanu.eval import run

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
    for ok, message in problems:
        if not ok:
            print(f"error: {message}", file=sys.stderr)
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
        from tanu.core import bus, clusterconfig

        c = report["calibration"]
        record = {"threshold": float(c["threshold"]), "resolved": bool(c["resolved"]), "dataset": ds.source,
                  "date": report.get("date") or time.strftime("%Y-%m-%d"), "metric": metric}  # fmt: skip
        if args.mode == "verify":
            record["target_fmr"] = args.target_fmr
        else:
            record.update(target_fpir=args.target_fpir, gallery_size=c["deployed_gallery_size"])

        async def store() -> None:
            nc = await bus.connect(_nats_url(args), "tanu-eval")
            try:
                await clusterconfig.write_threshold(nc.jetstream(), model_id, args.mode, record)
            finally:
                await nc.close()

        try:
            asyncio.run(store())
        except Exception as exc:  # noqa: BLE001 - report, do not trace
            print(f"error: could not store the threshold: {exc}", file=sys.stderr)
            return 1
        print(f"stored: {args.mode} threshold {record['threshold']:.4f} for model {model_id} "
              f"in the cluster configuration (gateways pick it up within TANU_THRESHOLD_REFRESH_S)")  # fmt: skip
    return 0


def cmd_models(args) -> int:
    from tanu.face.models import ModelError, prepare

    try:
        prepare(args.model_dir)
    except (ModelError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def _consent(args) -> identity_pb2.ConsentGrant:
    if not args.evidence:
        raise SystemExit("error: enroll needs --evidence REF: where the signed consent is kept")
    grant = identity_pb2.ConsentGrant(
        purposes=[p for p in args.consent_purposes.split(",") if p], evidence_ref=args.evidence
    )
    if args.guardian:
        if not args.guardian_file:
            raise SystemExit("error: --guardian needs --guardian-file (the guardian's photo)")
        grant.guardian_subject_id = args.guardian
        grant.relationship = args.relationship
        grant.guardian_sample.CopyFrom(load_sample(args.guardian_file))
    return grant


def cmd_enroll(args) -> int:
    if args.dir:
        if args.subject_id or args.file:
            raise SystemExit("error: give either SUBJECT_ID FILE or --dir, not both")
        return _enroll_dir(args)
    if not (args.subject_id and args.file):
        raise SystemExit("error: enroll needs SUBJECT_ID FILE (or --dir PHOTOS/)")
    if not args.dob:
        raise SystemExit("error: enroll needs --dob YYYY-MM-DD (a minor needs --guardian too)")
    req = identity_pb2.EnrollRequest(
        subject_id=args.subject_id,
        sample=load_sample(args.file),
        allow_duplicate=args.allow_duplicate,
        wait_indexed=True,
        date_of_birth=args.dob,
        consent=_consent(args),
    )
    r = _call(args, lambda s: s.Enroll(req, timeout=args.timeout))
    if r.enrolled:
        text = f"enrolled {r.subject.subject_id} (partition {r.subject.partition}, indexed: {r.indexed})"
    else:
        d = r.duplicate_of
        text = f"not enrolled: the face matches {d.subject_id} (score {d.score:.4f}); use --allow-duplicate to enrol anyway"
    _print(args, r, text)
    return 0 if r.enrolled else 3


def cmd_verify(args) -> int:
    req = identity_pb2.VerifyRequest(subject_id=args.subject_id, sample=load_sample(args.file))
    if args.threshold is not None:
        req.threshold = args.threshold
    r = _call(args, lambda s: s.Verify(req, timeout=args.timeout))
    decision = common_pb2.Decision.Name(r.decision).removeprefix("DECISION_")
    _print(args, r, f"{decision}: score {r.score:.4f} (threshold {r.threshold:.4f})")
    return 0


def cmd_identify(args) -> int:
    req = identity_pb2.IdentifyRequest(
        sample=load_sample(args.file), top_k=args.top_k, require_complete=args.require_complete
    )
    if args.threshold is not None:
        req.threshold = args.threshold
    r = _call(args, lambda s: s.Identify(req, timeout=args.timeout))
    decision = common_pb2.Decision.Name(r.decision).removeprefix("DECISION_")
    cover = (
        "whole gallery"
        if r.complete
        else f"PARTIAL: partitions {list(r.missing_partitions)} missing"
    )
    text = (
        f"{decision} (threshold {r.threshold:.4f}; {r.gallery_size} templates searched; {cover})\n"
    )
    _print(args, r, text + _candidates(r.candidates))
    return 0


def cmd_delete(args) -> int:
    req = identity_pb2.DeleteRequest(subject_id=args.subject_id, reason=args.reason)
    r = _call(args, lambda s: s.Delete(req, timeout=args.timeout))
    _print(args, r, f"deleted {r.subject_id}: {r.templates_removed} template(s) removed")
    return 0


def cmd_report(args) -> int:
    req = identity_pb2.GetSubjectRequest(subject_id=args.subject_id)
    r = _call(args, lambda s: s.GetSubjectReport(req, timeout=args.timeout))
    consents = "; ".join(
        f"{','.join(c.purposes)} by {c.given_by}{' (revoked)' if c.revoked_at_ms else ''}"
        for c in r.consents
    )
    _print(args, r, f"{r.subject.subject_id}: born {r.date_of_birth}{' (minor)' if r.minor else ''}; "
                    f"records {dict(r.records)}; model {r.subject.model_id}, partition "
                    f"{r.subject.partition}; data key {r.data_key_id} under {r.master_key_id}; "
                    f"consents: {consents}; biometric lock: {r.biometric_locked}")  # fmt: skip
    return 0


def cmd_history(args) -> int:
    entries, token = [], ""
    while True:
        req = common_pb2.AccessHistoryRequest(subject_id=args.subject_id, page_size=500,
                                              page_token=token)  # fmt: skip
        r = _call(args, lambda s, req=req: s.GetAccessHistory(req, timeout=args.timeout))
        entries.extend(r.entries)
        token = r.next_page_token
        if not token:
            break
    out = common_pb2.AccessHistory(entries=entries)
    lines = [
        f"  {time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime(e.at_ms / 1000))}  {e.tenant}/{e.client}"
        f"  {e.operation:<16} {e.purpose:<22} {e.result}"
        for e in entries
    ]
    _print(args, out, f"{len(entries)} use(s) of {args.subject_id}'s data\n" + "\n".join(lines))
    return 0


def cmd_audit(args) -> int:
    """Verifies the audit log's hash chain and signed checkpoints."""
    from tanu.core import audit, signing
    from tanu.store.db import Store

    key_file = args.public_key or str(Path(args.var) / "keys" / "audit.pem.pub")
    target = args.dsn or args.db or str(Path(args.var) / "store.sqlite3")
    if not args.dsn and not Path(target).exists():
        print(f"error: no store database at {target}", file=sys.stderr)
        return 2
    try:
        public = signing.load_public_key(key_file)
        db = Store.open_readonly(target)
    except Exception as exc:  # noqa: BLE001 - report, do not trace
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        rep = audit.verify(db.audit_entries(), db.audit_checkpoints(), public)
    finally:
        db.close()
    if args.json:
        print(json.dumps({"ok": rep.ok, "entries": rep.entries, "checkpoints": rep.checkpoints,
                          "last_sealed_seq": rep.last_sealed_seq, "problems": rep.problems}, indent=2))  # fmt: skip
    elif rep.ok:
        print(f"audit log intact: {rep.entries} entries, {rep.checkpoints} signed checkpoints, "
              f"sealed up to entry {rep.last_sealed_seq}")  # fmt: skip
    else:
        print(f"audit log TAMPERED: {len(rep.problems)} problem(s)")
        for p in rep.problems:
            print(f"  {p}")
    return 0 if rep.ok else 1


def cmd_keys(args) -> int:
    """init: creates the missing secrets; rotate: adds a master key version,
    has the running store re-wrap every data key, then (--retire) drops
    the versions no data key uses any more."""
    import asyncio

    from tanu.core import bus, envelope, natsnames, secrets
    from tanu.v1 import store_pb2

    folder = Path(args.var) / "keys"
    if args.action == "init":
        for k, v in secrets.provision(folder).items():
            print(f"{k}={v}")
        return 0
    keyring = args.keyring or str(folder / "master.keyring")
    old, new = envelope.add_key_version(keyring)
    print(f"master key {new} added and active (was {old}); re-wrapping data keys ...")

    async def rewrap():
        nc = await bus.connect(_nats_url(args), "tanu-keys")
        try:
            return await bus.request(nc, natsnames.store("keys.rewrap"), store_pb2.RewrapKeysRequest(),
                                     store_pb2.RewrapKeysResponse, args.timeout)  # fmt: skip
        finally:
            await nc.close()

    try:
        r = asyncio.run(rewrap())
    except Exception as exc:  # noqa: BLE001 - report, do not trace
        print(f"error: the store did not re-wrap ({exc}); the new key is active for new "
              f"subjects; run `tanu keys rotate` again when the store is up", file=sys.stderr)  # fmt: skip
        return 1
    print(f"re-wrapped {r.rewrapped} data key(s); master keys in use: {list(r.key_ids_in_use)}")
    if args.retire:
        gone = envelope.retire_key_versions(keyring, set(r.key_ids_in_use))
        print(f"retired: {gone or 'none'}")
    return 0


def cmd_tokens(args) -> int:
    from tanu.core import auth, signing

    key = signing.load_signing_key(args.issuer_key or str(Path(args.var) / "keys" / "issuer.pem"))
    scopes = [x for x in args.scopes.split(",") if x]
    purposes = [x for x in args.purposes.split(",") if x]
    try:
        print(auth.issue_token(key, args.tenant, args.client, scopes, purposes, args.ttl))
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


def cmd_subject(args) -> int:
    req = identity_pb2.GetSubjectRequest(subject_id=args.subject_id)
    r = _call(args, lambda s: s.GetSubject(req, timeout=args.timeout))
    _print(
        args,
        r,
        f"{r.subject_id}: {r.template_count} template(s) of {r.model_id}, partition {r.partition}",
    )
    return 0


def cmd_status(args) -> int:
    state = _state(Path(args.var))
    if state is None:
        print(
            f"no local cluster is running (no {Path(args.var) / STATE_FILE}); start one with `tanu up`",
            file=sys.stderr,
        )
        return 1
    rows = [
        {
            "name": s["name"],
            "address": f"127.0.0.1:{s['grpc_port']}",
            "metrics_port": s["metrics_port"],
            "health": health_status(f"127.0.0.1:{s['grpc_port']}"),
        }
        for s in state["services"]
    ]
    if args.json:
        print(
            json.dumps(
                {
                    "nats_url": state["nats_url"],
                    "gateway": state["gateway"],
                    "rest": state.get("rest"),
                    "services": rows,
                },  # fmt: skip
                indent=2,
            )
        )
    else:
        print(f"NATS {state['nats_url']}    Identity API {state['gateway']}    "
              f"REST {state.get('rest', '-')}")  # fmt: skip
        for r in rows:
            print(
                f"  {r['name']:<16} {r['health']:<12} {r['address']:<18} metrics :{r['metrics_port']}"
            )
    return 0 if all(r["health"] == "SERVING" for r in rows) else 1


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="tanu", description="Tanu: face identification at national scale."
    )
    p.add_argument(
        "--var", default=os.environ.get("TANU_VAR", "var"), help="state folder of the local cluster"
    )
    sub = p.add_subparsers(dest="command", required=True)

    u = sub.add_parser("up", help="start a local cluster (NATS + every service) in the foreground")
    u.add_argument("--partitions", type=int, default=int(os.environ.get("TANU_PARTITIONS", "4")))
    u.add_argument("--replicas", type=int, default=1, help="searcher replicas per partition")
    u.add_argument(
        "--port", type=int, default=50051, help="gateway gRPC port (a free one if taken)"
    )
    u.add_argument("--nats-port", type=int, default=4222, help="NATS port (a free one if taken)")

    def client(name: str, help_: str) -> argparse.ArgumentParser:
        c = sub.add_parser(name, help=help_)
        c.add_argument("--gateway", help="gateway address host:port")
        c.add_argument("--json", action="store_true", help="machine-readable output")
        c.add_argument("--timeout", type=float, default=30.0, help="deadline in seconds")
        c.add_argument(
            "--token", help="tenant token (default: TANU_TOKEN or var/keys/operator.token)"
        )
        c.add_argument("--purpose", default="identity_verification",
                       help="why the data is used (the tenant must be allowed it)")  # fmt: skip
        return c

    s = sub.add_parser("status", help="health of every service of the local cluster")
    s.add_argument("--json", action="store_true")
    e = client("enroll", "enrol a subject from a photo or template (.npy), or a folder of photos")
    e.add_argument("subject_id", nargs="?")
    e.add_argument("file", nargs="?")
    e.add_argument(
        "--allow-duplicate", action="store_true", help="enrol even if the face is already enrolled"
    )
    e.add_argument(
        "--dir", help="bulk: enrol every photo in this folder (subject id = file name stem)"
    )
    e.add_argument("--csv", help="bulk: CSV of file,subject_id[,date_of_birth] rows")
    e.add_argument("--dob", help="date of birth YYYY-MM-DD (bulk: for every photo)")
    e.add_argument("--evidence", help="where the signed consent is kept (document id)")
    e.add_argument("--consent-purposes", default="identity_verification",
                   help="comma-separated purposes the subject consents to")  # fmt: skip
    e.add_argument("--guardian", help="minor: the consenting guardian's subject id")
    e.add_argument("--relationship", default="parent",
                   help="minor: parent, legal_guardian or legal_representative")  # fmt: skip
    e.add_argument("--guardian-file", help="minor: the guardian's photo or template")
    e.add_argument("--workers", type=int, default=1,
                   help="bulk: enrolments in flight (above 1, photos in flight together are not "
                        "de-duplicated against each other)")  # fmt: skip
    ev = sub.add_parser(
        "eval", help="measure accuracy (FMR/FNMR, FPIR/FNIR, DET) and calibrate thresholds"
    )
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
    m.add_argument("action", choices=["prepare"])
    m.add_argument("--model-dir", default=os.environ.get("TANU_MODEL_DIR", "var/models"))
    v = client("verify", "1:1: does FILE match the subject?")
    v.add_argument("subject_id")
    v.add_argument("file")
    v.add_argument("--threshold", type=float)
    i = client("identify", "1:N: who in the gallery matches FILE?")
    i.add_argument("file")
    i.add_argument("--top-k", type=int, default=10)
    i.add_argument("--threshold", type=float)
    i.add_argument(
        "--require-complete",
        action="store_true",
        help="fail rather than search part of the gallery",
    )
    d = client("delete", "delete a subject and its templates everywhere")
    d.add_argument("subject_id")
    d.add_argument("--reason", default="requested via CLI")
    g = client("subject", "what is held about a subject")
    g.add_argument("subject_id")
    rp = client("report", "for the citizen: what is stored about them, keys and consents")
    rp.add_argument("subject_id")
    h = client("history", "for the citizen: every use of their data")
    h.add_argument("subject_id")
    au = sub.add_parser("audit", help="verify the audit log's hash chain and signed checkpoints")
    au.add_argument("action", choices=["verify"])
    au.add_argument("--db", help="SQLite store file (default: var/store.sqlite3)")
    au.add_argument("--dsn", help="PostgreSQL DSN of the store")
    au.add_argument("--public-key", help="audit public key PEM (default: var/keys/audit.pem.pub)")
    au.add_argument("--json", action="store_true")
    k = sub.add_parser("keys", help="init the secrets, or rotate the master key while serving")
    k.add_argument("action", choices=["init", "rotate"])
    k.add_argument("--keyring", help="master keyring (default: var/keys/master.keyring)")
    k.add_argument("--retire", action="store_true",
                   help="rotate: drop master key versions no data key uses any more")  # fmt: skip
    k.add_argument("--nats", help="NATS URL (default: the local cluster's, or TANU_NATS_URL)")
    k.add_argument("--timeout", type=float, default=600.0)
    t = sub.add_parser("tokens", help="issue a signed tenant token")
    t.add_argument("action", choices=["issue"])
    t.add_argument("--tenant", required=True)
    t.add_argument("--client", required=True)
    t.add_argument("--scopes", default="verify", help="comma-separated scopes")
    t.add_argument("--purposes", default="", help="comma-separated purposes (empty: the tenant's)")
    t.add_argument("--ttl", type=float, default=3600.0, help="seconds the token is valid")
    t.add_argument("--issuer-key", help="issuer private key (default: var/keys/issuer.pem)")
    from .repartition import add_parser as partitions_parser  # tanu partitions rebalance|abort

    partitions_parser(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.command == "up":
        if args.partitions < 1 or args.replicas < 1:
            print("error: --partitions and --replicas must be at least 1", file=sys.stderr)
            return 2
        return up(Path(args.var), args.partitions, args.replicas, args.port, args.nats_port)
    if args.command == "partitions":
        from .repartition import main as partitions_main

        return partitions_main(args)
    handlers = {
        "models": cmd_models,
        "eval": cmd_eval,
        "status": cmd_status,
        "enroll": cmd_enroll,
        "verify": cmd_verify,
        "identify": cmd_identify,
        "delete": cmd_delete,
        "subject": cmd_subject,
        "report": cmd_report,
        "history": cmd_history,
        "audit": cmd_audit,
        "keys": cmd_keys,
        "tokens": cmd_tokens,
    }
    return handlers[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
