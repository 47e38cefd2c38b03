"""The history's store opened ahead, while the checks wait (`EarlyRecording.open`), then written at the end.

Against a real SQLite store under the report dir: the rows are those of recording the sealed
bundle afterwards; a store that cannot be opened ahead leaves the run to the usual path.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from helpers.compliance_data import record, results

from opsproof.compliance.history import History, Location, locate
from opsproof.evidence.bundle import write_bundle
from opsproof.evidence.manifest import manifest_sha256
from opsproof.model.results import Results
from opsproof.redaction import Redactor
from opsproof.run.early_recording import EarlyRecording

AT = datetime(2026, 7, 1, 6, tzinfo=UTC)


def _document() -> Results:
    checks = [record(f"http.health[svc-{i:03d}]", "failed" if i % 4 == 0 else "passed", at=AT) for i in range(12)]
    return Results.model_validate(results("prod", AT, checks))


def _rows(location: Location) -> list[list[tuple[object, ...]]]:
    with History(location) as store:
        runs = [row[:-1] for row in store.execute("SELECT * FROM runs ORDER BY run_id")]  # less recorded_at
        return [runs, store.execute("SELECT * FROM records ORDER BY run_id, node_id")]


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
