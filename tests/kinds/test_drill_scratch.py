"""Drills into a scratch database of your own (a DSN target): refused when it holds tables, emptied
when allowed, never a postgres item; CREATE DATABASE and \\restrict dumps; bad drills are usage errors.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from helpers.drill_servers import (
    INVOICES,
    PROJECTS,
    DrillDumps,
    ScratchServer,
    assert_never_shown,
    assert_nothing_left,
    backups_item,
    drill_dumps,
    drills_profile,
    scratch_pg,
    truncated,
    work_dir,
    write_backups,
)

from conftest import SECRET, Runner
from opsproof import ProfileError, load_profile
from opsproof.targets.drills import DrillTarget
from opsproof.targets.postgres import PostgresTarget

__all__ = ["drill_dumps", "scratch_pg", "work_dir"]  # session fixtures, found here by pytest


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
    assert_never_shown(run, SECRET)
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
    assert_never_shown(run, SECRET)
    assert_nothing_left(work_dir)
    found = run.outcomes("drills.")
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
    found = run.outcomes("drills.")
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
