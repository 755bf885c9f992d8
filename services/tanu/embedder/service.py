"""The embedder: face embedding of aligned chips on ``tanu.embed`` (queue
group ``embedder``) and the ``tanu.v1.Embedder`` gRPC service. Chips of
concurrent requests are micro-batched into one onnxruntime run; a lone
request goes straight through (the batcher waits only under load).

The model is configuration (``EmbedderConfig``): file, chip size,
normalisation, alignment template, output dimension, metric and model id;
every template it returns carries that model id.

The embedder never decodes an image: the detector decoded it and cut the
chips (``tanu.face.chips``), and they are all this service receives, so
the image crosses the bus once. Every chip is checked strictly before it
costs anything: this embedder's template and side, and exactly
side * side * 3 bytes; a chip is then a view of the request's bytes (no
copy) until the batch is stacked for the model. Requests are admitted by
cost (chip pixels), fairly per tenant."""

from __future__ import annotations

import asyncio
import time

import numpy as np

from tanu.core import errors, logs, natsnames, vectors
from tanu.core.config import EmbedderConfig
from tanu.core.metrics import Metrics
from tanu.core.model_service import ModelService
from tanu.face import chips
from tanu.face.embedding import Embedder
from tanu.v1 import common_pb2, embedder_pb2, embedder_pb2_grpc

log = logs.get(__name__)

MAX_CHIPS = 64
INLINE_MAX_S = 0.05  # the longest a lone chip may hold the event loop


class EmbedderService(ModelService):
    name = "embedder"

    def __init__(self, config: EmbedderConfig, metrics: Metrics | None = None) -> None:
        self.config = config
        self.embedder = Embedder(config)
        self._side = config.input_size
        self._bytes = chips.chip_bytes(config.input_size)
        self._last_batch = 0  # the size of the last batch run
        self._inline_s = 0.0  # how long the last batch run inline took
        super().__init__(config.common, config.onnx, metrics, model=config.model_id,
                         run_batch=lambda items: list(self.embedder.run(np.stack(items))))  # fmt: skip

    async def _batch(self, items: list[np.ndarray]):
        """A lone chip on an idle embedder runs here, on the event loop's
        thread: a batch of one has nothing to overlap with, and two thread
        hops (to the model thread and back) cost more than the loop is
        blocked. Larger batches (under load), and every batch of a model
        slower than ``INLINE_MAX_S`` a face, run on the model thread; a lone
        chip timed there again decides the next (one slow run, a stalled
        machine, does not keep lone chips off the loop for good)."""
        if len(items) == 1 and self._last_batch <= 1 and self._inline_s <= INLINE_MAX_S:
            self._last_batch = 1
            start = time.perf_counter()
            out = self._run_batch(items)
            self._inline_s = time.perf_counter() - start
            self.metrics.inference_duration.labels(self._model).observe(self._inline_s)
            return out
        self._last_batch = len(items)
        start = time.perf_counter()
        out = await super()._batch(items)
        if len(items) == 1:
            self._inline_s = time.perf_counter() - start
        return out

    def _parse(self, req: embedder_pb2.EmbedRequest) -> list[np.ndarray]:
        """The request's chips as (side, side, 3) uint8 views, or InvalidArgument."""
        n = len(req.chips)
        if not n:
            raise errors.InvalidArgument(
                "no chips to embed: pass the detector's face chips (DetectRequest.chips)"
            )
        if n > MAX_CHIPS:
            raise errors.InvalidArgument(f"{n} chips in one request; the limit is {MAX_CHIPS}")
        tpl, side, size = self.config.template, self._side, self._bytes
        out = []
        for i, c in enumerate(req.chips):
            if c.template != tpl or c.side != side:
                raise errors.InvalidArgument(
                    f"chips[{i}] is aligned to {c.template[:40] or '(none)'!r} at {c.side} px; this "
                    f"embedder's model takes {tpl!r} at {side} px (TANU_EMBED_TEMPLATE and "
                    "TANU_EMBED_INPUT_SIZE must agree between detector and embedder)"
                )
            if len(c.pixels) != size:
                raise errors.InvalidArgument(
                    f"chips[{i}] has {len(c.pixels)} bytes; a {side}x{side}x3 uint8 RGB chip "
                    f"has {size}"
                )
            out.append(chips.from_bytes(c.pixels, side))
        return out

    async def embed(self, req: embedder_pb2.EmbedRequest) -> embedder_pb2.EmbedResponse:
        items = self._parse(req)
        async with self.admission.admit(req.tenant, len(items) * self._side * self._side):
            if len(items) == 1:
                embs = [await self.batcher.submit(items[0])]
            else:
                embs = await asyncio.gather(*(self.batcher.submit(c) for c in items))
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
