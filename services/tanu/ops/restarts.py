"""The local supervisor's restart budget: a rate, not a lifetime count.

A process may be restarted ``limit`` times within ``window_s`` seconds
(so it may exit ``limit + 1`` times),
each after a growing backoff (0.2 s doubling, at most 5 s). Past that it
is given up on, with the reason, and tried again once per window (a cause
that went away, e.g. NATS back up, heals the cluster); once it has stayed
up for a whole window it is healthy again.
"""

from __future__ import annotations

import os
from collections import deque
from dataclasses import dataclass, field

LIMIT = int(os.environ.get("TANU_UP_RESTARTS", "5"))
WINDOW_S = float(os.environ.get("TANU_UP_RESTART_WINDOW_S", "60"))


@dataclass
class RestartBudget:
    limit: int = LIMIT
    window_s: float = WINDOW_S
    starts: deque[float] = field(default_factory=deque)
    given_up: str = ""

    def _recent(self, now: float) -> int:
        while self.starts and now - self.starts[0] > self.window_s:
            self.starts.popleft()
        return len(self.starts)

    def next_start(self, now: float, exit_code: int | None) -> float:
        """When to start again a process that exited with ``exit_code``
        now; sets ``given_up`` when the budget is spent."""
        recent = self._recent(now)
        if recent >= self.limit:
            self.given_up = (
                f"exited {recent + 1} times in {self.window_s:.0f}s (last exit code {exit_code}); "
                f"given up, retried every {self.window_s:.0f}s"
            )
            return now + self.window_s
        return now + min(0.2 * 2**recent, 5.0)

    def started(self, now: float) -> None:
        self.starts.append(now)

    def running(self, now: float, since: float) -> None:
        """A process running since ``since``: healthy again after a window."""
        if self.given_up and now - since >= self.window_s:
            self.given_up = ""
