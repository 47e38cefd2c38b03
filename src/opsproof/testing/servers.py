"""Serving an aiohttp app on loopback, in a thread or as a process, for tests, benchmarks and the demo.

    with serving(free_port(0), app, ssl_context=leaf.server_context()) as address:
        ...  # address is '127.0.0.1:PORT'
"""

from __future__ import annotations

import asyncio
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from aiohttp import web

from opsproof.local.ports import free_port
from opsproof.local.processes import stop_process

__all__ = ["free_port", "serving", "stop_process"]


@contextmanager
def serving(port: int, app: web.Application, ssl_context: ssl.SSLContext | None = None) -> Iterator[str]:
    """Serve `app` on 127.0.0.1:port from a background thread; yields 'host:port'."""
    loop = asyncio.new_event_loop()
    # A handler still sleeping when the server stops (a black hole or a slow endpoint whose client
    # gave up at its deadline) is cancelled after 2 s: aiohttp's default grace of 60 s would outlast
    # the 10 s that stopping is given below.
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=2.0)
    ready = threading.Event()

    def run() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(runner.setup())
        loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", port, ssl_context=ssl_context).start())
        ready.set()
        loop.run_forever()

    thread = threading.Thread(target=run, name="opsproof-serving", daemon=True)
    thread.start()
    if not ready.wait(10):
        raise RuntimeError("the server did not start")
    try:
        yield f"127.0.0.1:{port}"
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
