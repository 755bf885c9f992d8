"""The face embedding model and its pre-processing (alignment, normalisation),
without transport: the embedder service, the evaluation and the benchmarks
run it."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tanu.core import vectors
from tanu.core.config import EmbedderConfig

from . import align, chips, models
from .images import Decoded


class Embedder:
    """The model and its pre-processing, without transport (also used by the benchmark)."""

    def __init__(self, config: EmbedderConfig) -> None:
        self.config = config
        path = (
            Path(config.model_file)
            if config.model_file
            else models.dlib_onnx_path(config.onnx.model_dir)
        )
        if not config.model_file:
            models.verify(path, models.DLIB_ONNX_SHA256)
        elif not path.exists():
            raise models.ModelError(f"TANU_EMBED_MODEL_FILE={path} does not exist")
        self.session = models.session(path, config.onnx.provider, config.onnx.intra_threads)
        self.input_name = self.session.get_inputs()[0].name
        self.mean = np.asarray(config.mean_values, dtype=np.float32).reshape(1, 3, 1, 1)
        self.std = np.float32(config.std)
        # The template's points in chip pixels (fails early on an unknown template).
        self.points = align.template(config.template, config.input_size)
        shape = self.session.get_inputs()[0].shape  # e.g. ['N', 3, 150, 150]
        fixed = [d for d in shape[2:] if isinstance(d, int)]
        if fixed and fixed != [config.input_size] * len(fixed):
            raise models.ModelError(
                f"model {path.name} takes {shape[2:]} chips, but TANU_EMBED_INPUT_SIZE={config.input_size}"
            )
        # A batch of 2: micro-batching needs a model whose batch dimension is free.
        try:
            probe = self.run(np.zeros((2, config.input_size, config.input_size, 3), dtype=np.uint8))
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own types
            raise models.ModelError(
                f"model {path.name} cannot run a batch of 2 faces: {exc}"
            ) from None
        if probe.shape != (2, config.output_dim):
            raise models.ModelError(
                f"model {path.name} outputs {probe.shape[1:]} per face, but TANU_EMBED_DIM={config.output_dim}"
            )

    def chip(self, image: np.ndarray | Decoded, landmarks: np.ndarray) -> np.ndarray:
        """The aligned chip of the face with these 5 ``landmarks`` (original
        pixels), cut as the detector cuts it (``chips.cut``)."""
        if not isinstance(image, Decoded):
            image = Decoded(image, width=image.shape[1], height=image.shape[0])
        return chips.cut(image, landmarks, self.points, self.config.input_size)

    def run(self, batch: np.ndarray) -> np.ndarray:
        """(n, S, S, 3) uint8 chips → (n, dim) float32 embeddings."""
        x = (batch.transpose(0, 3, 1, 2).astype(np.float32) - self.mean) / self.std
        out = self.session.run(None, {self.input_name: x})[0].astype(np.float32)
        if self.config.metric == "cosine":
            out = vectors.normalise(out).astype(np.float32)
        return out
