"""The history store: SQLite under the report dir and a real PostgreSQL; concurrent writers; rebuild."""

from __future__ import annotations

import json
import multiprocessing
import sqlite3
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from helpers.compliance_data import daily_runs, record, results, write
from helpers.history_servers import append_attestations, history_dsn, history_pg, open_new_stores, write_runs

from conftest import SECRET, HttpServer, Runner, http_profile
from opsproof.cli import main as opsproof
from opsproof.compliance import ComplianceError
from opsproof.compliance.attestations import chain_problems, entries
from opsproof.compliance.history import _LOCK_KEY, History, HistoryError, locate, without_password
from opsproof.evidence.manifest import manifest_sha256
from opsproof.evidence.results_json import read_streamed
from opsproof.model.results import Results

__all__ = ["history_dsn", "history_pg"]  # fixtures


def _rows(location_target: str, report_dir: Path) -> tuple[list[Any], list[Any]]:
    with History(locate(report_dir, location_target)) as history:
        runs = history.execute("SELECT run_id, environment, bundle, manifest_sha256, status FROM runs ORDER BY run_id")
        records = history.execute("SELECT run_id, check_id, outcome, controls FROM records ORDER BY run_id, check_id")
    return runs, records


def _profile(runner: Runner, base: str) -> None:
    runner.profile(
        http_profile(
            f"{{name: up, url: '{base}/health'}}",
            f"{{name: down, url: '{base}/status/503', critical: false}}",
        )
    )


def test_a_run_is_recorded_in_sqlite_under_the_report_dir(runner: Runner, http_server: HttpServer) -> None:
    _profile(runner, http_server.base)
    run = runner.run("-m", "daily")
    assert run.ret == 0, run.output
    database = runner.report_dir / "history.sqlite"
    assert database.is_file()
    runs, records = _rows("", runner.report_dir)
    assert runs == [(run.results["run"]["id"], "test", run.bundle.name, manifest_sha256(run.bundle), "passed")]
    assert [(r[1], r[2]) for r in records] == [("http.health[down]", "failed"), ("http.health[up]", "passed")]
    assert json.loads(records[0][3]) == run.record("http.health[down]")["controls"]
    with sqlite3.connect(database) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_a_run_is_recorded_in_postgresql(runner: Runner, http_server: HttpServer, history_dsn: str) -> None:
    _profile(runner, http_server.base)
    run = runner.run("-m", "daily", "--history-dsn", history_dsn)
    assert run.ret == 0, run.output
    assert not (runner.report_dir / "history.sqlite").exists()
    runs, records = _rows(history_dsn, runner.report_dir)
    assert [r[2] for r in runs] == [run.bundle.name]
    assert len(records) == 2
    # The DSN's password was on the command line: it reaches no output and no file of the bundle.
    assert SECRET not in run.output
    for path in run.bundle.iterdir():
        assert SECRET not in path.read_text(), path.name
    assert "${HISTORY_DSN_PASSWORD}" in run.results["run"]["command"]


def test_the_dsn_may_come_from_the_environment(
    runner: Runner, http_server: HttpServer, history_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPSPROOF_HISTORY_DSN", history_dsn)
    _profile(runner, http_server.base)
    run = runner.run("-m", "daily")
    assert run.ret == 0
    assert [r[2] for r in _rows(history_dsn, runner.report_dir)[0]] == [run.bundle.name]


def test_an_unreachable_history_is_an_internal_error_and_rebuild_recovers(
    runner: Runner, http_server: HttpServer, history_pg: Any, history_dsn: str, capsys: pytest.CaptureFixture[str]
) -> None:
    _profile(runner, http_server.base)
    wrong = history_pg.dsn(user="historian", dbname=history_dsn.rsplit("/", 1)[1], password="not-the-password")
    run = runner.run("-m", "daily", "--history-dsn", wrong)
    assert run.ret == 3
    assert "the run is NOT in the history" in run.output
    assert "password authentication failed" in run.output
    assert "not-the-password" not in run.output
    assert "`opsproof history rebuild` recovers it" in run.output
    assert opsproof(["verify", str(run.bundle)]) == 0  # the evidence itself is whole
    code = opsproof(["history", "rebuild", "--report-dir", str(runner.report_dir), "--history-dsn", history_dsn])
    assert code == 0
    assert "1 runs, 2 records" in capsys.readouterr().out
    assert [r[2] for r in _rows(history_dsn, runner.report_dir)[0]] == [run.bundle.name]


@pytest.mark.parametrize(
    ("dsn", "words"),
    [
        ("mysql://db/x", "--history-dsn 'mysql://db/x': expected postgresql://"),
        ("history.db", "expected postgresql://"),
    ],
)
def test_a_bad_history_dsn_is_a_usage_error(runner: Runner, http_server: HttpServer, dsn: str, words: str) -> None:
    _profile(runner, http_server.base)
    run = runner.run("-m", "daily", "--history-dsn", dsn)
    assert run.ret == 4
    assert words in run.output


def test_shown_dsns_hide_their_password() -> None:
    assert without_password("postgresql://ops:pw@db:5432/h") == "postgresql://ops:***@db:5432/h"
    assert locate(Path("r"), "postgresql://ops:pw@db/h").shown == "postgresql://ops:***@db/h"
    assert locate(Path("r"), "host=db dbname=h password=pw").shown == "host=db dbname=h password=***"
    with pytest.raises(ComplianceError, match=r"'postgresql://ops:\*\*\*@db/h'|expected"):
        locate(Path("r"), "ftp://ops:pw@db/h")


def test_recording_a_bundle_twice_is_a_no_op(tmp_path: Path) -> None:
    at = datetime(2026, 7, 1, 6, tzinfo=UTC)
    bundle = write(tmp_path, results("prod", at, [record("http.health[api]", at=at)]))
    with History(locate(tmp_path, None)) as history:
        assert history.record_bundle(bundle, manifest_sha256(bundle)) is True
        assert history.record_bundle(bundle, manifest_sha256(bundle)) is False
        assert (history.count("runs"), history.count("records")) == (1, 1)


# -- concurrency ----------------------------------------------------------------------------


def _in_parallel(function: Any, *argument_lists: tuple[Any, ...]) -> list[Any]:
    # Spawned, not forked: the test process has server threads a fork would copy mid-flight.
    with ProcessPoolExecutor(len(argument_lists), mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [pool.submit(function, *arguments) for arguments in argument_lists]
        return [f.result(timeout=120) for f in futures]


WORKERS, RUNS_EACH, CHECKS_EACH = 4, 6, 40


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_concurrent_runs_never_corrupt_the_history(
    tmp_path: Path, backend: str, request: pytest.FixtureRequest
) -> None:
    report_dir = tmp_path / "reports"
    target = (
        request.getfixturevalue("history_dsn") if backend == "postgres" else f"sqlite:///{report_dir}/history.sqlite"
    )
    start_at = time.time() + 3  # after every spawned worker has imported opsproof
    written = _in_parallel(
        write_runs, *[(str(report_dir), target, "prod", RUNS_EACH, w, start_at) for w in range(WORKERS)]
    )
    bundles = sorted(name for names in written for name in names)
    runs, records = _rows(target, report_dir)
    assert sorted(r[2] for r in runs) == bundles
    assert len(records) == WORKERS * RUNS_EACH * CHECKS_EACH
    for _, _, bundle, digest, _ in runs:
        assert digest == manifest_sha256(report_dir / bundle), bundle
    if backend == "sqlite":
        with sqlite3.connect(report_dir / "history.sqlite") as conn:
            assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    assert opsproof(["verify", "--chain", str(report_dir)]) == 0


def test_runners_opening_a_new_sqlite_store_together_all_open_it(tmp_path: Path) -> None:
    """Eight processes open the same new store at the same instant, ten times over.

    Switching a new store to WAL raced: two openers holding the read lock got "database is locked"
    at once, without the busy timeout (about one round in five failed before the fix).
    """
    rounds = 10
    paths = [str(tmp_path / f"round{n}" / "history.sqlite") for n in range(rounds)]
    first = time.time() + 3  # after every spawned worker has imported opsproof
    start_times = [first + 0.25 * n for n in range(rounds)]
    errors = _in_parallel(open_new_stores, *[(paths, start_times)] * 8)
    assert [e for worker in errors for e in worker] == []
    for path in paths:
        with sqlite3.connect(path) as conn:
            assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_concurrent_attestations_form_one_chain(tmp_path: Path, backend: str, request: pytest.FixtureRequest) -> None:
    target = request.getfixturevalue("history_dsn") if backend == "postgres" else f"sqlite:///{tmp_path}/h.sqlite"
    start_at = time.time() + 3
    counts = _in_parallel(append_attestations, *[(target, str(tmp_path), 8, w, start_at) for w in range(WORKERS)])
    assert sum(counts) == WORKERS * 8
    with History(locate(tmp_path, target)) as history:
        found = entries(history, "prod")
        assert len(found) == WORKERS * 8
        assert chain_problems(history, "prod") == []
        assert found[0]["previous_sha256"] is None


# -- rebuild --------------------------------------------------------------------------------


def test_rebuild_recreates_the_same_rows_from_the_bundles(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    reports = tmp_path / "reports"
    bundles = daily_runs(reports, "prod", date(2026, 7, 1), date(2026, 7, 10))
    with History(locate(reports, None)) as history:
        for bundle in bundles:
            history.record_bundle(bundle, manifest_sha256(bundle))
    before = _rows("", reports)
    for suffix in ("", "-wal", "-shm"):
        (reports / f"history.sqlite{suffix}").unlink(missing_ok=True)
    assert opsproof(["history", "rebuild", "--report-dir", str(reports)]) == 0
    assert "10 runs, 10 records" in capsys.readouterr().out
    assert _rows("", reports) == before
    # Run twice: still the same rows, nothing doubled.
    assert opsproof(["history", "rebuild", "--report-dir", str(reports)]) == 0
    assert _rows("", reports) == before


def test_rebuild_leaves_out_and_names_bundles_that_fail_verification(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    reports = tmp_path / "reports"
    bundles = daily_runs(reports, "prod", date(2026, 7, 1), date(2026, 7, 3))
    (bundles[1] / "report.html").write_text("edited")
    assert opsproof(["history", "rebuild", "--report-dir", str(reports)]) == 1
    out = capsys.readouterr().out
    assert "2 runs, 2 records" in out
    assert f"left out (fails verification): {bundles[1].name}: changed: report.html" in out
    assert opsproof(["history", "rebuild", "--report-dir", str(tmp_path / "nope")]) == 4


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_attestations_are_append_only(tmp_path: Path, backend: str, request: pytest.FixtureRequest) -> None:
    target = request.getfixturevalue("history_dsn") if backend == "postgres" else f"sqlite:///{tmp_path}/h.sqlite"
    append_attestations(target, str(tmp_path), 1, 0)
    with History(locate(tmp_path, target)) as history:
        for statement in ("UPDATE attestations SET attested_by = 'mallory'", "DELETE FROM attestations"):
            with pytest.raises(HistoryError, match="attestations are append-only"), history.transaction():
                history.execute(statement)
        assert entries(history, "prod")[0]["attested_by"] == "worker-0"


def test_a_forged_row_breaks_the_attestation_chain(tmp_path: Path) -> None:
    target = f"sqlite:///{tmp_path}/h.sqlite"
    append_attestations(target, str(tmp_path), 3, 0)
    # Someone with write access to the file drops the trigger and edits a row.
    with sqlite3.connect(tmp_path / "h.sqlite") as conn:
        conn.execute("DROP TRIGGER attestations_no_update")
        conn.execute("UPDATE attestations SET attested_by = 'mallory' WHERE seq = 2")
    with History(locate(tmp_path, target)) as history:
        problems = chain_problems(history, "prod")
    assert len(problems) == 1 and problems[0].startswith("entry 2 (review-alerts") and "no longer match" in problems[0]


def test_a_postgres_reader_never_queues_behind_a_runner_holding_the_writers_lock(history_dsn: str, tmp_path: Path) -> None:
    """The trends reader and the witness open the store while other runners record into it.

    A runner holds the writers' advisory lock while it records; a reader of a current store
    takes no lock, so it answers at once (before: it waited for the lock, up to 60 s).
    A reader of an empty database still creates the schema, as before.
    """
    import psycopg

    location = locate(tmp_path, history_dsn)
    with History(location, create=False) as first:  # an empty database: the reader creates the tables
        assert first.count("runs") == 0
    with psycopg.connect(history_dsn, autocommit=True) as writer:
        writer.execute("SELECT pg_advisory_lock(%s)", (_LOCK_KEY,))
        opened: list[float] = []

        def read() -> None:
            began = time.monotonic()
            with History(location, create=False) as reader:
                reader.count("records")
            opened.append(time.monotonic() - began)

        reading = threading.Thread(target=read, daemon=True)
        reading.start()
        reading.join(timeout=10)
        writer.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_KEY,))
        reading.join(timeout=70)
    assert opened and opened[0] < 5, f"the reader waited {opened} s for the writers' lock"


def test_postgres_connection_errors_say_so_without_the_password(history_pg: Any, tmp_path: Path) -> None:
    dsn = history_pg.dsn(user="historian", dbname="postgres", password="wrong-" + SECRET)
    with pytest.raises(HistoryError) as raised, History(locate(tmp_path, dsn)):
        pass
    assert "cannot connect" in str(raised.value)
    assert SECRET not in str(raised.value)


def test_history_verify_proves_attestations_and_recorded_manifests(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    reports = tmp_path / "reports"
    bundles = daily_runs(reports, "prod", date(2026, 7, 1), date(2026, 7, 3))
    with History(locate(reports, None)) as history:
        for bundle in bundles:
            history.record_bundle(bundle, manifest_sha256(bundle))
    append_attestations(f"sqlite:///{reports}/history.sqlite", str(reports), 2, 0)
    assert opsproof(["history", "verify", "--report-dir", str(reports)]) == 0
    out = capsys.readouterr().out
    assert "OK history" in out and "2 attestations in 1 environment(s), 3 runs (3 of their bundles" in out
    manifest = bundles[1] / "manifest.json"
    manifest.write_text(manifest.read_text().replace('"status": "passed"', '"status": "failed"'))
    with sqlite3.connect(reports / "history.sqlite") as conn:
        conn.execute("DROP TRIGGER attestations_no_update")
        conn.execute("UPDATE attestations SET note = 'edited' WHERE seq = 1")
    assert opsproof(["history", "verify", "--report-dir", str(reports)]) == 1
    out = capsys.readouterr().out
    assert f"BROKEN run {bundles[1].name}: its manifest.json no longer has the sha256 the history recorded" in out
    assert "BROKEN attestations of prod: entry 1 (review-alerts" in out


@pytest.mark.parametrize(
    ("tamper", "finding"),
    [
        (
            "UPDATE records SET outcome = 'passed' WHERE outcome = 'failed'",
            "record http.health[down]: the history says outcome = 'passed', its bundle says 'failed'",
        ),
        (
            "DELETE FROM records WHERE check_id = 'http.health[down]'",
            "record http.health[down] is in its bundle but not in the history",
        ),
        ("UPDATE runs SET status = 'passed', exit_code = 0", "the history says status = 'passed', its bundle says"),
        ("DELETE FROM records; DELETE FROM runs", "sealed, but its run is not in the history"),
    ],
    ids=["outcome-edited", "record-deleted", "run-edited", "run-deleted"],
)
def test_edited_history_rows_are_findings_and_no_report_is_built_on_them(
    runner: Runner, http_server: HttpServer, capsys: pytest.CaptureFixture[str], tamper: str, finding: str
) -> None:
    """Real runs with a failing check; the history edited in SQLite as someone with write access would."""
    runner.profile(
        http_profile(
            f"{{name: up, url: '{http_server.base}/health'}}",
            f"{{name: down, url: '{http_server.base}/status/503'}}",
            environment="prod",
        )
    )
    for _ in range(2):
        assert runner.run("-m", "daily").ret == 1
    reports = runner.report_dir
    today = datetime.now(UTC).date().isoformat()
    report = ["report", "--environment", "prod", "--from", today, "--to", today, "--report-dir", str(reports)]
    assert opsproof(["history", "verify", "--report-dir", str(reports)]) == 0
    assert opsproof([*report, "--out", str(reports / "before")]) == 0
    assert "exceptions: 2 open" in capsys.readouterr().out
    with sqlite3.connect(reports / "history.sqlite") as conn:
        conn.executescript(tamper)
    assert opsproof(["history", "verify", "--report-dir", str(reports)]) == 1
    assert finding in capsys.readouterr().out
    assert opsproof([*report, "--out", str(reports / "after")]) == 1
    captured = capsys.readouterr()
    assert finding in captured.out and "no report was written" in captured.err
    assert not (reports / "after").exists()
    # The bundles are the evidence: rebuilding the history from them restores the true figures.
    assert opsproof(["history", "rebuild", "--report-dir", str(reports)]) == 0
    assert opsproof([*report, "--out", str(reports / "rebuilt")]) == 0
    assert "exceptions: 2 open" in capsys.readouterr().out


def _records_table(report_dir: Path) -> tuple[list[Any], list[Any]]:
    with History(locate(report_dir, None)) as history:
        return history.execute("SELECT * FROM records ORDER BY check_id"), history.execute(
            "SELECT * FROM observations ORDER BY check_id"
        )


def _many_checks(at: datetime, n: int) -> list[dict[str, Any]]:
    checks = [
        record(f"http.health[svc-{i:04d}]", "failed" if i % 7 == 0 else "passed", at=at, observed={"i": i})
        for i in range(n)
    ]
    for i, check in enumerate(checks):
        if i % 3 == 0:
            check["measures"] = {"latency_ms": float(i)}
    checks[5]["waiver"] = {
        "check": "http.health[svc-0005]",
        "reason": "known",
        "ticket": "OPS-1",
        "approved_by": "lead",
        "expires": "2099-01-01",
        "status": "applied",
    }
    checks[5]["outcome"] = "waived"
    checks[14]["maintenance"] = {"name": "patching", "checks": "http.*", "schedule": "tue 02:00-04:00 UTC"}
    return checks


def test_a_bundle_is_recorded_a_check_at_a_time_with_the_rows_of_a_whole_read(tmp_path: Path) -> None:
    """Past one batch (1,000 rows), with measures, a waiver and a window: the same rows as from the model whole."""
    at = datetime(2026, 7, 1, 6, tzinfo=UTC)
    document = results("prod", at, _many_checks(at, 2500))
    bundle = write(tmp_path / "streamed", document)
    head, checks = read_streamed(bundle / "results.json")
    assert head.checks == [] and sum(1 for _ in checks) == 2500  # the layout written is the one read a line at a time
    with History(locate(tmp_path / "streamed", None)) as history:
        assert history.record_bundle(bundle, manifest_sha256(bundle)) is True
    whole = Results.model_validate_json((bundle / "results.json").read_text())
    with History(locate(tmp_path / "whole", None)) as history, history.transaction():
        manifest = json.loads((bundle / "manifest.json").read_text())
        history.insert_run(whole, bundle.name, manifest_sha256(bundle), manifest, None)
    streamed = _records_table(tmp_path / "streamed")
    assert len(streamed[0]) == 2500 and len(streamed[1]) == 834
    assert streamed == _records_table(tmp_path / "whole")


@pytest.mark.parametrize("layout", ["indented", "checks before the summary", "two checks on a line"])
def test_a_results_json_laid_out_otherwise_is_recorded_whole(tmp_path: Path, layout: str) -> None:
    at = datetime(2026, 7, 1, 6, tzinfo=UTC)
    bundle = write(tmp_path / "a", results("prod", at, _many_checks(at, 40)))
    expected = _records_table_after(bundle, tmp_path / "a")
    path = bundle / "results.json"
    if layout == "indented":
        path.write_text(json.dumps(json.loads(path.read_text()), indent=2))
    elif layout == "checks before the summary":  # the head read up to the checks is no document
        document = json.loads(path.read_text())
        path.write_text(json.dumps({key: document[key] for key in ("schema", "run", "checks", "summary")}, indent=2))
    else:  # the streamed reader fails on its first line; the whole read takes the document as it is
        text = path.read_text()
        path.write_text(text.replace("},\n    {", "}, {", 1))
        assert json.loads(path.read_text()) == json.loads(text)
    assert _records_table_after(bundle, tmp_path / "b") == expected


def _records_table_after(bundle: Path, report_dir: Path) -> tuple[list[Any], list[Any]]:
    with History(locate(report_dir, None)) as history:
        assert history.record_bundle(bundle, manifest_sha256(bundle)) is True
    return _records_table(report_dir)
