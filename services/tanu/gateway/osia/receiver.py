"""A small OSIA callback receiver, to try the asynchronous mode locally:

    .venv/bin/python -m tanu.gateway.osia.receiver --port 0 --port-file receiver.port --count 1

listens on 127.0.0.1, answers every POST with 204 (the spec's "response
received") and prints one JSON line per callback (its path, query, media
type and body) to stdout; exits after ``--count`` callbacks (0: never),
or with status 1 when ``--timeout`` seconds pass first. Not part of the
gateway: a partner's side, for demonstrations and the README.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

from aiohttp import web


async def serve(port: int, port_file: str, count: int, timeout: float) -> int:
    done = asyncio.Event()
    seen = 0

    async def callback(request: web.Request) -> web.Response:
        nonlocal seen
        body = await request.read()
        try:
            shown = json.loads(body)
        except ValueError:
            shown = body.decode("utf-8", "replace")
        print(json.dumps({"path": request.path, "query": dict(request.query),
                          "content_type": request.content_type, "body": shown}), flush=True)  # fmt: skip
        seen += 1
        if count and seen >= count:
            done.set()
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/{tail:.*}", callback)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    bound = site._server.sockets[0].getsockname()[1]
    if port_file:
        Path(port_file).write_text(str(bound))  # noqa: ASYNC240 - a few bytes, once
    print(f"listening on http://127.0.0.1:{bound}/", file=sys.stderr, flush=True)
    try:
        await asyncio.wait_for(done.wait(), timeout or None)
        await asyncio.sleep(0.2)  # the last 204 leaves before the server goes
        return 0
    except TimeoutError:
        print(f"no callback within {timeout:g} s", file=sys.stderr)
        return 1
    finally:
        await runner.cleanup()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0: a free one)")
    p.add_argument("--port-file", default="", help="write the bound port to this file")
    p.add_argument("--count", type=int, default=0, help="exit after this many callbacks")
    p.add_argument("--timeout", type=float, default=0, help="give up after this many seconds")
    a = p.parse_args(argv)
    return asyncio.run(serve(a.port, a.port_file, a.count, a.timeout))


if __name__ == "__main__":
    sys.exit(main())
