"""``tanu gallery import``: an existing national gallery migrated through
the store's normal write path (``StoreClient.put_batch``, operator only):
the store seals and writes each subject with its consent and data key and
queues its template event in the same transaction; the relay publishes it
to the stream; every partition's searchers apply it.

Input: templates as a ``.npy`` (N x d float32; memory-mapped, never read
whole) or ``.npz`` (the array ``templates``, or its only array), and a CSV
whose header is exactly ``CSV_HEADER`` (optionally followed by
``GUARDIAN_COLUMNS`` for minors); CSV row i (after the header) is template
row i.

Every row is hostile: the id (``tanu.core.ids``), the date of birth
(``tanu.policy.subjects``), the consent (evidence named; a minor's consent
is a guardian's: ``tanu.policy.consent``) and the vector (finite, not zero,
the model's dimension; normalised as enrolment does) are checked here, then
again by the store; a refused row is counted by reason (``REASONS``) and
never stops the import.

Resumable: after each committed batch the checkpoint file (written
atomically) records the next row, the refusal counts so far and the import's
id; a re-run with the same checkpoint continues from there, with the
checkpoint's batch size (and refuses if either input file changed size). Each batch is
keyed (``Idempotency``: the import id and its first row), so the batch that
was committed but not yet checkpointed when the importer was killed is
answered from the store's stored reply on resume: nothing written twice,
nothing lost, refusals counted once. (Keys expire after the store's
idempotency TTL, a day by default: a resume later than that reports the
rows of that one batch as ``duplicate_id``, and still writes nothing twice.)

De-duplication: none. A migration of a gallery that its previous system
already de-duplicated skips 1:N de-duplication (at 20 million that would be
20 million 1:N searches); the operator must say so (``--skip-dedup``). A
gallery not known to be de-duplicated is enrolled through the gateway
(``tanu enroll``), which de-duplicates each enrolment.
"""

from __future__ import annotations

import asyncio
import csv
import hashlib
import itertools
import json
import os
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from tanu.clients.store import StoreClient
from tanu.core import bus, errors, ids, vectors
from tanu.core.config import Layout
from tanu.policy.subjects import RELATIONSHIPS, is_minor, parse_dob
from tanu.v1 import common_pb2, store_pb2

CSV_HEADER = ("subject_id", "date_of_birth", "consent_evidence_ref")
GUARDIAN_COLUMNS = ("guardian_subject_id", "relationship")
REASONS = {
    "bad_id": "subject id breaks the id rules (tanu.core.ids)",
    "bad_dob": "date of birth not a YYYY-MM-DD calendar date, in the future or before 1880",
    "nan_vector": "template holds NaN or infinity",
    "zero_vector": "template is all zeros (no direction)",
    "big_vector": "template has a value beyond ±65504 (tanu.core.vectors.MAX_ABS_VALUE)",
    "bad_template": "template refused by the store (model, dimension)",
    "consent": "no evidence reference, a minor without a guardian, or a guardian not enrolled",
    "duplicate_id": "subject id already enrolled, or earlier in the input",
    "bad_row": "CSV row without the header's columns",
    "no_template": "CSV row beyond the last template",
}
OPERATION = "GalleryImport"
CLIENT = "gallery-import"
MAX_BATCH = 2000  # the store's MAX_SUBJECTS_PER_BATCH
RETRIES = 8


class ImportError_(SystemExit):
    """The import cannot start or go on (bad files, a checkpoint of another import)."""


@dataclass
class Checkpoint:
    """Where an import stands: the next input row and what was counted
    before it. Written after each committed batch, atomically."""

    import_id: str
    templates: str
    csv: str
    batch: int
    next_row: int = 0
    stored: int = 0
    refused: dict[str, int] = field(default_factory=dict)
    inputs: list[int] = field(default_factory=list)  # sizes of both files: row i stays row i

    @classmethod
    def load(cls, path: Path) -> Checkpoint | None:
        if not path.exists():
            return None
        try:
            return cls(**json.loads(path.read_text()))
        except (ValueError, TypeError) as exc:
            raise ImportError_(
                f"error: checkpoint {path} is not an import checkpoint: {exc}"
            ) from None

    def save(self, path: Path) -> None:
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "w") as f:
            json.dump(asdict(self), f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)


def open_templates(path: Path) -> np.ndarray:
    """The (N, d) templates: a memory map of a ``.npy``, or an ``.npz``'s
    ``templates`` array (or its only one). No pickles."""
    try:
        if path.suffix.lower() == ".npz":
            with np.load(path, allow_pickle=False) as z:
                names = z.files
                name = (
                    "templates" if "templates" in names else (names[0] if len(names) == 1 else "")
                )
                if not name:
                    raise ImportError_(f"error: {path} holds {names}; name the array 'templates'")
                arr = z[name]
        else:
            arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise ImportError_(f"error: {path} is not a numpy template file: {exc}") from None
    if arr.ndim != 2 or arr.dtype.kind != "f":
        raise ImportError_(
            f"error: {path} holds a {arr.dtype} array of shape {arr.shape}, not N x d floats"
        )
    return arr


def _rows(path: Path) -> tuple[Iterator[list[str]], bool]:
    """The CSV's data rows, and whether it has the guardian columns; the
    header must be exactly ``CSV_HEADER`` (+ ``GUARDIAN_COLUMNS``)."""
    # Bytes that are not UTF-8 become lone surrogates, which no id or
    # evidence reference may hold: the row is refused, the import goes on.
    f = open(path, newline="", encoding="utf-8", errors="surrogateescape")  # noqa: SIM115
    reader = _tolerant(csv.reader(f))
    header = tuple(c.strip() for c in next(reader, None) or [])
    if header not in (CSV_HEADER, CSV_HEADER + GUARDIAN_COLUMNS):
        f.close()
        raise ImportError_(
            f"error: {path}: the header must be {','.join(CSV_HEADER)} "
            f"(optionally followed by ,{','.join(GUARDIAN_COLUMNS)}), not {','.join(header)[:200]!r}"
        )
    return reader, len(header) > len(CSV_HEADER)


def _tolerant(reader) -> Iterator[list[str] | None]:
    """The reader's rows, None for a row the csv module cannot parse (a
    field over its size limit, a NUL byte)."""
    while True:
        try:
            yield next(reader)
        except StopIteration:
            return
        except csv.Error:
            yield None


def check_row(
    row: list[str] | None, guardians: bool, width: int
) -> tuple[str, common_pb2.Consent | None]:
    """("", the consent to record) or (the refusal reason, None) for one
    CSV row; the vector is checked by ``check_vectors``."""
    if row is None or len(row) != width:
        return "bad_row", None
    sid, dob, evidence = row[0], row[1], row[2]
    try:
        ids.check_subject_id(sid)
    except errors.InvalidArgument:
        return "bad_id", None
    try:
        parse_dob(dob)
    except errors.InvalidArgument:
        return "bad_dob", None
    if not evidence.strip() or len(evidence) > 200 or not _printable(evidence):
        return "consent", None
    consent = common_pb2.Consent(evidence_ref=evidence, given_by="self")
    if is_minor(dob):
        guardian, relationship = (row[3], row[4]) if guardians else ("", "")
        if not guardian or relationship not in RELATIONSHIPS:
            return "consent", None
        try:
            ids.check_subject_id(guardian)
        except errors.InvalidArgument:
            return "consent", None
        consent.given_by, consent.guardian_subject_id, consent.relationship = (
            "guardian",
            guardian,
            relationship,
        )
    return "", consent


def _printable(text: str) -> bool:
    """Valid UTF-8 (no lone surrogates) without control characters."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return text.isprintable()


def check_vectors(block: np.ndarray, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """(refusal code per row: 0 ok, 1 non-finite, 2 zero, 3 a value past
    ``vectors.MAX_ABS_VALUE``; the float32 rows, normalised for the cosine
    metric), vectorised over the block."""
    v = np.array(block, dtype=np.float32)  # a copy: the input may be a read-only map
    code = np.zeros(len(v), np.int8)
    finite = np.isfinite(v).all(axis=1)
    code[~finite] = 1
    v[~finite] = 0
    big = (np.abs(v) > vectors.MAX_ABS_VALUE).any(axis=1)
    code[big] = 3
    v[big] = 0
    norms = np.linalg.norm(v, axis=1)
    code[(code == 0) & (norms == 0)] = 2
    if metric == "cosine":
        v /= np.maximum(norms, 1e-12)[:, None]
    return code, v


class Progress:
    """A tqdm bar on a terminal, else a line on stderr every 10 s (rate, ETA)."""

    def __init__(self, total: int, done: int, quiet: bool) -> None:
        self.total, self.done, self.quiet = total, done, quiet
        self.start, self.start_done, self.last = time.monotonic(), done, 0.0
        self.bar = None
        if not quiet and sys.stderr.isatty():
            try:
                from tqdm import tqdm

                self.bar = tqdm(total=total, initial=done, unit="row", unit_scale=True,
                                desc="import", file=sys.stderr, mininterval=0.5)  # fmt: skip
            except ImportError:
                self.bar = None

    def advance(self, n: int, stored: int, refused: int) -> None:
        self.done += n
        if self.quiet:
            return
        if self.bar is not None:
            self.bar.update(n)
            self.bar.set_postfix(stored=stored, refused=refused, refresh=False)
            return
        now = time.monotonic()
        if now - self.last >= 10 or self.done >= self.total:
            self.last = now
            rate = (self.done - self.start_done) / max(now - self.start, 1e-9)
            eta = (self.total - self.done) / rate if rate else float("inf")
            print(f"import: {self.done}/{self.total} rows ({self.done / max(self.total, 1):.1%}), "
                  f"{rate:.0f} rows/s, ETA {eta:.0f} s; stored {stored}, refused {refused}",
                  file=sys.stderr, flush=True)  # fmt: skip

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


@dataclass
class Options:
    templates: Path
    csv: Path
    checkpoint: Path
    purposes: list[str]
    tenant: str
    layout: Layout
    model_id: str = ""  # stated on each template; "" leaves it to the store's model
    batch: int = 1000
    inflight: int = 2
    max_rate: float = 0.0  # rows per second, 0: unlimited
    timeout_s: float = 120.0
    quiet: bool = False


def _batches(opts: Options, cp: Checkpoint, arr: np.ndarray):
    """(first row, refusals, PutSubjectsRequest) per batch of ``cp.batch``
    input rows, from ``cp.next_row`` on; refusals are the rows checked
    here (index in the batch -> reason)."""
    reader, guardians = _rows(opts.csv)
    width = len(CSV_HEADER) + (len(GUARDIAN_COLUMNS) if guardians else 0)
    rows = itertools.islice(reader, cp.next_row, None)
    start, n = cp.next_row, len(arr)
    purposes = sorted(set(opts.purposes))
    while True:
        chunk = list(itertools.islice(rows, cp.batch))
        if not chunk:
            return
        have = max(0, min(len(chunk), n - start))
        code, vecs = check_vectors(arr[start : start + have], opts.layout.metric)
        refused: dict[int, str] = {}
        subjects = []
        for i, row in enumerate(chunk):
            if i >= have:
                refused[i] = "no_template"
                continue
            why, consent = check_row(row, guardians, width)
            if not why and code[i]:
                why = ("nan_vector", "zero_vector", "big_vector")[code[i] - 1]
            if why:
                refused[i] = why
                continue
            consent.purposes.extend(purposes)
            consent.tenant, consent.client = opts.tenant, CLIENT
            subjects.append(store_pb2.PutSubjectRequest(
                subject_id=row[0], date_of_birth=row[1], consent=consent,
                templates=[common_pb2.Template(vector=vecs[i].tobytes(),
                                               model_id=opts.model_id)],
            ))  # fmt: skip
        req = store_pb2.PutSubjectsRequest(subjects=subjects)
        body = req.SerializeToString(deterministic=True)
        req.idempotency.CopyFrom(store_pb2.Idempotency(
            tenant=opts.tenant, client=CLIENT, operation=OPERATION,
            key=f"gallery-import:{cp.import_id}:{start}",
            request_sha256=hashlib.sha256(body).hexdigest(),
        ))  # fmt: skip
        yield start, len(chunk), refused, req
        start += len(chunk)


async def _put(store: StoreClient, req: store_pb2.PutSubjectsRequest, timeout: float):
    """The batch, retried (it is keyed, so a retry is safe) while the store
    is unavailable or slow; other errors end the import."""
    if not req.subjects:
        return store_pb2.PutSubjectsResponse()
    delay = 0.5
    for attempt in range(RETRIES):
        try:
            return await store.put_batch(req, timeout=timeout)
        except (errors.Unavailable, errors.DeadlineExceeded) as exc:
            if attempt == RETRIES - 1:
                raise ImportError_(f"error: the store did not take a batch: {exc}") from None
            print(f"import: {exc}; retrying in {delay:.1f} s", file=sys.stderr, flush=True)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)
    raise AssertionError("unreachable")


async def run(nats_url: str, opts: Options) -> dict:
    """Imports from the checkpoint on; returns the summary."""
    if not 1 <= opts.batch <= MAX_BATCH:
        raise ImportError_(f"error: --batch must be 1..{MAX_BATCH}")
    arr = open_templates(opts.templates)
    if arr.shape[1] != opts.layout.dimension:
        raise ImportError_(
            f"error: {opts.templates} holds {arr.shape[1]}-d templates; model "
            f"{opts.layout.model_id!r} templates have dimension {opts.layout.dimension} (wrong_dimension)"
        )
    cp = Checkpoint.load(opts.checkpoint)
    inputs = [opts.templates.stat().st_size, opts.csv.stat().st_size]
    if cp is None:
        cp = Checkpoint(uuid.uuid4().hex, str(opts.templates.resolve()), str(opts.csv.resolve()),
                        opts.batch, inputs=inputs)  # fmt: skip
    elif (cp.templates, cp.csv) != (str(opts.templates.resolve()), str(opts.csv.resolve())):
        raise ImportError_(
            f"error: checkpoint {opts.checkpoint} belongs to the import of {cp.templates}"
        )
    elif cp.inputs != inputs:
        raise ImportError_(
            f"error: {opts.templates} or {opts.csv} changed since checkpoint {opts.checkpoint} "
            "was written; resuming would pair other rows (remove the checkpoint to start over)"
        )
    total = _count_rows(opts.csv)
    progress = Progress(total, cp.next_row, opts.quiet)
    refused = Counter(cp.refused)
    started, first_row, t0 = cp.next_row, cp.next_row, time.monotonic()
    pending: list[tuple[int, int, dict, asyncio.Task]] = []
    nc = await bus.connect(nats_url, "tanu-gallery-import")
    try:
        store = StoreClient(nc, opts.timeout_s)

        async def settle_one() -> None:
            start, rows, local, task = pending.pop(0)
            reply = await task
            counts = Counter(local.values())
            counts.update(r for r in reply.refusals if r)
            refused.update(counts)
            cp.next_row, cp.stored = start + rows, cp.stored + reply.stored
            cp.refused = dict(refused)
            cp.save(opts.checkpoint)
            progress.advance(rows, cp.stored, sum(refused.values()))

        for start, rows, local, req in _batches(opts, cp, arr):
            pending.append(
                (start, rows, local, asyncio.ensure_future(_put(store, req, opts.timeout_s)))
            )
            if len(pending) >= opts.inflight:
                await settle_one()
            if opts.max_rate > 0:
                ahead = (start + rows - first_row) / opts.max_rate - (time.monotonic() - t0)
                if ahead > 0:
                    await asyncio.sleep(ahead)
        while pending:
            await settle_one()
    finally:
        for *_, task in pending:
            task.cancel()
        progress.close()
        await nc.close()
    extra = max(0, len(arr) - total)
    wall = time.monotonic() - t0
    return {
        "rows": total, "stored": cp.stored, "refused": dict(sorted(refused.items())),
        "templates_without_row": extra, "rows_this_run": cp.next_row - started,
        "seconds_this_run": round(wall, 2),
        "rows_per_s": round((cp.next_row - started) / wall, 1) if wall > 0 else 0.0,
        "import_id": cp.import_id, "checkpoint": str(opts.checkpoint),
    }  # fmt: skip


def _count_rows(path: Path) -> int:
    """Data rows of the CSV (one pass before the import, for the progress bar)."""
    reader, _ = _rows(path)
    return sum(1 for _ in reader)


def summary_text(s: dict) -> str:
    lines = [f"imported {s['stored']} of {s['rows']} rows "
             f"({s['rows_this_run']} rows this run, {s['rows_per_s']} rows/s)"]  # fmt: skip
    for reason, n in s["refused"].items():
        lines.append(f"  refused {n:>9}  {reason}: {REASONS.get(reason, '')}")
    if s["templates_without_row"]:
        lines.append(
            f"  {s['templates_without_row']} templates beyond the CSV's last row were ignored"
        )
    return "\n".join(lines)
