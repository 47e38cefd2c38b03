"""report.html rendered by another process while the process writes the rest.

That process is forked at the end (`write_bundle(in_child=True)`) or ahead, having loaded the
page's modules meanwhile (`start_renderer`, `write_bundle(renderer=...)`). The files must be
the bytes the one process writes, redacted alike, and a process that fails must leave its file
to the run's process, whole.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from helpers.pages import make_check, make_results

from conftest import Runner, http_profile
from opsproof.evidence import bundle as bundle_module
from opsproof.evidence.bundle import hand_document, start_renderer, write_bundle
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


def _gone(pid: int) -> bool:
    """The process was reaped (by the code under test): no child of that pid is left."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return True
    return False


def test_a_renderer_forked_ahead_writes_the_bytes_one_process_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    alone = _files(write_bundle(_results(), tmp_path / "alone", _redactor()))
    renderer = start_renderer()
    assert renderer is not None  # Linux: fork and memfd
    renderer.prepare_now()  # as the run does once its probes are done
    renderer.prepare_now()  # twice is harmless: it loads them once
    time.sleep(0.2)

    def not_here(results: Results) -> list[str]:
        raise AssertionError("report.html rendered by the process that writes the bundle, not the renderer")

    monkeypatch.setitem(bundle_module.RENDERERS, "report.html", not_here)  # the renderer has the page's own
    ahead = _files(write_bundle(_results(), tmp_path / "ahead", _redactor(), renderer=renderer))
    assert sorted(ahead) == ["junit.xml", "report.html", "results.json"]
    assert ahead == alone
    assert all(SECRET.encode() not in data for data in ahead.values())
    assert not renderer.waiting and _gone(renderer.pid)


def test_a_renderer_never_told_to_prepare_prepares_when_handed_the_results(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run without probes (or that ended before they did) hands the results to a renderer that loaded nothing yet."""
    alone = _files(write_bundle(_results(), tmp_path / "alone", _redactor()))
    renderer = start_renderer()
    assert renderer is not None

    def not_here(results: Results) -> list[str]:
        raise AssertionError("report.html rendered by the process that writes the bundle, not the renderer")

    monkeypatch.setitem(bundle_module.RENDERERS, "report.html", not_here)
    assert _files(write_bundle(_results(), tmp_path / "ahead", _redactor(), renderer=renderer)) == alone


def test_a_renderer_handed_the_plain_document_first_writes_the_bytes_one_process_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As the run's end does: the document before validation (and before the bundle's folder), redacted there."""
    alone = _files(write_bundle(_results(), tmp_path / "alone", _redactor()))
    renderer = start_renderer()
    assert renderer is not None
    document = _results().dump()  # plain data, the secret still in a message
    hand_document(renderer, document, tmp_path / "ahead", _redactor())
    assert renderer.working and not renderer.waiting
    time.sleep(0.3)  # it has rendered by now, and waits for the folder the bundle makes

    def not_here(results: Results) -> list[str]:
        raise AssertionError("report.html rendered by the process that writes the bundle, not the renderer")

    monkeypatch.setitem(bundle_module.RENDERERS, "report.html", not_here)
    shown = Results.model_validate(document).redacted(_redactor())
    ahead = _files(write_bundle(shown, tmp_path / "ahead", _redactor(), redacted_already=True, renderer=renderer))
    assert ahead == alone
    assert all(SECRET.encode() not in data for data in ahead.values())
    assert not renderer.working and _gone(renderer.pid)


def test_a_renderer_handed_the_document_never_writes_into_a_folder_the_bundle_did_not_make(tmp_path: Path) -> None:
    """The bundle's folder exists already (a run id given twice): the bundle fails, and the renderer is dismissed."""
    renderer = start_renderer()
    assert renderer is not None
    document = _results().dump()
    first = write_bundle(_results(), tmp_path, _redactor())
    (first / "report.html").unlink()  # a folder it could write into
    hand_document(renderer, document, tmp_path, _redactor())
    with pytest.raises(FileExistsError):
        write_bundle(Results.model_validate(document).redacted(_redactor()), tmp_path, _redactor(), renderer=renderer)
    assert _gone(renderer.pid)
    time.sleep(0.2)
    assert not (first / "report.html").exists()


def test_a_renderer_that_is_gone_leaves_its_file_to_the_process(tmp_path: Path) -> None:
    """Killed before it was handed the results (as by a Ctrl-C to the process group): the run writes the page."""
    alone = _files(write_bundle(_results(), tmp_path / "alone", _redactor()))
    for folder, in_child in (("here", False), ("child", True)):
        renderer = start_renderer()
        assert renderer is not None
        os.kill(renderer.pid, 9)
        os.waitpid(renderer.pid, 0)
        written = write_bundle(_results(), tmp_path / folder, _redactor(), renderer=renderer, in_child=in_child)
        assert _files(written) == alone, folder
        assert not renderer.waiting


def test_a_renderer_that_fails_leaves_its_file_to_the_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """It dies half-way through the page: its part is removed and the page written again, whole."""

    def failing(payload: tuple[Path, Results, Redactor]) -> None:
        (payload[0] / "report.html").write_text("<!doctype html><html><head><tit")
        raise RuntimeError("the renderer fails half-way")

    alone = _files(write_bundle(_results(), tmp_path / "alone", _redactor()))
    monkeypatch.setattr(bundle_module, "_render_handed", failing)  # what the process forked next will run
    renderer = start_renderer()
    assert renderer is not None
    written = write_bundle(_results(), tmp_path / "ahead", _redactor(), renderer=renderer)
    assert _files(written) == alone
    assert _gone(renderer.pid)


def test_a_renderer_not_needed_is_dismissed_having_written_nothing(tmp_path: Path) -> None:
    renderer = start_renderer()
    assert renderer is not None
    renderer.dismiss()
    assert not renderer.waiting and _gone(renderer.pid)
    assert renderer.hand((tmp_path, _results(), _redactor())) is None  # dismissed: it takes nothing
    renderer.dismiss()  # twice is harmless (a run's cleanup after the bundle took it)
    assert list(tmp_path.iterdir()) == []


def test_a_payload_that_does_not_pickle_leaves_the_work_to_the_process(tmp_path: Path) -> None:
    renderer = start_renderer()
    assert renderer is not None
    assert renderer.hand(lambda: None) is None
    assert not renderer.waiting and _gone(renderer.pid)
