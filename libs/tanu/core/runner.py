"""The ``main()`` every service shares: configuration from the process
environment (read here, once), JSON logs, metrics on their own port, start,
then graceful shutdown on SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import gc
import os
import sys
from collections.abc import Mapping
from typing import Any, Protocol

from tanu.core import config as cfg
from tanu.core import errors, logs
from tanu.core.metrics import Metrics
from tanu.core.server import run_until_signal


class Service(Protocol):
    port: int

    async def start(self) -> Any: ...

    async def stop(self) -> None: ...


def main(
    name: str, config_type: type, service_type: type, env: Mapping[str, str] | None = None
) -> int:
    """Runs one service until it is told to stop; returns the exit code."""
    env = os.environ if env is None else env
    try:
        config = cfg.from_env(config_type, env)
    except ValueError as exc:
        print(f"{name}: bad configuration: {exc}", file=sys.stderr)
        return 2
    common = config.common
    logs.configure(name, common.log_level, pseudonym_key_file=common.log_pseudonym_key_file)
    log = logs.get(name)

    async def run() -> int:
        metrics = Metrics.create()
        # The configured interface, as gRPC: never every interface by default.
        metrics_port = metrics.serve(common.metrics_port, common.metrics_host or common.grpc_host)
        try:
            service = await service_type(config, metrics).start()
        except errors.TanuError as exc:
            log.error("start_failed", reason=exc.message)
            return 1
        except (RuntimeError, OSError, ValueError) as exc:
            # e.g. a model file missing or failing its checksum (ModelError)
            log.error("start_failed", reason=str(exc))
            return 1
        # What start-up built (modules, models, servers) lives as long as the
        # process: out of the collector's sight, so that a full collection
        # does not walk it again and again while requests wait.
        gc.collect()
        gc.freeze()
        log.info("ready", grpc_port=service.port, metrics_port=metrics_port)
        stop = asyncio.create_task(run_until_signal(service.stop))
        failed = getattr(service, "failed", None)
        if failed is None:
            await stop
            return 0
        lost = asyncio.create_task(failed.wait())
        await asyncio.wait({stop, lost}, return_when=asyncio.FIRST_COMPLETED)
        if stop.done():
            lost.cancel()
            return 0
        # Its NATS client was closed for good and it cannot renew it in
        # place: stop in order and exit, for the supervisor to restart it.
        stop.cancel()
        log.error("nats_lost", action="exiting for a restart")
        await service.stop()
        return 3

    return asyncio.run(run())
