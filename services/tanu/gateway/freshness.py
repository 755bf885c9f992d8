"""Read-your-writes for 1:N search (the MOSIP ABIS contract): a search
sees every enrolment acknowledged before it started, through any gateway,
or says which partitions are behind.

The store acknowledges an enrolment only once its event is on the stream
(``OutboxRelay.flush``, bounded by TANU_RELAY_FLUSH_S). So at the start of
a search, the stream's last sequence on each partition's subject (JetStream
``get_last_msg``, asked concurrently with the scatter) is at least the
sequence of every acknowledged enrolment of that partition, whichever
gateway took it. A searcher reports the sequence it has applied with each
answer; one below that mark is behind: the partition is asked again for up
to TANU_FRESHNESS_WAIT_S, then counted missing (the reply is partial and
names it), never silently stale.
"""

from __future__ import annotations

import asyncio
import json
import time

from nats.aio.client import Client as NATS

from tanu.core import errors, logs, natsnames
from tanu.core.metrics import Metrics
from tanu.v1 import searcher_pb2

log = logs.get(__name__)

Reply = searcher_pb2.SearchResponse | errors.TanuError
MARK_TIMEOUT_S = 1.0
# JetStream's "message get" API (the one ``get_last_msg`` calls): asked
# directly, the reply's sequence is read without decoding the message's
# data and headers, which a mark does not need.
_MSG_GET = f"$JS.API.STREAM.MSG.GET.{natsnames.EVENTS_STREAM}"
_NO_MESSAGE = 404


class Freshness:
    """The per-partition marks a search must reach."""

    def __init__(self, nc: NATS, wait_s: float, metrics: Metrics) -> None:
        self._nc = nc
        self.wait_s = wait_s
        self._metrics = metrics
        self._known: dict[int, int] = {}  # the last mark seen per partition

    async def marks(self, partitions: list[int]) -> dict[int, int]:
        """The stream's last sequence per partition now. When the stream
        cannot be asked, the last mark seen (a search never waits on NATS
        being slow to answer this)."""

        async def one(p: int) -> int:
            if not self._nc.is_connected:  # the scatter fails too, and says why
                return self._known.get(p, 0)
            try:
                seq = await self._last_sequence(natsnames.template_events(p))
            except Exception as exc:  # noqa: BLE001 - fall back to what we knew
                log.warning("freshness_unknown", partition=p, error=type(exc).__name__)
                return self._known.get(p, 0)
            self._known[p] = max(self._known.get(p, 0), seq)
            return self._known[p]

        return dict(zip(partitions, await asyncio.gather(*(one(p) for p in partitions)),
                        strict=True))  # fmt: skip

    async def _last_sequence(self, subject: str) -> int:
        """The stream's last sequence on ``subject`` (0: no message); a
        short timeout: a search never waits long on this question."""
        reply = await self._nc.request(
            _MSG_GET, json.dumps({"last_by_subj": subject}).encode(), timeout=MARK_TIMEOUT_S
        )
        body = json.loads(reply.data)
        err = body.get("error")
        if err:
            if err.get("code") == _NO_MESSAGE:
                return 0
            raise errors.Unavailable(f"the stream did not say its last sequence: {err.get('code')}")
        return int(body["message"]["seq"])

    async def settle(self, replies: list[Reply], partitions: list[int], marks: dict[int, int],
                     ask) -> list[Reply]:  # fmt: skip
        """``replies`` with every partition behind its mark asked again
        (``ask(partitions)``) until it catches up or the wait ends; still
        behind, its reply becomes an Unavailable naming the gap."""
        out = dict(zip(partitions, replies, strict=True))
        end = time.monotonic() + self.wait_s
        while True:
            behind = [p for p, r in out.items()
                      if isinstance(r, searcher_pb2.SearchResponse)
                      and r.applied_sequence < marks.get(p, 0)]  # fmt: skip
            if not behind:
                break
            if time.monotonic() >= end:
                for p in behind:
                    out[p] = errors.Unavailable(
                        f"partition {p} is behind (applied {out[p].applied_sequence}, "
                        f"acknowledged writes up to {marks[p]})"
                    )
                    self._metrics.search_behind.inc()
                break
            await asyncio.sleep(0.02)
            for p, r in zip(behind, await ask(behind), strict=True):
                out[p] = r
        return [out[p] for p in partitions]
