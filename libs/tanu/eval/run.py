"""Running an evaluation: load a labelled dataset, turn photos into
templates with the deployed face pipeline (counting failures to enrol and to
acquire), compare under the protocol below, and compute the error rates.

Protocol (the same for 1:1 and 1:N, and for every group):
- per identity, samples sorted by name; the first is the enrolment sample,
  the rest are probes;
- an enrolment sample that yields no face, or a face below the enrolment
  quality bar, is a failure to enrol (FTE, per identity); a probe that yields
  no face is a failure to acquire (FTA, per probe);
- verification compares every probe with every enrolled identity: genuine
  when the identities are the same, impostor otherwise;
- identification holds out identities as non-mated (every ``1/fraction``-th
  identity in sorted order): the gallery holds the enrolment samples of the
  others; mated searches are their probes, non-mated searches are all the
  held-out identities' samples; the search is exact, like the searcher's.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tanu.core import config as cfg
from tanu.eval import metrics

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


@dataclass
class Sample:
    identity: str
    name: str
    path: Path | None = None
    template: np.ndarray | None = None
    failure: str = ""  # why no template could be made


@dataclass
class Dataset:
    source: str
    samples: list[Sample]
    groups: dict[str, dict[str, str]] = field(
        default_factory=dict
    )  # identity -> {group name: value}
    model_id: str = ""

    @property
    def identities(self) -> list[str]:
        return sorted({s.identity for s in self.samples})


def load(path: str | Path) -> Dataset:
    """An LFW-style folder (one sub-folder per identity, photos inside,
    optional ``groups.csv`` with an ``identity`` column and one column per
    group), or an ``.npz`` of ``templates`` (n x d float32), ``labels`` (n),
    optional ``model_id`` and optional per-sample ``group_<name>`` arrays."""
    p = Path(path)
    if p.suffix == ".npz":
        with np.load(p, allow_pickle=False) as z:
            return _load_npz(p, z)
    return _load_folder(p)


def _load_npz(p: Path, z) -> Dataset:
    """Reads an open .npz (see ``load``)."""
    if "templates" not in z or "labels" not in z:
        raise ValueError(f"{p} needs arrays 'templates' and 'labels'")
    temps, labels = z["templates"].astype(np.float32), z["labels"].astype(str)
    if len(temps) != len(labels):
        raise ValueError(f"{p}: {len(temps)} templates but {len(labels)} labels")
    samples = [Sample(str(lab), f"{i:08d}", template=temps[i]) for i, lab in enumerate(labels)]
    groups: dict[str, dict[str, str]] = {}
    for key in z.files:
        if key.startswith("group_"):
            for lab, val in zip(labels, z[key].astype(str), strict=True):
                groups.setdefault(str(lab), {})[key[6:]] = str(val)
    model = str(z["model_id"]) if "model_id" in z else ""
    return Dataset(str(p), samples, groups, model)


def _load_folder(p: Path) -> Dataset:
    if not p.is_dir():
        raise ValueError(f"{p} is neither a folder of identity folders nor an .npz of templates")
    samples = [
        Sample(d.name, f.name, path=f)
        for d in sorted(x for x in p.iterdir() if x.is_dir())
        for f in sorted(d.iterdir())
        if f.suffix.lower() in IMAGE_SUFFIXES
    ]
    if not samples:
        raise ValueError(f"{p} holds no identity folders with JPEG/PNG photos")
    groups = {}
    gfile = p / "groups.csv"
    if gfile.exists():
        with open(gfile, newline="") as f:
            for row in csv.DictReader(f):
                ident = row.pop("identity", None)
                if ident:
                    groups[ident] = {k: v for k, v in row.items() if k and v}
    return Dataset(str(p), samples, groups)


class FacePipeline:
    """The deployed detector, quality bar and embedder, in this process."""

    def __init__(self, env: dict[str, str]) -> None:
        from tanu.face import images, models
        from tanu.face.embedding import Embedder
        from tanu.face.mtcnn import MTCNN

        images.quiet_decoder_warnings()
        det = cfg.from_env(cfg.DetectorConfig, env)
        self.limits = cfg.from_env(cfg.GatewayConfig, env)
        self.embedder = Embedder(cfg.from_env(cfg.EmbedderConfig, env))
        self.model_id = self.embedder.config.model_id
        self.metric = self.embedder.config.metric
        self.max_pixels = det.onnx.max_pixels
        self.mtcnn = MTCNN(models.mtcnn_dir(), providers=models.providers(det.onnx.provider),
                           intra_op_threads=models.cpu_threads(det.onnx.intra_threads),
                           min_face=det.min_face_px, thresholds=det.threshold_values)  # fmt: skip

    def embed(
        self, samples: list[Sample], enrolment: set[int], progress: Callable[[int], None]
    ) -> None:
        """Fills each sample's template, or its failure reason."""
        from tanu.core.errors import TanuError
        from tanu.face import images, quality

        for i, s in enumerate(samples):
            try:
                image = images.decode(s.path.read_bytes(), self.max_pixels)
            except TanuError as exc:
                s.failure = exc.message
                progress(1)
                continue
            det = self.mtcnn.detect([image])[0]
            keep = det.scores >= self.limits.min_face_score
            if not keep.any():
                s.failure = "no face found"
            else:
                areas = (det.boxes[:, 2] - det.boxes[:, 0]) * (det.boxes[:, 3] - det.boxes[:, 1])
                j = int(np.argmax(np.where(keep, areas, -1)))
                if i in enrolment:
                    if int(keep.sum()) > 1:
                        s.failure = f"{int(keep.sum())} faces found; enrolment needs exactly one"
                    else:
                        fails = quality.enrolment_failures(
                            quality.assess(image, det.boxes[j], det.landmarks[j]), self.limits
                        )
                        s.failure = "; ".join(fails)  # fmt: skip
                if not s.failure:
                    s.template = self.embedder.run(
                        self.embedder.chip(image, det.landmarks[j])[None]
                    )[0]
            progress(1)


def enrolment_indices(samples: list[Sample]) -> set[int]:
    """Index of each identity's first sample (by name)."""
    first: dict[str, int] = {}
    for i, s in enumerate(samples):
        if s.identity not in first or s.name < samples[first[s.identity]].name:
            first[s.identity] = i
    return set(first.values())


def distances(
    probes: np.ndarray, gallery: np.ndarray, metric: str, block: int = 4096
) -> Iterable[np.ndarray]:
    """Probe x gallery distances (lower is closer), in blocks of probes."""
    g = gallery.astype(np.float32)
    if metric == "cosine":
        g = g / np.maximum(np.linalg.norm(g, axis=1, keepdims=True), 1e-12)
    gn = (g * g).sum(1)
    for lo in range(0, len(probes), block):
        p = probes[lo : lo + block].astype(np.float32)
        if metric == "cosine":
            p = p / np.maximum(np.linalg.norm(p, axis=1, keepdims=True), 1e-12)
            yield -(p @ g.T).astype(np.float64)
        else:
            d2 = (p * p).sum(1)[:, None] + gn[None, :] - 2 * (p @ g.T)
            yield np.sqrt(np.maximum(d2, 0)).astype(np.float64)


@dataclass
class Split:
    enrol: dict[str, Sample]  # identity -> enrolment sample that succeeded
    probes: list[Sample]  # acquired probes
    fte: float
    fta: float
    fte_count: tuple[int, int]
    fta_count: tuple[int, int]
    failures: list[tuple[str, str, str]]  # (identity, sample, reason)


def split(samples: list[Sample], identities: set[str] | None = None) -> Split:
    first = enrolment_indices(samples)
    enrol, probes, failures = {}, [], []
    tried_e = failed_e = tried_p = failed_p = 0
    for i, s in enumerate(samples):
        if identities is not None and s.identity not in identities:
            continue
        if i in first:
            tried_e += 1
            if s.template is None:
                failed_e += 1
                failures.append((s.identity, s.name, f"FTE: {s.failure}"))
            else:
                enrol[s.identity] = s
        else:
            tried_p += 1
            if s.template is None:
                failed_p += 1
                failures.append((s.identity, s.name, f"FTA: {s.failure}"))
            else:
                probes.append(s)
    return Split(enrol, probes, failed_e / max(tried_e, 1), failed_p / max(tried_p, 1),
                 (failed_e, tried_e), (failed_p, tried_p), failures)  # fmt: skip


def verify_scores(
    sp: Split, metric: str, max_impostors: int = 20_000_000
) -> tuple[np.ndarray, np.ndarray]:
    """Genuine and impostor distances of every probe against every enrolment."""
    ids = sorted(sp.enrol)
    if not ids or not sp.probes:
        return np.empty(0), np.empty(0)
    gallery = np.stack([sp.enrol[i].template for i in ids])
    col = {ident: k for k, ident in enumerate(ids)}
    probe_ids = np.array([col.get(p.identity, -1) for p in sp.probes])
    probes = np.stack([p.template for p in sp.probes])
    gen, imp, row = [], [], 0
    for block in distances(probes, gallery, metric):
        own = probe_ids[row : row + len(block)]
        mask = np.zeros(block.shape, dtype=bool)
        has = own >= 0
        mask[np.nonzero(has)[0], own[has]] = True
        gen.append(block[mask])
        imp.append(block[~mask])
        row += len(block)
    impostor = np.concatenate(imp)
    if len(impostor) > max_impostors:  # a uniform sample keeps memory bounded on huge sets
        impostor = np.random.default_rng(0).choice(impostor, max_impostors, replace=False)
    return np.concatenate(gen), impostor


def nonmated_identities(identities: list[str], fraction: float) -> set[str]:
    if not 0 < fraction < 1:
        raise ValueError("the non-mated fraction must be between 0 and 1")
    step = max(2, int(round(1 / fraction)))
    return {ident for k, ident in enumerate(identities) if k % step == step - 1}


@dataclass
class IdentifyScores:
    mate_d: np.ndarray
    mate_rank: np.ndarray
    nonmated_best_d: np.ndarray
    nonmated_all_d: np.ndarray  # every non-mated comparison (for per-comparison FMR)
    gallery_size: int
    candidates: int
    fte: float
    fta: float
    failures: list


def identify_scores(
    samples: list[Sample],
    metric: str,
    fraction: float,
    top_k: int,
    held_out: set[str] | None = None,
) -> IdentifyScores:
    """``held_out``: the non-mated identities (default: every 1/fraction-th);
    per-group runs pass the whole dataset's, so that a group's enrolment
    samples are the ones that went through the enrolment checks."""
    from tanu.index import PartitionIndex

    idents = sorted({s.identity for s in samples})
    held_out = nonmated_identities(idents, fraction) if held_out is None else held_out & set(idents)
    mated = split(samples, set(idents) - held_out)
    non = [s for s in samples if s.identity in held_out]
    non_ok = [s for s in non if s.template is not None]
    gallery_ids = sorted(mated.enrol)
    if not gallery_ids:
        raise ValueError("no identity could be enrolled into the gallery")
    if not non_ok:
        raise ValueError(
            "no non-mated search could be made (too few identities or every one failed)"
        )
    gallery = np.stack([mated.enrol[i].template for i in gallery_ids])
    dim = gallery.shape[1]
    index = PartitionIndex(dim, metric)
    index.add(np.arange(len(gallery_ids), dtype=np.int64), gallery_ids, gallery)
    k = min(top_k, len(gallery_ids))
    probes = [p for p in mated.probes if p.identity in mated.enrol]
    mate_d = np.full(len(probes), np.inf)
    mate_rank = np.zeros(len(probes), dtype=np.int64)
    if probes:
        scores, ids = index.search(np.stack([p.template for p in probes]), k)
        d = metrics.as_distance(scores, metric)
        want = np.array([gallery_ids.index(p.identity) for p in probes])
        hit = ids == want[:, None]
        rows = hit.any(1)
        mate_rank[rows] = hit[rows].argmax(1) + 1
        mate_d[rows] = d[rows, hit[rows].argmax(1)]
    non_t = np.stack([s.template for s in non_ok])
    all_d = np.concatenate(list(distances(non_t, gallery, metric)), axis=0)
    fails = mated.failures + [
        (s.identity, s.name, f"FTA: {s.failure}") for s in non if s.template is None
    ]
    fta_tried = mated.fta_count[1] + len(non)
    fta_failed = mated.fta_count[0] + (len(non) - len(non_ok))
    return IdentifyScores(mate_d, mate_rank, all_d.min(1), all_d.reshape(-1), len(gallery_ids), k,
                          mated.fte, fta_failed / max(fta_tried, 1), fails)  # fmt: skip
