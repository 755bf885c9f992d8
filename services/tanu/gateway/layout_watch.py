"""The layout watch: whether this gateway's layout is still the cluster's.

A rebalance switches the cluster's layout (``tanu.core.clusterconfig``); a
gateway still searching the old partition count would answer from part of
the gallery and call it complete, so while the layouts differ it refuses
searches (and says NOT_SERVING) until restarted with the cluster's layout.
"""

from __future__ import annotations

from tanu.core import clusterconfig, logs
from tanu.core.config import Layout

log = logs.get(__name__)


class LayoutWatch:
    """The last comparison of this gateway's layout with the cluster's."""

    def __init__(self, nc, layout: Layout) -> None:
        self._nc = nc
        self.layout = layout
        self.problem = ""  # why searches are refused; "" while the layouts match

    async def check(self) -> bool:
        """Reads the cluster's layout and compares; whether they match."""
        have, _ = await clusterconfig.read_layout(self._nc.jetstream())
        detail = self.layout.differences(have, "cluster", "this gateway") if have else ""
        problem = (
            f"the cluster's layout changed ({detail}); this gateway refuses to search until "
            "restarted with the cluster's layout"
            if detail
            else ""
        )
        if problem != self.problem:
            (log.error if problem else log.info)("layout_checked", problem=problem or "none")
        self.problem = problem
        return not problem
