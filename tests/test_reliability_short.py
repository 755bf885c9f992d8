"""The reliability suite, short: the same fault scenarios as
``make test-reliability`` (tests/reliability) at small counts against one
real ``tanu up`` cluster: SIGKILL of the store, of a searcher and of
nats-server under load, erasure under load, a whole-cluster restart; then
the supervisor's restart budget, spent on purpose, shows in ``tanu status``
and in the gateway's health."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "reliability"))

from harness import LocalUp  # noqa: E402
from scenarios import (  # noqa: E402
    Run,
    erasure_under_load,
    given_up,
    kill_searchers_and_nats,
    kill_store,
    whole_cluster_restart,
)

pytestmark = pytest.mark.slow


async def test_faults_lose_nothing_and_a_given_up_service_is_reported(tmp_path):
    up = LocalUp(tmp_path / "var", partitions=2, TANU_UP_RESTARTS="3",
                 TANU_UP_RESTART_WINDOW_S="120")  # fmt: skip
    up.start()
    run = Run(up)
    try:
        results = [
            await kill_store(run, 40, kills=1),
            await kill_searchers_and_nats(run, 40, kills=1),
            await erasure_under_load(run, 5),
            await whole_cluster_restart(run),
        ]
        for t in results:
            assert t.acknowledged > 0, t.row()
            assert (t.lost, t.duplicates, t.wrong) == (0, 0, 0), t.row()
            print(t.row())
        assert all(t.recovery_s for t in (results[0], results[1], results[3]))
        assert results[2].receipts == 5

        # The store keeps dying: given up, and both the status and the gateway say so.
        t = await given_up(run, 4)  # a budget of 3 restarts: the 4th exit spends it
        status = up.status()
        assert status.returncode == 1, status.stdout
        assert "exited 4 times" in status.stdout and "given up" in status.stdout, status.stdout
        assert "no store answers" in status.stdout, status.stdout
        assert "NOT_SERVING" in status.stdout, t.notes
    finally:
        assert up.stop() == 0, up.output()[-3000:]
