"""The history's store opened ahead, while the checks wait (`EarlyRecording.open`), then written at the end.

Against a real SQLite store under the report dir: the rows are those of recording the sealed
bundle afterwards, with the rows of the checks made ahead (`EarlyRecording.keep`) or without;
a store that cannot be opened ahead leaves the run to the usual path.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import cast

import pytest
from helpers.compliance_data import record, results
from helpers.pages import make_check

from conftest import HttpServer, Runner, http_profile
from opsproof.compliance.history import History, Location, locate
from opsproof.evidence.bundle import write_bundle
from opsproof.evidence.manifest import manifest_sha256
from opsproof.evidence.results_json import check_line
from opsproof.model.results import CheckRecord, Results
from opsproof.redaction import Redactor
from opsproof.run.early_recording import EarlyRecording
from opsproof.run.recorder import Recorder
from opsproof.run.results import Kept
from opsproof.run.state import RunState

AT = datetime(2026, 7, 1, 6, tzinfo=UTC)


def _document() -> Results:
    checks = [record(f"http.health[svc-{i:03d}]", "failed" if i % 4 == 0 else "passed", at=AT) for i in range(12)]
    return Results.model_validate(results("prod", AT, checks))


def _rows(location: Location) -> list[list[tuple[object, ...]]]:
    with History(location) as store:
        runs = [row[:-1] for row in store.execute("SELECT * FROM runs ORDER BY run_id")]  # less recorded_at
        return [
            runs,
            store.execute("SELECT * FROM records ORDER BY run_id, node_id"),
            store.execute("SELECT * FROM observations ORDER BY check_id, measure"),
        ]


def test_a_store_opened_ahead_records_the_rows_the_usual_path_records(tmp_path: Path) -> None:
    location = locate(tmp_path / "reports", None)
    early = EarlyRecording(location)
    early.open()
    opened = early._opened
    assert opened is not None  # the store is open, no transaction held: a reader sees it as it was
    with History(location, create=False) as reader:
        assert reader.count("runs") == 0
    bundle = write_bundle(_document(), tmp_path / "reports", Redactor(), meanwhile=early.begin)
    assert early.begun and early._store is opened  # begin wrote into the store opened ahead
    assert early.finish(manifest_sha256(bundle), bundle) is True
    early.abandon()  # after finish: nothing to undo
    afterwards = locate(tmp_path / "afterwards", None)
    with History(afterwards) as store:
        assert store.record_bundle(bundle, manifest_sha256(bundle)) is True
    recorded = _rows(location)
    assert len(recorded[0]) == 1 and len(recorded[1]) == 12
    assert recorded == _rows(afterwards)


def test_rows_made_ahead_are_used_for_the_lines_of_exactly_their_text_and_are_the_usual_paths_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rows made of a check's results.json line while the checks wait: the lines the sealed file holds
    exactly are not read again; a line kept that the file does not hold (its record changed since,
    as a teardown error changes it) is left, and the file's line read."""
    checks = [record(f"http.health[svc-{i:03d}]", "failed" if i % 4 == 0 else "passed", at=AT) for i in range(12)]
    checks[2]["waiver"] = {
        "check": "http.health[svc-002]",
        "reason": "known",
        "ticket": "OPS-1",
        "approved_by": "sre",
        "expires": "2027-01-01",
        "status": "applied",
    }
    checks[3]["measures"] = {"latency_ms": 12.5, "broken": float("nan")}
    checks[10]["measures"] = {"latency_ms": 40.0}
    document = Results.model_validate(results("prod", AT, checks))
    location = locate(tmp_path / "reports", None)
    early = EarlyRecording(location)
    early.open()
    for at in (5, 6, 7, 0, 1, 2, 3, 4):  # made while later checks waited (not always in the file's order)
        early.keep(check_line(document.checks[at]), document.checks[at])
    stale = document.checks[8].model_copy(update={"outcome": "error", "message": "before its teardown failed"})
    early.keep(check_line(stale), stale)
    read: list[str] = []
    reader = CheckRecord.model_validate_json
    monkeypatch.setattr(
        CheckRecord, "model_validate_json", staticmethod(lambda text: read.append(text) or reader(text))
    )
    bundle = write_bundle(document, tmp_path / "reports", Redactor(), meanwhile=early.begin)
    assert early.begun and len(read) == 4  # the lines of the four checks with no rows made of exactly them
    assert early.finish(manifest_sha256(bundle), bundle) is True
    recorded = _rows(location)
    assert [len(table) for table in recorded] == [1, 12, 2]
    afterwards = locate(tmp_path / "afterwards", None)
    with History(afterwards) as store:
        assert store.record_bundle(bundle, manifest_sha256(bundle)) is True
    assert recorded == _rows(afterwards)
    assert [row[7] for row in recorded[1]].count("failed") == 3  # outcome: svc-008 as sealed, not as kept
    with History(location) as store:  # written in the file's order, as the usual path writes them
        assert [row[0] for row in store.execute("SELECT node_id FROM records ORDER BY rowid")] == [
            check.id for check in document.checks
        ]


def test_rows_made_ahead_of_a_bundle_never_sealed_leave_nothing(tmp_path: Path) -> None:
    location = locate(tmp_path / "reports", None)
    early = EarlyRecording(location)
    early.open()
    document = _document()
    for check in document.checks:
        early.keep(check_line(check), check)

    def begin_then_fail(bundle: Path) -> None:
        early.begin(bundle)
        assert early.begun
        raise OSError("disk full")  # as the seal failing after the rows went in

    with pytest.raises(OSError, match="disk full"):
        write_bundle(document, tmp_path / "reports", Redactor(), meanwhile=begin_then_fail)
    early.abandon()
    assert [len(table) for table in _rows(location)] == [0, 0, 0]


def test_a_store_that_cannot_be_opened_ahead_is_left_to_the_usual_path(tmp_path: Path) -> None:
    (tmp_path / "not-a-folder").write_text("")
    early = EarlyRecording(Location("sqlite", str(tmp_path / "not-a-folder" / "h.sqlite"), "h.sqlite"))
    early.open()  # never raises
    assert early._opened is None
    bundle = write_bundle(_document(), tmp_path / "reports", Redactor(), meanwhile=early.begin)
    assert not early.begun and (bundle / "manifest.json").is_file()
    early.abandon()


def test_a_store_opened_ahead_and_never_used_is_closed_by_abandon(tmp_path: Path) -> None:
    """A run that ends before its bundle (a usage error, an interrupted collection) closes it at cleanup."""
    location = locate(tmp_path / "reports", None)
    early = EarlyRecording(location)
    early.open()
    opened = early._opened
    assert opened is not None
    early.abandon()
    assert early._opened is None and opened._conn is None  # the connection is closed


def test_a_run_that_made_rows_while_its_checks_waited_records_the_rows_of_its_sealed_bundle(
    runner: Runner, http_server: HttpServer
) -> None:
    """As a command: the fast checks' rows are made while the slow one waits; the history holds the sealed bundle's."""
    fast = [f"{{name: echo{i}, url: '{http_server.base}/echo/200/0/e{i}'}}" for i in range(6)]
    runner.profile(http_profile(*fast, f"{{name: slow, url: '{http_server.base}/slow/700'}}"))
    run = runner.run("-m", "daily", subprocess=True)
    assert run.ret == 0, run.output
    assert "recorded in the history" in run.output
    afterwards = locate(runner.pytester.path / "afterwards", None)
    with History(afterwards) as store:
        assert store.record_bundle(run.bundle, manifest_sha256(run.bundle)) is True
    recorded = _rows(locate(runner.report_dir, None))
    assert [len(table) for table in recorded] == [1, 7, 0]
    assert recorded == _rows(afterwards)


def test_the_recorder_makes_the_records_first_then_their_rows(tmp_path: Path) -> None:
    """A wait may be short: a record made spares the end more than its rows do, so the rows come after."""
    records = {f"n{i}": make_check(i, "passed", "low") for i in range(3)}
    state = SimpleNamespace(records=dict(records), redactor=Redactor(), history=locate(tmp_path, None))
    recorder = Recorder(cast(pytest.Config, None), cast(RunState, state))
    recorder._early = EarlyRecording(state.history)
    recorder._early.open()
    recorder._unmade.extend(records)
    assert [recorder.spare_work() for _ in range(3)] == [True, True, True]
    assert all(isinstance(state.records[key], Kept) for key in records) and not recorder._early._known
    assert [recorder.spare_work() for _ in range(4)] == [True, True, True, False]
    lines = {state.records[key].pieces.json for key in records}
    assert set(recorder._early._known) == lines
    recorder._early.abandon()
