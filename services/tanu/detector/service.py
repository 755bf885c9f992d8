"""The detector: MTCNN face detection, 5 landmarks, quality and the aligned
chips the embedder takes, on ``tanu.detect`` (queue group ``detector``) and
the ``tanu.v1.Detector`` gRPC service. Concurrent requests are
micro-batched: R-Net and O-Net run once for the faces of every image in the
batch.

An image's work is bounded by its cost, not only by its pixel count: the
size is read from the header, the request is admitted by that cost, fairly
per tenant (``ModelService.admission``), and an image whose pyramid would
exceed ``TANU_DETECT_MAX_PYRAMID_PIXELS`` is decoded reduced (JPEG by the
decoder itself). Boxes, landmarks and face sizes are reported in the
original image's pixels.

This is the only service that decodes the image: the chips it returns
(``tanu.face.chips``) are what the embedder embeds, so the image crosses the
bus once. A chip is cut from the pixels already decoded; only a face that
the pyramid's reduction left with too little resolution makes the image be
decoded again, once per request, as large as the faces need (and that
decoding also serves the quality measures)."""

from __future__ import annotations

import asyncio

import numpy as np

from tanu.core import errors, logs, natsnames
from tanu.core.config import DetectorConfig
from tanu.core.metrics import Metrics
from tanu.core.model_service import ModelService
from tanu.face import align, chips, images, models, quality
from tanu.face.mtcnn import MTCNN, Detections
from tanu.v1 import detector_pb2, detector_pb2_grpc

log = logs.get(__name__)

MAX_CHIPS = 16  # chips one request may ask for (each side * side * 3 bytes)
MAX_CHIP_BYTES = 4 << 20  # and their bytes together, well within the bus's message size


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
        self._chip_template = align.template(config.chip_template, config.chip_size)
        super().__init__(config.common, onnx, metrics, model="mtcnn", run_batch=self.mtcnn.detect)

    def _decode(self, data: bytes, width: int, height: int) -> images.Decoded:
        """Decoded no larger than the detector's pyramid bound needs."""
        return images.decode_reduced(
            data, self.config.onnx.max_pixels, self.mtcnn.fit(height, width)
        )

    def _finer(self, data: bytes, image: images.Decoded, r: float) -> images.Decoded:
        """``image``, or the image decoded again at ``r`` where ``image`` is
        reduced further than that."""
        if min(image.scale) >= r * 0.99:
            return image
        return images.decode_reduced(data, self.config.onnx.max_pixels, min(1.0, r))

    def _fine_factor(self, image: images.Decoded, sizes: np.ndarray) -> float:
        """The reduction quality needs: where a reported face (``sizes``,
        original pixels) is below the sharpness crop's side in ``image``
        only because it was reduced, as large as the smallest such face
        needs, so sharpness means what it does on the original. Faces of at
        least the crop's side in ``image`` are measured there."""
        s = min(image.scale)
        side = quality.SHARPNESS_SIDE
        need = sizes[(sizes * s < side) & (sizes > 0)]
        if s >= 1.0 or need.size == 0:
            return 0.0
        # Twice the crop's side: the crop is then resampled down, as it is
        # from an original of that size, not interpolated.
        r = min(1.0, 2 * side / float(need.min()))
        return r if r > s * 1.01 else 0.0

    def _faces(
        self, req: detector_pb2.DetectRequest, image: images.Decoded, det: Detections
    ) -> detector_pb2.DetectResponse:
        """The reply, in the original image's pixels, with the chips asked for."""
        sx, sy = image.scale
        boxes = det.boxes / np.array([sx, sy, sx, sy], np.float32)
        marks = det.landmarks / np.array([sx, sy], np.float32)
        reply = detector_pb2.DetectResponse(width=image.width, height=image.height)
        areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
        order = np.argsort(-areas, kind="stable")  # largest first
        if req.max_faces:
            order = order[: req.max_faces]
        chipped = [i for i in order if det.scores[i] >= req.chip_min_score][: req.chips]
        sides = np.minimum(boxes[order, 2] - boxes[order, 0], boxes[order, 3] - boxes[order, 1])
        # One more decoding at most: as fine as the chips and the quality
        # measures need, where the pyramid's reduction left too little.
        r_chips = (
            chips.resolution([marks[i] for i in chipped], self._chip_template) if chipped else 0.0
        )
        r_fine = self._fine_factor(image, sides)
        finer = self._finer(req.image, image, max(r_chips, r_fine))
        fine = finer if r_fine else image
        tpl, side = self.config.chip_template, self.config.chip_size
        for i in order:
            q = quality.assess(fine.pixels, boxes[i], marks[i], fine.scale)
            x1, y1, x2, y2 = (float(v) for v in boxes[i])
            face = reply.faces.add(
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
            if i in chipped:
                chip = chips.cut(finer, marks[i], self._chip_template, side)
                face.chip.pixels = chip.tobytes()
                face.chip.side = side
                face.chip.template = tpl
        return reply

    async def detect(self, req: detector_pb2.DetectRequest) -> detector_pb2.DetectResponse:
        most = min(MAX_CHIPS, MAX_CHIP_BYTES // chips.chip_bytes(self.config.chip_size))
        if req.chips > most:
            raise errors.InvalidArgument(
                f"{req.chips} chips asked for in one request; the limit is {most}"
            )
        if not np.isfinite(req.chip_min_score):
            raise errors.InvalidArgument("chip_min_score is not a finite number")
        # The header is read off the event loop (a JPEG's markers are walked),
        # but not on the decoding thread, which admission shares out.
        w, h = await asyncio.to_thread(images.measure, req.image, self.config.onnx.max_pixels)
        async with self.admission.admit(req.tenant, w * h):
            image = await self.on_cpu(self._decode, req.image, w, h)
            det = await self.batcher.submit(image.pixels)
            reply = await self.on_cpu(self._faces, req, image, det)
        log.debug("detected", faces=len(reply.faces), chips=min(req.chips, len(reply.faces)),
                  width=reply.width, height=reply.height)  # fmt: skip
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
