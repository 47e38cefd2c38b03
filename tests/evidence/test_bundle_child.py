"""report.html rendered by a forked child while the process writes the rest (`write_bundle(in_child=True)`).

The files must be the bytes the one process writes, redacted alike, and a child that fails
must leave its file to the process, whole.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from helpers.pages import make_check, make_results

from conftest import Runner, http_profile
from opsproof.evidence import bundle as bundle_module
from opsproof.evidence.bundle import write_bundle
from opsproof.evidence.manifest import bundle_files
from opsproof.model.results import Results
from opsproof.redaction import Redactor

SECRET = "s3cret-Token-2026"


def _results() -> Results:
    document = make_results(300)
    document["checks"].append(make_check(300, "failed", "critical", message=f"login refused for {SECRET}"))
    document["summary"]["total"] += 1
    document["summary"]["by_outcome"]["failed"] += 1
    document["run"]["change"] = None
    return Results.model_validate(document)


def _redactor() -> Redactor:
    redactor = Redactor()
    redactor.add("APP_TOKEN", SECRET)
    return redactor


def _files(bundle: Path) -> dict[str, bytes]:
    return {name: (bundle / name).read_bytes() for name in bundle_files(bundle)}


def test_the_child_writes_the_bytes_one_process_writes(tmp_path: Path) -> None:
    alone = _files(write_bundle(_results(), tmp_path / "alone", _redactor()))
    beside = _files(write_bundle(_results(), tmp_path / "beside", _redactor(), in_child=True))
    assert sorted(beside) == ["junit.xml", "report.html", "results.json"]
    assert beside == alone
    assert all(SECRET.encode() not in data for data in beside.values())
    assert b"${APP_TOKEN}" in beside["results.json"] and b"${APP_TOKEN}" in beside["junit.xml"]


def test_a_child_that_fails_leaves_its_files_to_the_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A child that dies half-way (a partial report.html) is reaped, its file removed and written again."""

    def failing_child(work: object) -> int:
        pid = os.fork()
        if pid == 0:  # never back into pytest from here
            try:
                (folder,) = (p for p in (tmp_path / "beside").iterdir() if p.is_dir())
                (folder / "report.html").write_text("<!doctype html><html><head><tit")
            finally:
                os._exit(1)
        return pid

    alone = _files(write_bundle(_results(), tmp_path / "alone", _redactor()))
    monkeypatch.setattr(bundle_module, "_start_child", failing_child)
    beside = write_bundle(_results(), tmp_path / "beside", _redactor(), in_child=True)
    assert _files(beside) == alone
    assert not any(p.name.startswith("report.html") and p.stat().st_size < 100 for p in beside.iterdir())


def test_a_child_that_hangs_is_killed_and_its_files_written_by_the_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A child stuck (as on a lock a fork copied) must not hang the run: killed after CHILD_WAIT_S."""
    pids: list[int] = []

    def hanging_child(work: object) -> int:
        pid = os.fork()
        if pid == 0:
            try:
                time.sleep(60)
            finally:
                os._exit(0)
        pids.append(pid)
        return pid

    alone = _files(write_bundle(_results(), tmp_path / "alone", _redactor()))
    monkeypatch.setattr(bundle_module, "_start_child", hanging_child)
    monkeypatch.setattr(bundle_module, "CHILD_WAIT_S", 0.5)
    began = time.monotonic()
    beside = write_bundle(_results(), tmp_path / "beside", _redactor(), in_child=True)
    assert time.monotonic() - began < 10
    assert _files(beside) == alone
    with pytest.raises(ChildProcessError):  # killed and reaped: nothing left running
        os.waitpid(pids[0], os.WNOHANG)


def test_a_run_writes_its_bundle_with_a_child(runner: Runner, http_server: object) -> None:
    """As a command (its own process), the run forks the child; the bundle verifies and holds every check."""
    base = http_server.base  # type: ignore[attr-defined]
    runner.profile(http_profile(f"{{name: up, url: '{base}/health'}}", f"{{name: down, url: '{base}/status/503'}}"))
    run = runner.run("-m", "daily", subprocess=True)
    assert run.ret == 1, run.output
    assert sorted(c["check"] for c in run.results["checks"]) == ["http.health[down]", "http.health[up]"]
    assert (run.bundle / "junit.xml").read_text().count("<testcase") == 2
    from opsproof.cli import main as opsproof

    assert opsproof(["verify", str(run.bundle)]) == 0
