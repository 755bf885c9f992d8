"""``tanu enroll``: one subject from a photo or template, or a folder of
photos (subject id from the file name or a CSV), with the subject's consent."""

from __future__ import annotations

import json
from pathlib import Path

import grpc

from tanu.v1 import identity_pb2, identity_pb2_grpc

from .cases import not_enrolled
from .client import add_client_parser, call, channel, load_sample, show


def consent(args) -> identity_pb2.ConsentGrant:
    """The consent grant from ``--evidence``, ``--consent-purposes`` and,
    for a minor, ``--guardian``, ``--relationship`` and ``--guardian-file``."""
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


def enroll_dir(args) -> int:
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
    enrolled = 0
    intercepted, raw = channel(args)
    with raw:
        stub = identity_pb2_grpc.IdentityStub(intercepted)

        def one(job):
            path, sid = job
            try:
                req = identity_pb2.EnrollRequest(
                    subject_id=sid,
                    sample=load_sample(str(path)),
                    date_of_birth=dobs.get(path.name) or args.dob,
                    consent=consent(args),
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
                    failures.append((name, not_enrolled(reply)))
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


def cmd_enroll(args) -> int:
    if args.dir:
        if args.subject_id or args.file:
            raise SystemExit("error: give either SUBJECT_ID FILE or --dir, not both")
        return enroll_dir(args)
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
        consent=consent(args),
    )
    r = call(args, lambda s: s.Enroll(req, timeout=args.timeout))
    if r.enrolled:
        text = f"enrolled {r.subject.subject_id} (partition {r.subject.partition}, indexed: {r.indexed})"
    else:
        text = f"not enrolled: {not_enrolled(r, 'the face matches')}"
    show(args, r, text)
    return 0 if r.enrolled else 3


def add_parsers(sub) -> None:
    e = add_client_parser(
        sub, "enroll", "enrol a subject from a photo or template (.npy), or a folder of photos"
    )
    e.set_defaults(run=cmd_enroll)
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
