"""Log sources for the `logs` checks, staged with lines in and out of the window.

- Kubernetes: pods with logs in the project's API emulator (`pods/<name>/log`, served
  through the real client and kubeconfig files, every request recorded).
- Loki: `LokiFake`, a Loki-compatible HTTP server. A fake, because no real Grafana Loki
  can be installed from the registries here: Debian's `loki` package is a genetics
  program and PyPI's `loki` an astronomy library (checked with `apt-cache show loki` and
  `pip download loki`). It answers `GET /loki/api/v1/query_range` as Loki does (streams,
  nanosecond timestamps, `limit`, `direction`, `start`/`end`), for stream selectors of
  `label="value"` terms and `|= "text"` line filters, records every request, and
  answers 401 without the bearer token (echoing what it got) and 400 for a query it cannot parse.
- CloudWatch Logs: moto's server, every request's `X-Amz-Target` recorded.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest
from aiohttp import web

from conftest import SECRET
from helpers.backup_servers import REGION, moto_server
from helpers.kubernetes_servers import KubeCluster, _cluster
from opsproof.testing.kube_objects import namespace, pod
from opsproof.testing.kubernetes import KubeApiEmulator
from opsproof.testing.servers import free_port, serving

HOUR = 3600.0
DAY = 86400.0
LOG_NS = "payments"
LOCKED_NS = "locked"  # pods/log is forbidden here
LEAKED = "hunter2-in-a-log-line"  # a credential an application wrote into its own log

AUTH_FAILED = f"WARN authentication failed for user bob password={LEAKED}"
TRAINING = "INFO Training completed in 42m"


def api_lines(failures: int) -> list[tuple[float, str]]:
    """A log with `failures` auth failures in the last hour and 5 more two days ago (outside a 24h window)."""
    recent = [(HOUR - i, AUTH_FAILED) for i in range(failures)]
    old = [(2 * DAY + i, AUTH_FAILED) for i in range(5)]
    normal = [(600.0 + i, f"INFO GET /v1/payments/{i} 200") for i in range(20)]
    return old + recent + normal


def stage_logs(api: KubeApiEmulator) -> None:
    api.add(namespace(LOG_NS), namespace(LOCKED_NS))
    for index, failures in enumerate((3, 2, 1)):  # 6 in the window across three pods
        name = f"api-7d4b9-{index}"
        api.add(pod(LOG_NS, name, labels={"app": "api"}))
        api.add_log(LOG_NS, name, "api", api_lines(failures))
    api.add(pod(LOG_NS, "trainer-0", labels={"app": "trainer"}, containers=2))
    api.add_log(LOG_NS, "trainer-0", "trainer", [(300.0, "INFO epoch 9/10"), (120.0, TRAINING)])
    api.add_log(LOG_NS, "trainer-0", "trainer-sidecar-1", [(100.0, "INFO sidecar up")])
    # A pod whose container has not started: it has no log to read, and is no error.
    api.add(pod(LOG_NS, "api-7d4b9-new", labels={"app": "api"}, phase="Pending", ready=False))
    api.add(pod(LOG_NS, "batch-new-0", labels={"app": "batch"}, phase="Pending", ready=False))
    # 5 KB of chatter: more than a 1 KB cap.
    api.add(pod(LOG_NS, "chatty-0", labels={"app": "chatty"}))
    api.add_log(LOG_NS, "chatty-0", "chatty", [(60.0 - i / 100, f"DEBUG tick {i:04d} {'x' * 40}") for i in range(100)])
    api.add(pod(LOCKED_NS, "vault-0", labels={"app": "vault"}))
    api.add_log(LOCKED_NS, "vault-0", "vault", [(60.0, AUTH_FAILED)])
    api.forbidden.add(f"pods/log@{LOCKED_NS}")


@pytest.fixture(scope="session")
def log_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeCluster]:
    """An emulated cluster whose pods have logs (namespace payments), and one whose logs are forbidden."""
    api = KubeApiEmulator(token=SECRET)
    stage_logs(api)
    yield from _cluster(api, tmp_path_factory.mktemp("kube-logs"))


# -- Loki --------------------------------------------------------------------------------

_TERM = re.compile(r'\s*([A-Za-z_][A-Za-z0-9_]*)\s*=\s*"([^"]*)"\s*')
_FILTER = re.compile(r'\s*\|=\s*"([^"]*)"')


@dataclass
class LokiFake:
    """Loki's query_range over streams held in memory; see the module's docstring."""

    token: str
    streams: list[tuple[dict[str, str], list[tuple[int, str]]]] = field(default_factory=list)
    requests: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)
    url: str = ""

    def add(self, labels: dict[str, str], lines: list[tuple[float, str]]) -> None:
        """Lines of one stream, each `(seconds ago, text)`."""
        now = time.time_ns()
        self.streams.append((labels, sorted((now - int(age * 1e9), text) for age, text in lines)))

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.handle)
        return app

    async def handle(self, request: web.Request) -> web.Response:
        self.requests.append((request.method, request.path, dict(request.query)))
        given = request.headers.get("Authorization")
        if given != f"Bearer {self.token}":
            # Echo what was sent, as careless proxies do: opsproof must still never show it.
            return web.Response(status=401, text=f"bad token: {given}\n")
        if request.method != "GET" or request.path != "/loki/api/v1/query_range":
            return web.Response(status=404, text="404 page not found\n")
        query = request.query
        parsed = _parse(query.get("query", ""))
        if parsed is None:
            return web.Response(status=400, text="parse error at line 1, col 1: syntax error: unexpected IDENTIFIER\n")
        selector, needles = parsed
        start, end = int(query.get("start", "0")), int(query.get("end", str(time.time_ns())))
        limit = int(query.get("limit", "100"))
        forward = query.get("direction", "backward") == "forward"
        picked: list[tuple[int, int, str]] = []
        for index, (labels, lines) in enumerate(self.streams):
            if all(labels.get(k) == v for k, v in selector.items()):
                picked += [
                    (ts, index, text) for ts, text in lines if start <= ts < end and all(n in text for n in needles)
                ]
        picked.sort(reverse=not forward)
        picked = picked[:limit]
        result: dict[int, list[list[str]]] = {}
        for ts, index, text in picked:
            result.setdefault(index, []).append([str(ts), text])
        body = {
            "status": "success",
            "data": {
                "resultType": "streams",
                "result": [{"stream": self.streams[i][0], "values": values} for i, values in result.items()],
                "stats": {},
            },
        }
        return web.json_response(body)


def _parse(query: str) -> tuple[dict[str, str], list[str]] | None:
    match = re.fullmatch(r"\s*\{([^}]*)\}(.*)", query, re.DOTALL)
    if match is None:
        return None
    selector = {}
    for term in filter(str.strip, match.group(1).split(",")):
        found = _TERM.fullmatch(term)
        if found is None:
            return None
        selector[found.group(1)] = found.group(2)
    rest = match.group(2)
    needles = _FILTER.findall(rest)
    if _FILTER.sub("", rest).strip():
        return None
    return selector, needles


@pytest.fixture(scope="session")
def loki() -> Iterator[LokiFake]:
    fake = LokiFake(token=SECRET)
    fake.add({"app": "auth-proxy", "env": "prod"}, api_lines(4))
    fake.add({"app": "auth-proxy", "env": "staging"}, api_lines(9))
    fake.add({"app": "trainer"}, [(120.0, TRAINING)])
    with serving(free_port(0), fake.app()) as address:
        fake.url = f"http://{address}"
        yield fake


# -- CloudWatch Logs ---------------------------------------------------------------------


@dataclass
class CloudWatchServer:
    url: str
    targets: list[str]  # every request's X-Amz-Target (the operation called)
    client: Any = field(repr=False)

    def group(self, name: str, streams: dict[str, list[tuple[float, str]]]) -> str:
        """A log group whose streams hold `(seconds ago, message)` events."""
        self.client.create_log_group(logGroupName=name)
        now_ms = int(time.time() * 1000)
        for stream, events in streams.items():
            self.client.create_log_stream(logGroupName=name, logStreamName=stream)
            self.client.put_log_events(
                logGroupName=name,
                logStreamName=stream,
                logEvents=sorted(
                    ({"timestamp": now_ms - int(age * 1000), "message": text} for age, text in events),
                    key=lambda e: e["timestamp"],
                ),
            )
        return name


@pytest.fixture(scope="session")
def cloudwatch() -> Iterator[CloudWatchServer]:
    """moto's CloudWatch Logs; the operations the checks call are recorded from the requests themselves."""
    targets: list[str] = []
    with moto_server() as (url, _, server):
        inner = server._server.app

        def recording(environ: dict[str, Any], start_response: Any) -> Any:
            targets.append(str(environ.get("HTTP_X_AMZ_TARGET", environ.get("REQUEST_METHOD"))))
            return inner(environ, start_response)

        server._server.app = recording
        client = boto3.client("logs", endpoint_url=url, region_name=REGION)
        yield CloudWatchServer(url, targets, client)


def logs_profile(*items: str, timeout: str = "5s") -> str:
    """A profile whose logs items are given as YAML flow mappings."""
    body = "\n".join(f"  - {item}" for item in items)
    return f"environment: test\ndefaults: {{timeout: {timeout}}}\nlogs:\n{body}\n"


def write_log(path: Path, lines: list[str], *, age: float = 0.0) -> Path:
    path.write_text("".join(f"{line}\n" for line in lines))
    if age:
        stamp = time.time() - age
        os.utime(path, (stamp, stamp))
    return path
