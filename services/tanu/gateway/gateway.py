"""The gateway's shared state, which every use case of the Identity API is
given: its configuration, the typed clients of the store, the face pipeline
and the searchers, the thresholds, the search and the layout watch."""

from __future__ import annotations

from tanu.clients.face import FaceClient
from tanu.clients.search import SearchClient
from tanu.clients.store import StoreClient
from tanu.core import clusterconfig, errors, logs
from tanu.core.config import GatewayConfig
from tanu.core.metrics import Metrics
from tanu.policy import thresholds
from tanu.v1 import store_pb2

from .freshness import Freshness
from .layout_watch import LayoutWatch
from .samples import Samples
from .search import Search

log = logs.get(__name__)


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

    async def close(self) -> None:
        await self.search.close()

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
        """The store's status of each subject, by id."""
        if not subject_ids:
            return {}
        r = await self.store.status(store_pb2.StatusRequest(subject_ids=subject_ids))
        return {st.subject_id: st for st in r.statuses}

    async def enrolled(self, subject_id: str) -> store_pb2.SubjectStatus:
        """The subject's status; NotFound when it is not enrolled."""
        st = (await self.statuses([subject_id]))[subject_id]
        if not st.enrolled:
            raise errors.NotFound(f"subject {subject_id!r} is not enrolled")
        return st
