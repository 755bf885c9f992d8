"""The verification lockout: consecutive failed face confirmations first
delay the next attempt, then lock the subject until they unlock."""

from __future__ import annotations

from dataclasses import dataclass

LOCKOUT_AFTER = 5  # consecutive failures before the delays start
LOCK_AFTER = 10  # ... and before the subject is locked
MAX_DOUBLINGS = 20


@dataclass(frozen=True)
class Lockout:
    """From the ``delay_after``-th consecutive failure on, each failure
    doubles a delay before the next attempt (1 s, 2 s, 4 s, ...); the
    ``lock_after``-th locks."""

    delay_after: int = LOCKOUT_AFTER
    lock_after: int = LOCK_AFTER

    def after_failure(self, failures: int, now_ms: int) -> tuple[int, bool]:
        """(retry-after time in ms or 0, locked) once ``failures`` consecutive failures are counted."""
        if failures < self.delay_after:
            retry = 0
        else:
            retry = now_ms + 1000 * 2 ** min(failures - self.delay_after, MAX_DOUBLINGS)
        return retry, failures >= self.lock_after
