"""The plugin as users drive it: markers, exit codes, --fail-on, severities, xdist, interrupts."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from conftest import REPO, HttpServer, Runner, default_sigint, http_profile
from opsproof.cli import main as opsproof


def _mixed(base: str) -> str:
    return http_profile(
        f"{{name: up, url: '{base}/health'}}",
        f"{{name: down-critical, url: '{base}/status/503'}}",
        f"{{name: down-medium, url: '{base}/status/503', critical: false}}",
        f"{{name: down-low, url: '{base}/status/503', severity: low}}",
    )


@pytest.mark.parametrize(
    ("fail_on", "expected"),
    [("critical", 1), ("high", 1), ("medium", 1), ("low", 1), ("never", 0)],
)
def test_fail_on_with_a_critical_failure(runner: Runner, http_server: HttpServer, fail_on: str, expected: int) -> None:
    runner.profile(_mixed(http_server.base))
    assert runner.run("-m", "daily", "--fail-on", fail_on).ret == expected


@pytest.mark.parametrize(("fail_on", "expected"), [("critical", 0), ("high", 0), ("medium", 1), ("low", 1)])
def test_fail_on_with_only_a_medium_failure(
    runner: Runner, http_server: HttpServer, fail_on: str, expected: int
) -> None:
    runner.profile(
        http_profile(
            f"{{name: up, url: '{http_server.base}/health'}}",
            f"{{name: reporting, url: '{http_server.base}/status/503', critical: false}}",
        )
    )
    run = runner.run("-m", "daily", "--fail-on", fail_on)
    assert run.ret == expected
    assert run.results["run"]["exit_code"] == expected
    assert run.results["run"]["status"] == ("passed" if expected == 0 else "failed")


def test_severity_mapping_and_blocking_list(runner: Runner, http_server: HttpServer) -> None:
    runner.profile(_mixed(http_server.base))
    run = runner.run("-m", "daily")
    severities = {c["target"]: c["severity"] for c in run.results["checks"]}
    assert severities == {"up": "critical", "down-critical": "critical", "down-medium": "medium", "down-low": "low"}
    assert run.results["summary"]["blocking"] == ["http.health[down-critical]"]
    assert run.results["summary"]["by_severity"]["medium"] == {"failed": 1}


def test_bad_fail_on_is_a_usage_error(runner: Runner, http_server: HttpServer) -> None:
    runner.profile(_mixed(http_server.base))
    run = runner.run("-m", "daily", "--fail-on", "severe")
    assert run.ret == 4
    assert "--fail-on" in run.output and "severe" in run.output
    assert not run.report_dir.exists() or run.bundles == []


def test_a_mistyped_marker_writes_no_bundle(runner: Runner, http_server: HttpServer) -> None:
    """`-m dialy` is a usage error: nothing ran, so no sealed bundle joins the chain or the history."""
    runner.profile(_mixed(http_server.base))
    run = runner.run("-m", "dialy")
    assert run.ret == 4
    assert "dialy" in run.output
    assert "no evidence bundle was written" in run.output
    assert not run.report_dir.exists() or (run.bundles == [] and not (run.report_dir / "history.sqlite").exists())


def test_markers_are_registered_and_strict(runner: Runner, http_server: HttpServer) -> None:
    runner.profile(_mixed(http_server.base))
    result = runner.pytester.runpytest("--markers")
    for marker in (
        "daily",
        "weekly",
        "monthly",
        "quarterly",
        "yearly",
        "health",
        "infra",
        "certs",
        "backup",
        "dr",
        "monitoring",
        "security",
        "capacity",
        "post_deploy",
    ):
        result.stdout.fnmatch_lines([f"@pytest.mark.{marker}:*"])
    runner.pytester.makepyfile(**{"checks/test_custom.py": "import pytest\n@pytest.mark.dayly\ndef test_x(): pass\n"})
    run = runner.run("-m", "daily")
    assert "'dayly' not found in `markers` configuration option" in run.output


def test_each_check_has_exactly_one_cadence(runner: Runner, http_server: HttpServer) -> None:
    runner.profile(
        http_profile(
            f"{{name: daily-one, url: '{http_server.base}/health'}}",
            f"{{name: weekly-one, url: '{http_server.base}/health', cadence: weekly}}",
        )
    )
    daily = runner.run("-m", "daily")
    assert [c["target"] for c in daily.results["checks"]] == ["daily-one"]
    assert daily.results["run"]["selection"]["markers"] == "daily"


def test_post_deploy_selection(runner: Runner, http_server: HttpServer) -> None:
    runner.profile(_mixed(http_server.base))
    run = runner.run("-m", "post_deploy", "-k", "up")
    assert [c["check"] for c in run.results["checks"]] == ["http.health[up]"]
    assert run.ret == 0


def test_no_checks_selected_exits_5_and_says_so(runner: Runner, http_server: HttpServer) -> None:
    runner.profile(_mixed(http_server.base))
    run = runner.run("-m", "monthly")
    assert run.ret == 5
    assert run.results["run"]["status"] == "no_checks"


def test_empty_profile_section_yields_no_placeholder_checks(runner: Runner) -> None:
    runner.profile("environment: empty\n")
    run = runner.run("-m", "daily")
    assert run.ret == 5
    assert run.results["checks"] == []


def test_default_profile_comes_from_the_environment(
    runner: Runner, http_server: HttpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    runner.profile(_mixed(http_server.base).replace("environment: test", "environment: from-env"), name="chosen")
    monkeypatch.setenv("OPSPROOF_PROFILE", "chosen")
    run = runner.run("-m", "daily", profile=None)
    assert run.results["run"]["environment"] == "from-env"


def test_missing_profile_is_a_usage_error_without_bundle(runner: Runner) -> None:
    run = runner.run("-m", "daily", profile="nonexistent")
    assert run.ret == 4
    assert "profiles/nonexistent.yaml: profile not found" in run.output
    assert not run.report_dir.exists()


def test_bad_profile_is_a_usage_error_naming_file_line_and_key(runner: Runner, http_server: HttpServer) -> None:
    runner.profile(
        "environment: test\nhttp:\n  - name: api\n    url: http://x/health\n    expect:\n      latency: {warn: 100 ms}\n"
    )
    run = runner.run("-m", "daily")
    assert run.ret == 4
    assert "test.yaml:6: http[0].expect.latency.warn: invalid duration '100 ms'" in run.output
    assert not run.report_dir.exists()


def test_plain_vars_from_the_command_line(runner: Runner, http_server: HttpServer) -> None:
    runner.profile(http_profile("{name: api, url: 'http://${vars.API_HOST}/health'}"))
    address = http_server.base.removeprefix("http://")
    run = runner.run("-m", "daily", "--var", f"API_HOST={address}")
    assert run.ret == 0, run.output
    assert run.results["run"]["vars"] == {"API_HOST": address}
    assert run.record("http.health[api]")["observed"]["url"] == f"{http_server.base}/health"
    bad = runner.run("-m", "daily", "--var", "no-equals-sign")
    assert bad.ret == 4
    assert "--var 'no-equals-sign': expected NAME=VALUE" in bad.output


@pytest.mark.parametrize(
    "command",
    [
        ["report", "--environment", "prod", "--period", "monthly", "--profile", "test"],
        ["attest", "review", "--by", "alice", "--note", "done", "--profile", "test"],
        ["seal-run", "reports", "--profile", "test"],
    ],
    ids=["report", "attest", "seal-run"],
)
def test_the_commands_refuse_a_malformed_var_as_a_run_does(
    command: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """One parser serves `pytest --var`, `opsproof report/attest/seal-run --var`: the same message, exit 4."""
    monkeypatch.chdir(tmp_path)
    assert opsproof([*command, "--var", "1X=y", "--report-dir", str(tmp_path / "reports")]) == 4
    assert "--var '1X=y': expected NAME=VALUE" in capsys.readouterr().err


def test_warned_is_honest_in_terminal_junit_and_results(runner: Runner, http_server: HttpServer) -> None:
    runner.profile(
        http_profile(f"{{name: slow, url: '{http_server.base}/slow/200', expect: {{latency: {{warn: 50ms}}}}}}")
    )
    run = runner.run("-m", "daily", "-v")
    assert run.ret == 0
    run.result.stdout.fnmatch_lines(["*test_health[[]slow[]] WARNED*", "*1 warned*"])
    assert run.results["summary"]["by_outcome"]["warned"] == 1
    suite = ET.parse(run.bundle / "junit.xml").getroot()
    assert suite.get("warnings") == "1" and suite.get("failures") == "0"
    case = suite.find("testcase")
    assert case is not None
    props = {p.get("name"): p.get("value") for p in case.iter("property")}
    assert props["opsproof.outcome"] == "warned"
    assert "WARNED: latency" in (case.findtext("system-out") or "")


def test_an_exception_in_a_check_is_an_error_not_a_failure(runner: Runner, http_server: HttpServer) -> None:
    runner.profile(_mixed(http_server.base))
    runner.pytester.makepyfile(
        **{
            "checks/health/test_http.py": (
                "import pytest\n"
                "pytestmark = [pytest.mark.health]\n"
                "def test_health(item, facts, check):\n"
                "    raise KeyError('bug in the check')\n"
            )
        }
    )
    run = runner.run("-m", "daily")
    record = run.record("http.health[up]")
    assert record["outcome"] == "error"
    assert record["message"] == "KeyError: 'bug in the check'"
    assert run.ret == 1
    run.result.stdout.fnmatch_lines(["*4 error*"])


def test_fixtures_that_use_check_and_facts_share_the_checks_own(runner: Runner, http_server: HttpServer) -> None:
    # opsproof hands checks their `item`, `check` and `facts` ahead of pytest's fixture pass;
    # a fixture of the suite's own that asks for them must get the very same objects.
    runner.profile(http_profile(f"{{name: up, url: '{http_server.base}/health'}}"))
    runner.pytester.makepyfile(
        **{
            "checks/conftest.py": (
                "import pytest\n"
                "@pytest.fixture\n"
                "def annotated(check, facts, item):\n"
                "    check.observe(seen_by_fixture=facts.status, named=item.name)\n"
                "    return check\n"
            ),
            "checks/health/test_http.py": (
                "import pytest\n"
                "pytestmark = [pytest.mark.health]\n"
                "def test_health(annotated, item, facts, check):\n"
                "    assert annotated is check\n"
                "    check.observe(in_check=True)\n"
                "    assert facts.status == 200\n"
            ),
        }
    )
    run = runner.run("-m", "daily")
    record = run.record("http.health[up]")
    assert record["outcome"] == "passed", record
    assert record["observed"]["seen_by_fixture"] == 200
    assert record["observed"]["named"] == "up"
    assert record["observed"]["in_check"] is True
    assert record["observed"]["status"] == 200  # the probe's facts, observed once


def test_a_broken_checks_module_is_an_internal_error(runner: Runner, http_server: HttpServer) -> None:
    runner.profile(_mixed(http_server.base))
    runner.pytester.makepyfile(**{"checks/health/test_broken.py": "import nonexistent_module\n"})
    run = runner.run("-m", "daily")
    assert run.ret == 3
    assert run.results["run"]["status"] == "internal_error"


def test_xdist_gives_the_same_records_and_one_bundle(runner: Runner, http_server: HttpServer) -> None:
    runner.profile(
        _mixed(http_server.base)
        + "\n".join(f"  - {{name: extra-{i}, url: '{http_server.base}/health'}}" for i in range(8))
        + "\n"
    )
    serial = runner.run("-m", "daily")
    before = len(http_server.requests)
    parallel = runner.run("-m", "daily", "-n", "2", "--use-workers", subprocess=True)
    assert len(parallel.bundles) == 2, parallel.output
    assert parallel.ret == serial.ret == 1
    newest = json.loads((parallel.bundles[-1] / "results.json").read_text())
    oldest = json.loads((parallel.bundles[0] / "results.json").read_text())

    def digest(results: dict[str, object]) -> list[tuple[str, str, str, str]]:
        checks = results["checks"]
        assert isinstance(checks, list)
        # Passing messages carry the measured latency, which differs run to run.
        return sorted(
            (c["check"], c["outcome"], c["severity"], c["message"] if c["outcome"] != "passed" else "") for c in checks
        )

    runs = sorted([newest, oldest], key=lambda r: r["run"]["started_at"])
    assert digest(runs[0]) == digest(runs[1])
    # Two workers, one probe per target.
    assert len(http_server.requests) - before == 12


def _wait_for(path: Path, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_an_interrupted_run_leaves_a_bundle_that_says_interrupted(
    runner: Runner, black_hole: str, sig: signal.Signals
) -> None:
    runner.profile(http_profile(f"{{name: hole, url: '{black_hole}', timeout: 30s}}"))
    marker = runner.pytester.path / "started"
    runner.pytester.makeconftest(
        f"import pathlib\ndef pytest_collection_finish(session):\n    pathlib.Path({str(marker)!r}).touch()\n"
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "pytest", "-m", "daily", "--profile", "test", "--report-dir", str(runner.report_dir)],
        cwd=runner.pytester.path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        preexec_fn=default_sigint,
    )
    _wait_for(marker)
    time.sleep(0.5)
    process.send_signal(sig)
    output, _ = process.communicate(timeout=30)
    assert process.returncode == 2, output
    bundles = [p for p in runner.report_dir.iterdir() if p.is_dir() and not p.name.startswith(".")]
    assert len(bundles) == 1, output
    results = json.loads((bundles[0] / "results.json").read_text())
    assert results["run"]["status"] == "interrupted"
    assert results["run"]["interrupted_by"] == ("SIGTERM" if sig == signal.SIGTERM else "SIGINT")
    assert "evidence bundle" in output.strip().splitlines()[-1]


def test_report_dir_outside_the_repository_as_a_separate_argument(
    runner: Runner, http_server: HttpServer, tmp_path_factory: pytest.TempPathFactory
) -> None:
    # pytest reads `--report-dir /elsewhere` as a test path while it looks for its ini, before
    # plugins add their options; the run must still find its profile and collect only checks/.
    runner.profile(_mixed(http_server.base))
    runner.pytester.makepyfile(**{"tests/test_not_a_check.py": "def test_project_own(): assert False\n"})
    elsewhere = tmp_path_factory.mktemp("evidence")
    result = runner.pytester.runpytest_subprocess("-m", "daily", "--profile", "test", "--report-dir", str(elsewhere))
    assert result.ret == 1, result.stdout.str()
    (bundle,) = [p for p in elsewhere.iterdir() if p.is_dir() and not p.name.startswith(".")]
    checks = json.loads((bundle / "results.json").read_text())["checks"]
    assert sorted(c["target"] for c in checks) == ["down-critical", "down-low", "down-medium", "up"]


def test_collect_only_lists_checks_and_writes_no_bundle(runner: Runner, http_server: HttpServer) -> None:
    runner.profile(_mixed(http_server.base))
    before = len(http_server.requests)
    run = runner.run("-m", "daily", "--collect-only", "-q")
    assert run.ret == 0
    run.result.stdout.fnmatch_lines(["*test_health[[]down-critical[]]*"])
    assert not run.report_dir.exists() or run.bundles == []
    assert len(http_server.requests) == before  # nothing probed


def test_a_cadence_run_probes_exactly_its_targets_once(runner: Runner, http_server: HttpServer) -> None:
    # `-m daily` starts probing while pytest collects (the cron case): still each daily
    # target once, and never the weekly one.
    runner.profile(
        http_profile(
            f"{{name: a, url: '{http_server.base}/health?who=a'}}",
            f"{{name: b, url: '{http_server.base}/health?who=b'}}",
            f"{{name: w, url: '{http_server.base}/health?who=w', cadence: weekly}}",
        )
    )
    before = len(http_server.requests)
    run = runner.run("-m", "daily")
    assert run.ret == 0, run.output
    assert sorted(c["target"] for c in run.results["checks"]) == ["a", "b"]
    asked = sorted(path for _, path, _ in http_server.requests[before:])
    assert asked == ["/health", "/health"]
    assert len(http_server.requests) - before == 2


def test_a_narrowed_run_never_contacts_unselected_targets(runner: Runner, http_server: HttpServer) -> None:
    runner.profile(
        http_profile(
            f"{{name: chosen, url: '{http_server.base}/state/chosen'}}",
            f"{{name: other, url: '{http_server.base}/state/other'}}",
        )
    )
    for narrowing in (["-k", "chosen"], ["--deselect", "checks/health/test_http.py::test_health[other]"]):
        before = len(http_server.requests)
        run = runner.run("-m", "daily", *narrowing)
        assert [c["target"] for c in run.results["checks"]] == ["chosen"], run.output
        assert [path for _, path, _ in http_server.requests[before:]] == ["/state/chosen"], narrowing
        for bundle in run.bundles:
            shutil.rmtree(bundle)


# What an install without the test extras has: no trustme, so the repository's tests/conftest.py cannot load.
_NO_TEST_EXTRAS = "import sys; sys.modules['trustme'] = None; import pytest; sys.exit(pytest.main(sys.argv[1:]))"


def _pytest_without_test_extras(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "OPSPROOF_PROFILE"}
    return subprocess.run(
        [sys.executable, "-c", _NO_TEST_EXTRAS, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=120
    )


def test_a_profile_path_written_apart_works_without_the_test_extras(tmp_path: Path) -> None:
    """`--profile /abs/p.yaml` outside the repository: pytest loses its ini; tests/conftest.py must not load."""
    profile = tmp_path / "p.yaml"
    profile.write_text("environment: t\n")
    for form in (["--profile", str(profile)], [f"--profile={profile}"]):
        done = _pytest_without_test_extras("-m", "daily", *form, f"--report-dir={tmp_path / 'r'}")
        output = done.stdout + done.stderr
        assert done.returncode == 5, output  # the profile has no items: no checks selected
        assert "trustme" not in output and "conftest" not in output, output
