"""The demo's Prometheus: runbook 000's KPI table, served by a real prometheus scraping a demo exporter.

The exporter publishes the KPIs of runbook 000 (API p95 latency per service, error rate,
CPU and memory utilisation, database connections, queue depth) at values that match the
rest of the demo: the dashboard is slow (its latency warns), the database pool is at 80%
(warns), `background_jobs` holds 1,240 jobs (over the 1,000 warning); Reporting is down,
so its scrape target is down and a warning alert fires for it. Nothing is critical.

Prometheus 2.42 scrapes its first targets ~5 s after it starts, whatever its configuration
(its discovery and scrape managers sync on a fixed 5 s tick), and the demo must not wait for
that. So before it starts, its TSDB is back-filled (`promtool tsdb create-blocks-from
openmetrics`) with the last minute of what those scrapes will bring: every KPI of the exporter
and `up` of both targets (Reporting's 0), labelled as its scrapes label them. Its first rule
evaluation, a fraction of a second after its start, then finds the data and fires both alerts;
its own scrapes continue the same series from the 5 s round on. The demo profile reads target
health from the `up` series (`targets: {source: up}`), not /api/v1/targets, which lists
nothing before that round. Without promtool beside prometheus, nothing is back-filled and the
demo waits for the round, as it did before.

It needs the `prometheus` server binary (Debian: `apt-get install prometheus`, which ships
promtool); where there is none, `serve_demo_prometheus()` yields None and the demo leaves
Prometheus out::

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
READY_TIMEOUT_S = 30.0  # without a back-fill, the first scrape comes after the first discovery round (5 s)
# Short, so the first scrape and the first evaluation follow that round closely; the scrape timeout
# stays at half a second, which a loopback exporter meets on a busy machine.
SCRAPE_INTERVAL = "500ms"
SCRAPE_INTERVAL_S = 0.5
EVALUATION_INTERVAL = "250ms"
BACKFILL_S = 60.0  # the history written before prometheus starts: a minute of samples, one per scrape interval
PROMTOOL_TIMEOUT_S = 30.0

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
    backfilled: bool = False  # its last minute of samples written by promtool before it started

    @property
    def line(self) -> str:
        if self.backfilled:
            return (
                f"Prometheus on {self.url} with runbook 000's KPIs: the last minute back-filled (promtool), "
                "then scraped from its 5 s discovery round on (Reporting's target is down)"
            )
        return f"Prometheus on {self.url} scraping runbook 000's KPIs (Reporting's target is down)"


def prometheus_binary() -> str | None:
    """$OPSPROOF_PROMETHEUS, else `prometheus` on PATH or in /usr/bin; DemoUsageError when the variable is wrong."""
    chosen = os.environ.get(BINARY_VARIABLE)
    if chosen:
        if not (os.path.isfile(chosen) and os.access(chosen, os.X_OK)):
            raise DemoUsageError(f"{BINARY_VARIABLE}={chosen!r} is not an executable file")
        return chosen
    return shutil.which("prometheus") or shutil.which("prometheus", path="/usr/bin:/usr/local/bin")


def promtool_binary(prometheus: str) -> str | None:
    """promtool beside the prometheus binary (Debian ships both), else on PATH; None without one."""
    beside = Path(os.path.realpath(prometheus)).with_name("promtool")
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which("promtool")


def backfill_text(exporter: str, reporting: str, now: float) -> str:
    """OpenMetrics of the last BACKFILL_S seconds up to `now`: what prometheus's scrapes of both targets write.

    Each series carries the `job` and `instance` labels a scrape gives it, so prometheus's own
    samples continue the same series. Only up to `now`: its head refuses samples older than
    the back-filled block's end, and its first scrape comes seconds later.
    """
    scorpius = f'job="scorpius",instance="{exporter}"'
    families: dict[str, list[tuple[str, float]]] = {"up": [(f"up{{{scorpius}}}", 1.0)]}
    families["up"].append((f'up{{job="reporting",instance="{reporting}"}}', 0.0))
    for series, value in SERIES.items():
        name, _, labels = series.partition("{")
        labels = labels.rstrip("}")
        families.setdefault(name, []).append((f"{name}{{{labels + ',' if labels else ''}{scorpius}}}", value))
    steps = int(BACKFILL_S / SCRAPE_INTERVAL_S)
    stamps = [now - (steps - index) * SCRAPE_INTERVAL_S for index in range(steps + 1)]
    lines = []
    for name, members in families.items():
        lines.append(f"# TYPE {name} gauge")
        lines += [f"{series} {value:g} {stamp:.3f}" for series, value in members for stamp in stamps]
    return "\n".join([*lines, "# EOF", ""])


def _backfill(promtool: str, folder: Path, exporter: str, reporting: str) -> None:
    """Write the back-fill into folder/data as a TSDB block; DemoStartError when promtool refuses."""
    source = folder / "backfill.om"
    source.write_text(backfill_text(exporter, reporting, time.time()))
    try:
        done = subprocess.run(
            [promtool, "tsdb", "create-blocks-from", "openmetrics", str(source), str(folder / "data")],
            capture_output=True,
            text=True,
            timeout=PROMTOOL_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise DemoStartError(f"promtool did not back-fill the demo prometheus within {PROMTOOL_TIMEOUT_S:g}s") from None
    if done.returncode != 0:
        raise DemoStartError(f"promtool exited {done.returncode}: {(done.stdout + done.stderr)[-500:]}")


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
    backfilled: bool = False

    @property
    def demo(self) -> DemoPrometheus:
        return DemoPrometheus(url=self.url, backfilled=self.backfilled)

    def settle(self, timeout: float = READY_TIMEOUT_S) -> None:
        """Until `up` shows both targets and both alerts fire: the demo's checks see a settled state.

        Back-filled, that is its first rule evaluation; otherwise its first scrapes, after its
        first discovery round.
        """
        _wait_ready(self.url, self.process, self.log, timeout)


@contextmanager
def start_demo_prometheus(port: int = 19090) -> Iterator[StartingPrometheus | None]:
    """Back-fill its TSDB, spawn prometheus on 127.0.0.1 (`port`, or a free one), not waiting; None without one.

    Its first round of target discovery comes 5 s after it starts, whatever the
    configuration (a fixed tick of Prometheus's discovery manager): the back-fill (when
    promtool is there) lets its first rule evaluation find the data instead. The demo
    starts it before anything else and serves the exporter meanwhile (`serve_exporter`).
    """
    binary = prometheus_binary()
    if binary is None:
        yield None
        return
    promtool = promtool_binary(binary)
    with tempfile.TemporaryDirectory(prefix="opsproof-prom-") as tmp:
        folder = Path(tmp)
        exporter = f"127.0.0.1:{free_port(0)}"
        reporting = f"127.0.0.1:{free_port(0)}"  # nothing listens there: Reporting's target is down
        if promtool is not None:
            _backfill(promtool, folder, exporter, reporting)
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
                {"job_name": "reporting", "static_configs": [{"targets": [reporting]}]},
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
            log_path = folder / "prometheus.log"
            yield StartingPrometheus(f"http://{address}", process, log_path, exporter, promtool is not None)
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
            up = _get(f"{url}/api/v1/query?query=up")["result"]
            alerts = _get(f"{url}/api/v1/alerts")["alerts"]
        except OSError:
            up, alerts = [], []
        health = {series["metric"].get("job"): series["value"][1] for series in up}
        firing = {a["labels"]["alertname"] for a in alerts if a["state"] == "firing"}
        if health == {"scorpius": "1", "reporting": "0"} and {"QueueBacklog", "ServiceDown"} <= firing:
            return
        time.sleep(0.02)
    raise DemoStartError(f"the demo prometheus was not ready within {timeout:g}s (its log: {log.read_text()[-300:]})")


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=2) as response:
        return json.loads(response.read())["data"]
