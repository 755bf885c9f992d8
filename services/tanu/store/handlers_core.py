"""What every store operation's handler shares: the database, relay,
signer and metrics it works with, its back-pressure (a write refused while
the database thread is overloaded), template vectors checked, idempotency
keys, and the wait for a commit to reach the stream (read-your-writes).

``HandlerCore`` is the base of the handler mixins (``handlers_enrol``) and
of ``handlers.StoreHandlers``, which composes them.
"""

from __future__ import annotations

import time

import numpy as np

from tanu.core import errors, logs, vectors
from tanu.core.metrics import Metrics

from .audit_log import GroupCommit
from .db import Store
from .relay import OutboxRelay

log = logs.get(__name__)

MAX_TEMPLATES_PER_SUBJECT = 32


class HandlerCore:
    """The state and checks the store's operation handlers share."""

    def __init__(
        self, db: Store, relay: OutboxRelay | None, signer, metrics: Metrics | None = None,
        max_queue: int = 0,
    ) -> None:  # fmt: skip
        self.db = db
        self.relay = relay
        self.signer = signer
        self.metrics = metrics or Metrics.create()
        self.max_queue = max_queue  # TANU_STORE_MAX_QUEUE (0: never refuse)
        self._refused, self._refused_logged = 0, 0.0  # refusals since the last log line
        self._audit = GroupCommit(db, self.metrics)  # concurrent appends, one commit
        self._screen = GroupCommit(db, self.metrics, name="screen_commit",
                                   commit=db.screen_audits)  # fmt: skip

    def _admit(self) -> None:
        """Back-pressure: a new write is refused at once, before anything is
        written, while the database thread has ``max_queue`` jobs waiting
        (more than it serves within the bus deadline); erasures, reads and
        the relay's own jobs are never refused."""
        if self.max_queue and self.db.queued >= self.max_queue:
            self.metrics.store_refused.labels("overloaded").inc()
            self._refused += 1
            now = time.monotonic()
            if now - self._refused_logged >= 1.0:  # one line a second, not one per refusal
                log.warning("store_overloaded", queued=self.db.queued, refused=self._refused)
                self._refused_logged, self._refused = now, 0
            raise errors.ResourceExhausted(
                f"the store is overloaded ({self.db.queued} database jobs waiting); "
                "nothing was written: retry later"
            )

    async def close(self) -> None:
        """Finishes the audit commit under way (appends after it are refused)."""
        await self._audit.close()
        await self._screen.close()

    def _vectors(self, templates) -> np.ndarray:
        if not templates:
            raise errors.InvalidArgument("at least one template is required")
        # One subject is one event on the stream: bounded, so no event can
        # exceed the stream's message limit and block the relay.
        if len(templates) > MAX_TEMPLATES_PER_SUBJECT:
            raise errors.InvalidArgument(
                f"{len(templates)} templates for one subject; the limit is {MAX_TEMPLATES_PER_SUBJECT}"
            )
        rows = [
            vectors.parse_template(t.vector, t.model_id, self.db.layout, field=f"templates[{i}]")
            for i, t in enumerate(templates)
        ]
        return np.concatenate(rows, axis=0)

    def _idem(self, req):
        """The request's idempotency key, or None (then the write is not keyed)."""
        return req.idempotency if req.HasField("idempotency") else None

    def _changed(self) -> None:
        if self.relay:
            self.relay.wake()

    async def _published(self) -> None:
        """Returns once what was just committed is on the stream (or after
        the relay's flush bound): an acknowledged enrolment is then visible
        to every later search that checks the stream (read-your-writes)."""
        if self.relay:
            await self.relay.flush()
