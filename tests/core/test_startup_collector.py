"""The cyclic collector is paused from the plugin's registration to the test loop, and given back (issue 18).

The start of a run makes ~100,000 objects that live to its end; the collector's passes over
them cost ~20-30 ms before the first request (opsproof.heap). Each run here is a real one:
in a subprocess where the pause is the process's own (a conftest records the collector's
state at the probe process's fork and at the end), and in-process, where the host's
collector must be as it was.
"""

from __future__ import annotations

import gc
import json

import pytest

from conftest import HttpServer, Runner, http_profile

RECORD = """
import gc
import json
import os
from pathlib import Path

_seen = Path(__file__).with_name("collector.json")
_states = {}
_fork = os.fork


def fork():
    _states.setdefault("at the probe process's fork", gc.isenabled())
    return _fork()


os.fork = fork


def pytest_unconfigure():
    _states["at the end"] = gc.isenabled()
    _seen.write_text(json.dumps(_states))
"""


def test_a_run_starts_with_the_collector_paused_and_ends_with_it_on(runner: Runner, http_server: HttpServer) -> None:
    runner.profile(http_profile(f"{{name: up, url: '{http_server.base}/health'}}"))
    (runner.pytester.path / "conftest.py").write_text(RECORD)
    run = runner.run("-m", "daily", subprocess=True)
    assert run.ret == 0, run.output
    states = json.loads((runner.pytester.path / "collector.json").read_text())
    assert states == {"at the probe process's fork": False, "at the end": True}


def test_a_pytest_without_opsproof_keeps_its_collector(pytester: pytest.Pytester) -> None:
    """The plugin is loaded by every pytest in the environment: one that runs no opsproof checks is left as it was."""
    pytester.makepyfile(test_plain="import gc\n\ndef test_collector_on():\n    assert gc.isenabled()\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)


def test_a_run_inside_another_program_leaves_its_collector_as_it_was(runner: Runner, http_server: HttpServer) -> None:
    runner.profile(http_profile(f"{{name: up, url: '{http_server.base}/health'}}"))
    before = gc.isenabled()
    run = runner.run("-m", "daily")  # in this process: pytest.main, as pytester and wrappers call it
    assert run.ret == 0, run.output
    assert gc.isenabled() == before
    gc.disable()
    try:
        assert runner.run("-m", "daily").ret == 0
        assert not gc.isenabled()  # a host that had it off still has it off
    finally:
        if before:
            gc.enable()
