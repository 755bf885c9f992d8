"""The embedder: 5-point alignment and face embedding on ``tanu.embed``
(queue group ``embedder``) and the ``tanu.v1.Embedder`` gRPC service.
Faces of concurrent requests are micro-batched into one onnxruntime run.

The model is configuration (``EmbedderConfig``): file, chip size,
normalisation, alignment template, output dimension, metric and model id;
every template it returns carries that model id."""

from __future__ import annotations

import asyncio

import numpy as np

from tanu.core import errors, logs, natsnames, vectors
from tanu.core.config import EmbedderConfig
from tanu.core.metrics import Metrics
from tanu.core.model_service import ModelService
from tanu.face import images
from tanu.face.embedding import Embedder
from tanu.v1 import common_pb2, embedder_pb2, embedder_pb2_grpc

log = logs.get(__name__)

MAX_FACES = 64


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
            "tanu-embedder", natsnames.EMBED, natsnames.EMBED_QUEUE, embedder_pb2.EmbedRequest, self.embed,
            embedder_pb2_grpc.add_EmbedderServicer_to_server, EmbedderServicer(self), "tanu.v1.Embedder",
        )  # fmt: skip
        return self


class EmbedderServicer(embedder_pb2_grpc.EmbedderServicer):
    def __init__(self, svc: EmbedderService) -> None:
        self._svc = svc

    async def Embed(self, request, context):
        return await self._svc.embed(request)
