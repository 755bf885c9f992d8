"""The gateway's shared state, which every use case of the Identity API is
given: its configuration, the typed clients of the store, the face pipeline
and the searchers, the thresholds, the search and the layout watch.

Subjects' status (consent, locks, enrolment) is read from the store for
every request that needs it, but concurrent requests' look-ups share one
store call: those arriving while a call is in flight join the next one, so
each request's answer is still read after it asked (a consent revoked or a
lock set before a request is seen by it) and a busy gateway costs the store
one status request per round, not per request. Identify's candidates are
screened with its audit append instead, in one store request
(``Guard.record_screened``)."""

from __future__ import annotations

import asyncio

from tanu.clients.face import FaceClient
from tanu.clients.search import SearchClient
from tanu.clients.store import StoreClient
from tanu.core import clusterconfig, errors, logs
from tanu.core.batching import MicroBatcher
from tanu.core.config import GatewayConfig
from tanu.core.metrics import Metrics
from tanu.policy import thresholds
from tanu.v1 import store_pb2

from .freshness import Freshness
from .layout_watch import LayoutWatch
from .samples import Samples
from .search import Search

log = logs.get(__name__)

# The most subject ids the store answers in one status request.
STATUS_IDS_PER_CALL = 1000


class Gateway:
    """The orchestration behind the Identity API, transport-free: the use
    cases (``identify``, ``enrol``, ``verify``, ``citizen``, ``erasure``)
    are functions of a ``Gateway``, a request and its ``Call``."""

    def __init__(self, config: GatewayConfig, nc, metrics: Metrics, store: StoreClient) -> None:
        self.config = config
        self.layout = config.common.layout
        self.metrics = metrics
        self.store = store
        self.searchers = SearchClient(nc, config.search_timeout_s, metrics)
        self.samples = Samples(FaceClient(nc, config.common.request_timeout_s, metrics), config)
        self.layout_watch = LayoutWatch(nc, self.layout)
        fresh = (Freshness(nc, config.freshness_wait_s, metrics)
                 if config.freshness_wait_s > 0 else None)  # fmt: skip
        self.search = Search(self.searchers, config, metrics, self.layout_watch, fresh)
        self.calibrated: dict[str, dict] = {}  # this model's calibrations, by kind
        self._defaults = {
            "identify": config.identify_threshold,
            "verify": config.verify_threshold,
            "dedup": config.dedup_threshold,
        }
        self._nc = nc
        # No wait to fill a round: only look-ups that arrive while the
        # previous round is in flight share one.
        self._status = MicroBatcher(
            self._status_round, name="status", max_batch=256, max_wait_s=0.0, max_in_flight=1,
            metrics=metrics,
        )  # fmt: skip

    async def close(self) -> None:
        await self.search.close()
        await self._status.close()

    @property
    def layout_problem(self) -> str:
        """Why searches are refused (the layout no longer matches the cluster's); "" when not."""
        return self.layout_watch.problem

    async def check_layout(self) -> bool:
        """Compares this gateway's layout with the cluster's; whether they match."""
        return await self.layout_watch.check()

    def threshold(self, kind: str, requested: float | None) -> tuple[float, str]:
        """The threshold of a ``kind`` (identify, verify, dedup) decision and
        its source, by ``tanu.policy.thresholds`` (a request only ever stricter)."""
        return thresholds.choose(
            kind, requested, self.calibrated, self._defaults, self.layout.metric
        )

    async def refresh_thresholds(self) -> None:
        """Reads this model's calibrated thresholds from the cluster configuration."""
        found = await clusterconfig.read_thresholds(self._nc.jetstream(), self.layout.model_id)
        found = thresholds.in_metric(found, self.layout.metric)
        if found != self.calibrated:
            log.info("thresholds_loaded", model_id=self.layout.model_id,
                     **{k: v["threshold"] for k, v in found.items()})  # fmt: skip
        self.calibrated = found

    async def statuses(self, subject_ids: list[str]) -> dict[str, store_pb2.SubjectStatus]:
        """The store's status of each subject, by id (read after this call
        began; shared with concurrent look-ups)."""
        if not subject_ids:
            return {}
        return await self._status.submit(subject_ids)

    async def _status_round(
        self, lookups: list[list[str]]
    ) -> list[dict[str, store_pb2.SubjectStatus]]:
        """One round of look-ups: the union of their ids asked of the store
        (in requests of at most STATUS_IDS_PER_CALL ids), each look-up
        answered with its own subjects only."""
        ids = sorted({sid for ids in lookups for sid in ids})
        replies = await asyncio.gather(*(
            self.store.status(store_pb2.StatusRequest(subject_ids=ids[i : i + STATUS_IDS_PER_CALL]))
            for i in range(0, len(ids), STATUS_IDS_PER_CALL)
        ))  # fmt: skip
        found = {st.subject_id: st for r in replies for st in r.statuses}
        return [{sid: found[sid] for sid in ids if sid in found} for ids in lookups]

    async def enrolled(self, subject_id: str) -> store_pb2.SubjectStatus:
        """The subject's status; NotFound when it is not enrolled."""
        st = (await self.statuses([subject_id]))[subject_id]
        if not st.enrolled:
            raise errors.NotFound(f"subject {subject_id!r} is not enrolled")
        return st
