"""Restore drills against real pg_dump output, real PostgreSQL servers and moto's S3.

Every outcome comes from a staged state: dumps made by pg_dump in the test (plain, gzip,
custom), broken the way backups break (cut short, bytes flipped), data three days stale,
a scratch database that already holds tables, a store that never answers, a restore
that sleeps until it is stopped or the run is interrupted. After each drill the test
proves nothing is left: no postgres, psql or pg_restore process, no file.

This file: restores that work and restores that must not pass. test_drill_dumps.py: the plain-dump
filter and format detection; test_drill_scratch.py: restoring into a database of your own, and bad
drills; test_drill_interrupts.py: timeouts, interrupts and the clean-up after them.
"""

from __future__ import annotations

import hashlib
from datetime import timedelta
from pathlib import Path

import pytest
from helpers.backup_servers import S3Server, s3_server
from helpers.drill_servers import (
    ACCOUNTS,
    EVERY_TABLE,
    INVOICES,
    PROJECTS,
    SCHEMA_VERSION,
    DrillDumps,
    assert_nothing_left,
    backups_item,
    corrupted,
    drill_dumps,
    drills_profile,
    truncated,
    work_dir,
    write_backups,
)

from conftest import Runner

__all__ = ["drill_dumps", "s3_server", "work_dir"]  # session fixtures, found here by pytest


# -- restores that work ----------------------------------------------------------------------


def test_plain_gzip_drill_passes_every_check(
    runner: Runner, drill_dumps: DrillDumps, work_dir: Path, tmp_path: Path
) -> None:
    folder = write_backups(
        tmp_path / "db",
        [("app_20261122.sql.gz", drill_dumps.stale_plain_gz, 50), ("app_20261124.sql.gz", drill_dumps.plain_gz, 2)],
    )
    runner.profile(
        drills_profile(
            [backups_item("db", folder, "app_*.sql.gz")],
            [
                f"{{name: latest, backup: db, work_dir: '{work_dir}', expect: {{tables: {EVERY_TABLE}}}, "
                "recency: {table: events, column: at}, rto: {warn: 30m, fail: 1h}, rpo: 1h, sql: ["
                "{name: version, sql: 'select version_num from alembic_version', expect: {equals: abc123}}, "
                "{name: body-kept, sql: \"select prosrc like '%GRANT SELECT%' from pg_proc where proname = 'grant_in_body'\", expect: {equals: true}}]}"
            ],
        )
    )
    run = runner.run("-m", "monthly")
    assert run.ret == 0, run.output
    assert_nothing_left(work_dir)
    assert sorted(run.outcomes("drills.")) == [
        "drills.restore[latest]",
        "drills.rpo[latest]",
        "drills.rto[latest]",
        "drills.sql[latest/body-kept]",
        "drills.sql[latest/version]",
        "drills.table[latest/accounts]",
        "drills.table[latest/billing.invoices]",
        "drills.table[latest/events]",
        "drills.table[latest/notes]",
        "drills.table[latest/projects]",
    ]
    assert {outcome for outcome, _ in run.outcomes("drills.").values()} == {"passed"}
    restore = run.record("drills.restore[latest]")
    assert restore["markers"] == ["dr", "monthly"]
    assert restore["message"].startswith("restored app_20261124.sql.gz (")
    assert "2h old, 1st newest of 2) as plain.gz into ephemeral PostgreSQL " in restore["message"]
    assert "ownership/privilege statement(s) left out" in restore["message"]
    observed = restore["observed"]
    backup = observed["backup"]
    newest = folder / "app_20261124.sql.gz"
    assert backup["key"] == str(newest)
    assert backup["size"] == newest.stat().st_size
    assert backup["sha256"] == hashlib.sha256(newest.read_bytes()).hexdigest()
    assert backup["format"] == "plain.gz"
    assert observed["restore"]["tool"] == "psql"
    assert observed["restore"]["bytes_restored"] == len(drill_dumps.plain)
    # Every phase, with timestamps; the RTO is their wall clock (a streamed fetch overlaps the restore).
    phases = {p["name"]: p for p in observed["phases"]}
    assert list(phases) == ["choose", "fetch", "prepare", "restore", "verify"]
    for phase in phases.values():
        assert phase["started_at"] <= phase["finished_at"] and phase["seconds"] >= 0
    assert phases["fetch"]["streamed"] is True
    assert observed["rto_s"] >= phases["prepare"]["seconds"] + phases["verify"]["seconds"]
    assert observed["cleanup"]["cluster_stopped"] is True and observed["cleanup"]["work_dir_removed"] is True
    assert observed["into"]["binaries"]["source"]
    table = run.record("drills.table[latest/projects]")
    assert table["message"] == f"{PROJECTS} row(s) in projects (at least {PROJECTS} expected)"
    assert table["observed"]["rows"] == PROJECTS and table["expected"] == {"min_rows": PROJECTS}
    assert run.record("drills.table[latest/notes]")["observed"]["rows"] == 1  # the COPY row that reads like a GRANT
    rto = run.record("drills.rto[latest]")
    assert rto["message"].startswith("RTO ") and "choose " in rto["message"] and "verify " in rto["message"]
    assert rto["expected"] == {"RTO": {"warn": "30m", "fail": "1h"}}
    rpo = run.record("drills.rpo[latest]")
    assert rpo["observed"]["recency"]["against"] == "now"
    assert rpo["observed"]["recency"]["lag_s"] < 600  # the events were written when the test session began
    assert "before now" in rpo["message"]
    assert "SOC2:A1.3" in rpo["controls"]


def test_custom_format_from_s3_choosing_the_oldest(
    runner: Runner, drill_dumps: DrillDumps, s3_server: S3Server, work_dir: Path
) -> None:
    bucket = s3_server.bucket("drill-backups", versioning=True)
    s3_server.put(bucket, "db/app_20261121.dump", drill_dumps.custom, age=timedelta(days=3))
    s3_server.put(bucket, "db/app_20261124.dump", drill_dumps.custom, age=timedelta(hours=1))
    s3_server.put(bucket, "db/app_20261121.dump.sha256", b"not a backup", age=timedelta(days=3))
    before = s3_server.snapshot(bucket)
    seen = len(s3_server.requests)
    s3 = f"{{bucket: {bucket}, prefix: db/, endpoint_url: '{s3_server.url}', region: us-east-1}}"
    runner.profile(
        drills_profile(
            [f"{{name: s3db, s3: {s3}, pattern: 'app_*.dump', max_age: 30d}}"],
            [
                f"{{name: oldest, backup: s3db, choose: oldest, work_dir: '{work_dir}', jobs: 2, "
                f"expect: {{tables: {EVERY_TABLE}}}, recency: {{table: events, column: at}}, rpo: 4d, rto: 1h}}"
            ],
        )
    )
    run = runner.run("-m", "monthly")
    assert run.ret == 0, run.output
    assert_nothing_left(work_dir)
    restore = run.record("drills.restore[oldest]")
    assert "app_20261121.dump" in restore["message"] and "2nd newest of 2" in restore["message"]
    assert "as custom into ephemeral PostgreSQL" in restore["message"] and "with pg_restore" in restore["message"]
    observed = restore["observed"]
    assert observed["backup"]["key"] == "db/app_20261121.dump"
    assert observed["backup"]["location"] == f"s3://{bucket}/db/"
    assert observed["backup"]["sha256"] == hashlib.sha256(drill_dumps.custom).hexdigest()
    assert observed["restore"]["jobs"] == 2
    assert observed["candidates"] == 2  # the .sha256 sidecar is not a backup
    # With choose: oldest the RPO is measured against the backup's own time, not now.
    recency = run.record("drills.rpo[oldest]")["observed"]["recency"]
    assert recency["against"] == "backup"
    assert "before the backup was written" in run.record("drills.rpo[oldest]")["message"]
    # The drill only read the bucket.
    assert s3_server.snapshot(bucket) == before
    methods = {method for method, _ in s3_server.requests[seen:]}
    assert methods <= {"GET", "HEAD"}, s3_server.requests[seen:]


def test_every_format_restores(runner: Runner, drill_dumps: DrillDumps, work_dir: Path, tmp_path: Path) -> None:
    folder = write_backups(
        tmp_path / "b",
        [
            ("plain/app.sql", drill_dumps.plain, 1),
            ("custom-gz/app.dump.gz", drill_dumps.custom_gz, 1),
            ("custom/app.dump", drill_dumps.custom, 1),
            ("any/a.sql.gz", drill_dumps.plain_gz, 30),
            ("any/b.dump", drill_dumps.custom, 20),
            ("any/c.sql", drill_dumps.plain, 10),
        ],
    )
    tables = f"expect: {{tables: {{projects: {PROJECTS}, billing.invoices: {INVOICES}}}}}"
    runner.profile(
        drills_profile(
            [
                backups_item("plain", folder, "plain/*"),
                backups_item("custom-gz", folder, "custom-gz/*"),
                backups_item("custom", folder, "custom/*"),
                backups_item("any", folder, "any/*"),
            ],
            [
                f"{{name: plain, backup: plain, work_dir: '{work_dir}', {tables}}}",
                f"{{name: custom-gz, backup: custom-gz, work_dir: '{work_dir}', {tables}}}",
                f"{{name: one-job, backup: custom, jobs: 1, work_dir: '{work_dir}', {tables}}}",
                f"{{name: random, backup: any, choose: random, work_dir: '{work_dir}', {tables}}}",
            ],
        )
    )
    run = runner.run("-m", "monthly")
    assert run.ret == 0, run.output
    assert_nothing_left(work_dir)
    formats = {
        name: run.record(f"drills.restore[{name}]")["observed"]["restore"] for name in ("plain", "custom-gz", "one-job")
    }
    assert (formats["plain"]["format"], formats["plain"]["tool"]) == ("plain", "psql")
    assert (formats["custom-gz"]["format"], formats["custom-gz"]["tool"]) == ("custom.gz", "pg_restore")
    assert formats["one-job"]["jobs"] == 1  # --single-transaction
    chosen = run.record("drills.restore[random]")["observed"]["backup"]
    assert chosen["name"] in {"any/a.sql.gz", "any/b.dump", "any/c.sql"}
    assert chosen["rank"].endswith("newest of 3")


# -- restores that must not pass --------------------------------------------------------------


def test_broken_backups_fail_every_check_and_leave_nothing(
    runner: Runner, drill_dumps: DrillDumps, work_dir: Path, tmp_path: Path
) -> None:
    folder = write_backups(
        tmp_path / "broken",
        [
            ("cut.sql.gz", truncated(drill_dumps.plain_gz), 1),
            ("flipped.sql.gz", corrupted(drill_dumps.plain_gz), 1),
            ("cut.sql", truncated(drill_dumps.plain, 0.9), 1),
            ("cut.dump", truncated(drill_dumps.custom, 0.7), 1),
            ("flipped.dump", corrupted(drill_dumps.custom, 0.6), 1),
            ("notes.txt", b"backup went fine, trust me\n" * 20, 1),
        ],
    )
    names = ["cut.sql.gz", "flipped.sql.gz", "cut.sql", "cut.dump", "flipped.dump", "notes.txt"]
    runner.profile(
        drills_profile(
            [backups_item(f"b{i}", folder, name) for i, name in enumerate(names)],
            [
                f"{{name: d{i}, backup: b{i}, work_dir: '{work_dir}', expect: {{tables: {{projects: 1}}}}, rto: 1h}}"
                for i in range(len(names))
            ],
        )
    )
    run = runner.run("-m", "monthly")
    assert run.ret == 1, run.output
    assert_nothing_left(work_dir)
    messages = {name: run.record(f"drills.restore[d{i}]")["message"] for i, name in enumerate(names)}
    assert "the backup is corrupt: gzip stream is truncated" in messages["cut.sql.gz"]
    assert "the backup is corrupt: gzip data is corrupt" in messages["flipped.sql.gz"]
    assert "the dump is incomplete: it does not end with pg_dump's completion marker" in messages["cut.sql"]
    assert "pg_restore failed (exit 1): pg_restore: error: could not read from input file" in messages["cut.dump"]
    assert "pg_restore failed (exit 1): pg_restore: error: could not uncompress data" in messages["flipped.dump"]
    assert "not a pg_dump plain or custom-format dump (it begins 'backup went fine, trust me')" in messages["notes.txt"]
    for i in range(len(names)):
        for check in (f"drills.restore[d{i}]", f"drills.table[d{i}/projects]", f"drills.rto[d{i}]"):
            assert run.record(check)["outcome"] == "failed", check
        assert run.record(f"drills.table[d{i}/projects]")["message"].startswith(
            "projects not counted: the restore failed"
        )
        cleanup = run.record(f"drills.restore[d{i}]")["observed"]["cleanup"]
        assert cleanup.get("work_dir_removed", "no folder made") in (True, "no folder made")
    # A file that is no dump is refused from its first bytes: no cluster was started for it.
    assert "cluster_stopped" not in run.record("drills.restore[d5]")["observed"]["cleanup"]
    assert "cluster_stopped" in run.record("drills.restore[d0]")["observed"]["cleanup"]


def test_missing_tables_short_counts_stale_data_and_slow_restores_fail(
    runner: Runner, drill_dumps: DrillDumps, work_dir: Path, tmp_path: Path
) -> None:
    folder = write_backups(tmp_path / "stale", [("app.sql.gz", drill_dumps.stale_plain_gz, 1)])
    runner.profile(
        drills_profile(
            [backups_item("db", folder, "*.sql.gz")],
            [
                f"{{name: stale, backup: db, work_dir: '{work_dir}', rto: 1ms, rpo: {{warn: 1h, fail: 1d}}, "
                f"recency: {{table: events, column: at}}, expect: {{tables: {{projectz: 1, accounts: {ACCOUNTS + 1}}}}}, "
                "sql: [{name: version, sql: 'select version_num from alembic_version', expect: {equals: def456}}]}",
                f"{{name: odd, backup: db, work_dir: '{work_dir}', rto: {{warn: 1ms, fail: 1h}}, "
                "recency: {table: projects, column: started_at}}",
                f"{{name: text-recency, backup: db, work_dir: '{work_dir}', recency: {{table: projects, column: name}}}}",
            ],
        )
    )
    run = runner.run("-m", "monthly")
    assert run.ret == 1, run.output
    assert_nothing_left(work_dir)
    found = run.outcomes("drills.")
    assert found["drills.restore[stale]"][0] == "passed"
    outcome, message = found["drills.table[stale/projectz]"]
    assert outcome == "failed"
    assert message.startswith(
        "table projectz does not exist in the restored database (the restored database has 6 table(s): "
    )
    assert "billing.invoices" in message and "projects" in message
    assert found["drills.table[stale/accounts]"] == (
        "failed",
        f"accounts has {ACCOUNTS} row(s) after the restore, expected at least {ACCOUNTS + 1}",
    )
    assert found["drills.sql[stale/version]"] == ("failed", f"value is '{SCHEMA_VERSION}', expected 'def456'")
    outcome, message = found["drills.rto[stale]"]
    assert outcome == "failed" and message.startswith("RTO ") and "is over the fail threshold 1ms" in message
    outcome, message = found["drills.rpo[stale]"]
    assert outcome == "failed" and "is over the fail threshold 1d" in message and "newest events.at " in message
    assert run.record("drills.rpo[stale]")["observed"]["recency"]["lag_s"] > 3 * 86400 - 600
    assert found["drills.rto[odd]"][0] == "warned"
    assert found["drills.rpo[odd]"] == ("failed", "no RPO: column started_at does not exist in table projects")
    outcome, message = found["drills.rpo[text-recency]"]
    assert outcome == "error"
    assert (
        message == "no RPO: column projects.name is of type text: recency needs a timestamp, timestamptz or date column"
    )


def test_nothing_to_restore_fails_and_missing_binaries_are_an_error(
    runner: Runner, monkeypatch: pytest.MonkeyPatch, drill_dumps: DrillDumps, work_dir: Path, tmp_path: Path
) -> None:
    folder = write_backups(tmp_path / "few", [("app.sql.gz", drill_dumps.plain_gz, 1)])
    runner.profile(
        drills_profile(
            [backups_item("none", folder, "*.dump"), backups_item("db", folder, "*.sql.gz")],
            [
                f"{{name: nothing, backup: none, work_dir: '{work_dir}', rto: 1h}}",
                f"{{name: no-binaries, backup: db, work_dir: '{work_dir}', expect: {{tables: {{projects: 1}}}}}}",
            ],
        )
    )
    monkeypatch.setenv("OPSPROOF_PG_BINDIR", str(tmp_path / "no-postgres-here"))
    run = runner.run("-m", "monthly")
    assert run.ret == 1, run.output
    assert_nothing_left(work_dir)
    found = run.outcomes("drills.")
    assert found["drills.restore[nothing]"] == (
        "failed",
        f"not restored: the restore failed (choose): no backup matches '*.dump' in {folder}",
    )
    assert found["drills.rto[nothing]"][0] == "failed"
    outcome, message = found["drills.restore[no-binaries]"]
    assert outcome == "error"
    assert message.startswith("not restored: the drill could not run: OPSPROOF_PG_BINDIR=")
    assert found["drills.table[no-binaries/projects]"][0] == "error"
