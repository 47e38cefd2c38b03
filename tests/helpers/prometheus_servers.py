"""A real Prometheus (Debian's `prometheus` package) scraping an exporter the tests control.

`prom` is a prometheus process (scrape and rule evaluation every second) scraping:

- job `app`: an aiohttp exporter whose /metrics the tests change (`Exporter.set`),
- job `gone`: a closed port, so one target is always down (connection refused).

Its rules fire on the exporter's values: HighLatency (critical: reporting's p95 is 0.7 s),
QueueBacklog (warning: 1,240 jobs), DiskInfo (info), Watchdog (severity none), SlowBurn
(critical, `for: 1h`: pending, never firing) and Flapping (critical, team=flaps: fires while
`demo_flap` is 1, which only the overnight-alerts test sets).

`prom_secured` is a second prometheus with TLS (a trustme certificate) and basic auth (the
user `ops`, password SECRET) from its own --web.config.file; `bearer_gateway` is an
authenticating proxy in front of `prom`, as oauth2-proxy or an ingress would be (Prometheus
itself has no bearer tokens). Where no prometheus binary is installed the tests skip, saying
to install the Debian package.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import trustme
from aiohttp import ClientSession, web

from conftest import SECRET, wait_for
from opsproof.testing.servers import free_port, serving

# The exporter's series at the start of the session (series text -> value).
BASELINE: dict[str, float] = {
    'demo_latency_p95_seconds{service="wallet-guard"}': 0.05,
    'demo_latency_p95_seconds{service="reporting"}': 0.7,
    'demo_queue_depth{queue="background_jobs"}': 1240,
    "demo_cache_hit_ratio": 0.93,
    'demo_requests_total{service="wallet-guard"}': 1000,
    'demo_errors_total{service="wallet-guard"}': 2,
    "demo_spike": 1,
    "demo_flap": 0,
}

RULES = """
groups:
  - name: demo
    interval: 1s
    rules:
      - alert: HighLatency
        expr: demo_latency_p95_seconds > 0.5
        labels: {severity: critical}
        annotations: {summary: "p95 latency of {{ $labels.service }} is {{ $value }}s"}
      - alert: QueueBacklog
        expr: demo_queue_depth > 1000
        labels: {severity: warning}
      - alert: DiskInfo
        expr: vector(1)
        labels: {severity: info}
      - alert: Watchdog
        expr: vector(1)
        labels: {severity: none}
      - alert: SlowBurn
        expr: vector(1)
        for: 1h
        labels: {severity: critical}
      - alert: Flapping
        expr: demo_flap > 0
        labels: {severity: critical, team: flaps}
"""


def prometheus_binary() -> str | None:
    """The prometheus server binary: $OPSPROOF_PROMETHEUS, else the one on PATH (Debian: /usr/bin)."""
    explicit = os.environ.get("OPSPROOF_PROMETHEUS")
    return explicit or shutil.which("prometheus") or shutil.which("prometheus", path="/usr/bin:/usr/local/bin")


NO_PROMETHEUS = (
    "prometheus is not installed: `apt-get install prometheus` (Debian's package; CI installs it), "
    "or point OPSPROOF_PROMETHEUS at a prometheus binary"
)


def prom_profile(*items: str, extra: str = "") -> str:
    """A profile whose prometheus items are given as YAML flow mappings."""
    body = "\n".join(f"  - {item}" for item in items)
    return f"environment: test\ndefaults: {{timeout: 3s}}\nprometheus:\n{body}\n{extra}"


@dataclass
class Exporter:
    """The `app` job's /metrics: every series of `values`, changed by `set`."""

    address: str = ""
    values: dict[str, float] = field(default_factory=lambda: dict(BASELINE))

    def text(self) -> str:
        return "".join(f"{series} {value}\n" for series, value in self.values.items())

    def set(self, series: str, value: float) -> None:
        self.values[series] = value


@dataclass
class Prometheus:
    """One prometheus process: its base URL and where it logs."""

    url: str
    process: subprocess.Popen[bytes]
    log: Path
    ca_file: Path | None = None

    def api(self, path: str, **params: str) -> Any:
        """GET /api/v1/<path> without credentials (the plain server only); the `data` of the answer."""
        query = urllib.parse.urlencode(params)
        with urllib.request.urlopen(f"{self.url}/api/v1/{path}?{query}", timeout=5) as response:
            return json.loads(response.read())["data"]

    def value(self, query: str) -> float | None:
        result = self.api("query", query=query)["result"]
        return float(result[0]["value"][1]) if result else None

    def firing(self) -> set[str]:
        return {a["labels"]["alertname"] for a in self.api("alerts")["alerts"] if a["state"] == "firing"}


@contextlib.contextmanager
def run_prometheus(
    folder: Path, config: dict[str, Any], rules: str = "", web_config: dict[str, Any] | None = None
) -> Iterator[Prometheus]:
    """Start prometheus with this configuration in `folder`; stop it (TERM, then KILL) afterwards."""
    binary = prometheus_binary()
    if binary is None:
        pytest.skip(NO_PROMETHEUS)
    folder.mkdir(parents=True, exist_ok=True)
    if rules:
        (folder / "rules.yml").write_text(rules)
        config = {**config, "rule_files": [str(folder / "rules.yml")]}
    (folder / "prometheus.yml").write_text(json.dumps(config))  # JSON is YAML
    port = free_port(0)
    args = [
        binary,
        f"--config.file={folder / 'prometheus.yml'}",
        f"--storage.tsdb.path={folder / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
    ]
    scheme = "http"
    if web_config is not None:
        (folder / "web.yml").write_text(json.dumps(web_config))
        args.append(f"--web.config.file={folder / 'web.yml'}")
        scheme = "https" if "tls_server_config" in web_config else "http"
    log = folder / "prometheus.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    server = Prometheus(url=f"{scheme}://127.0.0.1:{port}", process=process, log=log)
    try:
        wait_for(lambda: _listening(port) or _died(server), "prometheus to listen", timeout=30)
        if process.poll() is not None:
            raise AssertionError(f"prometheus exited {process.returncode}:\n{log.read_text()[-2000:]}")
        yield server
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


def _listening(port: int) -> bool:
    import socket

    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def _died(server: Prometheus) -> bool:
    return server.process.poll() is not None


@pytest.fixture(scope="session")
def exporter() -> Iterator[Exporter]:
    found = Exporter()

    async def metrics(request: web.Request) -> web.Response:
        return web.Response(text=found.text(), content_type="text/plain")

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    with serving(free_port(0), app) as address:
        found.address = address
        yield found


@dataclass
class Scraping:
    """`prom` and its exporter, with the address of the target that is down."""

    server: Prometheus
    exporter: Exporter
    gone: str

    @property
    def url(self) -> str:
        return self.server.url

    def wait_value(self, query: str, value: float) -> None:
        wait_for(lambda: self.server.value(query) == value, f"{query} == {value}", timeout=20)


@pytest.fixture(scope="session")
def prom(exporter: Exporter, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scraping]:
    gone = f"127.0.0.1:{free_port(0)}"
    config = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [
            {"job_name": "app", "static_configs": [{"targets": [exporter.address]}]},
            {"job_name": "gone", "static_configs": [{"targets": [gone]}]},
        ],
    }
    with run_prometheus(tmp_path_factory.mktemp("prom"), config, RULES) as server:
        scraping = Scraping(server, exporter, gone)
        # Targets appear after the first discovery round (~5 s), then alerts after a scrape and a rule run.
        wait_for(lambda: _target_health(server) == {"app": "up", "gone": "down"}, "targets scraped", timeout=30)
        wait_for(lambda: {"HighLatency", "QueueBacklog"} <= server.firing(), "alerts firing", timeout=15)
        yield scraping


def _target_health(server: Prometheus) -> dict[str, str]:
    try:
        targets = server.api("targets", state="active")["activeTargets"]
    except (OSError, urllib.error.URLError):
        return {}
    return {t["labels"]["job"]: t["health"] for t in targets}


def _bcrypt(password: str) -> str | None:
    try:
        import bcrypt
    except ImportError:
        return None
    return str(bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4)).decode())


@pytest.fixture(scope="session")
def prom_secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prometheus]:
    """https:// with a trustme certificate and basic auth (ops / SECRET); scrapes nothing."""
    hashed = _bcrypt(SECRET)
    if hashed is None:
        pytest.skip("the bcrypt module (a dependency of paramiko) is needed to hash the test password")
    folder = tmp_path_factory.mktemp("prom-secured")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    cert.private_key_pem.write_to_path(str(folder / "key.pem"))
    cert.cert_chain_pems[0].write_to_path(str(folder / "cert.pem"))
    ca.cert_pem.write_to_path(str(folder / "ca.pem"))
    web_config = {
        "tls_server_config": {"cert_file": str(folder / "cert.pem"), "key_file": str(folder / "key.pem")},
        "basic_auth_users": {"ops": hashed},
    }
    config = {"global": {"scrape_interval": "1s", "evaluation_interval": "1s"}}
    with run_prometheus(folder / "server", config, web_config=web_config) as server:
        server.ca_file = folder / "ca.pem"
        yield server


@pytest.fixture(scope="session")
def bearer_gateway(prom: Scraping) -> Iterator[str]:
    """http://host:port in front of `prom`, forwarding only requests with `Authorization: Bearer SECRET`.

    A refused request gets a 401 that echoes the header it was sent, as careless gateways do.
    """

    async def forward(request: web.Request) -> web.Response:
        given = request.headers.get("Authorization", "")
        if given != f"Bearer {SECRET}":
            return web.json_response({"error": "invalid token", "you_sent": given}, status=401)
        async with ClientSession() as session, session.get(f"{prom.url}{request.path_qs}") as answer:
            body = await answer.read()
            return web.Response(body=body, status=answer.status, content_type=answer.content_type)

    app = web.Application()
    app.router.add_get("/{tail:.*}", forward)
    with serving(free_port(0), app) as address:
        yield f"http://{address}"


def wait_alert_cycle(scraping: Scraping, series: str, alert: str) -> None:
    """Make `alert` fire (series -> 1) and resolve (series -> 0), waiting on the server for each."""
    scraping.exporter.set(series, 1)
    wait_for(lambda: alert in scraping.server.firing(), f"{alert} to fire", timeout=15)
    scraping.exporter.set(series, 0)
    wait_for(lambda: alert not in scraping.server.firing(), f"{alert} to resolve", timeout=15)
