"""The settings every service shares: the gallery layout, which every
service of a cluster must agree on, and ``Common`` (NATS, gRPC, TLS, metrics,
logs, deadlines, the event stream)."""

from __future__ import annotations

from dataclasses import dataclass, field

from tanu.core._settings import setting

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
    nats_user: str = setting(
        "TANU_NATS_USER", "", "NATS user (the service's role); empty: the role's own name."
    )
    nats_password: str = setting(
        "TANU_NATS_PASSWORD", "", "NATS password (prefer TANU_NATS_PASSWORD_FILE)."
    )
    nats_password_file: str = setting(
        "TANU_NATS_PASSWORD_FILE", "", "File holding the NATS password (a mounted Secret)."
    )
    nats_credentials_dir: str = setting(
        "TANU_NATS_CREDENTIALS_DIR",
        "",
        "Folder of <role>.password files (tanu up, tests): each service reads its role's.",
    )
    nats_tls_ca_file: str = setting(
        "TANU_NATS_TLS_CA_FILE", "", "CA bundle (PEM) the NATS server is checked against; TLS on."
    )
    nats_tls_cert_file: str = setting(
        "TANU_NATS_TLS_CERT_FILE", "", "Client certificate (PEM) for NATS mutual TLS."
    )
    nats_tls_key_file: str = setting("TANU_NATS_TLS_KEY_FILE", "", "Its private key (PEM).")
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
    allow_plaintext_tokens: bool = setting(
        "TANU_ALLOW_PLAINTEXT_TOKENS",
        False,
        "Accept bearer tokens over plaintext from other machines (only behind a TLS-terminating "
        "proxy or mesh); by default a plaintext server accepts them from loopback only.",
    )
    metrics_host: str = setting(
        "TANU_METRICS_HOST", "", "Interface /metrics binds; empty: TANU_GRPC_HOST's."
    )
    metrics_port: int = setting(
        "TANU_METRICS_PORT", -1, "Prometheus port; -1 disables, 0 picks a free one."
    )
    log_level: str = setting("TANU_LOG_LEVEL", "info", "Log level: debug, info, warning, error.")
    log_pseudonym_key_file: str = setting(
        "TANU_LOG_PSEUDONYM_KEY_FILE",
        "",
        "Key (file) of the keyed hash that stands for subject ids in logs; random per process when unset.",
    )
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
