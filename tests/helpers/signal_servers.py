"""Receivers of opsproof's signals, started by the tests.

- `Receiver`: a loopback HTTP server that records every request (method, path, headers,
  JSON body). It stands in for PagerDuty's Events API, a Slack incoming webhook, a
  generic webhook and a healthchecks.io ping endpoint, which cannot be reached from the
  tests: it answers as they do (PagerDuty: 202 with `{"status": "success"}`; Slack: 200
  `ok`). Paths with other behaviour: `/slow/...` never answers within any test's timeout,
  `/echo/...` answers with what it was sent (headers and body, secrets included, as a
  careless receiver would), `/flaky/...` answers 503 twice, then 202.
- `pushgateway`: Debian's `prometheus-pushgateway`, started on a free port.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from conftest import wait_for
from opsproof.testing.servers import free_port, serving

NO_PUSHGATEWAY = (
    "prometheus-pushgateway is not installed: `apt-get install prometheus-pushgateway` (Debian's package; CI installs it)"
)
NO_PROMTOOL = "promtool is not installed: `apt-get install prometheus` (Debian's package; CI installs it)"


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class Receiver:
    base: str = ""
    seen: list[Seen] = field(default_factory=list)
    closing: bool = False

    def at(self, prefix: str) -> list[Seen]:
        return [s for s in self.seen if s.path.startswith(prefix)]

    def bodies(self, prefix: str) -> list[Any]:
        return [s.body for s in self.at(prefix)]


def _app(receiver: Receiver) -> web.Application:
    flaky: dict[str, int] = {}

    async def handle(request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode("utf-8", "replace")
        receiver.seen.append(Seen(request.method, request.path, dict(request.headers), body))
        path = request.path
        if path.startswith("/slow"):  # until the test ends (then the server can stop at once)
            while not receiver.closing:
                await asyncio.sleep(0.05)
        if path.startswith("/echo"):
            return web.json_response({"you_sent": {"headers": dict(request.headers), "body": body}}, status=400)
        if path.startswith("/flaky"):
            flaky[path] = flaky.get(path, 0) + 1
            if flaky[path] <= 2:
                return web.json_response({"status": "unavailable"}, status=503)
        if path.startswith("/slack"):
            return web.Response(text="ok")
        if path.startswith("/ping"):
            return web.Response(text="OK")
        return web.json_response({"status": "success", "message": "Event processed"}, status=202)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    return app


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    found = Receiver()
    with serving(free_port(0), _app(found)) as address:
        found.base = f"http://{address}"
        try:
            yield found
        finally:
            found.closing = True


@dataclass
class Pushgateway:
    url: str

    def scrape(self) -> str:
        import urllib.request

        with urllib.request.urlopen(f"{self.url}/metrics", timeout=5) as answer:
            return str(answer.read().decode())


@pytest.fixture
def pushgateway(tmp_path: Path) -> Iterator[Pushgateway]:
    binary = shutil.which("prometheus-pushgateway") or shutil.which("pushgateway")
    if binary is None:
        pytest.skip(NO_PUSHGATEWAY)
    port = free_port(0)
    log = tmp_path / "pushgateway.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [binary, f"--web.listen-address=127.0.0.1:{port}"], stdout=out, stderr=subprocess.STDOUT
        )
    try:
        wait_for(lambda: _answers(port) or process.poll() is not None, "the pushgateway to listen", timeout=30)
        if process.poll() is not None:
            raise AssertionError(f"pushgateway exited {process.returncode}: {log.read_text()[-2000:]}")
        yield Pushgateway(f"http://127.0.0.1:{port}")
    finally:
        process.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(10)
        if process.poll() is None:
            process.kill()


def _answers(port: int) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/-/ready", timeout=1) as answer:
            return bool(answer.status == 200)
    except OSError:
        return False


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        pytest.skip(NO_PROMTOOL)
    return found
