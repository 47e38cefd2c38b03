"""What the pytest process of a run never imports when the run does not use it (issue 18).

The pytest process is busy for most of a run, so a module it imports for nothing costs the
run's wall time. A run of HTTP checks with no `notify:`, no Pushgateway, no `--ping` and no
upload needs none of: the notifications' payloads, deliveries and past states, urllib's HTTP
client, the upload. A conftest of the run records the process's modules as it ends; the run
is a real one, against the HTTP server the test starts, in a subprocess (the process is its
own, as a cron run's is). Each name below fails the test when someone imports its module at
the top of a module the run loads.
"""

from __future__ import annotations

import json

from conftest import HttpServer, Runner, http_profile

RECORD_AT_END = """
import json
import sys
from pathlib import Path

import pytest


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config):
    Path(__file__).with_name("at-end.json").write_text(json.dumps(sorted(sys.modules)))
"""

NOT_IN_THE_PARENT = {
    # notify: delivery, payloads and the history's past states; metrics pushed; the end ping
    "opsproof.signals.delivery",
    "opsproof.signals.payloads",
    "opsproof.signals.state",
    "urllib.request",
    "http.client",
    # --upload
    "opsproof.compliance.upload",
}


RECORD_AT_PREPARE = """
import json
import sys
from pathlib import Path

from opsproof.run import gather

_prepare = gather.Gatherer.prepare
_seen = Path(__file__).with_name("at-prepare.json")


def prepare(self, *args, **kwargs):
    if not _seen.exists():
        _seen.write_text(json.dumps(sorted(sys.modules)))
    return _prepare(self, *args, **kwargs)


gather.Gatherer.prepare = prepare


def pytest_collection_finish(session):
    Path(__file__).with_name("at-collected.json").write_text(json.dumps(sorted(sys.modules)))
"""


def _modules_at_end(runner: Runner) -> set[str]:
    return set(json.loads((runner.pytester.path / "at-end.json").read_text()))


def test_an_http_run_loads_none_of_the_signals_it_does_not_send(runner: Runner, http_server: HttpServer) -> None:
    base = http_server.base
    runner.profile(http_profile(f"{{name: up, url: '{base}/health'}}", f"{{name: down, url: '{base}/status/503'}}"))
    (runner.pytester.path / "conftest.py").write_text(RECORD_AT_END)
    run = runner.run("-m", "daily", subprocess=True)
    assert run.ret == 1, run.output
    loaded = _modules_at_end(runner)
    assert "opsproof.evidence.bundle" in loaded and "opsproof.signals.after_run" in loaded  # the run did end
    assert not NOT_IN_THE_PARENT & loaded, sorted(NOT_IN_THE_PARENT & loaded)
    # The bundle is whole all the same.
    page = (run.bundle / "report.html").read_text()
    assert page.startswith("<!doctype html>") and "http.health[down]" in page and "http.health[up]" in page
    from opsproof.cli import main as opsproof

    assert opsproof(["verify", str(run.bundle)]) == 0


def test_a_run_that_notifies_loads_the_delivery(runner: Runner, http_server: HttpServer) -> None:
    """The other side: with `notify:` (shown, not sent) the payloads are made, so their modules load."""
    base = http_server.base
    rule = "notify:\n  - {webhook: {url: 'http://127.0.0.1:9/hook'}}\n"
    runner.profile(http_profile(f"{{name: down, url: '{base}/status/503'}}", extra=rule))
    (runner.pytester.path / "conftest.py").write_text(RECORD_AT_END)
    run = runner.run("-m", "daily", "--dry-run-notify", subprocess=True)
    assert run.ret == 1, run.output
    assert "would send to" in run.output, run.output
    loaded = _modules_at_end(runner)
    assert {"opsproof.signals.delivery", "opsproof.signals.payloads", "opsproof.signals.state"} <= loaded


def test_the_suite_commit_asked_as_the_checks_begin_is_the_one_recorded(
    runner: Runner, http_server: HttpServer
) -> None:
    """`git rev-parse HEAD` starts with the checks (run.results.GitCommit); results.json has its answer."""
    import subprocess

    runner.profile(http_profile(f"{{name: up, url: '{http_server.base}/health'}}"))
    root = runner.pytester.path
    first = runner.run("-m", "daily", subprocess=True)
    assert first.ret == 0, first.output
    assert first.results["run"]["suite"]["commit"] is None  # not a repository
    git = ["git", "-C", str(root), "-c", "user.name=t", "-c", "user.email=t@example.org"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "profiles"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "profiles"], check=True)
    head = subprocess.run([*git, "rev-parse", "HEAD"], check=True, capture_output=True, text=True).stdout.strip()
    second = runner.run("-m", "daily", subprocess=True)
    assert second.ret == 0, second.output
    newest = max(
        second.bundles, key=lambda bundle: json.loads((bundle / "results.json").read_text())["run"]["started_at"]
    )
    assert json.loads((newest / "results.json").read_text())["run"]["suite"]["commit"] == head


def test_the_results_models_and_the_bundle_load_after_the_probes_have_their_work(
    runner: Runner, http_server: HttpServer
) -> None:
    """The probe processes wait for `Gatherer.prepare` (the warm ones for the run's state): nothing later comes first.

    The results document's models (~9 ms to import, compiled), what writes the bundle and the
    signals load once the probes have their work and the checks are collected, while the run
    waits for its first facts.
    """
    runner.profile(http_profile(f"{{name: up, url: '{http_server.base}/health'}}"))
    (runner.pytester.path / "conftest.py").write_text(RECORD_AT_PREPARE)
    run = runner.run("-m", "daily", subprocess=True)
    assert run.ret == 0, run.output
    at_prepare = set(json.loads((runner.pytester.path / "at-prepare.json").read_text()))
    assert "opsproof.profile" in at_prepare and "opsproof.run.records" in at_prepare  # recorded at the run's prepare
    late = {"opsproof.model.results", "opsproof.run.recorder", "opsproof.signals.after_run", "opsproof.evidence.bundle"}
    assert not late & at_prepare, sorted(late & at_prepare)
    # Nor while the probe process sends its first requests and pytest collects: the results models
    # (~9 ms of the pytest process's CPU) load in the wait for the first facts, with the bundle's writers.
    at_collected = set(json.loads((runner.pytester.path / "at-collected.json").read_text()))
    assert "opsproof.run.recorder" in at_collected
    assert not {"opsproof.model.results", "opsproof.evidence.bundle"} & at_collected
