"""The embedder: 5-point alignment and face embedding on ``tanu.embed``
(queue group ``embedder``) and the ``tanu.v1.Embedder`` gRPC service.
Faces of concurrent requests are micro-batched into one onnxruntime run.

The model is configuration (``EmbedderConfig``): file, chip size,
normalisation, alignment template, output dimension, metric and model id;
every template it returns carries that model id.

Requests are admitted by cost (the image's pixels from its header), fairly
per tenant. The image is decoded no larger than its faces need: reduced so
that the smallest face keeps 2 image pixels per chip pixel (JPEG by the
decoder itself), its landmarks scaled with it; a face larger than that is
resampled down before alignment instead of being aliased by it."""

from __future__ import annotations

import asyncio

import numpy as np

from tanu.core import errors, logs, natsnames, vectors
from tanu.core.config import EmbedderConfig
from tanu.core.metrics import Metrics
from tanu.core.model_service import ModelService
from tanu.face import align, images
from tanu.face.embedding import Embedder
from tanu.v1 import common_pb2, embedder_pb2, embedder_pb2_grpc

log = logs.get(__name__)

MAX_FACES = 64
PIXELS_PER_CHIP_PIXEL = 2.0  # the resolution kept for the smallest face


def reduction(landmarks: list[np.ndarray], template: np.ndarray) -> float:
    """The factor an image can be decoded reduced by and still give every
    face (its 5 ``landmarks``) ``PIXELS_PER_CHIP_PIXEL`` per chip pixel."""
    finest = 0.0  # largest chip pixels per image pixel over the faces
    for pts in landmarks:
        m = align.similarity(pts, template)
        finest = max(finest, float(np.sqrt(abs(np.linalg.det(m[:, :2])))))
    if not finest or not np.isfinite(finest):
        return 1.0
    return float(min(1.0, max(PIXELS_PER_CHIP_PIXEL * finest, 1e-6)))


class EmbedderService(ModelService):
    name = "embedder"

    def __init__(self, config: EmbedderConfig, metrics: Metrics | None = None) -> None:
        self.config = config
        self.embedder = Embedder(config)
        self._template = align.template(config.template, config.input_size)
        images.quiet_decoder_warnings()
        super().__init__(config.common, config.onnx, metrics, model=config.model_id,
                         run_batch=lambda chips: list(self.embedder.run(np.stack(chips))))  # fmt: skip

    def _chips(self, data: bytes, faces) -> list[np.ndarray]:
        points = []
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
            points.append(pts)
        r = reduction(points, self._template)
        image = images.decode_reduced(data, self.config.onnx.max_pixels, r)
        scale = np.array(image.scale)
        return [self.embedder.chip(image.pixels, pts * scale) for pts in points]

    async def embed(self, req: embedder_pb2.EmbedRequest) -> embedder_pb2.EmbedResponse:
        if not req.faces:
            raise errors.InvalidArgument(
                "no faces to embed: pass the detector's faces with their landmarks"
            )
        if len(req.faces) > MAX_FACES:
            raise errors.InvalidArgument(
                f"{len(req.faces)} faces in one request; the limit is {MAX_FACES}"
            )
        w, h = await asyncio.to_thread(images.measure, req.image, self.config.onnx.max_pixels)
        async with self.admission.admit(req.tenant, w * h):
            chips = await self.on_cpu(self._chips, req.image, req.faces)
        embs = await asyncio.gather(*(self.batcher.submit(c) for c in chips))
        mid = self.config.model_id
        return embedder_pb2.EmbedResponse(
            templates=[common_pb2.Template(vector=vectors.to_bytes(e), model_id=mid) for e in embs]
        )

    async def start(self) -> EmbedderService:
        await self.serve(
            "tanu-embedder", natsnames.EMBED, natsnames.EMBED_QUEUE, embedder_pb2.EmbedRequest, self.embed,
            embedder_pb2_grpc.add_EmbedderServicer_to_server, EmbedderServicer(self), "tanu.v1.Embedder",
        )  # fmt: skip
        return self


class EmbedderServicer(embedder_pb2_grpc.EmbedderServicer):
    def __init__(self, svc: EmbedderService) -> None:
        self._svc = svc

    async def Embed(self, request, context):
        return await self._svc.embed(request)
