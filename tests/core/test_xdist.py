"""Under pytest-xdist the controller probes once and streams each target's facts to the workers.

Where workers cannot help (only the built-in kinds' checks, or fewer than N + 2 cores) `-n N`
runs in one process instead, and says so; `--use-workers` insists (the tests of the worker path
pass it, on this 2-core machine). (The records and the one probe per target under `-n 2` are
also tested in test_plugin.py.)
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import stat
import subprocess
import sys
import threading
import time
import xml.etree.ElementTree as ET
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import quote

import pytest
from aiohttp import web

from conftest import SECRET, HttpServer, Runner, http_profile
from opsproof.run.spool import SPOOL, SpoolReader
from opsproof.testing.servers import free_port, serving


class HeldServer:
    """`/fast/{n}` answers at once; `/held` answers only once the test calls `release()`."""

    def __init__(self) -> None:
        self.paths: list[str] = []
        self.holding = threading.Event()  # the held request has come and is not answered
        self._released = threading.Event()

    def app(self) -> web.Application:
        async def fast(request: web.Request) -> web.Response:
            self.paths.append(request.path)
            return web.json_response({"status": "healthy"})

        async def held(request: web.Request) -> web.Response:
            self.paths.append(request.path)
            self.holding.set()
            try:
                while not self._released.is_set():
                    if request.transport is None or request.transport.is_closing():  # the probe gave up
                        raise ConnectionResetError
                    await asyncio.sleep(0.02)
            finally:
                self.holding.clear()
            return web.json_response({"status": "healthy"})

        app = web.Application()
        app.router.add_get("/fast/{n}", fast)
        app.router.add_get("/held", held)
        return app

    def release(self) -> None:
        self._released.set()


def test_a_worker_checks_a_fast_target_while_a_slow_target_is_still_being_probed(
    runner: Runner, tmp_path: Path
) -> None:
    server = HeldServer()
    temp = tmp_path / "tmp"  # the run's TMPDIR: where its spool folder is made
    temp.mkdir()
    env = {**os.environ, "TMPDIR": str(temp), "XDIST_TOKEN": SECRET, "PYTHONUNBUFFERED": "1"}
    env.pop("OPSPROOF_PROFILE", None)
    with serving(free_port(0), server.app()) as address:
        fast = [f"{{name: fast-{n}, url: 'http://{address}/fast/{n}?token=${{XDIST_TOKEN}}'}}" for n in range(6)]
        # Listed first: under the old shared file the first worker probed everything, so no check
        # could end before this probe did (here: never, until the test releases it).
        held = f"{{name: held, url: 'http://{address}/held', timeout: 120s}}"
        runner.profile(http_profile(held, *fast))
        command = [sys.executable, "-m", "pytest", "-m", "daily", "-n", "2", "--use-workers", "-v", "-p", "no:randomly"]
        command += ["--profile", "test", "--report-dir", str(runner.report_dir)]
        run = subprocess.Popen(
            command, cwd=runner.pytester.path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        lines: list[str] = []
        fast_passed = threading.Event()

        def read() -> None:
            assert run.stdout is not None
            for line in run.stdout:
                lines.append(line)
                if re.search(r"PASSED .*\[fast-\d\]", line):
                    fast_passed.set()

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        try:
            # The held target times out at 120 s: a fast check's end before then came from streaming.
            assert fast_passed.wait(90), "no fast check passed while the slow probe was in flight:\n" + "".join(lines)
            assert server.holding.is_set(), "the slow target's probe had ended before the fast check passed"
            spools = list(temp.glob("opsproof-facts-*"))
            assert len(spools) == 1, spools
            assert stat.S_IMODE(spools[0].stat().st_mode) == 0o700
            spool = spools[0] / SPOOL
            assert stat.S_IMODE(spool.stat().st_mode) == 0o600
            written = spool.read_text()
            assert "fast-0" in written  # the facts are there, and only as results.json holds them:
            assert SECRET not in written and quote(SECRET, safe="") not in written and "${XDIST_TOKEN}" in written
        finally:
            server.release()
            code = run.wait(180)
            reader.join(10)
    output = "".join(lines)
    assert code == 0, output
    results = json.loads((_bundle(runner.report_dir) / "results.json").read_text())
    assert sorted((c["target"], c["outcome"]) for c in results["checks"]) == sorted(
        [("held", "passed")] + [(f"fast-{n}", "passed") for n in range(6)]
    )
    # Each target probed once by the run, not once per worker; and the spool gone with the run.
    assert Counter(server.paths) == Counter(["/held"] + [f"/fast/{n}" for n in range(6)])
    assert not list(temp.glob("opsproof-facts-*"))


def _bundle(report_dir: Path) -> Path:
    bundles = [p for p in report_dir.iterdir() if p.is_dir() and not p.name.startswith(".")]
    assert len(bundles) == 1, bundles
    return bundles[0]


def test_records_and_bundle_under_xdist_are_those_of_one_process(runner: Runner, http_server: HttpServer) -> None:
    base = http_server.base
    tomorrow = (datetime.now(UTC).date() + timedelta(days=1)).isoformat()
    runner.profile(
        http_profile(
            f"{{name: up, url: '{base}/health', expect: {{json: {{status: healthy}}}}}}",
            f"{{name: down, url: '{base}/status/503'}}",
            f"{{name: wrong-body, url: '{base}/health', expect: {{json: {{status: degraded}}}}, severity: low}}",
            f"{{name: slow, url: '{base}/slow/300', expect: {{latency: {{warn: 100ms, fail: 10s}}}}}}",
            f"{{name: refused, url: 'http://127.0.0.1:{free_port(0)}/health', critical: false}}",
            f"{{name: waived-down, url: '{base}/status/500'}}",
            extra="waivers:\n"
            + "".join(
                f"  - {{check: '{check}', reason: Decommissioned, ticket: OPS-1, approved_by: lead, expires: {tomorrow}}}\n"
                for check in ("http.health[waived-down]", "http.health[gone]")
            ),
        )
    )
    one = runner.run("-m", "daily", subprocess=True)
    (single_bundle,) = one.bundles
    two = runner.run("-m", "daily", "-n", "2", "--use-workers", subprocess=True)
    (parallel_bundle,) = set(two.bundles) - {single_bundle}
    assert one.ret == two.ret == 1
    single = json.loads((single_bundle / "results.json").read_text())
    parallel = json.loads((parallel_bundle / "results.json").read_text())
    assert _comparable(parallel) == _comparable(single)
    assert parallel["summary"] == single["summary"]
    assert {c["target"]: c["outcome"] for c in single["checks"]}["waived-down"] == "waived"
    assert single["summary"]["waivers"]["unmatched"]  # http.health[gone]: the workers' collection, reported
    # What pytest's own reports say (failures, the waived check shown as skipped) travels alike.
    cases = _junit(single_bundle)
    assert {tag for _, tag, _ in cases} == {"passed", "failure", "skipped"}, cases
    assert _junit(parallel_bundle) == cases


def _junit(bundle: Path) -> list[tuple[str, str, str]]:
    """Each test case of junit.xml: its name, its outcome's element and that element's message."""
    cases = []
    for case in ET.parse(bundle / "junit.xml").getroot().iter("testcase"):
        found = [
            (child.tag, child.get("message", "")) for child in case if child.tag in ("failure", "error", "skipped")
        ]
        tag, message = found[0] if found else ("passed", "")
        cases.append((str(case.get("name")), tag, re.sub(r"\d+(\.\d+)? ?ms", "<ms>", message)))
    return sorted(cases)


def _comparable(results: dict[str, object]) -> list[dict[str, object]]:
    """Every record, without what differs from run to run (when, how long, the latency in a message)."""
    checks = results["checks"]
    assert isinstance(checks, list)
    timing = {"started_at", "duration_s"}
    kept = []
    for record in checks:
        record = {k: v for k, v in record.items() if k not in timing}
        record["observed"] = {
            k: v for k, v in record.get("observed", {}).items() if "latency" not in k and k != "elapsed_s"
        }
        record["message"] = re.sub(r"\d+(\.\d+)? ?ms", "<ms>", str(record.get("message")))
        kept.append(record)
    return sorted(kept, key=lambda r: str(r["check"]))


def test_a_worker_waits_for_its_own_target_and_reads_a_line_written_in_two_parts(tmp_path: Path) -> None:
    spool = tmp_path / SPOOL
    fd = os.open(spool, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    line = json.dumps(["http", _http_facts("late")]).encode() + b"\n"
    os.write(fd, json.dumps(["http", _http_facts("early")]).encode() + b"\n" + line[:20])
    reader = SpoolReader(tmp_path)
    assert reader.facts("http", "early").target == "early"

    def finish() -> None:
        time.sleep(0.3)
        os.write(fd, line[20:])

    writer = threading.Thread(target=finish)
    writer.start()
    started = time.monotonic()
    assert reader.facts("http", "late").target == "late"
    assert time.monotonic() - started >= 0.25  # it waited for the rest of the line
    writer.join()
    os.write(fd, b'["error", "RuntimeError: the http probes crashed"]\n["end", null]\n')
    with pytest.raises(RuntimeError, match="the probes failed: RuntimeError: the http probes crashed"):
        reader.facts("http", "never")
    assert reader.facts("http", "early").target == "early"  # what came stays
    os.close(fd)
    reader.close()


def _http_facts(name: str) -> dict[str, object]:
    from opsproof.probes.http import HttpFacts

    facts = HttpFacts.model_validate(
        {"target": name, "url": f"http://127.0.0.1/{name}", "reached": True, "probed_at": "2026-12-05T00:00:00Z"}
    )
    return facts.model_dump(mode="json")


def test_the_controllers_gatherer_spools_each_target_then_says_no_more_will_come(
    tmp_path: Path, http_server: HttpServer
) -> None:
    from opsproof import load_profile
    from opsproof.run.spool import SpoolingGatherer

    profile = tmp_path / "p.yaml"
    profile.write_text(http_profile(f"{{name: up, url: '{http_server.base}/health'}}"))
    gatherer = SpoolingGatherer(load_profile(profile).profile, tmp_path / SPOOL).prepare()
    assert stat.S_IMODE((tmp_path / SPOOL).stat().st_mode) == 0o600
    reader = SpoolReader(tmp_path)
    gatherer.start({"http": {"up"}})
    assert reader.facts("http", "up").status == 200
    # The probe processes are done: the spool's last line releases a check whose facts never came.
    done = threading.Event()
    missing: list[BaseException] = []

    def ask() -> None:
        try:
            reader.facts("http", "never-probed")
        except RuntimeError as exc:
            missing.append(exc)
        done.set()

    threading.Thread(target=ask, daemon=True).start()
    assert done.wait(30), "the spool never said that no more facts would come"
    assert "the http probe returned no facts for 'never-probed'" in str(missing[0])
    gatherer.stop()
    reader.close()


# -- where workers cannot help: one process (opsproof.run.worker_policy) -----------------------

WHERE_CHECKS_RAN = """
import os
from pathlib import Path


def pytest_runtest_call(item):
    # Not $PYTEST_XDIST_WORKER: a pytest run inside a worker of the project's own tests inherits it.
    worker = getattr(item.config, "workerinput", {}).get("workerid", "controller")
    with Path(__file__).with_name("ran-in.txt").open("a") as out:
        out.write(f"{worker} {os.getpid()}\\n")
"""
KINDS_ONLY = "not used: the built-in kinds' checks wait on probes that already run concurrently"
OWN_CHECK = """
import pytest


@pytest.mark.daily
@pytest.mark.opsproof(target="app")
def test_head(check):
    check.observe(head="abc123")
"""


def _ran_in(runner: Runner) -> Counter[str]:
    """Who ran the checks of the last run ("controller" or gw0, gw1...), by a conftest.py in the run's folder."""
    log = runner.pytester.path / "ran-in.txt"
    ran = Counter(line.split()[0] for line in log.read_text().splitlines())
    pids = {line.split()[1] for line in log.read_text().splitlines()}
    log.unlink()
    if set(ran) == {"controller"}:
        assert len(pids) == 1, pids  # one process ran every check
    return ran


def _http_items(base: str, count: int) -> list[str]:
    return [f"{{name: up-{n}, url: '{base}/health'}}" for n in range(count)]


def test_n_2_over_the_kinds_checks_runs_in_one_process_and_says_why(runner: Runner, http_server: HttpServer) -> None:
    """`-n 2` over the built-in kinds' checks only: no worker starts; records, bundle and exit status are one process's."""
    base = http_server.base
    runner.profile(http_profile(f"{{name: down, url: '{base}/status/503'}}", *_http_items(base, 5)))
    (runner.pytester.path / "conftest.py").write_text(WHERE_CHECKS_RAN)
    plain = runner.run("-m", "daily", "-q", subprocess=True)
    assert _ran_in(runner) == Counter({"controller": 6})
    assert "not used" not in plain.output
    (plain_bundle,) = plain.bundles
    before = len(http_server.requests)
    asked = runner.run("-m", "daily", "-q", "-n", "2", subprocess=True)
    assert _ran_in(runner) == Counter({"controller": 6}), asked.output
    assert len(http_server.requests) - before == 6  # each target probed once
    assert asked.ret == plain.ret == 1
    stdout = asked.result.stdout.lines
    (line,) = [text for text in stdout if "not used" in text]
    assert line.startswith(f"opsproof: -n 2 {KINDS_ONLY}; workers would make this run ~2x slower"), line
    assert "running.md#workers-pytest-xdist" in line and "--use-workers" in line
    assert not re.search(r"\[gw\d\]|bringing up nodes|created: \d|\d workers \[", asked.output), asked.output
    # -q's last line is still the bundle's.
    assert re.match(r"opsproof: \w+ \(exit 1\); evidence bundle: ", stdout[-1]), stdout[-3:]
    (asked_bundle,) = set(asked.bundles) - {plain_bundle}
    single = json.loads((plain_bundle / "results.json").read_text())
    declined = json.loads((asked_bundle / "results.json").read_text())
    assert _comparable(declined) == _comparable(single)
    assert declined["summary"] == single["summary"]
    assert _junit(asked_bundle) == _junit(plain_bundle)


def test_n_auto_from_the_ini_is_declined_too(runner: Runner, http_server: HttpServer) -> None:
    """A team's ini with `-n auto` in addopts, out of habit: declined the same way, naming what it asked for."""
    runner.profile(http_profile(*_http_items(http_server.base, 3)))
    runner.pytester.makeini(
        "[pytest]\ntestpaths = checks\naddopts = --strict-markers -p no:cacheprovider -n auto\nopsproof = true\n"
    )
    (runner.pytester.path / "conftest.py").write_text(WHERE_CHECKS_RAN)
    run = runner.run("-m", "daily", "-v", subprocess=True)
    assert run.ret == 0, run.output
    assert _ran_in(runner) == Counter({"controller": 3})
    assert re.search(rf"opsproof: -n auto \(\d+ workers?\) {KINDS_ONLY}", run.output), run.output


def test_a_check_of_ones_own_keeps_the_workers_only_with_a_core_for_each(
    runner: Runner, http_server: HttpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A check of one's own may compute: with N + 2 usable cores `-n N` runs on workers, with fewer in one process.

    This machine's cores are what they are: $OPSPROOF_USABLE_CORES (documented for containers
    whose CPU quota their affinity does not show) stands in a larger machine for the pytest subprocess.
    """
    runner.profile(http_profile(*_http_items(http_server.base, 4)))
    (runner.pytester.path / "checks" / "release").mkdir()
    (runner.pytester.path / "checks" / "release" / "test_release.py").write_text(OWN_CHECK)
    (runner.pytester.path / "conftest.py").write_text(WHERE_CHECKS_RAN)
    monkeypatch.setenv("OPSPROOF_USABLE_CORES", "4")
    kept = runner.run("-m", "daily", "-n", "2", subprocess=True)
    assert kept.ret == 0, kept.output
    ran = _ran_in(runner)
    assert "controller" not in ran and set(ran) <= {"gw0", "gw1"} and sum(ran.values()) == 5, ran
    assert "not used" not in kept.output
    assert kept.record("release.head[app]")["observed"] == {"head": "abc123"}
    monkeypatch.setenv("OPSPROOF_USABLE_CORES", "3")
    declined = runner.run("-m", "daily", "-n", "2", subprocess=True)
    assert declined.ret == 0, declined.output
    assert _ran_in(runner) == Counter({"controller": 5})
    assert "opsproof: -n 2 not used: 3 usable cores, fewer than the 4 it needs (one for each worker" in declined.output, declined.output


def test_use_workers_keeps_the_workers_over_the_kinds_checks(
    runner: Runner, http_server: HttpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`--use-workers` insists: workers run the kinds' checks, on however few cores."""
    runner.profile(http_profile(*_http_items(http_server.base, 4)))
    (runner.pytester.path / "conftest.py").write_text(WHERE_CHECKS_RAN)
    monkeypatch.setenv("OPSPROOF_USABLE_CORES", "1")
    run = runner.run("-m", "daily", "-n", "2", "--use-workers", subprocess=True)
    assert run.ret == 0, run.output
    ran = _ran_in(runner)
    assert "controller" not in ran and set(ran) <= {"gw0", "gw1"} and sum(ran.values()) == 4, ran
    assert "not used" not in run.output


def test_n_0_and_no_n_are_untouched(runner: Runner, http_server: HttpServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without workers asked for, the policy is never consulted: not even a bad core count stops the run."""
    runner.profile(http_profile(*_http_items(http_server.base, 2)))
    monkeypatch.setenv("OPSPROOF_USABLE_CORES", "two")
    for args in ((), ("-n", "0")):
        run = runner.run("-m", "daily", *args, subprocess=True)
        assert run.ret == 0, run.output
        assert "not used" not in run.output and "OPSPROOF_USABLE_CORES" not in run.output


@pytest.mark.parametrize("cores", ["two", "0", "-1", "1.5"])
def test_a_bad_core_count_is_a_usage_error(
    runner: Runner, http_server: HttpServer, monkeypatch: pytest.MonkeyPatch, cores: str
) -> None:
    runner.profile(http_profile(*_http_items(http_server.base, 1)))
    monkeypatch.setenv("OPSPROOF_USABLE_CORES", cores)
    before = len(http_server.requests)
    run = runner.run("-m", "daily", "-n", "2", subprocess=True)
    assert run.ret == 4, run.output
    assert f"$OPSPROOF_USABLE_CORES={cores!r}: the usable cores must be a whole number, at least 1" in run.output
    assert len(http_server.requests) == before  # nothing contacted


def test_the_usable_cores_are_the_affinity_unless_the_variable_says(monkeypatch: pytest.MonkeyPatch) -> None:
    from opsproof.run.worker_policy import usable_cores

    monkeypatch.delenv("OPSPROOF_USABLE_CORES", raising=False)
    assert usable_cores() == len(os.sched_getaffinity(0))
    monkeypatch.setenv("OPSPROOF_USABLE_CORES", " 16 ")
    assert usable_cores() == 16


def test_what_counts_as_only_the_kinds_checks(runner: Runner) -> None:
    """The files collection would import, against each kind's declared checks file (`Kind.checks`)."""
    from opsproof.run.worker_policy import only_kind_checks

    pytester = runner.pytester
    assert only_kind_checks(pytester.parseconfig("-m", "daily"))  # testpaths: the copy of checks/
    assert only_kind_checks(pytester.parseconfig("checks/health/test_http.py::test_health"))
    assert not only_kind_checks(pytester.parseconfig("--pyargs", "some.module"))
    # A file of one's own, even named after a kind, is a team's code.
    (pytester.path / "checks" / "custom").mkdir()
    (pytester.path / "checks" / "custom" / "test_http.py").write_text(OWN_CHECK)
    assert not only_kind_checks(pytester.parseconfig("-m", "daily"))
    assert only_kind_checks(pytester.parseconfig("-m", "daily", "--ignore=checks/custom"))
    assert only_kind_checks(pytester.parseconfig("checks/health", "checks/infra"))
