"""What a run does before its probe processes fork: nothing the probes do not need (issue 18).

The first request waits for the fork, and the fork for everything the pytest process does
before it, so the fork comes straight after the profile is loaded and the run's options are
checked: before collection, and before the modules that write the bundle (their import moves
into the wait for the first facts). A conftest of the run records, at the first fork of the
pytest process, which modules it had imported; the run itself is a real one, against the HTTP
server the test starts, in a subprocess (the fork must be the process's own). The benchmarks'
timeline plugin, which marks each of these phases, is run the same way.
"""

from __future__ import annotations

import json

import pytest

from conftest import REPO, HttpServer, Runner, TlsServer, http_profile

RECORD_AT_FORK = """
import json
import os
import sys
from pathlib import Path

_fork = os.fork
_seen = Path(__file__).with_name("at-fork.json")


def fork():
    if not _seen.exists():
        _seen.write_text(json.dumps(sorted(sys.modules)))
    return _fork()


os.fork = fork
"""


def test_the_probe_process_forks_before_collection_and_before_the_bundle_writers(
    runner: Runner, http_server: HttpServer
) -> None:
    runner.profile(http_profile(f"{{name: up, url: '{http_server.base}/health'}}"))
    (runner.pytester.path / "conftest.py").write_text(RECORD_AT_FORK)
    run = runner.run("-m", "daily", subprocess=True)
    assert run.ret == 0, run.output
    assert run.record("http.health[up]")["outcome"] == "passed"
    at_fork = set(json.loads((runner.pytester.path / "at-fork.json").read_text()))
    assert "opsproof.run.gather" in at_fork and "opsproof.targets.http" in at_fork  # the fork is the gatherer's
    # Collection has not begun: no checks module is imported yet.
    assert not {name for name in at_fork if name.startswith(("checks", "test_http"))}, sorted(at_fork)
    # Nor what writes the bundle, nor the probe's own library (the probe process imports it).
    late = {"opsproof.run.recorder", "opsproof.evidence.bundle", "opsproof.evidence.html", "jinja2", "aiohttp"}
    assert not late & at_fork, sorted(late & at_fork)


def test_the_benchmarks_timeline_marks_every_phase_of_a_run(
    runner: Runner, http_server: HttpServer, tls_server: TlsServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """benchmarks/timeline.py wraps private functions of the run: this fails when one of them moves.

    A `tls` item too: its kind has a library to import (cryptography), so its probe process is the warm
    one forked before the profile is loaded; `http`'s imports nothing the run has not (its lean client),
    so its process forks once the profile is loaded.
    """
    address = tls_server.base.removeprefix("https://")
    host, port = address.rsplit(":", 1)
    tls = f"tls:\n  - {{name: t, host: {host}, port: {port}, ca_file: '{tls_server.ca_file}'}}\n"
    runner.profile(http_profile(*(f"{{name: up-{n}, url: '{http_server.base}/health'}}" for n in range(3)), extra=tls))
    monkeypatch.setenv("PYTHONPATH", str(REPO / "benchmarks"))
    run = runner.run("-m", "daily", "-p", "timeline", subprocess=True)
    assert run.ret == 0, run.output
    marks = [line.split("]", 1)[1].strip() for line in run.output.splitlines() if line.startswith("timeline ")]
    said = "\n".join(marks)
    for phase in (
        "pytest_load_initial_conftests",
        "parent: prepare (fork probe processes) begins",
        "child tls: forked (warm, before the profile is loaded)",  # opsproof.run.warm: --profile names tls
        "child tls: the run's state received",
        "child http: forked",
        "child http: libraries imported, event loop running",
        "child http: first request sent",
        "child http: first facts sent",
        "child http: last facts sent (3)",
        "parent: first facts received",
        "first check's call",
        "parent: last facts received",
        "last check ends",
        "bundle: results document",
        "bundle: report.html rendered",
        "bundle: manifest and seal",
        "bundle: history (and upload)",
        "sessionfinish ends",
    ):
        assert phase in said, f"no {phase!r} in:\n{said}"
