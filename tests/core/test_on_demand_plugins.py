"""allure-pytest, pytest-testinfra, xdist's looponfail: blocked by the repository's ini, loaded when their options are given.

Each run is a pytest subprocess in a folder whose pytest.ini carries the repository's own addopts
(read from pyproject.toml), against the HTTP server the tests start. A conftest.py there writes
which of the two plugins the run registered.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest

from conftest import REPO, HttpServer, Runner, http_profile
from opsproof.run.on_demand import ON_DEMAND, asked_for

ADDOPTS = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]["addopts"]

CONFTEST = """
import json
from pathlib import Path

def pytest_sessionfinish(session):
    manager = session.config.pluginmanager
    names = ("allure_pytest", "pytest11.testinfra", "platformdirs", "xdist.looponfail")
    registered = {name: manager.has_plugin(name) for name in names}
    Path(__file__).with_name("registered.json").write_text(json.dumps(registered))
"""


def _runner(runner: Runner, http_server: HttpServer) -> Runner:
    runner.pytester.makeini(f"[pytest]\ntestpaths = checks\naddopts = {ADDOPTS}\nopsproof = true\n")
    (runner.pytester.path / "conftest.py").write_text(CONFTEST)
    runner.profile(http_profile(f"{{name: up, url: '{http_server.base}/health'}}"))
    return runner


def _registered(runner: Runner) -> dict[str, bool]:
    return json.loads((runner.pytester.path / "registered.json").read_text())


def test_the_repository_ini_blocks_both(runner: Runner, http_server: HttpServer) -> None:
    assert "-p no:allure_pytest" in ADDOPTS and "-p no:pytest11.testinfra" in ADDOPTS
    run = _runner(runner, http_server).run("-m", "daily", "-n", "2", "--use-workers", subprocess=True)
    assert run.ret == 0, run.output
    # platformdirs' plugin (its own tests' fixture) is blocked too, and nothing loads it back; xdist's
    # looponfail is not loaded either, and `-n` works without it.
    assert _registered(runner) == {
        "allure_pytest": False,
        "pytest11.testinfra": False,
        "platformdirs": False,
        "xdist.looponfail": False,
    }
    assert run.record("http.health[up]")["outcome"] == "passed"


@pytest.mark.parametrize("form", ["space", "equals", "xdist"])
def test_alluredir_loads_allure_and_its_results_carry_opsproof_labels(
    runner: Runner, http_server: HttpServer, tmp_path: Path, form: str
) -> None:
    allure_dir = tmp_path / "allure"
    option = [f"--alluredir={allure_dir}"] if form == "equals" else ["--alluredir", str(allure_dir)]
    if form == "xdist":  # each worker parses the same command line and loads allure-pytest itself
        option += ["-n", "2", "--use-workers"]
    run = _runner(runner, http_server).run("-m", "daily", *option, "--clean-alluredir", subprocess=True)
    assert run.ret == 0, run.output
    assert _registered(runner) == {
        "allure_pytest": True,
        "pytest11.testinfra": False,
        "platformdirs": False,
        "xdist.looponfail": False,
    }
    results = [json.loads(p.read_text()) for p in allure_dir.glob("*-result.json")]
    labels = {label["name"]: label["value"] for r in results if r["name"] == "test_health[up]" for label in r["labels"]}
    assert labels["opsproof_check"] == "http.health[up]"
    assert labels["severity"] == "blocker"  # critical -> Allure's blocker


def test_a_testinfra_option_loads_testinfra(runner: Runner, http_server: HttpServer) -> None:
    run = _runner(runner, http_server).run("-m", "daily", "--hosts=local://", subprocess=True)
    assert run.ret == 0, run.output
    assert _registered(runner) == {
        "allure_pytest": False,
        "pytest11.testinfra": True,
        "platformdirs": False,
        "xdist.looponfail": False,
    }


def test_p_loads_testinfra_for_a_teams_host_fixture(runner: Runner, http_server: HttpServer) -> None:
    runner = _runner(runner, http_server)
    custom = runner.pytester.path / "checks" / "health" / "test_team_host.py"
    custom.write_text(
        "import pytest\n\n@pytest.mark.daily\n@pytest.mark.health\n"
        "def test_hostname(host):\n    assert host.run('true').rc == 0\n"
    )
    run = runner.run("-m", "daily", "-p", "pytest11.testinfra", subprocess=True)
    assert run.ret == 0, run.output
    assert _registered(runner)["pytest11.testinfra"] is True
    without = runner.run("-m", "daily", subprocess=True)
    assert without.ret != 0
    assert "fixture 'host' not found" in without.output


def test_asked_for_stops_at_a_double_dash() -> None:
    allure = ON_DEMAND["allure_pytest"]
    assert asked_for(allure, ["-m", "daily", "--alluredir=x"])
    assert asked_for(allure, ["--allure-epics", "e"])
    assert not asked_for(allure, ["-m", "daily", "--", "--alluredir"])
    assert not asked_for(ON_DEMAND["pytest11.testinfra"], ["--profile=hosts.yaml"])


LOOPONFAIL_SEEN = """
import json
from pathlib import Path

import pytest


@pytest.hookimpl(tryfirst=True)
def pytest_cmdline_main(config):
    # Ahead of looponfail's own (a conftest registers later, so its tryfirst runs first): the loop never ends.
    looping = config.pluginmanager.has_plugin("xdist.looponfail") and config.getoption("looponfail", False)
    Path(__file__).with_name("looponfail.json").write_text(json.dumps(looping))
    return 0
"""


@pytest.mark.parametrize("option", ["--looponfail", "-f", None])
def test_looponfail_loads_when_asked_for(runner: Runner, http_server: HttpServer, option: str | None) -> None:
    """`-f`/`--looponfail` still work: the plugin loads and takes the option (the run stops before its loop)."""
    runner = _runner(runner, http_server)
    (runner.pytester.path / "conftest.py").write_text(LOOPONFAIL_SEEN)
    run = runner.run(*([option] if option else []), "-m", "daily", subprocess=True)
    assert run.ret == 0, run.output
    looping = json.loads((runner.pytester.path / "looponfail.json").read_text())
    assert looping is (option is not None)


def test_a_short_option_is_asked_for_only_when_written_alone() -> None:
    looponfail = ON_DEMAND["xdist.looponfail"]
    assert asked_for(looponfail, ["-m", "daily", "-f"])
    assert asked_for(looponfail, ["--looponfail"])
    assert not asked_for(looponfail, ["-m", "daily", "-fx"])
    assert not asked_for(looponfail, ["--fail-on", "medium"])
