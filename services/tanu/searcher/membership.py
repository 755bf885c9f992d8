"""A searcher replica's place in the cluster layout: whether it answers its
partition's searches (the queue group ``searcher-p<k>``).

Re-partitioning: a staging searcher builds a partition of the next layout
and joins the queue group only once the layout is switched to it; an
active one leaves when the layout moves away from it."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from tanu.core import bus, clusterconfig, errors, logs, natsnames
from tanu.core.config import SearcherConfig
from tanu.v1 import searcher_pb2

log = logs.get(__name__)

LAYOUT_POLL_S = 1.0


class Membership:
    """Registers the replica's layout, follows the cluster's, and joins or
    leaves the partition's queue group accordingly."""

    def __init__(
        self,
        config: SearcherConfig,
        search: Callable[[searcher_pb2.SearchRequest], Awaitable[searcher_pb2.SearchResponse]],
        *,
        stopping: Callable[[], bool],
        caught_up: asyncio.Event,
        on_leave: Callable[[], Awaitable[None]],
    ) -> None:
        self.config = config
        self.layout = config.common.layout
        self._search = search
        self._stopping = stopping
        self._caught_up = caught_up
        self._on_leave = on_leave  # left the queue group: stop saying SERVING
        self.active = not config.staging  # the cluster's layout is this replica's
        self.in_queue_group = False
        # A staging replica reads every partition's events (they were routed
        # under the old layout) and keeps its own; an active one reads its
        # partition's only.
        self.reads_every_partition = False
        self._responder: bus.Responder | None = None
        self._task: asyncio.Task[None] | None = None

    async def register(self, nc, js) -> None:
        """Checks this replica's layout against the cluster's (a staging one:
        against the rebalance target) and prepares the search responder."""
        cfg, name = self.config, f"searcher-p{self.config.partition}"
        if cfg.staging:
            record = await clusterconfig.ensure_next_layout(js, self.layout, name)
        else:
            record = await clusterconfig.ensure_layout(js, self.layout, name)
        if not cfg.staging and clusterconfig.rerouted(record, self.layout.partitions):
            # Its credentials read its own partition's events only, and the
            # stream still holds events routed under the old layout.
            raise errors.FailedPrecondition(
                "a rebalance switched the layout but has not finished (the event stream still "
                "holds events routed under the old layout): run `tanu partitions finish`, or start "
                "this replica as a staging one (TANU_SEARCHER_STAGING=true)"
            )
        self.reads_every_partition = cfg.staging
        self._responder = bus.Responder(nc)

    def start(self, js) -> None:
        """Starts following the cluster's layout."""
        self._task = asyncio.create_task(self._loop(js), name="layout")

    async def stop(self) -> None:
        """Stops answering searches and following the layout."""
        if self._responder:
            await self._responder.stop()
        if self._task:
            self._task.cancel()
            await asyncio.wait({self._task}, timeout=5)

    async def _loop(self, js) -> None:
        """Follows the cluster's layout: a staging searcher becomes active
        when the layout is switched to its own; an active one leaves the
        queue group when the layout moves to another partition count."""
        mine = self.layout.partitions
        while not self._stopping():
            await asyncio.sleep(LAYOUT_POLL_S)
            try:
                record, _ = await clusterconfig.read_layout(js)
            except Exception as exc:  # noqa: BLE001 - NATS reconnecting: ask again
                log.warning("layout_unreadable", error=str(exc))
                continue
            if record is None:
                continue
            ours = not self.layout.differences(record, "cluster", "searcher")
            if ours and not self.active:
                self.active = True
                log.info("searcher_promoted", partition=self.config.partition, partitions=mine)
                if self._caught_up.is_set():
                    await self.join()
            elif not ours and self.active:
                self.active = False
                log.warning("searcher_retired", partition=self.config.partition, partitions=mine,
                            cluster_partitions=record.get("partitions"))  # fmt: skip
                await self.leave()

    async def join(self) -> None:
        """Joins the partition's queue group, when the layout is this replica's."""
        if self.in_queue_group or not self.active:
            return
        part = self.config.partition
        await self._responder.serve(natsnames.search(part), natsnames.search_queue(part),
                                    searcher_pb2.SearchRequest, self._search)  # fmt: skip
        self.in_queue_group = True

    async def leave(self) -> None:
        if self.in_queue_group:
            self.in_queue_group = False
            await self._responder.stop()
            await self._on_leave()
