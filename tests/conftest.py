"""Real servers for the tests: HTTP and HTTPS endpoints, a black hole, and a pytester runner."""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import trustme
from aiohttp import web

from opsproof import ProfileError, load_profile
from opsproof.testing.servers import free_port, serving

REPO = Path(__file__).resolve().parents[1]
SECRET = "tok-Sup3r/s3cret+value"  # has characters that URL- and form-encode differently


@dataclass
class HttpServer:
    base: str
    requests: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)


def make_test_app(seen: list[tuple[str, str, dict[str, str]]]) -> web.Application:
    @web.middleware
    async def record(request: web.Request, handler: Any) -> web.StreamResponse:
        seen.append((request.method, request.path, dict(request.headers)))
        response: web.StreamResponse = await handler(request)
        return response

    async def health(request: web.Request) -> web.Response:
        return web.json_response({"status": "healthy", "version": "1.4.2"})

    async def status(request: web.Request) -> web.Response:
        return web.json_response({"status": "unhealthy"}, status=int(request.match_info["code"]))

    async def state(request: web.Request) -> web.Response:
        return web.json_response({"status": request.match_info["state"], "checks": {"db": "ok"}})

    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(int(request.match_info["ms"]) / 1000)
        return web.json_response({"status": "healthy"})

    cold: set[str] = set()

    async def cold_start(request: web.Request) -> web.Response:
        # Slow the first time each key is asked for, fast after: a cold cache, a JIT warming up.
        key = request.match_info["key"]
        if key not in cold:
            cold.add(key)
            await asyncio.sleep(0.3)
        return web.json_response({"status": "healthy"})

    async def text(request: web.Request) -> web.Response:
        return web.Response(text="OK: all systems go (build 2026.11)")

    async def auth(request: web.Request) -> web.Response:
        given = request.headers.get("Authorization", "")
        if given == f"Bearer {SECRET}":
            return web.json_response({"status": "healthy"})
        # Echo what was sent, as careless servers do: opsproof must still never print the secret.
        return web.json_response({"status": "denied", "you_sent": given}, status=401)

    async def echo(request: web.Request) -> web.Response:
        # Reflect the request as careless servers do (headers, path and query as sent, the body), after `pad`
        # characters, as plain text with the status asked for: opsproof must still never print a secret.
        lines = [f"{request.method} {request.raw_path}", *(f"{k}: {v}" for k, v in request.headers.items())]
        body = await request.text()
        text = "." * int(request.match_info["pad"]) + "\n".join([*lines, "", body])
        return web.Response(text=text, status=int(request.match_info["code"]))

    async def redirect_to(request: web.Request) -> web.Response:
        # A Location carrying the request's own query, URL-encoded once more: a login page's `next=`.
        raise web.HTTPFound("/login?next=" + quote(request.raw_path, safe=""))

    async def redirect(request: web.Request) -> web.Response:
        raise web.HTTPFound("/login")

    async def cookie(request: web.Request) -> web.Response:
        response = web.json_response({"status": "healthy"})
        response.set_cookie("session", "from-the-first-endpoint")
        return response

    async def error_budget(request: web.Request) -> web.Response:
        # Runbook 004's /slos/error-budget, as an SLO service answers it.
        return web.json_response(
            {
                "slo": "api_availability",
                "objective": "99.9%",
                "error_budget": {"remaining_percent": 23.5, "consumed": "76.5%", "burn_rate": 1.8},
                "window": {"days": 30, "elapsed": "12d"},
                "slos": [{"name": "api_availability", "status": "at_risk", "latency_p95": "420ms"}],
                "frozen": False,
                "owner": None,
            }
        )

    async def cluster_health(request: web.Request) -> web.Response:
        # Runbook 003's OpenSearch _cluster/health.
        return web.json_response({"cluster_name": "apex", "status": "yellow", "number_of_nodes": 3})

    async def big(request: web.Request) -> web.Response:
        # A large JSON document, sent in many chunks: a probe reading one chunk would see half of it.
        items = [{"id": n, "name": f"item-{n:05d}", "padding": "x" * 40} for n in range(2000)]
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)
        text = json.dumps({"items": items, "status": "complete"}).encode()
        for start in range(0, len(text), 8192):
            await response.write(text[start : start + 8192])
            await asyncio.sleep(0.001)
        await response.write_eof()
        return response  # type: ignore[return-value]

    app = web.Application(middlewares=[record])
    app.router.add_get("/big", big)
    app.router.add_get("/slos/error-budget", error_budget)
    app.router.add_get("/_cluster/health", cluster_health)
    app.router.add_get("/health", health)
    app.router.add_get("/status/{code}", status)
    app.router.add_get("/state/{state}", state)
    app.router.add_get("/slow/{ms}", slow)
    app.router.add_get("/cold/{key}", cold_start)
    app.router.add_get("/text", text)
    app.router.add_get("/auth", auth)
    app.router.add_get("/redirect", redirect)
    app.router.add_get("/redirect-with-query", redirect_to)
    app.router.add_route("*", r"/echo/{code:\d+}/{pad:\d+}{tail:.*}", echo)
    app.router.add_get("/cookie", cookie)
    return app


@pytest.fixture(scope="session", autouse=True)
def every_bundle_validates(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """After the session: each results.json the tests' runs wrote validates against `opsproof schema --results`.

    Only bundles still as sealed count (their manifest's sha256 of results.json matches):
    some tests change a bundle on purpose, to show that `opsproof verify` sees it.
    """
    yield
    import jsonschema

    from opsproof.evidence.manifest import sha256_file
    from opsproof.model.results import results_json_schema

    validator = jsonschema.Draft202012Validator(results_json_schema())
    problems = []
    for results in tmp_path_factory.getbasetemp().rglob("results.json"):
        try:
            listed = json.loads(results.with_name("manifest.json").read_text())["files"]["results.json"]["sha256"]
        except (OSError, ValueError, KeyError, TypeError):
            continue  # not a sealed bundle
        if listed != sha256_file(results):
            continue  # changed by a test after sealing
        problems += [
            f"{results}: {error.json_path}: {error.message}"
            for error in validator.iter_errors(json.loads(results.read_text()))
        ]
    assert not problems, "results.json not valid against its JSON Schema:\n" + "\n".join(problems[:20])


@pytest.fixture(scope="session")
def http_server() -> Iterator[HttpServer]:
    server = HttpServer(base="")
    with serving(free_port(0), make_test_app(server.requests)) as address:
        server.base = f"http://{address}"
        yield server


@dataclass
class TlsServer:
    base: str
    ca_file: Path


@pytest.fixture(scope="session")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsServer]:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(context)
    ca_file = tmp_path_factory.mktemp("tls") / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    with serving(free_port(0), make_test_app([]), ssl_context=context) as address:
        yield TlsServer(base=f"https://{address}", ca_file=ca_file)


@contextlib.contextmanager
def listening_black_hole(backlog: int = 64) -> Iterator[int]:
    """A port whose TCP connections complete (the kernel does it) and are never answered."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(backlog)
        yield int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def black_hole() -> Iterator[str]:
    """An HTTP URL that accepts TCP connections and never answers."""
    with listening_black_hole() as port:
        yield f"http://127.0.0.1:{port}/health"


@pytest.fixture
def closed_port() -> str:
    return f"http://127.0.0.1:{free_port(0)}/health"


@dataclass
class Run:
    """One opsproof run inside pytester: its output, exit code and evidence bundle."""

    result: pytest.RunResult
    report_dir: Path

    @property
    def ret(self) -> int:
        return int(self.result.ret)

    @property
    def output(self) -> str:
        return self.result.stdout.str() + "\n" + self.result.stderr.str()

    @property
    def bundles(self) -> list[Path]:
        return sorted(p for p in self.report_dir.iterdir() if p.is_dir() and not p.name.startswith("."))

    @property
    def bundle(self) -> Path:
        bundles = self.bundles
        assert len(bundles) == 1, f"expected one bundle, found {bundles}\n{self.output}"
        return bundles[0]

    @property
    def results(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads((self.bundle / "results.json").read_text())
        return data

    def record(self, check: str) -> dict[str, Any]:
        found = [c for c in self.results["checks"] if c["check"] == check]
        assert found, f"no record {check} in {[c['check'] for c in self.results['checks']]}"
        return found[0]

    def outcomes(self, prefix: str = "") -> dict[str, tuple[str, str]]:
        """(outcome, message) of every record whose check id starts with `prefix`."""
        return {
            c["check"]: (c["outcome"], c["message"]) for c in self.results["checks"] if c["check"].startswith(prefix)
        }


class Runner:
    """Runs the repository's checks against a profile written by the test."""

    def __init__(self, pytester: pytest.Pytester) -> None:
        self.pytester = pytester
        shutil.copytree(REPO / "checks", pytester.path / "checks")
        (pytester.path / "profiles").mkdir()
        pytester.makeini(
            "[pytest]\ntestpaths = checks\naddopts = --strict-markers -p no:cacheprovider\nopsproof = true\n"
        )
        self.report_dir = pytester.path / "reports"

    def profile(self, text: str, name: str = "test") -> Path:
        path = self.pytester.path / "profiles" / f"{name}.yaml"
        path.write_text(text)
        return path

    def run(self, *args: str, subprocess: bool = False, profile: str | None = "test") -> Run:
        full = [*args, "--report-dir", str(self.report_dir)]
        if profile is not None:
            full += ["--profile", profile]
        if subprocess:
            result = self.pytester.runpytest_subprocess(*full, timeout=120)
        else:
            result = self.pytester.runpytest(*full)
        return Run(result=result, report_dir=self.report_dir)


class _SubprocessPytester:
    """What Runner uses of pytester, running pytest in a subprocess in a folder of our own."""

    def __init__(self, root: Path) -> None:
        self.path = root

    def makeini(self, text: str) -> None:
        (self.path / "pytest.ini").write_text(text)

    def runpytest(self, *args: str, timeout: float = 300) -> pytest.RunResult:
        started = time.monotonic()
        done = subprocess.run(
            [sys.executable, "-m", "pytest", *args], cwd=self.path, capture_output=True, text=True, timeout=timeout
        )
        return pytest.RunResult(
            done.returncode, done.stdout.splitlines(), done.stderr.splitlines(), time.monotonic() - started
        )

    runpytest_subprocess = runpytest


def module_runner(root: Path) -> Runner:
    """A Runner for module-scoped fixtures: one run whose records many tests assert on."""
    return Runner(_SubprocessPytester(root))  # type: ignore[arg-type]


@pytest.fixture
def runner(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> Runner:
    monkeypatch.delenv("OPSPROOF_PROFILE", raising=False)
    return Runner(pytester)


def default_sigint() -> None:
    """preexec_fn for a child the test will send SIGINT: `nohup pytest tests &` starts the suite with
    SIGINT ignored, children inherit that, and Python then installs no KeyboardInterrupt handler."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def descendants(pid: int) -> set[int]:
    """Every process below `pid` (by parent links in /proc)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def process_alive(pid: int) -> bool:
    """The process exists and is not a zombie (a reaped-late child still has a /proc entry)."""
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 15.0) -> None:
    """Poll `condition` until it holds; fail the test naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def profile_error(folder: Path, text: str) -> str:
    """The ProfileError a profile of `text` gives, loaded as `bad.yaml` (the name its messages show)."""
    path = folder / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ProfileError) as caught:
        load_profile(path, display_path="bad.yaml")
    return str(caught.value)


def http_profile(*items: str, environment: str = "test", extra: str = "") -> str:
    """A profile whose http items are given as YAML flow mappings."""
    body = "\n".join(f"  - {item}" for item in items)
    return f"environment: {environment}\ndefaults: {{timeout: 2s}}\nhttp:\n{body}\n{extra}"
