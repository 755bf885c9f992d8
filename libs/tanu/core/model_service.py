"""What the detector and embedder services share: admission by cost, fair
per tenant (``tanu.core.fairqueue``: at most ``TANU_MODEL_MAX_PIXELS_IN_FLIGHT``
image pixels worked on at once), one thread that runs the model
(onnxruntime parallelises inside it), one beside it for decoding and
pre-processing, a micro-batcher in front of the model (a lone request on an
idle model runs in its own task, ``MicroBatcher(direct=True)``), and one NATS
subject (queue group) plus one gRPC service."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from tanu.core.batching import MicroBatcher
from tanu.core.config import Common, OnnxSettings
from tanu.core.fairqueue import FairQueue
from tanu.core.metrics import Metrics
from tanu.core.service import ServiceBase


class ModelService(ServiceBase):
    """Base of the detector and embedder: ``run_batch`` runs ``model`` over a
    micro-batch on the model thread."""

    def __init__(
        self,
        common: Common,
        onnx: OnnxSettings,
        metrics: Metrics | None,
        *,
        model: str,
        run_batch: Callable[[list[Any]], Sequence[Any]],
    ) -> None:
        super().__init__(common, metrics)
        self._model = model
        self._run_batch = run_batch
        self._model_thread = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix=f"{self.name}-model"
        )
        self._cpu_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"{self.name}-cpu")
        # Requests wait here, fairly per tenant, before they cost memory or a thread.
        self.admission = FairQueue(self.name, onnx.max_pixels_in_flight, onnx.max_queued_per_tenant)
        self.batcher = MicroBatcher(
            self._batch, name=self.name, max_batch=onnx.batch_max, max_wait_s=onnx.batch_wait_ms / 1000,
            metrics=self.metrics, direct=True,
        )  # fmt: skip

    async def _batch(self, items: list[Any]) -> Sequence[Any]:
        start = time.perf_counter()
        out = await asyncio.get_running_loop().run_in_executor(
            self._model_thread, self._run_batch, items
        )
        self.metrics.inference_duration.labels(self._model).observe(time.perf_counter() - start)
        return out

    async def on_cpu(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Runs pre- or post-processing beside the model thread."""
        return await asyncio.get_running_loop().run_in_executor(self._cpu_thread, fn, *args)

    async def serve(
        self, client_name: str, subject: str, queue: str, request_type: type,
        handler: Callable[[Any], Awaitable[Any]], add: Callable, servicer: object, full_name: str,
    ) -> None:  # fmt: skip
        """Connects to NATS, answers ``subject`` in ``queue``, then serves gRPC."""
        await self.connect(client_name)
        await self.responder.serve(subject, queue, request_type, handler)
        await self.serve_grpc(add, servicer, full_name)

    async def release(self) -> None:
        await self.batcher.close()

    def close(self) -> None:
        self._model_thread.shutdown(wait=True)
        self._cpu_thread.shutdown(wait=True)
