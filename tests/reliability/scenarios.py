"""The reliability scenarios, each against a running ``LocalUp`` cluster,
each bounded in count (``n``) and time, each returning a ``Tally``.

Every subject acknowledged in any scenario is remembered in ``Run.acked``
and verified again after the whole-cluster restart.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass, field

import numpy as np
from harness import Client, LocalUp, Tally, mixed_identifies, unit_vectors, verify_searchable


@dataclass
class Run:
    up: LocalUp
    seed: int = 1
    acked: dict[str, np.ndarray] = field(default_factory=dict)
    erased: dict[str, np.ndarray] = field(default_factory=dict)
    tag: str = field(default_factory=lambda: uuid.uuid4().hex[:6])

    def client(self, address: str | None = None) -> Client:
        return Client(address or self.up.state()["gateway"], self.up.token)

    def vectors(self, n: int) -> np.ndarray:
        self.seed += 1
        return unit_vectors(n, self.seed)


async def _enrol_all(run: Run, client: Client, prefix: str, vecs: np.ndarray, tally: Tally,
                     known: dict[str, float] | None = None, workers: int = 8,
                     progress: list[int] | None = None) -> dict:  # fmt: skip
    """Enrols ``vecs`` under fresh ids with ``workers`` in flight; returns
    the acknowledged ones (id -> vector)."""
    ids = [f"{prefix}-{run.tag}-{i}" for i in range(len(vecs))]
    queue = list(zip(ids, vecs, strict=True))
    acked: dict[str, np.ndarray] = {}

    async def worker() -> None:
        while queue:
            sid, vec = queue.pop()
            outcome = await client.enroll(sid, vec, tally)
            if progress is not None:
                progress[0] += 1
            if outcome == "enrolled":
                acked[sid] = run.acked[sid] = vec
                if known is not None:
                    known[sid] = time.monotonic()
            elif outcome.startswith("duplicate:"):
                tally.wrong += 1  # random faces are no one's duplicate
                tally.notes.append(f"{sid} refused as a duplicate of another subject")

    await asyncio.gather(*[worker() for _ in range(workers)])
    tally.acknowledged += len(acked)
    run.acked.update(acked)
    return acked


async def _killer(run: Run, names: list[str], times: int, n: int, progress: list[int],
                  tally: Tally) -> None:  # fmt: skip
    """SIGKILLs ``names`` in turn, ``times`` kills in all, spread over the
    load: kill k happens once ``k * n / (times + 1)`` enrolments are
    acknowledged (so every kill lands during the load), each once the
    previous victim is back; records recovery times."""
    for k in range(1, times + 1):
        while progress[0] < k * n // (times + 1):
            await asyncio.sleep(0.05)
        name = names[(k - 1) % len(names)]
        pid = await asyncio.to_thread(run.up.kill, name)
        tally.recovery_s.append(await asyncio.to_thread(run.up.wait_back, name, pid))


async def kill_store(run: Run, n: int, kills: int = 5) -> Tally:
    t = Tally(f"kill -9 store x{kills} during {n} enrolments")
    client = run.client()
    progress = [0]
    killer = asyncio.create_task(_killer(run, ["store"], kills, n, progress, t))
    try:
        acked = await _enrol_all(run, client, "ks", run.vectors(n), t, progress=progress)
        await killer
        await verify_searchable(client, acked, t)
    finally:
        killer.cancel()
        await client.close()
    return t


async def kill_searchers_and_nats(run: Run, n: int, kills: int = 5) -> Tally:
    t = Tally(f"kill -9 searchers x{kills} + nats-server x1 during {n} enrolments + identifies")
    client = run.client()
    known: dict[str, float] = {s: 0.0 for s in run.acked}
    vecs = run.acked  # grows as enrolments are acknowledged
    stop, progress = asyncio.Event(), [0]
    victims = run.up.names("searcher")
    # kills of searchers spread over the load, then nats-server before its end
    killer = asyncio.create_task(_killer(run, victims, kills, n * (kills + 1) // (kills + 2),
                                         progress, t))  # fmt: skip
    idents = asyncio.create_task(mixed_identifies(client, known, vecs, t, stop))

    async def enrol() -> dict:
        return await _enrol_all(run, client, "kn", run.vectors(n), t, known, progress=progress)

    try:
        enrolling = asyncio.create_task(enrol())
        await killer
        while progress[0] < n * (kills + 1) // (kills + 2):
            await asyncio.sleep(0.05)
        pid = await asyncio.to_thread(run.up.kill, "nats-server")
        t.recovery_s.append(await asyncio.to_thread(run.up.wait_back, "nats-server", pid))
        acked = await enrolling
        stop.set()
        t.notes.append(f"{await idents} identifies")
        await verify_searchable(client, acked, t)
    finally:
        stop.set()
        killer.cancel()
        await client.close()
    return t


async def gateways_same_faces(run: Run, faces: int) -> Tally:
    """Three gateways enrol the same face under three ids at the same instant."""
    t = Tally(f"3 gateways enrol the same {faces} faces at once")
    addresses = [run.up.state()["gateway"], run.up.extra_gateway(), run.up.extra_gateway()]
    clients = [run.client(a) for a in addresses]
    try:
        for i, vec in enumerate(run.vectors(faces)):
            ids = [f"g{k}-{run.tag}-{i}" for k in range(3)]
            outcomes = await asyncio.gather(
                *[c.enroll(sid, vec, t) for c, sid in zip(clients, ids, strict=True)]
            )
            enrolled = [sid for sid, o in zip(ids, outcomes, strict=True) if o == "enrolled"]
            t.acknowledged += len(enrolled)
            t.duplicates += max(0, len(enrolled) - 1)
            if len(enrolled) == 1:  # duplicates are counted here, not again as wrong answers later
                run.acked[enrolled[0]] = vec
    finally:
        for c in clients:
            await c.close()
    if t.duplicates:
        t.notes.append("de-duplication is decided per gateway (issue 13, deliverable 1)")
    return t


async def erasure_under_load(run: Run, n: int) -> Tally:
    """Deletes ``n`` acknowledged subjects while ``n`` others enrol."""
    t = Tally(f"erasure of {n} under {n} enrolments")
    client = run.client()
    try:
        victims = await _enrol_all(run, client, "er", run.vectors(n), Tally("setup"))
        for sid in victims:
            run.acked.pop(sid)

        async def erase() -> None:
            for sid in victims:
                r = await client.delete(sid)
                if r is not None:
                    t.receipts += 1
                    t.receipts_complete += bool(r.receipt.complete)

        _, acked = await asyncio.gather(erase(), _enrol_all(run, client, "el", run.vectors(n), t))
        run.erased.update(victims)
        await verify_searchable(client, acked, t)
        # An erased face must never come back as its subject.
        for sid, vec in victims.items():
            r = await client.identify(vec)
            if r is not None and r.candidates and r.candidates[0].subject_id == sid:
                t.wrong += 1
        # The same face enrols again under a new id, and no reply names the erased.
        for i, vec in enumerate(list(victims.values())[: min(5, n)]):
            out = await client.enroll(f"re-{run.tag}-{i}", vec, t)
            if out.startswith("duplicate:"):
                t.notes.append(f"re-enrolment of an erased face refused as {out[:40]}")
            elif out == "enrolled":
                run.acked[f"re-{run.tag}-{i}"] = vec
    finally:
        await client.close()
    return t


async def whole_cluster_restart(run: Run) -> Tally:
    """SIGTERM of ``tanu up``, a fresh ``tanu up`` on the same data, and
    every subject acknowledged so far is searchable again."""
    t = Tally(f"whole-cluster restart, {len(run.acked)} subjects held")
    await asyncio.to_thread(run.up.stop)
    t0 = time.monotonic()
    await asyncio.to_thread(run.up.start)
    client = run.client()
    try:
        first = next(iter(run.acked.items()), None)
        while first is not None and time.monotonic() - t0 < 120:
            r = await client.identify(first[1])
            if r is not None and r.complete and r.candidates:
                break
            await asyncio.sleep(0.2)
        t.recovery_s.append(time.monotonic() - t0)
        t.acknowledged = len(run.acked)
        await verify_searchable(client, run.acked, t)
        for sid, vec in run.erased.items():
            r = await client.identify(vec)
            if r is not None and r.candidates and r.candidates[0].subject_id == sid:
                t.wrong += 1
    finally:
        await client.close()
    return t


async def given_up(run: Run, kills: int) -> Tally:
    """Kills the store ``kills`` times as fast as it restarts: the
    supervisor gives up, ``tanu status`` exits non-zero and says why, and the
    gateway's health is NOT_SERVING."""
    t = Tally(f"store killed {kills} times in a row")
    for _ in range(kills):
        pid = await asyncio.to_thread(run.up.kill, "store")
        end = time.monotonic() + 30
        while time.monotonic() < end and run.up.pid("store") == pid:
            if any(s.get("given_up") for s in run.up.state()["services"]):
                break
            await asyncio.sleep(0.1)
    end = time.monotonic() + 30
    status = run.up.status()
    while time.monotonic() < end and "no store answers" not in status.stdout:
        await asyncio.sleep(0.5)
        status = run.up.status()
    t.notes.append(status.stdout.strip().replace("\n", " | ")[:400])
    t.notes.append(f"status exit {status.returncode}")
    return t
