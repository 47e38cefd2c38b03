"""A run's rows written to its history while report.html renders, the run row finished after the seal.

Against real stores: SQLite under the report dir and a real PostgreSQL (pgserver). The rows
must be those of recording the sealed bundle afterwards, invisible to every reader until the
seal is in, and gone when the bundle is never sealed.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from helpers.compliance_data import record, results
from helpers.history_servers import history_dsn, history_pg

from conftest import HttpServer, Runner, http_profile
from opsproof.compliance.history import History, Location, locate
from opsproof.evidence.bundle import write_bundle
from opsproof.evidence.manifest import manifest_sha256
from opsproof.model.results import Results
from opsproof.redaction import Redactor
from opsproof.run.early_recording import EarlyRecording

__all__ = ["history_dsn", "history_pg"]  # fixtures

AT = datetime(2026, 7, 1, 6, tzinfo=UTC)


def _document(n: int = 30) -> Results:
    checks = [record(f"http.health[svc-{i:03d}]", "failed" if i % 5 == 0 else "passed", at=AT) for i in range(n)]
    checks[3]["measures"] = {"latency_ms": 12.5}
    return Results.model_validate(results("prod", AT, checks))


def _tables(location: Location) -> list[list[tuple[Any, ...]]]:
    with History(location) as store:
        return [
            store.execute("SELECT * FROM runs ORDER BY run_id"),
            store.execute("SELECT * FROM records ORDER BY run_id, node_id"),
            store.execute("SELECT * FROM observations ORDER BY check_id"),
        ]


def _without_recorded_at(tables: list[list[tuple[Any, ...]]]) -> list[list[tuple[Any, ...]]]:
    runs, *rest = tables
    return [[row[:-1] for row in runs], *rest]  # recorded_at (the last column) is when, not what


def _location(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Location:
    return locate(tmp_path / "reports", request.getfixturevalue("history_dsn") if backend == "postgres" else None)


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_rows_written_before_the_seal_are_the_sealed_bundles_and_unseen_until_it(
    tmp_path: Path, backend: str, request: pytest.FixtureRequest
) -> None:
    location = _location(backend, tmp_path, request)
    with History(location):
        pass  # the schema exists before the transaction is held open, as a run's earlier probes make it
    early = EarlyRecording(location)
    seen_meanwhile: list[int] = []

    def begin_and_look(bundle: Path) -> None:
        early.begin(bundle)
        assert early.begun
        with History(location, create=False) as reader:  # a reader, as the trends do: nothing before the commit
            seen_meanwhile.append(reader.count("runs") + reader.count("records"))

    bundle = write_bundle(_document(), tmp_path / "reports", Redactor(), meanwhile=begin_and_look)
    assert seen_meanwhile == [0]
    assert early.finish(manifest_sha256(bundle), bundle) is True
    early.abandon()  # after finish: nothing to undo
    recorded = _tables(location)
    assert len(recorded[0]) == 1 and len(recorded[1]) == 30 and len(recorded[2]) == 1
    assert recorded[0][0][8] == manifest_sha256(bundle)  # manifest_sha256, the seal's
    # The same rows as recording the sealed bundle afterwards, the usual way.
    afterwards = locate(tmp_path / "afterwards", None)
    with History(afterwards) as store:
        assert store.record_bundle(bundle, manifest_sha256(bundle)) is True
    assert _without_recorded_at(recorded) == _without_recorded_at(_tables(afterwards))


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_a_bundle_never_sealed_leaves_nothing_and_the_store_records_the_next(
    tmp_path: Path, backend: str, request: pytest.FixtureRequest
) -> None:
    location = _location(backend, tmp_path, request)
    early = EarlyRecording(location)

    def begin_then_fail(bundle: Path) -> None:
        early.begin(bundle)
        assert early.begun
        raise OSError("disk full")  # as a file or the seal failing after the rows went in

    with pytest.raises(OSError, match="disk full"):
        write_bundle(_document(), tmp_path / "reports", Redactor(), meanwhile=begin_then_fail)
    early.abandon()
    assert [len(table) for table in _tables(location)] == [0, 0, 0]
    again = EarlyRecording(location)
    bundle = write_bundle(_document(), tmp_path / "again", Redactor(), meanwhile=again.begin)
    assert again.finish(manifest_sha256(bundle), bundle) is True
    assert [len(table) for table in _tables(location)] == [1, 30, 1]


def test_a_run_recorded_already_is_left_as_it_is(tmp_path: Path) -> None:
    location = locate(tmp_path, None)
    document = _document()
    bundle = write_bundle(document, tmp_path, Redactor())
    with History(location) as store:
        assert store.record_bundle(bundle, manifest_sha256(bundle)) is True
    before = _tables(location)
    early = EarlyRecording(location)
    early.begin(bundle)
    assert early.begun
    assert early.finish(manifest_sha256(bundle), bundle) is False
    assert _tables(location) == before


def test_a_recording_that_cannot_begin_leaves_the_run_to_the_usual_path(tmp_path: Path) -> None:
    """A store that cannot be opened (its folder is a file): begin() says so by `begun`, it never raises."""
    (tmp_path / "not-a-folder").write_text("")
    early = EarlyRecording(Location("sqlite", str(tmp_path / "not-a-folder" / "h.sqlite"), "h.sqlite"))
    bundle = write_bundle(_document(), tmp_path / "reports", Redactor(), meanwhile=early.begin)
    assert not early.begun and (bundle / "manifest.json").is_file()
    early.abandon()


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_a_run_as_a_command_records_the_rows_of_its_sealed_bundle(
    runner: Runner, http_server: HttpServer, backend: str, request: pytest.FixtureRequest
) -> None:
    """As a command (its own process: the rows written before the seal, which completes them); verify passes."""
    base = http_server.base
    runner.profile(http_profile(f"{{name: up, url: '{base}/health'}}", f"{{name: down, url: '{base}/status/503'}}"))
    dsn = request.getfixturevalue("history_dsn") if backend == "postgres" else None
    run = runner.run("-m", "daily", *(["--history-dsn", dsn] if dsn else []), subprocess=True)
    assert run.ret == 1, run.output
    assert "recorded in the history" in run.output
    bundle = run.bundle
    recorded = _tables(locate(runner.report_dir, dsn))
    afterwards = locate(runner.pytester.path / "afterwards", None)
    with History(afterwards) as store:
        assert store.record_bundle(bundle, manifest_sha256(bundle)) is True
    assert _without_recorded_at(recorded) == _without_recorded_at(_tables(afterwards))
    assert [row[1] for row in recorded[1]] == [c["id"] for c in sorted(run.results["checks"], key=lambda c: c["id"])]
