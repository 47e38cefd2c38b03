"""What a run does before its probe processes fork: nothing the probes do not need (issue 18).

The first request waits for the fork, and the fork for everything the pytest process does
before it, so the fork comes straight after the profile is loaded and the run's options are
checked: before collection, and before the modules that write the bundle (their import moves
into the wait for the first facts). A conftest of the run records, at the first fork of the
pytest process, which modules it had imported; the run itself is a real one, against the HTTP
server the test starts, in a subprocess (the fork must be the process's own).
"""

from __future__ import annotations

import json

from conftest import HttpServer, Runner, http_profile

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
