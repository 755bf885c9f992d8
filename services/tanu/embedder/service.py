"""The embedder: 5-point alignment and face embedding on ``tanu.embed``
(queue group ``embedder``) and the ``tanu.v1.Embedder`` gRPC service.
Faces of concurrent requests are micro-batched into one onnxruntime run.

The model is configuration (``EmbedderConfig``): file, chip size,
normalisation, alignment template, output dimension, metric and model id;
every template it returns carries that model id."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np

from tanu.core import errors, logs, subjects, vectors
from tanu.core.config import EmbedderConfig
from tanu.core.metrics import Metrics
from tanu.face import align, images, models
from tanu.face.service import ModelService
from tanu.v1 import common_pb2, embedder_pb2, embedder_pb2_grpc

log = logs.get(__name__)

MAX_FACES = 64


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
        align.template(config.template, config.input_size)  # fails early on an unknown template
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

    def chip(self, image: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
        return align.align(image, landmarks, self.config.template, self.config.input_size)

    def run(self, chips: np.ndarray) -> np.ndarray:
        """(n, S, S, 3) uint8 chips → (n, dim) float32 embeddings."""
        x = (chips.transpose(0, 3, 1, 2).astype(np.float32) - self.mean) / self.std
        out = self.session.run(None, {self.input_name: x})[0].astype(np.float32)
        if self.config.metric == "cosine":
            out = vectors.normalise(out).astype(np.float32)
        return out


class EmbedderService(ModelService):
    name = "embedder"

    def __init__(self, config: EmbedderConfig, metrics: Metrics | None = None) -> None:
        self.config = config
        self.embedder = Embedder(config)
        images.quiet_decoder_warnings()
        super().__init__(config.common, config.onnx, metrics, model=config.model_id,
                         run_batch=lambda chips: list(self.embedder.run(np.stack(chips))))  # fmt: skip

    def _chips(self, data: bytes, faces) -> list[np.ndarray]:
        image = images.decode(data, self.config.onnx.max_pixels)
        chips = []
        for i, face in enumerate(faces):
            if len(face.landmarks) != 5:
                raise errors.InvalidArgument(
                    f"faces[{i}] has {len(face.landmarks)} landmarks; 5 are needed"
                )
            pts = np.array([[p.x, p.y] for p in face.landmarks], dtype=np.float64)
            if not np.isfinite(pts).all():
                raise errors.InvalidArgument(
                    f"faces[{i}] has landmarks that are not finite numbers"
                )
            chips.append(self.embedder.chip(image, pts))
        return chips

    async def embed(self, req: embedder_pb2.EmbedRequest) -> embedder_pb2.EmbedResponse:
        if not req.faces:
            raise errors.InvalidArgument(
                "no faces to embed: pass the detector's faces with their landmarks"
            )
        if len(req.faces) > MAX_FACES:
            raise errors.InvalidArgument(
                f"{len(req.faces)} faces in one request; the limit is {MAX_FACES}"
            )
        chips = await self.on_cpu(self._chips, req.image, req.faces)
        embs = await asyncio.gather(*(self.batcher.submit(c) for c in chips))
        mid = self.config.model_id
        return embedder_pb2.EmbedResponse(
            templates=[common_pb2.Template(vector=vectors.to_bytes(e), model_id=mid) for e in embs]
        )

    async def start(self) -> EmbedderService:
        await self.serve(
            "tanu-embedder", subjects.EMBED, subjects.EMBED_QUEUE, embedder_pb2.EmbedRequest, self.embed,
            embedder_pb2_grpc.add_EmbedderServicer_to_server, EmbedderServicer(self), "tanu.v1.Embedder",
        )  # fmt: skip
        return self


class EmbedderServicer(embedder_pb2_grpc.EmbedderServicer):
    def __init__(self, svc: EmbedderService) -> None:
        self._svc = svc

    async def Embed(self, request, context):
        return await self._svc.embed(request)
