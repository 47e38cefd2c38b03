"""The demo's Prometheus: runbook 000's KPI table, served by a real prometheus scraping a demo exporter.

The exporter publishes the KPIs of runbook 000 (API p95 latency per service, error rate,
CPU and memory utilisation, database connections, queue depth) at values that match the
rest of the demo: the dashboard is slow (its latency warns), the database pool is at 80%
(warns), `background_jobs` holds 1,240 jobs (over the 1,000 warning); Reporting is down,
so its scrape target is down and a warning alert fires for it. Nothing is critical.

It needs the `prometheus` server binary (Debian: `apt-get install prometheus`); where there
is none, `serve_demo_prometheus()` yields None and the demo leaves Prometheus out::

    with serve_demo_prometheus() as demo:
        if demo is not None:
            args = [f"--var=DEMO_PROMETHEUS={demo.url}"]
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from opsproof.demo.startup import DemoStartError, DemoUsageError
from opsproof.local.ports import free_port
from opsproof.local.processes import stop_process  # no import on the way out (see there)

if TYPE_CHECKING:
    from aiohttp import web

URL_VARIABLE = "DEMO_PROMETHEUS"
BINARY_VARIABLE = "OPSPROOF_PROMETHEUS"
READY_TIMEOUT_S = 30.0  # targets appear after prometheus's first discovery round (5 s after its start)
# Short, so the first scrape and the first evaluation follow that round closely; the scrape timeout
# stays at half a second, which a loopback exporter meets on a busy machine.
SCRAPE_INTERVAL = "500ms"
EVALUATION_INTERVAL = "250ms"

SERIES = {
    'scorpius_api_latency_p95_seconds{service="wallet-guard"}': 0.045,
    'scorpius_api_latency_p95_seconds{service="auth-proxy"}': 0.062,
    'scorpius_api_latency_p95_seconds{service="dashboard"}': 0.150,
    'scorpius_error_ratio{service="wallet-guard"}': 0.0004,
    'scorpius_error_ratio{service="auth-proxy"}': 0.0002,
    "node_cpu_utilisation_ratio": 0.42,
    "node_memory_utilisation_ratio": 0.61,
    "pg_connections_used_ratio": 0.80,
    'scorpius_queue_depth{queue="background_jobs"}': 1240,
}

RULES = """
groups:
  - name: scorpius
    interval: 250ms
    rules:
      - alert: ServiceDown
        expr: up{job="reporting"} == 0
        for: 0s
        labels: {severity: warning}
        annotations: {summary: "Reporting (non-critical) is down"}
      - alert: QueueBacklog
        expr: scorpius_queue_depth > 1000
        for: 0s
        labels: {severity: warning}
        annotations: {summary: "{{ $labels.queue }} holds {{ $value }} jobs"}
      - alert: Watchdog
        expr: vector(1)
        labels: {severity: none}
"""


@dataclass(frozen=True)
class DemoPrometheus:
    url: str  # http://127.0.0.1:port, for `--var DEMO_PROMETHEUS=...`

    @property
    def line(self) -> str:
        return f"Prometheus on {self.url} scraping runbook 000's KPIs (Reporting's target is down)"


def prometheus_binary() -> str | None:
    """$OPSPROOF_PROMETHEUS, else `prometheus` on PATH or in /usr/bin; DemoUsageError when the variable is wrong."""
    chosen = os.environ.get(BINARY_VARIABLE)
    if chosen:
        if not (os.path.isfile(chosen) and os.access(chosen, os.X_OK)):
            raise DemoUsageError(f"{BINARY_VARIABLE}={chosen!r} is not an executable file")
        return chosen
    return shutil.which("prometheus") or shutil.which("prometheus", path="/usr/bin:/usr/local/bin")


def _exporter() -> web.Application:
    from aiohttp import web

    text = "".join(f"{series} {value}\n" for series, value in SERIES.items())

    async def metrics(request: web.Request) -> web.Response:
        return web.Response(text=text, content_type="text/plain")

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    return app


@dataclass
class StartingPrometheus:
    """A prometheus process just spawned: its address now, its settled state after `settle()`."""

    url: str
    process: subprocess.Popen[bytes]
    log: Path
    exporter: str  # host:port the exporter must serve on (started by `serve_exporter()`)

    @property
    def demo(self) -> DemoPrometheus:
        return DemoPrometheus(url=self.url)

    def settle(self, timeout: float = READY_TIMEOUT_S) -> None:
        """Until both targets were scraped once and both alerts fire: the demo's checks see a settled state."""
        _wait_ready(self.url, self.process, self.log, timeout)


@contextmanager
def start_demo_prometheus(port: int = 19090) -> Iterator[StartingPrometheus | None]:
    """Spawn prometheus on 127.0.0.1 (`port`, or a free one) at once, without waiting; None without a binary.

    Its first round of target discovery comes 5 s after it starts, whatever the
    configuration (a fixed tick of Prometheus's discovery manager), so the demo starts it
    before anything else and serves the exporter meanwhile (`serve_exporter`); scrapes
    and rule evaluations every fraction of a second then settle it soon after that round.
    """
    binary = prometheus_binary()
    if binary is None:
        yield None
        return
    with tempfile.TemporaryDirectory(prefix="opsproof-prom-") as tmp:
        folder = Path(tmp)
        exporter = f"127.0.0.1:{free_port(0)}"
        (folder / "rules.yml").write_text(RULES)
        config = {
            "global": {
                "scrape_interval": SCRAPE_INTERVAL,
                "scrape_timeout": SCRAPE_INTERVAL,
                "evaluation_interval": EVALUATION_INTERVAL,
            },
            "rule_files": [str(folder / "rules.yml")],
            "scrape_configs": [
                {"job_name": "scorpius", "static_configs": [{"targets": [exporter]}]},
                # Nothing listens there: Reporting's target is down at every scrape.
                {"job_name": "reporting", "static_configs": [{"targets": [f"127.0.0.1:{free_port(0)}"]}]},
            ],
        }
        (folder / "prometheus.yml").write_text(json.dumps(config))
        address = f"127.0.0.1:{free_port(port)}"
        with open(folder / "prometheus.log", "wb") as log:
            process = subprocess.Popen(
                [
                    binary,
                    f"--config.file={folder / 'prometheus.yml'}",
                    f"--storage.tsdb.path={folder / 'data'}",
                    f"--web.listen-address={address}",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        try:
            yield StartingPrometheus(f"http://{address}", process, folder / "prometheus.log", exporter)
        finally:
            stop_process(process)


@contextmanager
def serve_exporter(started: StartingPrometheus) -> Iterator[str]:
    """Serve runbook 000's KPIs where `started` scrapes them; yields host:port."""
    from opsproof.testing.servers import serving

    with serving(int(started.exporter.rsplit(":", 1)[1]), _exporter()) as address:
        yield address


@contextmanager
def serve_demo_prometheus(port: int = 19090) -> Iterator[DemoPrometheus | None]:
    """Start the exporter and prometheus on 127.0.0.1 (`port`, or a free one), settled; None without a binary."""
    with start_demo_prometheus(port) as started:
        if started is None:
            yield None
            return
        with serve_exporter(started):
            started.settle()
            yield started.demo


def _wait_ready(url: str, process: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise DemoStartError(f"prometheus exited {process.returncode}: {log.read_text()[-500:]}")
        try:
            targets = _get(f"{url}/api/v1/targets?state=active")["activeTargets"]
            alerts = _get(f"{url}/api/v1/alerts")["alerts"]
        except OSError:
            targets, alerts = [], []
        scraped = {t["labels"]["job"]: t["health"] for t in targets}
        firing = {a["labels"]["alertname"] for a in alerts if a["state"] == "firing"}
        if scraped == {"scorpius": "up", "reporting": "down"} and {"QueueBacklog", "ServiceDown"} <= firing:
            return
        time.sleep(0.05)
    raise DemoStartError(f"the demo prometheus was not ready within {timeout:g}s (its log: {log.read_text()[-300:]})")


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=2) as response:
        return json.loads(response.read())["data"]
