"""Real TLS endpoints for the tls checks' tests, with certificates made here.

Every endpoint is a TLS server on its own loopback port, all served by one asyncio loop
on a background thread. Each counts the handshakes it saw begin (ClientHellos), the
sessions that completed and the application bytes it received, so tests can prove that a
probe does nothing but a handshake.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import trustme

from opsproof.testing.certs import Authority

REPO = Path(__file__).resolve().parents[2]
NOW = datetime.now(UTC)


def days(n: float) -> datetime:
    return NOW + timedelta(days=n)


@dataclass
class Endpoint:
    """One TLS server and what it saw."""

    name: str
    port: int = 0
    hellos: int = 0  # handshakes begun
    sessions: int = 0  # handshakes completed
    application_bytes: int = 0
    open: int = 0
    server_names: list[str | None] = field(default_factory=list)


class TlsFleet:
    """TLS endpoints on one event loop; `port(name)` says where each one listens."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.endpoints: dict[str, Endpoint] = {}
        self.loop = asyncio.new_event_loop()
        # Handshakes the probes abort on purpose (an untrusted certificate) are no news here.
        self.loop.set_exception_handler(lambda loop, context: None)
        self._servers: list[asyncio.Server] = []
        self._thread = threading.Thread(target=self.loop.run_forever, name="tls-fleet", daemon=True)
        self._thread.start()

    def port(self, name: str) -> int:
        return self.endpoints[name].port

    def serve(self, name: str, context: ssl.SSLContext | None) -> Endpoint:
        """Serve `context` (None: a plain TCP server that answers like HTTP, not TLS)."""
        endpoint = self.endpoints[name] = Endpoint(name)
        if context is not None:

            def hello(_: ssl.SSLObject, server_name: str | None, __: ssl.SSLContext) -> None:
                endpoint.hellos += 1
                endpoint.server_names.append(server_name)

            context.sni_callback = hello

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            endpoint.sessions += 1
            endpoint.open += 1
            try:
                if context is None:
                    writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
                while chunk := await reader.read(65536):
                    endpoint.application_bytes += len(chunk)
            except (OSError, ssl.SSLError):
                pass
            finally:
                endpoint.open -= 1
                writer.close()

        async def start() -> asyncio.Server:
            return await asyncio.start_server(handle, "127.0.0.1", 0, ssl=context)

        server = asyncio.run_coroutine_threadsafe(start(), self.loop).result(10)
        self._servers.append(server)
        endpoint.port = server.sockets[0].getsockname()[1]
        return endpoint

    def settle(self, timeout_s: float = 5.0) -> None:
        """Wait until every connection the probes opened has been closed (and its bytes counted)."""
        deadline = time.monotonic() + timeout_s
        while any(e.open for e in self.endpoints.values()) and time.monotonic() < deadline:
            time.sleep(0.02)

    def close(self) -> None:
        async def stop() -> None:
            for server in self._servers:
                server.close()

        asyncio.run_coroutine_threadsafe(stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()


def server_context(cert: trustme.LeafCert | None = None, *, only: ssl.TLSVersion | None = None) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    if cert is not None:
        cert.configure_cert(context)
    if only is not None:
        # An old endpoint: one protocol, and the SHA-1 ciphers OpenSSL 3 allows only at level 0.
        context.minimum_version = context.maximum_version = only
        context.set_ciphers("DEFAULT:@SECLEVEL=0")
    return context


@dataclass
class Fleet:
    """The endpoints the tests use, and the CA files that trust them."""

    servers: TlsFleet
    ca_file: Path  # trusts every endpoint but `untrusted` and `intermediate-expired`
    other_ca_file: Path  # trusts `untrusted`
    root_file: Path  # trusts `intermediate-expired`

    def port(self, name: str) -> int:
        return self.servers.port(name)

    def endpoint(self, name: str) -> Endpoint:
        return self.servers.endpoints[name]


@pytest.fixture(scope="session")
def tls_fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    import warnings

    folder = tmp_path_factory.mktemp("tls-fleet")
    ca, other = trustme.CA(), trustme.CA()
    servers = TlsFleet(folder)
    here = ("localhost", "127.0.0.1")
    leaves = {
        "good": ca.issue_cert(*here, not_before=days(-10), not_after=days(80)),
        "soon": ca.issue_cert(*here, not_before=days(-70), not_after=days(20)),
        "critical": ca.issue_cert(*here, not_before=days(-87), not_after=days(3)),
        "expired": ca.issue_cert(*here, not_before=days(-92), not_after=days(-2)),
        "future": ca.issue_cert(*here, not_before=days(2), not_after=days(92)),
        "lifetime": ca.issue_cert(*here, not_before=days(-80), not_after=days(20)),  # 20% left
        "wrong-name": ca.issue_cert("other.example", not_before=days(-10), not_after=days(80)),
        "wildcard": ca.issue_cert("*.wild.example", not_before=days(-10), not_after=days(80)),
        "untrusted": other.issue_cert(*here, not_before=days(-10), not_after=days(80)),
    }
    for name, leaf in leaves.items():
        servers.serve(name, server_context(leaf))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # TLSv1_1, on purpose
        servers.serve("tls11", server_context(leaves["good"], only=ssl.TLSVersion.TLSv1_1))
    root = Authority.create("Test Root")
    stale = root.child("Stale Intermediate", not_before=days(-400), not_after=days(-1))
    servers.serve("intermediate-expired", stale.issue(not_before=days(-10), not_after=days(80)).server_context())
    servers.serve("plain", None)
    ca.cert_pem.write_to_path(str(folder / "ca.pem"))
    other.cert_pem.write_to_path(str(folder / "other-ca.pem"))
    try:
        yield Fleet(servers, folder / "ca.pem", folder / "other-ca.pem", root.write_pem(folder / "root.pem"))
    finally:
        servers.close()


@pytest.fixture(scope="session")
def tls_black_hole() -> Iterator[int]:
    """A port that accepts TCP connections (the kernel's backlog) and never answers a ClientHello."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        yield sock.getsockname()[1]


def tls_profile(*items: str, extra: str = "") -> str:
    """A profile whose tls items are given as YAML flow mappings."""
    body = "\n".join(f"  - {item}" for item in items)
    return f"environment: test\ndefaults: {{timeout: 2s}}\ntls:\n{body}\n{extra}"


@dataclass
class Run:
    """One opsproof run in a subprocess: exit code, output, wall time and results.json."""

    ret: int
    output: str
    wall_s: float
    bundle: Path
    results: dict[str, Any]

    def record(self, check: str) -> dict[str, Any]:
        found = [c for c in self.results["checks"] if c["check"] == check]
        assert found, f"no record {check} in {[c['check'] for c in self.results['checks']]}"
        return found[0]

    def checks_of(self, target: str) -> set[str]:
        return {c["check"] for c in self.results["checks"] if c["target"] == target}


def run_in_subprocess(folder: Path, profile_text: str, *args: str) -> Run:
    """Run the repository's checks against a profile in a fresh project folder, as cron would.

    A module-scoped run (one process for many assertions) keeps the test file fast.
    """
    shutil.copytree(REPO / "checks", folder / "checks")
    (folder / "pytest.ini").write_text(
        "[pytest]\ntestpaths = checks\naddopts = --strict-markers -p no:cacheprovider\nopsproof = true\n"
    )
    profile = folder / "profile.yaml"
    profile.write_text(profile_text)
    reports = folder / "reports"
    command = [sys.executable, "-m", "pytest", "-m", "daily", f"--profile={profile}", f"--report-dir={reports}", *args]
    started = time.monotonic()
    done = subprocess.run(command, cwd=folder, capture_output=True, text=True, timeout=120)
    wall = time.monotonic() - started
    output = done.stdout + "\n" + done.stderr
    bundles = [p for p in reports.iterdir() if p.is_dir() and not p.name.startswith(".")] if reports.exists() else []
    assert len(bundles) == 1, f"expected one bundle, found {bundles}\n{output}"
    results = json.loads((bundles[0] / "results.json").read_text())
    return Run(done.returncode, output, wall, bundles[0], results)
