"""The model services' settings: how ONNX models run, the face detector's
and the face recogniser's."""

from __future__ import annotations

from dataclasses import dataclass, field

from tanu.core._common_config import METRICS, Common
from tanu.core._settings import setting


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
    max_pixels_in_flight: int = setting(
        "TANU_MODEL_MAX_PIXELS_IN_FLIGHT",
        80_000_000,
        "Most image pixels (width x height from the header) being worked on at once; "
        "later requests wait, admitted fairly per tenant by cost.",
    )
    max_queued_per_tenant: int = setting(
        "TANU_MODEL_MAX_QUEUED_PER_TENANT",
        64,
        "Most requests of one tenant waiting for admission; beyond, RESOURCE_EXHAUSTED.",
    )

    def __post_init__(self) -> None:
        if self.max_pixels_in_flight < 1:
            raise ValueError("TANU_MODEL_MAX_PIXELS_IN_FLIGHT must be at least 1")
        if self.max_queued_per_tenant < 1:
            raise ValueError("TANU_MODEL_MAX_QUEUED_PER_TENANT must be at least 1")


@dataclass(frozen=True)
class DetectorConfig:
    """The face detector (MTCNN)."""

    min_face_px: int = setting(
        "TANU_DETECT_MIN_FACE_PX", 20, "Smallest face searched for, in pixels."
    )
    thresholds: str = setting(
        "TANU_DETECT_THRESHOLDS", "0.6,0.7,0.7", "P-Net, R-Net, O-Net score thresholds."
    )
    max_pyramid_pixels: int = setting(
        "TANU_DETECT_MAX_PYRAMID_PIXELS",
        4_000_000,
        "Most pixels P-Net runs over per image, all scales together; a larger image is "
        "decoded reduced (its smallest face found grows accordingly).",
    )
    # The chips the detector cuts for the embedder: the recogniser's own
    # settings (read from the same variables as EmbedderConfig's); the
    # embedder refuses chips of another template or side.
    chip_template: str = setting(
        "TANU_EMBED_TEMPLATE", "dlib-150", "Alignment template: dlib-150 or arcface-112."
    )
    chip_size: int = setting(
        "TANU_EMBED_INPUT_SIZE", 150, "Side of the square aligned chip, in pixels."
    )
    onnx: OnnxSettings = field(default_factory=OnnxSettings)
    common: Common = field(default_factory=Common)

    def __post_init__(self) -> None:
        if not 16 <= self.chip_size <= 1024:
            raise ValueError("TANU_EMBED_INPUT_SIZE must be 16 to 1024 pixels")
        if self.max_pyramid_pixels < 0:
            raise ValueError("TANU_DETECT_MAX_PYRAMID_PIXELS must be 0 (unbounded) or more")

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
