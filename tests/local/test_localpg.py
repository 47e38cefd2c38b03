"""The throwaway local PostgreSQL: binaries found in the documented order, a real server, always cleaned up."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import psycopg
import pytest

from conftest import SECRET
from opsproof.local import postgres as localpg
from opsproof.local.postgres import ENV_BINDIR, LocalPgError, find_binaries, local_postgres


def test_binaries_come_from_the_pgserver_wheel_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_BINDIR, raising=False)
    found = find_binaries()
    assert found.source == "pgserver"
    assert found.bindir.parts[-3:] == ("pgserver", "pginstall", "bin")
    for tool in (found.psql, found.pg_dump, found.pg_restore, found.tool("initdb")):
        assert tool.is_file() and os.access(tool, os.X_OK)
    assert found.version().split(".")[0].isdigit()
    with pytest.raises(LocalPgError, match=r"pg_nonexistent is not in .* \(PostgreSQL binaries from pgserver\)"):
        found.tool("pg_nonexistent")


def test_the_environment_variable_wins_and_a_wrong_one_is_an_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    real = find_binaries().bindir
    monkeypatch.setenv(ENV_BINDIR, str(real))
    assert find_binaries().source == ENV_BINDIR
    monkeypatch.setenv(ENV_BINDIR, str(tmp_path))
    with pytest.raises(LocalPgError, match=f"{ENV_BINDIR}={tmp_path}: no postgres and initdb there"):
        find_binaries()


def test_fallbacks_pg_config_then_usr_lib_postgresql_then_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_BINDIR, raising=False)
    monkeypatch.setattr(localpg, "_pgserver_bindir", lambda: None)
    pg_config = localpg._pg_config_bindir()
    if pg_config is not None and localpg._has_server(pg_config):
        assert find_binaries().source == "pg_config --bindir"
    monkeypatch.setattr(localpg, "_pg_config_bindir", lambda: None)
    if localpg._debian_bindir() is not None:
        found = find_binaries()
        assert found.source == "/usr/lib/postgresql" and found.bindir.name == "bin"
    monkeypatch.setattr(localpg, "_debian_bindir", lambda: None)
    with pytest.raises(LocalPgError, match=r"no PostgreSQL server binaries .* tried pgserver .*set OPSPROOF_PG_BINDIR"):
        find_binaries()


def test_debian_layout_picks_the_highest_version(tmp_path: Path) -> None:
    for version in ("9.6", "15", "13"):
        (tmp_path / version / "bin").mkdir(parents=True)
    (tmp_path / "common" / "bin").mkdir(parents=True)
    assert localpg._debian_bindir(tmp_path) == tmp_path / "15" / "bin"


def test_a_cluster_runs_unprivileged_with_scram_over_tcp_and_is_removed_after(tmp_path: Path) -> None:
    # tmp_path lives under /tmp/pytest-of-<user> (0700): the cluster's folder must still be reachable.
    with local_postgres(max_connections=7, settings={"log_statement": "all"}, base_dir=tmp_path) as pg:
        root, pid = pg.root, pg.process.pid if pg.process else 0
        assert pg.is_running()
        owner = Path(f"/proc/{pid}/status").read_text().split("Uid:")[1].split()[0]
        if os.geteuid() == 0:
            assert owner != "0", "PostgreSQL must not run as root"
        assert pg.execute("show max_connections") == [("7",)]
        assert pg.execute("show listen_addresses") == [("127.0.0.1",)]
        pg.create_role("app", password=SECRET)
        with psycopg.connect(pg.dsn("app"), password=SECRET) as conn:
            assert conn.execute("select current_user").fetchone() == ("app",)
        with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
            psycopg.connect(pg.dsn("app", password="wrong"))
        with pytest.raises(psycopg.OperationalError, match="no password supplied"):
            psycopg.connect(pg.dsn("app"))
        assert "statement: select current_user" in pg.log_text()
        # The password was set with statement logging off: it never reaches the server's log.
        assert SECRET not in pg.log_text()
    assert not root.exists()
    assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text()


def test_the_cluster_is_stopped_and_removed_when_the_block_raises() -> None:
    seen: list[localpg.LocalPostgres] = []
    with pytest.raises(RuntimeError, match="boom"), local_postgres(password_auth=False) as pg:
        seen.append(pg)
        # trust over TCP when password_auth is off
        with psycopg.connect(pg.dsn()) as conn:
            assert conn.execute("select 1").fetchone() == (1,)
        raise RuntimeError("boom")
    (pg,) = seen
    assert not pg.is_running()
    assert not pg.root.exists()


def test_keep_leaves_the_folder_for_a_post_mortem() -> None:
    with local_postgres(keep=True) as pg:
        root = pg.root
    try:
        assert (root / "postgres.log").is_file() and (root / "data" / "PG_VERSION").is_file()
        assert not pg.is_running()
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_a_server_that_cannot_start_says_why() -> None:
    with (
        pytest.raises(LocalPgError, match=r"postgres exited with .*no_such_setting"),
        local_postgres(settings={"no_such_setting": "1"}),
    ):
        pass
