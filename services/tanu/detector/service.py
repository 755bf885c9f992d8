"""The detector: MTCNN face detection, 5 landmarks and quality, on
``tanu.detect`` (queue group ``detector``) and the ``tanu.v1.Detector`` gRPC
service. Concurrent requests are micro-batched: R-Net and O-Net run once
for the faces of every image in the batch."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from tanu.core import bus, logs, subjects
from tanu.core.batching import MicroBatcher
from tanu.core.config import DetectorConfig
from tanu.core.metrics import Metrics
from tanu.core.server import GrpcServer, start_grpc
from tanu.face import images, models, quality
from tanu.face.mtcnn import MTCNN, Detections
from tanu.v1 import detector_pb2, detector_pb2_grpc

log = logs.get(__name__)


class DetectorService:
    def __init__(self, config: DetectorConfig, metrics: Metrics | None = None) -> None:
        self.config = config
        self.metrics = metrics or Metrics.create()
        onnx = config.onnx
        self.mtcnn = MTCNN(
            models.mtcnn_dir(),
            providers=models.providers(onnx.provider),
            intra_op_threads=models.cpu_threads(onnx.intra_threads),
            min_face=config.min_face_px,
            thresholds=config.threshold_values,
        )
        # One thread runs the models (onnxruntime parallelises inside); image
        # decoding and quality run beside it on another.
        self._model_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mtcnn")
        self._cpu_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="decode")
        self._batcher = MicroBatcher(
            self._detect_batch,
            name="detect",
            max_batch=onnx.batch_max,
            max_wait_s=onnx.batch_wait_ms / 1000,
            metrics=self.metrics,
        )
        self.grpc: GrpcServer | None = None
        self._nc = None
        self._responder: bus.Responder | None = None

    @property
    def port(self) -> int:
        assert self.grpc
        return self.grpc.port

    async def _detect_batch(self, batch: list[np.ndarray]) -> list[Detections]:
        start = time.perf_counter()
        out = await asyncio.get_running_loop().run_in_executor(
            self._model_thread, self.mtcnn.detect, batch
        )
        self.metrics.inference_duration.labels("mtcnn").observe(time.perf_counter() - start)
        return out

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
        loop = asyncio.get_running_loop()
        image = await loop.run_in_executor(self._cpu_thread, self._decode, req.image)
        det = await self._batcher.submit(image)
        reply = await loop.run_in_executor(self._cpu_thread, self._faces, image, det, req.max_faces)
        log.debug("detected", faces=len(reply.faces), width=reply.width, height=reply.height)
        return reply

    async def start(self) -> DetectorService:
        common = self.config.common
        self._nc = await bus.connect(common.nats_url, "tanu-detector")
        self._responder = bus.Responder(self._nc)
        await self._responder.serve(
            subjects.DETECT, subjects.DETECT_QUEUE, detector_pb2.DetectRequest, self.detect
        )
        self.grpc = await start_grpc(
            common,
            "detector",
            self.metrics,
            [
                (
                    detector_pb2_grpc.add_DetectorServicer_to_server,
                    DetectorServicer(self),
                    "tanu.v1.Detector",
                )
            ],
        )
        return self

    async def stop(self) -> None:
        if self.grpc:
            await self.grpc.stop(self.config.common.shutdown_grace_s)
        if self._responder:
            await self._responder.stop()
        await self._batcher.close()
        if self._nc:
            try:
                await self._nc.drain()
            except Exception:  # noqa: BLE001
                pass
        self._model_thread.shutdown(wait=True)
        self._cpu_thread.shutdown(wait=True)
        log.info("detector_stopped")


class DetectorServicer(detector_pb2_grpc.DetectorServicer):
    def __init__(self, svc: DetectorService) -> None:
        self._svc = svc

    async def Detect(self, request, context):
        return await self._svc.detect(request)
