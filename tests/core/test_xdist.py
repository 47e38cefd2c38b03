"""Under pytest-xdist the controller probes once and streams each target's facts to the workers.

(The records and the one probe per target under `-n 2` are also tested in test_plugin.py.)
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
        command = [sys.executable, "-m", "pytest", "-m", "daily", "-n", "2", "-v", "-p", "no:randomly"]
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
    two = runner.run("-m", "daily", "-n", "2", subprocess=True)
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
