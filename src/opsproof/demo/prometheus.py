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
from typing import Any

from aiohttp import web

from opsproof.demo.services import free_port, serving, stop_process

URL_VARIABLE = "DEMO_PROMETHEUS"
READY_TIMEOUT_S = 30.0  # targets appear after prometheus's first discovery round (~5 s)

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
    interval: 1s
    rules:
      - alert: ServiceDown
        expr: up{job="reporting"} == 0
        labels: {severity: warning}
        annotations: {summary: "Reporting (non-critical) is down"}
      - alert: QueueBacklog
        expr: scorpius_queue_depth > 1000
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
    """$OPSPROOF_PROMETHEUS, else `prometheus` on PATH or in /usr/bin."""
    return (
        os.environ.get("OPSPROOF_PROMETHEUS")
        or shutil.which("prometheus")
        or shutil.which("prometheus", path="/usr/bin:/usr/local/bin")
    )


def _exporter() -> web.Application:
    text = "".join(f"{series} {value}\n" for series, value in SERIES.items())

    async def metrics(request: web.Request) -> web.Response:
        return web.Response(text=text, content_type="text/plain")

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    return app


@contextmanager
def serve_demo_prometheus(port: int = 19090) -> Iterator[DemoPrometheus | None]:
    """Start the exporter and prometheus on 127.0.0.1 (`port`, or a free one); None without a binary."""
    binary = prometheus_binary()
    if binary is None:
        yield None
        return
    with serving(free_port(0), _exporter()) as exporter, tempfile.TemporaryDirectory(prefix="opsproof-prom-") as tmp:
        folder = Path(tmp)
        (folder / "rules.yml").write_text(RULES)
        config = {
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(folder / "rules.yml")],
            "scrape_configs": [
                {"job_name": "scorpius", "static_configs": [{"targets": [exporter]}]},
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
            _wait_ready(f"http://{address}", process, folder / "prometheus.log")
            yield DemoPrometheus(url=f"http://{address}")
        finally:
            stop_process(process)


def _wait_ready(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    """Until both targets were scraped once and the queue alert fires: the demo's checks see a settled state."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"prometheus exited {process.returncode}: {log.read_text()[-500:]}")
        try:
            targets = _get(f"{url}/api/v1/targets?state=active")["activeTargets"]
            alerts = _get(f"{url}/api/v1/alerts")["alerts"]
        except OSError:
            targets, alerts = [], []
        scraped = {t["labels"]["job"]: t["health"] for t in targets}
        firing = {a["labels"]["alertname"] for a in alerts if a["state"] == "firing"}
        if scraped == {"scorpius": "up", "reporting": "down"} and {"QueueBacklog", "ServiceDown"} <= firing:
            return
        time.sleep(0.2)
    raise RuntimeError(f"the demo prometheus was not ready within {READY_TIMEOUT_S:g}s")


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=2) as response:
        return json.loads(response.read())["data"]
