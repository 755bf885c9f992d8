"""The lockout of face confirmations: consecutive failures first delay the
next attempt, then lock the subject until they unlock.

It covers every operation that confirms a face (Verify, SetBiometricLock,
consent by face, a guardian's confirmation), and the store admits and
counts each attempt in one step (``tanu.store.status.admit_attempt``).
Once locked, only the subject's own unlock is admitted, and its delays
start again from ``base_ms`` and double with each further failure, so the
lock never becomes a free run of guesses.
"""

from __future__ import annotations

from dataclasses import dataclass

LOCKOUT_AFTER = 5  # consecutive failures before the delays start
LOCK_AFTER = 10  # ... and before the subject is locked
BASE_MS = 1000  # the first delay
MAX_DOUBLINGS = 20


@dataclass(frozen=True)
class Lockout:
    """From the ``delay_after``-th consecutive failure on, each failure
    doubles a delay before the next attempt (1 s, 2 s, 4 s, ...); the
    ``lock_after``-th locks, and the delays of the unlock attempts start
    again from ``base_ms``."""

    delay_after: int = LOCKOUT_AFTER
    lock_after: int = LOCK_AFTER
    base_ms: int = BASE_MS

    def after_failure(self, failures: int, now_ms: int) -> tuple[int, bool]:
        """(retry-after time in ms or 0, locked) once ``failures`` consecutive failures are counted."""
        if failures < self.delay_after:
            return 0, False
        locked = failures >= self.lock_after
        since = failures - (self.lock_after if locked else self.delay_after)
        return now_ms + self.base_ms * 2 ** min(since, MAX_DOUBLINGS), locked
