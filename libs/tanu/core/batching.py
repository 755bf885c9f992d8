"""Micro-batching: concurrent callers' items are combined into one call of a
batch function (one FAISS search, one onnxruntime run, one NATS scatter), up
to ``max_batch`` items or ``max_wait_s`` after the first item, whichever comes
first. While a batch runs, the next one fills, so under load batches grow
without any added wait.

The wait is adaptive: a batcher only waits for more items when its previous
batch held more than one (it is under concurrent load). A lone request on an
idle system goes straight through instead of paying ``max_wait_s``; with
``direct=True`` it is even run in the caller's own task (a batch of one, no
hand-over to the worker and back: each costs an event-loop turn), while
anything that arrives meanwhile queues and is batched as usual."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

from tanu.core import errors, logs
from tanu.core.metrics import Metrics

I = TypeVar("I")  # noqa: E741
O = TypeVar("O")  # noqa: E741


class MicroBatcher(Generic[I, O]):
    """Runs ``fn(items) -> results`` (same length, same order) over batches."""

    def __init__(
        self,
        fn: Callable[[list[I]], Awaitable[Sequence[O]]],
        *,
        name: str,
        max_batch: int,
        max_wait_s: float,
        max_in_flight: int = 1,
        metrics: Metrics | None = None,
        direct: bool = False,
    ) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self._fn = fn
        self._name = name
        self._max_batch = max_batch
        self._max_wait_s = max(0.0, max_wait_s)
        self._queue: asyncio.Queue[tuple[I, asyncio.Future[O]]] = asyncio.Queue()
        self._slots = asyncio.Semaphore(max_in_flight)
        self._metrics = metrics
        self._worker: asyncio.Task[None] | None = None
        self._running: set[asyncio.Task[None]] = set()
        self._closed = False
        self._last_size = 0
        self._direct = direct

    def start(self) -> None:
        if self._worker is None:
            self._worker = asyncio.create_task(self._loop(), name=f"batcher-{self._name}")

    async def submit(self, item: I) -> O:
        """Queues ``item`` and waits for its result."""
        if self._closed:
            raise errors.Unavailable(f"{self._name} is shutting down")
        if self._direct and self._idle():
            return await self._run_direct(item)
        return await self._enqueue(item)

    async def _enqueue(self, item: I) -> O:
        self.start()
        fut: asyncio.Future[O] = asyncio.get_running_loop().create_future()
        await self._queue.put((item, fut))
        self._gauge()
        return await fut

    def _idle(self) -> bool:
        """Nothing queued, a batch slot free, and the last batch was a lone
        item (not under concurrent load): a new item would be a batch of one."""
        return self._queue.empty() and not self._slots.locked() and self._last_size <= 1

    async def _run_direct(self, item: I) -> O:
        """``item`` as a batch of one, in the caller's task, holding a slot
        (acquired at once: the batcher is idle). One event-loop turn first:
        requests that arrived with it (while a model run held the loop) queue
        meanwhile, and then it joins their batch instead."""
        await self._slots.acquire()
        try:
            await asyncio.sleep(0)
        except BaseException:
            self._slots.release()
            raise
        if not self._queue.empty():
            self._slots.release()
            return await self._enqueue(item)
        try:
            self._last_size = 1
            if self._metrics:
                self._metrics.batch_size.labels(self._name).observe(1)
            results = await self._fn([item])
            if len(results) != 1:
                raise errors.Internal(f"{self._name} returned {len(results)} results for 1 item")
            return results[0]
        finally:
            self._slots.release()

    def _gauge(self) -> None:
        if self._metrics:
            self._metrics.batch_queue_depth.labels(self._name).set(self._queue.qsize())

    async def _collect(self) -> list[tuple[I, asyncio.Future[O]]]:
        # The first item before the slot: while nothing is queued, the slot
        # stays free for a direct run (``direct``).
        batch = [await self._queue.get()]
        try:
            await self._slots.acquire()
        except asyncio.CancelledError:
            self._fail(batch)
            raise
        try:
            await self._fill(batch)
        except asyncio.CancelledError:
            self._slots.release()
            self._fail(batch)
            raise
        return batch

    def _fail(self, batch: list[tuple[I, asyncio.Future[O]]]) -> None:
        for _, fut in batch:
            if not fut.done():
                fut.set_exception(errors.Unavailable(f"{self._name} is shutting down"))

    async def _fill(self, batch: list[tuple[I, asyncio.Future[O]]]) -> None:
        loop = asyncio.get_running_loop()
        wait = self._max_wait_s if self._last_size > 1 else 0.0
        deadline = loop.time() + wait
        while len(batch) < self._max_batch:
            try:
                batch.append(self._queue.get_nowait())
                continue
            except asyncio.QueueEmpty:
                pass
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            try:
                batch.append(await asyncio.wait_for(self._queue.get(), remaining))
            except TimeoutError:
                break

    async def _loop(self) -> None:
        # The worker was started inside some caller's request; a batch mixes
        # many requests, so it must not carry that caller's request id.
        logs.request_id_var.set("")
        while True:
            batch = await self._collect()  # holds a slot
            self._gauge()
            task = asyncio.create_task(self._run(batch))
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    async def _run(self, batch: list[tuple[I, asyncio.Future[O]]]) -> None:
        try:
            live = [(item, fut) for item, fut in batch if not fut.done()]
            self._last_size = len(live)
            if not live:
                return
            if self._metrics:
                self._metrics.batch_size.labels(self._name).observe(len(live))
            try:
                results = await self._fn([item for item, _ in live])
                if len(results) != len(live):
                    raise errors.Internal(
                        f"{self._name} returned {len(results)} results for {len(live)} items"
                    )
            except BaseException as exc:  # noqa: BLE001 - handed to every waiter
                for _, fut in live:
                    if not fut.done():
                        fut.set_exception(
                            exc if isinstance(exc, Exception) else errors.Unavailable("cancelled")
                        )
                if not isinstance(exc, Exception):
                    raise
                return
            for (_, fut), res in zip(live, results, strict=True):
                if not fut.done():
                    fut.set_result(res)
        finally:
            self._slots.release()

    async def close(self) -> None:
        """Finishes running batches and fails anything still queued."""
        self._closed = True
        if self._worker:
            self._worker.cancel()
            try:
                await self._worker
            except asyncio.CancelledError:
                pass
        if self._running:
            await asyncio.gather(*self._running, return_exceptions=True)
        while not self._queue.empty():
            _, fut = self._queue.get_nowait()
            if not fut.done():
                fut.set_exception(errors.Unavailable(f"{self._name} is shutting down"))
