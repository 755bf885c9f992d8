"""The detector: MTCNN face detection, 5 landmarks and quality, on
``tanu.detect`` (queue group ``detector``) and the ``tanu.v1.Detector`` gRPC
service. Concurrent requests are micro-batched: R-Net and O-Net run once
for the faces of every image in the batch.

An image's work is bounded by its cost, not only by its pixel count: the
size is read from the header, the request is admitted by that cost, fairly
per tenant (``ModelService.admission``), and an image whose pyramid would
exceed ``TANU_DETECT_MAX_PYRAMID_PIXELS`` is decoded reduced (JPEG by the
decoder itself). Boxes, landmarks and face sizes are reported in the
original image's pixels, so the embedder aligns on the image it is sent."""

from __future__ import annotations

import asyncio

import numpy as np

from tanu.core import logs, natsnames
from tanu.core.config import DetectorConfig
from tanu.core.metrics import Metrics
from tanu.core.model_service import ModelService
from tanu.face import images, models, quality
from tanu.face.mtcnn import MTCNN, Detections
from tanu.v1 import detector_pb2, detector_pb2_grpc

log = logs.get(__name__)


class DetectorService(ModelService):
    name = "detector"

    def __init__(self, config: DetectorConfig, metrics: Metrics | None = None) -> None:
        onnx = config.onnx
        self.config = config
        images.quiet_decoder_warnings()
        self.mtcnn = MTCNN(
            models.mtcnn_dir(),
            providers=models.providers(onnx.provider),
            intra_op_threads=models.cpu_threads(onnx.intra_threads),
            min_face=config.min_face_px,
            thresholds=config.threshold_values,
            max_pyramid_pixels=config.max_pyramid_pixels,
        )
        super().__init__(config.common, onnx, metrics, model="mtcnn", run_batch=self.mtcnn.detect)

    def _decode(self, data: bytes, width: int, height: int) -> images.Decoded:
        """Decoded no larger than the detector's pyramid bound needs."""
        return images.decode_reduced(
            data, self.config.onnx.max_pixels, self.mtcnn.fit(height, width)
        )

    def _fine(self, data: bytes, image: images.Decoded, sizes: np.ndarray) -> images.Decoded:
        """The image to measure quality on: ``image``, or, where a reported
        face (``sizes``, original pixels) is below the sharpness crop's side
        in it only because it was reduced, the image decoded again as large
        as the smallest such face needs (once per request, within the pixel
        limit), so sharpness means what it does on the original. Faces of
        at least the crop's side in ``image`` are measured there."""
        s = min(image.scale)
        side = quality.SHARPNESS_SIDE
        need = sizes[(sizes * s < side) & (sizes > 0)]
        if s >= 1.0 or need.size == 0:
            return image
        # Twice the crop's side: the crop is then resampled down, as it is
        # from an original of that size, not interpolated.
        r = min(1.0, 2 * side / float(need.min()))
        if r <= s * 1.01:
            return image
        return images.decode_reduced(data, self.config.onnx.max_pixels, r)

    def _faces(
        self, data: bytes, image: images.Decoded, det: Detections, max_faces: int
    ) -> detector_pb2.DetectResponse:
        """The reply, in the original image's pixels."""
        sx, sy = image.scale
        boxes = det.boxes / np.array([sx, sy, sx, sy], np.float32)
        marks = det.landmarks / np.array([sx, sy], np.float32)
        reply = detector_pb2.DetectResponse(width=image.width, height=image.height)
        areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
        order = np.argsort(-areas, kind="stable")  # largest first
        if max_faces:
            order = order[:max_faces]
        sides = np.minimum(boxes[order, 2] - boxes[order, 0], boxes[order, 3] - boxes[order, 1])
        fine = self._fine(data, image, sides)
        for i in order:
            q = quality.assess(fine.pixels, boxes[i], marks[i], fine.scale)
            x1, y1, x2, y2 = (float(v) for v in boxes[i])
            reply.faces.add(
                box=detector_pb2.Box(x1=x1, y1=y1, x2=x2, y2=y2),
                landmarks=[detector_pb2.Point(x=float(x), y=float(y)) for x, y in marks[i]],
                score=float(det.scores[i]),
                quality=detector_pb2.Quality(
                    face_size_px=q.face_size_px,
                    sharpness=q.sharpness,
                    pose=q.pose,
                    exposure=q.exposure,
                ),
            )
        return reply

    async def detect(self, req: detector_pb2.DetectRequest) -> detector_pb2.DetectResponse:
        # The header is read off the event loop (a JPEG's markers are walked),
        # but not on the decoding thread, which admission shares out.
        w, h = await asyncio.to_thread(images.measure, req.image, self.config.onnx.max_pixels)
        async with self.admission.admit(req.tenant, w * h):
            image = await self.on_cpu(self._decode, req.image, w, h)
            det = await self.batcher.submit(image.pixels)
            reply = await self.on_cpu(self._faces, req.image, image, det, req.max_faces)
        log.debug("detected", faces=len(reply.faces), width=reply.width, height=reply.height)
        return reply

    async def start(self) -> DetectorService:
        await self.serve(
            "tanu-detector", natsnames.DETECT, natsnames.DETECT_QUEUE, detector_pb2.DetectRequest, self.detect,
            detector_pb2_grpc.add_DetectorServicer_to_server, DetectorServicer(self), "tanu.v1.Detector",
        )  # fmt: skip
        return self


class DetectorServicer(detector_pb2_grpc.DetectorServicer):
    def __init__(self, svc: DetectorService) -> None:
        self._svc = svc

    async def Detect(self, request, context):
        return await self._svc.detect(request)
