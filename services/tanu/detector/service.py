"""The detector: MTCNN face detection, 5 landmarks and quality, on
``tanu.detect`` (queue group ``detector``) and the ``tanu.v1.Detector`` gRPC
service. Concurrent requests are micro-batched: R-Net and O-Net run once
for the faces of every image in the batch."""

from __future__ import annotations

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
        )
        super().__init__(config.common, onnx, metrics, model="mtcnn", run_batch=self.mtcnn.detect)

    def _decode(self, data: bytes) -> np.ndarray:
        return images.decode(data, self.config.onnx.max_pixels)

    @staticmethod
    def _faces(image: np.ndarray, det: Detections, max_faces: int) -> detector_pb2.DetectResponse:
        h, w = image.shape[:2]
        reply = detector_pb2.DetectResponse(width=w, height=h)
        areas = (det.boxes[:, 2] - det.boxes[:, 0]) * (det.boxes[:, 3] - det.boxes[:, 1])
        order = np.argsort(-areas, kind="stable")  # largest first
        if max_faces:
            order = order[:max_faces]
        for i in order:
            q = quality.assess(image, det.boxes[i], det.landmarks[i])
            x1, y1, x2, y2 = (float(v) for v in det.boxes[i])
            reply.faces.add(
                box=detector_pb2.Box(x1=x1, y1=y1, x2=x2, y2=y2),
                landmarks=[detector_pb2.Point(x=float(x), y=float(y)) for x, y in det.landmarks[i]],
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
        image = await self.on_cpu(self._decode, req.image)
        det = await self.batcher.submit(image)
        reply = await self.on_cpu(self._faces, image, det, req.max_faces)
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
