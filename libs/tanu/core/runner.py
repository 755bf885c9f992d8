"""The ``main()`` every service shares: configuration from the process
environment (read here, once), JSON logs, metrics on their own port, start,
then graceful shutdown on SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
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
        metrics_port = metrics.serve(common.metrics_port)
        try:
            service = await service_type(config, metrics).start()
        except errors.TanuError as exc:
            log.error("start_failed", reason=exc.message)
            return 1
        except (RuntimeError, OSError, ValueError) as exc:
            # e.g. a model file missing or failing its checksum (ModelError)
            log.error("start_failed", reason=str(exc))
            return 1
        log.info("ready", grpc_port=service.port, metrics_port=metrics_port)
        await run_until_signal(service.stop)
        return 0

    return asyncio.run(run())
