"""A real exporter for the `metrics` tests: prometheus_client's own exposition app, and Debian's pushgateway.

`exporter` serves a CollectorRegistry through `prometheus_client.make_wsgi_app` (the code every
Python exporter serves /metrics with) on a loopback port, from a thread. Every request is
recorded (method, path, headers), so tests can count the scrapes and prove they only read.
Paths other than /metrics answer as a misbehaving exporter would: /status/<code> with that
status, /garbage with a body that is no exposition, /secret with a series whose label is
the test's secret (an exporter leaking what it was sent).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, make_wsgi_app
from prometheus_client.exposition import ThreadingWSGIServer

from conftest import SECRET, wait_for
from opsproof.local.ports import free_port
from opsproof.testing.servers import stop_process

GARBAGE = b"queue_depth{queue=celery 12\n"  # an unquoted label value: not the text format


@dataclass
class Exporter:
    base: str
    registry: CollectorRegistry
    requests: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"{self.base}/metrics"

    def scrapes(self, since: int = 0) -> list[tuple[str, str, dict[str, str]]]:
        return self.requests[since:]


def _registry() -> CollectorRegistry:
    """The series runbooks 001, 003 and 004 grep for, with values the tests judge."""
    registry = CollectorRegistry()
    depth = Gauge("queue_depth", "jobs waiting", ["queue"], registry=registry)
    depth.labels("celery").set(1240)
    depth.labels("default").set(5)
    depth.labels("mail").set(60)
    requests = Counter("http_requests", "requests served", ["status"], registry=registry)
    requests.labels("200").inc(1000)
    requests.labels("500").inc(3)
    requests.labels("503").inc(7)
    pool = Gauge("apex_pg_pool_used", "connections in use", registry=registry)
    pool.set(18)
    Gauge("apex_pg_pool_size", "pool size", registry=registry).set(20)
    Gauge("search_fallback", "1 while search falls back to the database", registry=registry).set(0)
    Counter("app_errors", "errors", registry=registry).inc(4)
    Counter("app_exceptions", "exceptions", registry=registry).inc(2)
    Gauge("request_latency_p95_seconds", "p95 latency", registry=registry).set(0.42)
    Gauge("nan_gauge", "never set to a number", registry=registry).set(float("nan"))
    return registry


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


def _recording(exporter_app: Callable[..., Any], seen: list[tuple[str, str, dict[str, str]]]) -> Callable[..., Any]:
    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        path = environ.get("PATH_INFO", "")
        headers = {k[5:].replace("_", "-").title(): v for k, v in environ.items() if k.startswith("HTTP_")}
        seen.append((environ["REQUEST_METHOD"], path, headers))
        if path.startswith("/status/"):
            code = int(path.rsplit("/", 1)[1])
            start_response(f"{code} Whatever", [("Content-Type", "text/plain")])
            return [b"no metrics for you\n"]
        if path == "/garbage":
            start_response("200 OK", [("Content-Type", "text/plain; version=0.0.4")])
            return [GARBAGE]
        if path == "/secret":
            body = f'leaky_info{{token="{SECRET}"}} 1\n'.encode()
            start_response("200 OK", [("Content-Type", "text/plain; version=0.0.4")])
            return [body]
        return exporter_app(environ, start_response)

    return app


@pytest.fixture(scope="session")
def exporter() -> Iterator[Exporter]:
    registry = _registry()
    seen: list[tuple[str, str, dict[str, str]]] = []
    server = make_server(
        "127.0.0.1", 0, _recording(make_wsgi_app(registry), seen), ThreadingWSGIServer, handler_class=_Quiet
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Exporter(f"http://127.0.0.1:{server.server_port}", registry, seen)
    finally:
        server.shutdown()
        server.server_close()


def pushgateway_binary() -> str | None:
    explicit = os.environ.get("OPSPROOF_PUSHGATEWAY")
    return explicit or shutil.which("prometheus-pushgateway") or shutil.which("pushgateway")


@pytest.fixture(scope="session")
def pushgateway() -> Iterator[str]:
    """Debian's prometheus-pushgateway on a loopback port: its own /metrics is a real Go exporter's."""
    binary = pushgateway_binary()
    if binary is None:
        pytest.skip("prometheus-pushgateway is not installed: `apt-get install prometheus-pushgateway`")
    port = free_port(0)
    process = subprocess.Popen(
        [binary, f"--web.listen-address=127.0.0.1:{port}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    url = f"http://127.0.0.1:{port}/metrics"
    try:
        import urllib.request

        def answers() -> bool:
            try:
                with urllib.request.urlopen(url, timeout=1) as response:
                    return int(response.status) == 200
            except OSError:
                return False

        wait_for(answers, f"pushgateway on port {port}")
        yield url
    finally:
        stop_process(process)


def metrics_profile(*items: str, extra: str = "") -> str:
    """A profile whose metrics items are given as YAML flow mappings."""
    body = "\n".join(f"  - {item}" for item in items)
    return f"environment: test\ndefaults: {{timeout: 2s}}\nmetrics:\n{body}\n{extra}"
