"""The face pipeline's operations, declared once, and its typed client over
NATS: the detectors (``tanu.detect``, queue group ``detector``) find faces
and measure their quality, the embedders (``tanu.embed``, queue group
``embedder``) turn an aligned face into a template."""

from __future__ import annotations

from tanu.core import natsnames
from tanu.v1 import detector_pb2, embedder_pb2

from .operations import BusClient, Operation


class FaceClient(BusClient):
    """Detection and embedding; each attribute is the typed call on an
    instance and the ``Operation`` (whose name is the full subject) on the class."""

    detect = Operation(
        natsnames.DETECT, detector_pb2.DetectRequest, detector_pb2.DetectResponse, "Detect"
    )
    embed = Operation(
        natsnames.EMBED, embedder_pb2.EmbedRequest, embedder_pb2.EmbedResponse, "Embed"
    )

    def label(self, op: Operation) -> str:
        return op.attr
