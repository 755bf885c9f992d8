"""The store's, the searchers' and the gateway's settings."""

from __future__ import annotations

from dataclasses import dataclass, field

from tanu.core._common_config import Common
from tanu.core._settings import setting


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
    lockout_delay_ms: int = setting(
        "TANU_LOCKOUT_DELAY_MS",
        1000,
        "The first lockout delay in ms (doubling with each further failure).",
    )
    audit_checkpoint_s: float = setting(
        "TANU_AUDIT_CHECKPOINT_S", 10.0, "Seconds between signed audit checkpoints."
    )
    dedup_window_s: float = setting(
        "TANU_DEDUP_WINDOW_S",
        300.0,
        "Enrolments compared exactly in the store besides the indexed gallery: those of the last "
        "this many seconds (longer than the indexing lag).",
    )
    idempotency_ttl_s: float = setting(
        "TANU_IDEMPOTENCY_TTL_S", 86400.0, "How long a write's idempotency key is kept."
    )
    relay_batch: int = setting("TANU_RELAY_BATCH", 256, "Outbox events published per relay round.")
    relay_poll_s: float = setting(
        "TANU_RELAY_POLL_S", 1.0, "Relay poll interval when no write wakes it."
    )
    relay_enabled: bool = setting(
        "TANU_RELAY_ENABLED", True, "Run the outbox relay in this process."
    )
    relay_flush_s: float = setting(
        "TANU_RELAY_FLUSH_S",
        2.0,
        "How long an enrolment's reply waits for its event to reach the stream (read-your-writes).",
    )
    max_queue: int = setting(
        "TANU_STORE_MAX_QUEUE",
        256,
        "Most database jobs waiting in one store process before it refuses new enrolments and "
        "puts with RESOURCE_EXHAUSTED (nothing written; retry later). Keep it below what the "
        "store serves within TANU_REQUEST_TIMEOUT_S; 0: never refuse.",
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
    bulk_chunk: int = setting(
        "TANU_SEARCH_BULK_CHUNK",
        0,
        "Bulk searches (enrolment de-duplication) run at most this many queries per index "
        "search, so an Identify waits for at most one such chunk; 0: a whole bulk batch at once "
        "(64 at 2M: Identify p99 during de-duplication 2.4 -> 1.4 s, de-duplication 25% slower).",
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
    ivf_nprobe: int = setting(
        "TANU_IVF_NPROBE",
        64,
        "ivf: lists searched per query; raise it with TANU_IVF_NLIST (with TANU_IVF_RERANK=150, "
        "through the services: nlist 2828, 500k a partition: recall@10 0.997; nlist 4096, "
        "2.5M a partition: 0.984 at 64, 0.994 at 128; RESULTS.md, national_services).",
    )
    ivf_rerank: int = setting(
        "TANU_IVF_RERANK",
        150,
        "ivf: candidates re-ranked exactly, as a multiple of top_k (40 reaches recall@10 0.99 "
        "up to about 400k a partition, 150 at 5M: the re-rank must grow with the partition).",
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
    dedup_certain_threshold: float = setting(
        "TANU_DEDUP_CERTAIN_THRESHOLD",
        0.0,
        "De-duplication score beyond which an enrolment is refused without a case (0: never).",
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
    auth_failure_rate_per_s: float = setting(
        "TANU_AUTH_FAILURE_RATE_PER_S",
        5.0,
        "Failed authentications a peer (address) may make per second before RESOURCE_EXHAUSTED.",
    )
    auth_failure_burst: int = setting(
        "TANU_AUTH_FAILURE_BURST", 20, "Failed authentications a peer may make in a burst."
    )
    auth_failure_audit_s: float = setting(
        "TANU_AUTH_FAILURE_AUDIT_S",
        10.0,
        "Failed authentications are audited as one entry per peer and reason per this interval.",
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
    freshness_wait_s: float = setting(
        "TANU_FRESHNESS_WAIT_S",
        1.0,
        "How long a search waits for a partition behind the acknowledged writes before "
        "reporting it missing (read-your-writes; 0 turns the check off).",
    )
    dependency_check_s: float = setting(
        "TANU_DEPENDENCY_CHECK_S",
        2.0,
        "How often the gateway asks whether a store answers (health NOT_SERVING when none does).",
    )
    common: Common = field(default_factory=Common)
