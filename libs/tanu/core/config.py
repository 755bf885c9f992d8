"""Configuration: frozen dataclasses built once, in ``main()``, from an
environment mapping that tests pass in. Nothing reads ``os.environ`` at import.

Every field names its environment variable and carries a one-line doc; nested
dataclass fields are built from the same environment.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

T = TypeVar("T")

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def setting(env: str, default: Any, doc: str) -> Any:
    """A config field read from ``env``, with ``default`` and a one-line doc."""
    return field(default=default, metadata={"env": env, "doc": doc})


def _convert(name: str, raw: str, typ: Any) -> Any:
    try:
        if typ is bool:
            low = raw.strip().lower()
            if low in _TRUE:
                return True
            if low in _FALSE:
                return False
            raise ValueError("expected true/false")
        if typ is int:
            return int(raw)
        if typ is float:
            return float(raw)
        return raw
    except ValueError as exc:
        raise ValueError(
            f"{name}={raw!r} is not a valid {getattr(typ, '__name__', typ)}: {exc}"
        ) from None


def from_env(cls: type[T], env: Mapping[str, str]) -> T:
    """Builds ``cls`` from ``env``: unset variables keep their defaults."""
    hints = typing.get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        typ = hints[f.name]
        if dataclasses.is_dataclass(typ):
            kwargs[f.name] = from_env(typ, env)  # type: ignore[arg-type]
            continue
        var = f.metadata.get("env")
        if var and var in env:
            kwargs[f.name] = _convert(var, env[var], typ)
    return cls(**kwargs)


def describe(cls: type) -> list[tuple[str, str, str]]:
    """(variable, default, doc) for every setting of ``cls``, for docs and --help."""
    rows: list[tuple[str, str, str]] = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        typ = hints[f.name]
        if dataclasses.is_dataclass(typ):
            rows.extend(describe(typ))  # type: ignore[arg-type]
        elif "env" in f.metadata:
            rows.append((f.metadata["env"], repr(f.default), f.metadata["doc"]))
    return rows


METRICS = ("l2", "cosine")


@dataclass(frozen=True)
class Layout:
    """The gallery's shape; every service of a cluster must agree on it."""

    partitions: int = setting("TANU_PARTITIONS", 4, "Number of gallery partitions.")
    dimension: int = setting("TANU_DIMENSION", 128, "Template dimension (the model's output).")
    metric: str = setting(
        "TANU_METRIC", "l2", "Score metric: l2 (distance) or cosine (similarity)."
    )
    model_id: str = setting(
        "TANU_MODEL_ID", "dlib-resnet-v1", "Id of the model whose templates the gallery holds."
    )

    def __post_init__(self) -> None:
        if self.partitions < 1:
            raise ValueError(f"TANU_PARTITIONS must be at least 1, got {self.partitions}")
        if self.dimension < 1:
            raise ValueError(f"TANU_DIMENSION must be at least 1, got {self.dimension}")
        if self.metric not in METRICS:
            raise ValueError(f"TANU_METRIC must be one of {METRICS}, got {self.metric!r}")
        if not self.model_id:
            raise ValueError("TANU_MODEL_ID must not be empty")

    FIELDS = ("partitions", "dimension", "metric", "model_id")

    def as_dict(self, as_str: bool = False) -> dict:
        """The fields every service of a cluster must agree on (as strings
        for a store that keeps them as text)."""
        return {k: str(getattr(self, k)) if as_str else getattr(self, k) for k in self.FIELDS}

    def differences(
        self, recorded: dict, recorded_as: str, configured_as: str, as_str: bool = False
    ) -> str:
        """'' when ``recorded`` equals this layout; else every difference,
        named, for the refusal message."""
        diffs = [
            f"{k}: {recorded_as} {recorded.get(k)!r}, {configured_as} {v!r}"
            for k, v in self.as_dict(as_str).items()
            if recorded.get(k) != v
        ]
        return ", ".join(diffs)


@dataclass(frozen=True)
class Common:
    """What every service needs."""

    nats_url: str = setting(
        "TANU_NATS_URL", "nats://127.0.0.1:4222", "NATS server URL(s), comma-separated."
    )
    grpc_host: str = setting("TANU_GRPC_HOST", "127.0.0.1", "Interface the gRPC server binds.")
    grpc_port: int = setting("TANU_GRPC_PORT", 0, "gRPC port; 0 picks a free one.")
    tls_cert_file: str = setting(
        "TANU_TLS_CERT_FILE", "", "Server certificate (PEM); with the key, gRPC speaks TLS."
    )
    tls_key_file: str = setting("TANU_TLS_KEY_FILE", "", "Server private key (PEM).")
    tls_client_ca_file: str = setting(
        "TANU_TLS_CLIENT_CA_FILE",
        "",
        "CA bundle (PEM); when set, clients must present a certificate it signed (mTLS).",
    )
    metrics_port: int = setting(
        "TANU_METRICS_PORT", -1, "Prometheus port; -1 disables, 0 picks a free one."
    )
    log_level: str = setting("TANU_LOG_LEVEL", "info", "Log level: debug, info, warning, error.")
    shutdown_grace_s: float = setting(
        "TANU_SHUTDOWN_GRACE_S", 5.0, "Seconds in-flight RPCs get on SIGTERM."
    )
    request_timeout_s: float = setting(
        "TANU_REQUEST_TIMEOUT_S", 5.0, "Deadline of internal NATS requests."
    )
    max_message_bytes: int = setting(
        "TANU_MAX_MESSAGE_BYTES", 8 * 1024 * 1024, "Largest gRPC message accepted."
    )
    stream_replicas: int = setting(
        "TANU_STREAM_REPLICAS", 1, "JetStream replicas of TANU_EVENTS (3 in production)."
    )
    stream_duplicate_window_s: float = setting(
        "TANU_STREAM_DUPLICATE_WINDOW_S",
        86400.0,
        "JetStream de-duplication window; longer than any retry.",
    )
    layout: Layout = field(default_factory=Layout)


@dataclass(frozen=True)
class StoreConfig:
    """The store: the system of record and its outbox relay."""

    db_path: str = setting("TANU_STORE_DB", "var/store.sqlite3", "SQLite database file.")
    dsn: str = setting(
        "TANU_STORE_DSN",
        "",
        "PostgreSQL DSN (postgresql://...); when set, the store uses PostgreSQL, not SQLite.",
    )
    master_key_file: str = setting(
        "TANU_MASTER_KEY_FILE",
        "",
        "Master keyring (JSON; `tanu keys init`) that wraps every subject's data key.",
    )
    master_key: str = setting(
        "TANU_MASTER_KEY", "", "A single 32-byte master key, base64 (when no keyring file)."
    )
    audit_key_file: str = setting(
        "TANU_AUDIT_KEY_FILE",
        "",
        "Ed25519 private key (PEM) signing audit checkpoints and erasure receipts.",
    )
    lockout_after: int = setting(
        "TANU_LOCKOUT_AFTER",
        5,
        "Consecutive failed verifications of a subject before growing delays (1 s, 2 s, 4 s...).",
    )
    lock_after: int = setting(
        "TANU_LOCK_AFTER",
        10,
        "Consecutive failed verifications that lock the subject until they unlock.",
    )
    audit_checkpoint_s: float = setting(
        "TANU_AUDIT_CHECKPOINT_S", 10.0, "Seconds between signed audit checkpoints."
    )
    relay_batch: int = setting("TANU_RELAY_BATCH", 256, "Outbox events published per relay round.")
    relay_poll_s: float = setting(
        "TANU_RELAY_POLL_S", 1.0, "Relay poll interval when no write wakes it."
    )
    relay_enabled: bool = setting(
        "TANU_RELAY_ENABLED", True, "Run the outbox relay in this process."
    )
    common: Common = field(default_factory=Common)


@dataclass(frozen=True)
class SearcherConfig:
    """One replica of one gallery partition."""

    partition: int = setting("TANU_PARTITION", 0, "Partition this searcher serves (0-based).")
    replica: str = setting("TANU_REPLICA", "r0", "Replica name, unique within the partition.")
    batch_max: int = setting(
        "TANU_SEARCH_BATCH_MAX", 256, "Most queries combined into one FAISS call."
    )
    batch_wait_ms: float = setting(
        "TANU_SEARCH_BATCH_WAIT_MS", 1.0, "Longest wait to fill a FAISS batch."
    )
    fetch_batch: int = setting(
        "TANU_APPLY_BATCH", 1024, "Events fetched from the stream per round."
    )
    faiss_threads: int = setting(
        "TANU_FAISS_THREADS", 0, "FAISS OpenMP threads; 0 keeps FAISS's default."
    )
    index_kind: str = setting(
        "TANU_INDEX_KIND",
        "flat",
        "FAISS index: flat (fp32), fp16 (half the memory) or ivf (large partitions).",
    )
    index_device: str = setting(
        "TANU_INDEX_DEVICE",
        "cpu",
        "Where searches run: cpu; gpu (a copy on every visible GPU, flat/fp16 kinds); "
        "cpu-copy (the same tombstoned copy on the CPU).",
    )
    device_compact_share: float = setting(
        "TANU_DEVICE_COMPACT_SHARE",
        0.05,
        "Rebuild the device copy once tombstones pass this share of it (and 4096).",
    )
    ivf_nlist: int = setting(
        "TANU_IVF_NLIST", 1024, "ivf: inverted lists (trained once 39 x nlist templates are in)."
    )
    ivf_nprobe: int = setting("TANU_IVF_NPROBE", 16, "ivf: lists searched per query.")
    ivf_rerank: int = setting(
        "TANU_IVF_RERANK", 4, "ivf: candidates re-ranked exactly, as a multiple of top_k."
    )
    snapshot_dir: str = setting(
        "TANU_SNAPSHOT_DIR", "", "Folder of encrypted index snapshots; empty disables them."
    )
    snapshot_interval_s: float = setting(
        "TANU_SNAPSHOT_INTERVAL_S",
        300.0,
        "Seconds between snapshots (taken only when the index changed).",
    )
    snapshot_erasure_delay_s: float = setting(
        "TANU_SNAPSHOT_ERASURE_DELAY_S",
        30.0,
        "Longest wait before a snapshot holding erased templates is rewritten without them.",
    )
    staging: bool = setting(
        "TANU_SEARCHER_STAGING",
        False,
        "Build a partition of the layout a rebalance moves to (tanu partitions rebalance); "
        "it joins the search queue group once the layout is switched.",
    )
    snapshot_key_file: str = setting(
        "TANU_SNAPSHOT_KEY_FILE", "", "File holding the 32-byte snapshot key (base64)."
    )
    snapshot_key: str = setting(
        "TANU_SNAPSHOT_KEY", "", "The snapshot key, base64 (when no key file is given)."
    )
    common: Common = field(default_factory=Common)

    def __post_init__(self) -> None:
        parts = self.common.layout.partitions
        if not 0 <= self.partition < parts:
            raise ValueError(f"TANU_PARTITION={self.partition} is outside 0..{parts - 1}")


@dataclass(frozen=True)
class GatewayConfig:
    """The public Identity API."""

    identify_threshold: float = setting(
        "TANU_IDENTIFY_THRESHOLD",
        0.6,
        "Default 1:N threshold (distance for l2, similarity for cosine).",
    )
    verify_threshold: float = setting("TANU_VERIFY_THRESHOLD", 0.6, "Default 1:1 threshold.")
    dedup_threshold: float = setting(
        "TANU_DEDUP_THRESHOLD", 0.6, "Threshold of the enrolment de-duplication search."
    )
    search_timeout_s: float = setting(
        "TANU_SEARCH_TIMEOUT_S", 2.0, "Deadline for every partition to answer a search."
    )
    default_top_k: int = setting("TANU_DEFAULT_TOP_K", 10, "Candidates returned when top_k is 0.")
    max_top_k: int = setting("TANU_MAX_TOP_K", 1000, "Largest top_k accepted.")
    batch_max: int = setting(
        "TANU_GATEWAY_BATCH_MAX",
        256,
        "Most identify queries sent to the partitions as one request.",
    )
    batch_wait_ms: float = setting(
        "TANU_GATEWAY_BATCH_WAIT_MS", 1.0, "Longest wait to fill such a batch."
    )
    batch_in_flight: int = setting(
        "TANU_GATEWAY_BATCH_IN_FLIGHT",
        1,
        "Scatters in flight at once; fewer means larger FAISS batches.",
    )
    enrol_min_face_px: float = setting(
        "TANU_ENROL_MIN_FACE_PX", 60.0, "Enrolment: smallest face box side, pixels."
    )
    enrol_min_sharpness: float = setting(
        "TANU_ENROL_MIN_SHARPNESS", 20.0, "Enrolment: least Laplacian variance of the face crop."
    )
    enrol_max_pose: float = setting(
        "TANU_ENROL_MAX_POSE", 0.6, "Enrolment: largest yaw proxy (0 frontal, 1 profile)."
    )
    enrol_min_exposure: float = setting(
        "TANU_ENROL_MIN_EXPOSURE", 0.15, "Enrolment: darkest mean face luminance, 0..1."
    )
    enrol_max_exposure: float = setting(
        "TANU_ENROL_MAX_EXPOSURE", 0.9, "Enrolment: brightest mean face luminance, 0..1."
    )
    min_face_score: float = setting(
        "TANU_MIN_FACE_SCORE", 0.9, "Detector score below which a face is ignored."
    )
    rest_port: int = setting(
        "TANU_REST_PORT",
        -1,
        "Port of the partner REST facade (OSIA subset); -1 disables it, 0 picks a free one.",
    )
    token_public_key_file: str = setting(
        "TANU_TOKEN_PUBLIC_KEY_FILE",
        "",
        "Ed25519 public key (PEM) of the token issuer; tenants' tokens must verify with it.",
    )
    tenants_file: str = setting(
        "TANU_TENANTS_FILE",
        "",
        "Tenant registry (JSON): id, kind, scopes, purposes, rate limit of each tenant.",
    )
    erasure_wait_s: float = setting(
        "TANU_ERASURE_WAIT_S",
        5.0,
        "How long an erasure waits for every searcher replica to confirm it.",
    )
    threshold_refresh_s: float = setting(
        "TANU_THRESHOLD_REFRESH_S",
        10.0,
        "How often calibrated thresholds are re-read from the cluster configuration.",
    )
    common: Common = field(default_factory=Common)


@dataclass(frozen=True)
class OnnxSettings:
    """How a service runs its ONNX models."""

    model_dir: str = setting(
        "TANU_MODEL_DIR", "var/models", "Folder of prepared models (`tanu models prepare`)."
    )
    provider: str = setting(
        "TANU_ONNX_PROVIDER", "auto", "auto (CUDA when present, else CPU), cuda or cpu."
    )
    intra_threads: int = setting(
        "TANU_ONNX_THREADS", 0, "onnxruntime intra-op threads; 0 = the cores this process has."
    )
    batch_max: int = setting(
        "TANU_MODEL_BATCH_MAX", 32, "Most images (detector) or faces (embedder) per model run."
    )
    batch_wait_ms: float = setting(
        "TANU_MODEL_BATCH_WAIT_MS", 2.0, "Longest wait to fill a model batch under load."
    )
    max_pixels: int = setting(
        "TANU_MAX_IMAGE_PIXELS", 40_000_000, "Largest image (width x height) decoded."
    )


@dataclass(frozen=True)
class DetectorConfig:
    """The face detector (MTCNN)."""

    min_face_px: int = setting(
        "TANU_DETECT_MIN_FACE_PX", 20, "Smallest face searched for, in pixels."
    )
    thresholds: str = setting(
        "TANU_DETECT_THRESHOLDS", "0.6,0.7,0.7", "P-Net, R-Net, O-Net score thresholds."
    )
    onnx: OnnxSettings = field(default_factory=OnnxSettings)
    common: Common = field(default_factory=Common)

    @property
    def threshold_values(self) -> tuple[float, float, float]:
        parts = tuple(float(x) for x in self.thresholds.split(","))
        if len(parts) != 3:
            raise ValueError(f"TANU_DETECT_THRESHOLDS needs 3 numbers, got {self.thresholds!r}")
        return parts  # type: ignore[return-value]


@dataclass(frozen=True)
class EmbedderConfig:
    """The face recogniser. The model is configuration: a government's own
    ArcFace-class model is a change of these variables, not of code."""

    model_id: str = setting(
        "TANU_EMBED_MODEL_ID", "dlib-resnet-v1", "Id recorded in every template this model makes."
    )
    model_file: str = setting(
        "TANU_EMBED_MODEL_FILE", "", "ONNX file; empty = the prepared dlib model in TANU_MODEL_DIR."
    )
    input_size: int = setting(
        "TANU_EMBED_INPUT_SIZE", 150, "Side of the square aligned chip, in pixels."
    )
    mean: str = setting(
        "TANU_EMBED_MEAN", "122.782,117.001,104.298", "Per-channel (R,G,B) mean subtracted."
    )
    std: float = setting("TANU_EMBED_STD", 256.0, "Divisor after the mean (ArcFace: 127.5).")
    template: str = setting(
        "TANU_EMBED_TEMPLATE", "dlib-150", "Alignment template: dlib-150 or arcface-112."
    )
    output_dim: int = setting("TANU_EMBED_DIM", 128, "Embedding dimension.")
    metric: str = setting(
        "TANU_EMBED_METRIC", "l2", "l2 (raw embedding) or cosine (embedding normalised)."
    )
    onnx: OnnxSettings = field(default_factory=OnnxSettings)
    common: Common = field(default_factory=Common)

    def __post_init__(self) -> None:
        if len(self.mean_values) != 3:
            raise ValueError(f"TANU_EMBED_MEAN needs 3 numbers, got {self.mean!r}")
        if self.metric not in METRICS:
            raise ValueError(f"TANU_EMBED_METRIC must be one of {METRICS}, got {self.metric!r}")
        if self.std <= 0:
            raise ValueError("TANU_EMBED_STD must be positive")

    @property
    def mean_values(self) -> tuple[float, ...]:
        return tuple(float(x) for x in self.mean.split(","))
