"""Restore drills against real pg_dump output, real PostgreSQL servers and moto's S3.

Every outcome comes from a staged state: dumps made by pg_dump in the test (plain, gzip,
custom), broken the way backups break (cut short, bytes flipped), data three days stale,
a scratch database that already holds tables, a store that never answers, a restore
that sleeps until it is stopped or the run is interrupted. After each drill the test
proves nothing is left: no postgres, psql or pg_restore process, no file.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
from helpers.backup_servers import S3Server, s3_server
from helpers.drill_servers import (
    ACCOUNTS,
    EVENTS,
    INVOICES,
    PROJECTS,
    SCHEMA_VERSION,
    SLEEP_STATEMENT,
    DrillDumps,
    ScratchServer,
    assert_nothing_left,
    corrupted,
    drill_dumps,
    drills_profile,
    postgres_processes_under,
    scratch_pg,
    truncated,
    work_dir,
    write_backups,
)

from conftest import REPO, SECRET, Run, Runner, default_sigint, listening_black_hole, wait_for
from opsproof import ProfileError, load_profile
from opsproof.backup.drill_steps import DrillError
from opsproof.backup.integrity import PLAIN_DUMP_END
from opsproof.backup.opening import inner_format
from opsproof.backup.plain_dump import PlainDumpFilter, UnsafeDump
from opsproof.backup.reaper import processes_under
from opsproof.targets.drills import DrillTarget
from opsproof.targets.postgres import PostgresTarget
from opsproof.testing.servers import free_port

__all__ = ["drill_dumps", "s3_server", "scratch_pg", "work_dir"]  # session fixtures, found here by pytest

EVERY_TABLE = (
    f"{{projects: {PROJECTS}, accounts: {ACCOUNTS}, events: {EVENTS}, billing.invoices: {INVOICES}, notes: 1}}"
)


def backups_item(name: str, folder: Path, pattern: str) -> str:
    return f"{{name: {name}, path: '{folder}', pattern: '{pattern}', max_age: 30d}}"


def outcomes(run: Run, prefix: str = "drills.") -> dict[str, tuple[str, str]]:
    return {c["check"]: (c["outcome"], c["message"]) for c in run.results["checks"] if c["check"].startswith(prefix)}


def _assert_never_shown(run: Run, secret: str) -> None:
    assert secret not in run.output
    for path in run.bundle.rglob("*"):
        if path.is_file():
            assert secret not in path.read_text(errors="replace"), path.name


# -- the plain-dump filter and format detection (no server) ----------------------------------


def test_the_filter_leaves_out_exactly_ownership_and_privilege_statements(drill_dumps: DrillDumps) -> None:
    dump = drill_dumps.plain
    whole = PlainDumpFilter()
    out = whole.feed(dump) + whole.finish()
    removed = [line for line in dump.splitlines() if line not in out.splitlines()]
    assert removed, "the source database has owners and grants: something must be left out"
    assert all(
        line.startswith((b"GRANT ", b"ALTER DEFAULT PRIVILEGES "))
        or (line.startswith(b"ALTER ") and b" OWNER TO " in line)
        for line in removed
    ), removed
    assert whole.dropped == len(removed) == len(dump.splitlines()) - len(out.splitlines())
    # Statement-like lines that are not statements stay: a function body, a comment string, a COPY row.
    assert out.count(b"GRANT SELECT ON projects TO reader;") == 2
    assert b"GRANT ALL ON everything TO everyone;\n" in out
    assert PLAIN_DUMP_END in out
    # The same output whatever the chunks: lines, quotes and COPY terminators cut anywhere.
    for size in (1, 3, 7, 64, 4093):
        chunked = PlainDumpFilter()
        pieces = [chunked.feed(dump[i : i + size]) for i in range(0, len(dump), size)]
        assert b"".join(pieces) + chunked.finish() == out, size


def test_the_filter_leaves_out_what_pg_dump_create_and_restrict_add(drill_dumps: DrillDumps) -> None:
    created = PlainDumpFilter()
    out = created.feed(drill_dumps.created) + created.finish()
    removed = [line for line in drill_dumps.created.splitlines() if line not in out.splitlines()]
    database_lines = [line for line in removed if b"DATABASE" in line or line.startswith(b"\\")]
    assert [line.split(b" ")[0] + b" " + line.split(b" ")[1] for line in database_lines] == [
        b"CREATE DATABASE",
        b"ALTER DATABASE",
        b"\\connect app",
        b"COMMENT ON",
    ], database_lines
    fenced, plain = PlainDumpFilter(), PlainDumpFilter()
    fenced_out = fenced.feed(drill_dumps.restricted) + fenced.finish()
    plain_out = plain.feed(drill_dumps.plain) + plain.finish()
    assert b"restrict" not in fenced_out
    assert fenced_out.replace(b"\n", b"") == plain_out.replace(b"\n", b"")
    assert fenced.dropped == plain.dropped + 2


@pytest.mark.parametrize("command", [b"\\! touch /tmp/opsproof-owned", b"\\o /tmp/opsproof-out", b"\\i /etc/passwd"])
def test_any_other_meta_command_stops_the_restore(drill_dumps: DrillDumps, command: bytes) -> None:
    with pytest.raises(UnsafeDump) as raised:
        PlainDumpFilter().feed(drill_dumps.with_line(command))
    assert str(raised.value) == f"the dump holds a psql meta-command ({command.decode()!r}) that pg_dump never writes"


@pytest.mark.parametrize(
    "statement", [b"COPY notes FROM PROGRAM 'touch /tmp/opsproof-owned';", b"copy (select 1) to program 'sh';"]
)
def test_a_copy_that_runs_a_program_stops_the_restore(drill_dumps: DrillDumps, statement: bytes) -> None:
    with pytest.raises(UnsafeDump) as raised:
        PlainDumpFilter().feed(drill_dumps.with_line(statement))
    assert str(raised.value).startswith("the dump holds a COPY that runs a program (")


@pytest.mark.parametrize(
    ("head", "expected"),
    [
        (b"PGDMP\x01\x0f\x00", "custom"),
        (b"--\n-- PostgreSQL database dump\n--\n", "plain"),
        (b"--\n-- PostgreSQL database cluster dump\n--\n", "a pg_dumpall cluster dump"),
        (b"\x28\xb5\x2f\xfd\x00\x00", "zstd-compressed"),
        (b"x" * 257 + b"ustar\x0000", "a tar archive"),
        (b"hello world\n", "not a pg_dump plain or custom-format dump (it begins 'hello world')"),
        (b"", "the backup is empty"),
    ],
)
def test_formats_are_recognised_by_their_first_bytes(head: bytes, expected: str) -> None:
    if expected in ("custom", "plain"):
        assert inner_format(head, gzipped=False) == expected
        return
    with pytest.raises(DrillError) as raised:
        inner_format(head, gzipped=False)
    assert expected in str(raised.value)
    assert raised.value.stage == "fetch"


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
    assert sorted(outcomes(run)) == [
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
    assert {outcome for outcome, _ in outcomes(run).values()} == {"passed"}
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
    found = outcomes(run)
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
    found = outcomes(run)
    assert found["drills.restore[nothing]"] == (
        "failed",
        f"not restored: the restore failed (choose): no backup matches '*.dump' in {folder}",
    )
    assert found["drills.rto[nothing]"][0] == "failed"
    outcome, message = found["drills.restore[no-binaries]"]
    assert outcome == "error"
    assert message.startswith("not restored: the drill could not run: OPSPROOF_PG_BINDIR=")
    assert found["drills.table[no-binaries/projects]"][0] == "error"


# -- scratch databases ------------------------------------------------------------------------


def test_dsn_targets_are_restored_into_refused_when_not_empty_and_emptied_when_allowed(
    runner: Runner,
    drill_dumps: DrillDumps,
    scratch_pg: ScratchServer,
    work_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SCRATCH_PASSWORD", SECRET)
    # Real pg_dump output that psql stops in the middle of (after the first table's data), and one cut short.
    failing = drill_dumps.plain.replace(b"\n\\.\n", b"\n\\.\nSELECT no_such_function();\n", 1)
    folder = write_backups(
        tmp_path / "db",
        [
            ("app.sql.gz", drill_dumps.plain_gz, 1),
            ("app.dump", drill_dumps.custom, 2),
            ("failing.sql", failing, 1),
            ("cut.sql", truncated(drill_dumps.plain, 0.8), 1),
        ],
    )
    first, second, third = scratch_pg.fresh(), scratch_pg.fresh(), scratch_pg.fresh()

    def drill(name: str, database: str, backup: str = "plain", **target: str) -> str:
        extra = "".join(f", {key}: {value}" for key, value in target.items())
        dsn = scratch_pg.dsn(database)
        return (
            f"{{name: {name}, backup: {backup}, work_dir: '{work_dir}', expect: {{tables: {{projects: {PROJECTS}}}}}, "
            f"target: {{dsn: '{dsn}', password: '${{SCRATCH_PASSWORD}}'{extra}}}}}"
        )

    backups = [
        backups_item("plain", folder, "*.sql.gz"),
        backups_item("custom", folder, "*.dump"),
        backups_item("failing", folder, "failing.sql"),
        backups_item("cut", folder, "cut.sql"),
    ]
    runner.profile(drills_profile(backups, [drill("first", first), drill("second", second, "custom")]))
    run = runner.run("-m", "monthly")
    assert run.ret == 0, run.output
    _assert_never_shown(run, SECRET)
    assert_nothing_left(work_dir)
    observed = run.record("drills.restore[first]")["observed"]
    assert observed["into"]["kind"] == "dsn" and observed["into"]["user_tables_before"] == 0
    assert observed["into"]["dsn"] == scratch_pg.dsn(first)
    assert observed["cleanup"]["target_left"] == "not dropped: it holds the restored data"
    # Not dropped: the scratch database holds what was restored.
    assert "public.projects" in scratch_pg.tables(first) and "billing.invoices" in scratch_pg.tables(second)

    # Again: refused now that they hold tables, unless allowed to empty them; a wrong password is an error.
    runner.profile(
        drills_profile(
            backups,
            [
                drill("refused", first),
                drill("overwrite", second, allow_overwrite="true"),
                drill("bad-password", first).replace("${SCRATCH_PASSWORD}", "wrong"),
                drill("psql-error", third, "failing"),
                drill("cut", third, "cut"),
            ],
        )
    )
    for bundle in run.bundles:
        os.rename(bundle, tmp_path / bundle.name)
    run = runner.run("-m", "monthly")
    assert run.ret == 1, run.output
    _assert_never_shown(run, SECRET)
    assert_nothing_left(work_dir)
    found = outcomes(run)
    outcome, message = found["drills.restore[refused]"]
    assert outcome == "error"
    assert f"the scratch database {first} already holds 6 user table(s) (billing.invoices, accounts, " in message
    assert "set target.allow_overwrite: true to let the drill empty it first" in message
    assert found["drills.table[refused/projects]"][0] == "error"
    assert found["drills.restore[overwrite]"][0] == "passed"
    assert found["drills.table[overwrite/projects]"][0] == "passed"
    emptied = run.record("drills.restore[overwrite]")["observed"]["into"]["emptied_schemas"]
    assert emptied == ["billing", "public"]
    left = run.record("drills.restore[overwrite]")["observed"]["cleanup"]["target_left"]
    assert left == "not dropped: emptied (allow_overwrite), then it holds the restored data"
    left = run.record("drills.restore[refused]")["observed"]["cleanup"]["target_left"]
    assert left == "not dropped: the drill did not write to it"
    outcome, message = found["drills.restore[bad-password]"]
    assert outcome == "error" and 'password authentication failed for user "drill"' in message
    # A plain dump that fails or ends early commits nothing, even into a database that is kept.
    outcome, message = found["drills.restore[psql-error]"]
    assert outcome == "failed"
    assert "psql failed (exit 3): ERROR:  function no_such_function() does not exist" in message
    left = run.record("drills.restore[psql-error]")["observed"]["cleanup"]["target_left"]
    assert left == "not dropped: nothing restored (the restore's transaction was rolled back)"
    assert found["drills.restore[cut]"][0] == "failed"
    assert "the dump is incomplete" in found["drills.restore[cut]"][1]
    assert scratch_pg.tables(third) == []


def test_create_and_restrict_dumps_restore_and_a_tampered_one_runs_nothing(
    runner: Runner,
    drill_dumps: DrillDumps,
    scratch_pg: ScratchServer,
    work_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SCRATCH_PASSWORD", SECRET)
    owned = tmp_path / "owned"
    folder = write_backups(
        tmp_path / "db",
        [
            ("created.sql", drill_dumps.created, 1),  # pg_dump --create
            ("restricted.sql", drill_dumps.restricted, 1),  # pg_dump 17.6's \restrict fence
            ("tampered.sql", drill_dumps.with_line(f"\\! touch {owned}".encode()), 1),
        ],
    )
    scratch = scratch_pg.fresh()
    databases_before = {row[0] for row in scratch_pg.pg.execute("select datname from pg_database")}
    tables = f"expect: {{tables: {{projects: {PROJECTS}, billing.invoices: {INVOICES}}}}}"
    dsn = f"target: {{dsn: '{scratch_pg.dsn(scratch)}', password: '${{SCRATCH_PASSWORD}}'}}"
    runner.profile(
        drills_profile(
            [backups_item(name, folder, f"{name}.sql") for name in ("created", "restricted", "tampered")],
            [
                f"{{name: created, backup: created, work_dir: '{work_dir}', {tables}}}",
                f"{{name: created-dsn, backup: created, work_dir: '{work_dir}', {tables}, {dsn}}}",
                f"{{name: restricted, backup: restricted, work_dir: '{work_dir}', {tables}}}",
                f"{{name: tampered, backup: tampered, work_dir: '{work_dir}', {tables}}}",
            ],
        )
    )
    run = runner.run("-m", "monthly")
    assert_nothing_left(work_dir)
    found = outcomes(run)
    for name in ("created", "created-dsn", "restricted"):
        assert found[f"drills.restore[{name}]"][0] == "passed", found[f"drills.restore[{name}]"]
        assert found[f"drills.table[{name}/projects]"][0] == "passed"
    # --create's CREATE DATABASE app and \connect app went nowhere: the data is in the scratch database.
    assert "public.projects" in scratch_pg.tables(scratch)
    assert {row[0] for row in scratch_pg.pg.execute("select datname from pg_database")} == databases_before
    outcome, message = found["drills.restore[tampered]"]
    assert outcome == "failed"
    assert "the dump holds a psql meta-command ('\\\\! touch /" in message, message
    assert message.endswith("that pg_dump never writes; a drill does not run it")
    assert not owned.exists()


def test_a_dsn_target_that_is_a_postgres_item_is_refused_by_the_drill() -> None:
    drill = DrillTarget.model_validate(
        {"name": "d", "backup": "b", "target": {"dsn": "postgresql://drill@localhost/app"}}
    )
    sources = [
        PostgresTarget(name="other-db", dsn="postgresql://ops@127.0.0.1:5432/reporting"),
        PostgresTarget(name="other-port", dsn="host=127.0.0.1 port=5433 dbname=app"),
        PostgresTarget(name="primary", dsn="host=/var/run/postgresql dbname=app user=ops"),
    ]
    assert drill.source_clash(sources[:2]) is None
    assert drill.source_clash(sources) == (
        "the target is the database of postgres item 'primary' (local:5432/app): "
        "a drill restores into a scratch database, never into a source"
    )


def test_a_dsn_target_that_is_a_postgres_item_is_a_usage_error(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(
        "environment: test\npostgres:\n  - {name: primary, dsn: 'postgresql://ops@db.internal:5432/app'}\n"
        f"backups:\n  - {{name: b, path: '{tmp_path}', max_age: 1d}}\n"
        "drills:\n  - name: d\n    backup: b\n    target: {dsn: 'host=db.internal dbname=app user=drill'}\n"
    )
    with pytest.raises(ProfileError) as raised:
        load_profile(path)
    assert "drills[0].target" in str(raised.value) and "postgres item 'primary'" in str(raised.value)


# -- timeouts, interrupts ----------------------------------------------------------------------


def test_a_store_that_never_answers_costs_the_timeout(
    runner: Runner, work_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}.items():
        monkeypatch.setenv(key, value)  # credentials, so what is measured is the endpoint not answering
    with listening_black_hole() as port:
        closed = free_port(0)
        runner.profile(
            drills_profile(
                [
                    f"{{name: hole, s3: {{bucket: backups, endpoint_url: 'http://127.0.0.1:{port}', region: us-east-1}}, max_age: 1d}}",
                    f"{{name: closed, s3: {{bucket: backups, endpoint_url: 'http://127.0.0.1:{closed}', region: us-east-1}}, max_age: 1d}}",
                ],
                [
                    f"{{name: hole, backup: hole, timeout: 1s, work_dir: '{work_dir}'}}",
                    f"{{name: closed, backup: closed, timeout: 1s, work_dir: '{work_dir}'}}",
                ],
            )
        )
        started = time.monotonic()
        run = runner.run("-m", "monthly")
        took = time.monotonic() - started
    assert run.ret == 1, run.output
    hole = run.record("drills.restore[hole]")
    assert hole["outcome"] == "failed"
    assert "listing the backups failed: s3://backups/: timed out" in hole["message"]
    assert hole["observed"]["timed_out"] is True and hole["observed"]["reached"] is False
    listing = hole["observed"]["phases"][0]
    assert listing["name"] == "choose"
    assert 1.0 <= listing["listing_s"] < 1.9  # the item's timeout, once: one attempt, no retry
    closed_record = run.record("drills.restore[closed]")
    assert closed_record["outcome"] == "failed" and "cannot connect to" in closed_record["message"]
    assert took < 20
    assert_nothing_left(work_dir)


def test_max_duration_stops_the_restore_and_cleans_up(
    runner: Runner, drill_dumps: DrillDumps, work_dir: Path, tmp_path: Path
) -> None:
    folder = write_backups(tmp_path / "slow", [("app.sql", drill_dumps.slow_plain, 1)])
    runner.profile(
        drills_profile(
            [backups_item("db", folder, "*.sql")],
            [f"{{name: slow, backup: db, max_duration: 4s, work_dir: '{work_dir}', rto: 1h}}"],
        )
    )
    run = runner.run("-m", "monthly")
    assert run.ret == 1, run.output
    restore = run.record("drills.restore[slow]")
    assert restore["outcome"] == "failed"
    assert restore["message"] == "not restored: the restore failed (restore): timed out after 4s (max_duration)"
    observed = restore["observed"]
    assert observed["timed_out"] is True
    assert observed["elapsed_s"] < 10
    assert [p["name"] for p in observed["phases"]][-1] == "restore"
    assert observed["cleanup"]["cluster_stopped"] is True and observed["cleanup"]["work_dir_removed"] is True
    assert run.record("drills.rto[slow]")["outcome"] == "failed"
    assert_nothing_left(work_dir)


@pytest.mark.parametrize("how", ["SIGTERM to the run", "Ctrl-C on the terminal", "SIGKILL to the run"])
def test_an_interrupted_run_leaves_no_server_and_no_file(
    how: str, drill_dumps: DrillDumps, work_dir: Path, tmp_path: Path
) -> None:
    """A real `pytest -m monthly` process, interrupted while psql sleeps inside the restore."""
    folder = write_backups(tmp_path / "slow", [("app.sql", drill_dumps.slow_plain, 1)])
    profile = tmp_path / "interrupted.yaml"
    profile.write_text(
        drills_profile([backups_item("db", folder, "*.sql")], [f"{{name: slow, backup: db, work_dir: '{work_dir}'}}"])
    )
    env = {k: v for k, v in os.environ.items() if k != "OPSPROOF_PROFILE"}
    command = [
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-m",
        "monthly",
        f"--profile={profile}",
        f"--report-dir={tmp_path / 'r'}",
    ]
    run = subprocess.Popen(
        command,
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        preexec_fn=default_sigint,
    )
    try:
        wait_for(lambda: _sleeping_in_restore(work_dir), "psql to sleep inside the restore", timeout=60)
        assert postgres_processes_under(work_dir), "the throwaway PostgreSQL runs in the drill's folder"
        if how == "SIGTERM to the run":
            run.send_signal(signal.SIGTERM)
        elif how == "SIGKILL to the run":  # no handler runs: the probe process and the reaper must notice
            run.send_signal(signal.SIGKILL)
        else:  # the terminal sends SIGINT to the whole foreground process group
            os.killpg(run.pid, signal.SIGINT)
        output, _ = run.communicate(timeout=60)
    except BaseException:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
        output, _ = run.communicate()
        print(output.decode(errors="replace"))
        raise
    expected = -signal.SIGKILL if how == "SIGKILL to the run" else 2  # 2: interrupted (CONTRACT §2)
    assert run.returncode == expected, output.decode(errors="replace")
    assert_nothing_left(work_dir, timeout=30)


def _sleeping_in_restore(work_dir: Path) -> bool:
    psql = [argv for argv in processes_under(str(work_dir)).values() if argv and argv[0].endswith("psql")]
    if not psql:
        return False
    socket_dirs = list(work_dir.glob("opsproof-drill-*/opsproof-pg-*/sock"))
    if not socket_dirs:
        return False
    import psycopg

    ports = [p.name.rsplit(".", 1)[1] for p in socket_dirs[0].glob(".s.PGSQL.*") if not p.name.endswith(".lock")]
    if not ports:
        return False
    port = ports[0]
    try:
        with psycopg.connect(host=str(socket_dirs[0]), port=port, user="postgres", dbname="postgres") as conn:
            rows = conn.execute("select count(*) from pg_stat_activity where wait_event = 'PgSleep'").fetchall()
    except psycopg.Error:
        return False
    return bool(rows[0][0])


# -- bad input ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("drill", "message"),
    [
        ("choose: latest", "drills[0].choose: unknown choose 'latest': use newest, oldest or random"),
        (
            "rto: fast",
            "drills[0].rto.fail: invalid duration 'fast': expected a duration such as 250ms, 5s, 10m, 26h or 30d",
        ),
        ("rto: {warn: 1h, fail: soon}", "drills[0].rto.fail: invalid duration 'soon'"),
        (
            "expect: {tables: [projects]}",
            "drills[0].expect.tables: expect.tables is a mapping of table name to minimum row count, e.g. {projects: 50} (got list)",
        ),
        (
            "expect: {tables: {projects: many}}",
            "drills[0].expect.tables: expect.tables.projects: the minimum row count is a whole number of at least 0 (got 'many')",
        ),
        ("expect: {tables: {'drop table x': 1}}", "table 'drop table x': expected a table name or schema.table"),
        (
            "target: staging",
            "drills[0].target: target 'staging': use `ephemeral` or a mapping {dsn: ...} of a scratch database",
        ),
        ("target: {dsn: 'postgresql://u@h:port/db'}", "drills[0].target.dsn: malformed DSN: the port is not a number"),
        ("target: {dsn: 'postgresql://u@h/db', overwrite: true}", "drills[0].target.overwrite: unknown key"),
        ("rpo: 1h", "drills[0]: rpo needs recency: {table, column}"),
        (
            "choose: oldest\n    recency: {table: events, column: at, against: now}",
            "drills[0]: recency.against: now measures what a restore now would lose",
        ),
        ("recency: {table: events, column: 'a b'}", "drills[0].recency.column: column 'a b': expected a column name"),
        ("work_dir: /no/such/folder", "drills[0].work_dir: work_dir '/no/such/folder' is not a directory"),
        (
            "sql: [{name: q, sql: 'delete from projects', expect: {rows: 0}}]",
            "drills[0].sql[0].sql: DELETE is not a read-only statement",
        ),
        ("backup: nope", "drills[0].backup: no backups item named 'nope' (db)"),
    ],
)
def test_bad_drills_are_usage_errors(drill: str, message: str, tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    body = drill if drill.startswith("backup:") else f"backup: db\n    {drill}"
    path.write_text(
        f"environment: test\nbackups:\n  - {{name: db, path: '{tmp_path}', max_age: 1d}}\n"
        f"drills:\n  - name: d\n    {body}\n"
    )
    with pytest.raises(ProfileError) as raised:
        load_profile(path)
    assert message in str(raised.value)
    assert str(raised.value).startswith(f"{path}:")


def test_a_bad_drill_exits_4_naming_the_line(runner: Runner, tmp_path: Path) -> None:
    runner.profile(
        f"environment: test\nbackups:\n  - {{name: db, path: '{tmp_path}', max_age: 1d}}\n"
        "drills:\n  - name: d\n    backup: db\n    choose: latest\n"
    )
    run = runner.run("-m", "monthly")
    assert run.ret == 4, run.output
    assert "profiles/test.yaml:7: drills[0].choose: unknown choose 'latest': use newest, oldest or random" in run.output


def test_the_slow_dump_is_real_pg_dump_output_with_one_statement_added(drill_dumps: DrillDumps) -> None:
    # The interrupt and timeout tests restore it: everything else in it is pg_dump's.
    assert drill_dumps.slow_plain.replace(SLEEP_STATEMENT, b"", 1) == drill_dumps.plain
    assert gzip.decompress(drill_dumps.plain_gz) == drill_dumps.plain
