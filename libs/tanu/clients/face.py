"""The face pipeline's operations, declared once, and its typed client over
NATS: the detectors (``tanu.detect``, queue group ``detector``) find faces
and measure their quality, the embedders (``tanu.embed``, queue group
``embedder``) turn an aligned face into a template."""

from __future__ import annotations

from nats.aio.client import Client as NATS

from tanu.core import bus, natsnames
from tanu.core.metrics import Metrics
from tanu.v1 import detector_pb2, embedder_pb2

from .operations import Operation, Q, R


class FaceClient:
    """Detection and embedding; each attribute is the typed call on an
    instance and the ``Operation`` (whose name is the full subject) on the class."""

    detect = Operation(
        natsnames.DETECT, detector_pb2.DetectRequest, detector_pb2.DetectResponse, "Detect"
    )
    embed = Operation(
        natsnames.EMBED, embedder_pb2.EmbedRequest, embedder_pb2.EmbedResponse, "Embed"
    )

    def __init__(self, nc: NATS, timeout_s: float, metrics: Metrics | None = None) -> None:
        self._nc = nc
        self.timeout_s = timeout_s
        self._metrics = metrics

    async def call(self, op: Operation[Q, R], request: Q, timeout: float | None = None) -> R:
        return await bus.request(
            self._nc, op.name, request, op.reply,
            self.timeout_s if timeout is None else timeout,
            operation=op.attr, metrics=self._metrics,
        )  # fmt: skip
