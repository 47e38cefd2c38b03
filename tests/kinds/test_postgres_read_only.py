"""Custom SQL never acts on the server: the bypasses of issue 13, tried against a real PostgreSQL with a victim session.

The role the profiles use here is a superuser on purpose: it could terminate the victim, so
only opsproof's locks (the parser when the profile loads, the server's catalogue just before
the query, the read-only session) stand between the query and the victim.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml
from helpers import postgres_servers
from helpers.postgres_servers import PgServer

from conftest import REPO, SECRET, Runner, descendants, process_alive, profile_error, wait_for
from opsproof.model.sql_guard import read_only_sql, refusal

pg_main = postgres_servers.pg_main
pg_env = postgres_servers.pg_env
pytestmark = pytest.mark.usefixtures("pg_env")

POWER_ROLE = "power"  # a superuser: what a careless profile would connect as

# Each query of the issue that got past the regular-expression filter, and its spellings.
BYPASSES = [
    'select "pg_terminate_backend"(pid) from pg_stat_activity where pid = {victim}',
    'select U&"\\0070g_terminate_backend"({victim})',
    "select pg_catalog.pg_terminate_backend({victim})",
    'select "pg_catalog"."pg_cancel_backend"({victim})',
    "select pg_try_advisory_lock(42)",
    "select pg_try_advisory_xact_lock_shared(42)",
    "select pg_stat_statements_reset()",
    "select pg_stat_reset_shared('bgwriter')",
    "select pg_file_write('/tmp/x', 'y', false)",
    "select lo_import('/etc/hostname')",
    "select set_config('default_transaction_read_only', 'off', false)",
    "select nextval('accounts_id_seq')",
    "select pg_reload_conf()",
    "select pg_rotate_logfile()",
    "select query_to_xml('select pg_terminate_backend({victim})', true, true, '')",
    "with gone as (delete from accounts returning id) select count(*) from gone",
    "select * into stolen from accounts",
    "explain (analyze) delete from accounts",
]


@pytest.fixture(scope="module")
def power(pg_main: PgServer) -> PgServer:
    with contextlib.suppress(psycopg.errors.DuplicateObject):
        pg_main.pg.create_role(POWER_ROLE, password=SECRET, superuser=True)
    return pg_main


@pytest.fixture
def victim(pg_main: PgServer) -> Iterator[psycopg.Connection[Any]]:
    """An idle session of the application (a superuser's: only a superuser could end it)."""
    conn = pg_main.pg.connect("app")
    try:
        yield conn
    finally:
        conn.close()


def _alive(conn: psycopg.Connection[Any]) -> bool:
    try:
        return conn.execute("select 1").fetchone() == (1,)
    except psycopg.OperationalError:
        return False


def _profile(server: PgServer, sql: str, user: str = POWER_ROLE) -> str:
    item = {
        "name": "app",
        "dsn": server.dsn(user, "app"),
        "password": "${PG_PASSWORD}",
        "queries": [{"name": "q", "sql": sql, "expect": {"rows": 1}}],
    }
    return yaml.safe_dump({"environment": "test", "defaults": {"timeout": "3s"}, "postgres": [item]})


@pytest.mark.parametrize("sql", BYPASSES)
def test_each_bypass_is_refused_when_the_profile_loads(tmp_path: Path, sql: str) -> None:
    message = profile_error(tmp_path, _profile_text(sql.format(victim=1)))
    assert "bad.yaml:" in message and "postgres[0].queries[0].sql: " in message, message
    assert any(
        why in message for why in ("is not allowed", "not a read-only", "row locks", "creates a table", "ANALYZE")
    )


def _profile_text(sql: str) -> str:
    item = {
        "name": "db",
        "dsn": "postgresql://ops@db/app",
        "queries": [{"name": "q", "sql": sql, "expect": {"rows": 1}}],
    }
    return yaml.safe_dump({"environment": "test", "postgres": [item]})


def test_a_bypass_exits_4_and_the_victim_survives(
    runner: Runner, power: PgServer, victim: psycopg.Connection[Any]
) -> None:
    runner.profile(_profile(power, BYPASSES[0].format(victim=victim.info.backend_pid)))
    run = runner.run("-m", "daily")
    assert run.ret == 4, run.output
    assert "postgres[0].queries[0].sql: PG_TERMINATE_BACKEND is not allowed" in run.output
    assert _alive(victim)


async def _refusals(server: PgServer, sqls: list[str]) -> list[str | None]:
    async with await psycopg.AsyncConnection.connect(server.dsn(POWER_ROLE, "app"), password=SECRET) as conn:
        return [await refusal(conn, sql) for sql in sqls]


# pg_stat_statements and adminpack are not installed on the test cluster: there the server itself
# refuses the unknown names (`function ... does not exist`).
SERVER_KNOWN = [
    s for s in BYPASSES if s.startswith("select") and not any(x in s for x in ("into", "statements", "file"))
]


@pytest.mark.parametrize("sql", SERVER_KNOWN)
def test_the_server_catalogue_refuses_the_bypasses_on_its_own(power: PgServer, sql: str) -> None:
    # The second lock alone (the parser is not asked): each name resolved in pg_proc is VOLATILE.
    (reason,) = asyncio.run(_refusals(power, [sql.format(victim=1)]))
    assert reason is not None and "is VOLATILE" in reason, reason


def test_the_server_catalogue_allows_what_monitoring_reads(power: PgServer) -> None:
    reads = [
        "select count(*) from pg_stat_activity where state = 'active'",
        "select pg_database_size(current_database()) > 0",
        "select pg_is_in_recovery(), pg_current_wal_lsn(), now() - pg_postmaster_start_time()",
        "select max(id) + 1 from accounts",
        "show max_connections",
    ]
    assert asyncio.run(_refusals(power, reads)) == [None] * len(reads)


def test_a_function_the_parser_cannot_know_is_refused_before_it_runs(
    runner: Runner, power: PgServer, victim: psycopg.Connection[Any]
) -> None:
    pid = victim.info.backend_pid
    power.pg.execute(
        f"create or replace function app_status() returns bool language sql as $$ select pg_terminate_backend({pid}) $$",
        dbname="app",
    )
    power.pg.execute(
        "create or replace function app_sum(int, int) returns int language sql as "
        f"$$ select $1 + $2 + pg_terminate_backend({pid})::int $$",
        dbname="app",
    )
    power.pg.execute("drop operator if exists #=# (int, int)", dbname="app")
    power.pg.execute("create operator #=# (function = app_sum, leftarg = int, rightarg = int)", dbname="app")
    runner.profile(
        yaml.safe_dump(
            {
                "environment": "test",
                "defaults": {"timeout": "3s"},
                "postgres": [
                    {
                        "name": "app",
                        "dsn": power.dsn(POWER_ROLE, "app"),
                        "password": "${PG_PASSWORD}",
                        "queries": [
                            {"name": "status", "sql": "select app_status()", "expect": {"equals": True}},
                            {"name": "sum", "sql": "select 1 #=# 2", "expect": {"equals": 3}},
                        ],
                    }
                ],
            }
        )
    )
    run = runner.run("-m", "daily")
    assert run.ret == 1, run.output
    status = run.record("postgres.query[app/status]")
    assert status["outcome"] == "error"
    assert "refused before it ran: public.app_status() is VOLATILE" in status["message"]
    total = run.record("postgres.query[app/sum]")
    assert total["outcome"] == "error"
    assert "refused before it ran: operator #=# (public.app_sum) is VOLATILE" in total["message"]
    assert _alive(victim)
    # The role could have: the run says so on the record everyone reads first.
    reachable = run.record("postgres.reachable[app]")
    assert reachable["outcome"] == "warned"
    assert "role 'power' can do more than a check needs (superuser;" in reachable["message"]
    assert "pg_monitor" in reachable["message"]


def test_a_monitoring_role_gets_no_warning(runner: Runner, power: PgServer) -> None:
    runner.profile(_profile(power, "select 1", user=postgres_servers.ROLE))
    run = runner.run("-m", "daily", "-k", "reachable")
    assert run.record("postgres.reachable[app]")["outcome"] == "passed", run.output


def test_a_role_with_write_grants_is_warned(runner: Runner, power: PgServer) -> None:
    power.pg.execute("drop role if exists writer")
    power.pg.create_role("writer", password=SECRET, grants=("pg_monitor",))
    power.pg.execute("grant insert on accounts to writer", dbname="app")
    try:
        runner.profile(_profile(power, "select 1", user="writer"))
        run = runner.run("-m", "daily", "-k", "reachable")
        record = run.record("postgres.reachable[app]")
        assert record["outcome"] == "warned", run.output
        assert "may write to accounts" in record["message"]
    finally:
        power.pg.execute("revoke all on accounts from writer", dbname="app")
        power.pg.execute("drop role writer")


def test_read_only_sql_keeps_what_it_was_given() -> None:
    sql = "select version_num from alembic_version -- the schema's version"
    assert read_only_sql(sql) == sql


def test_a_sigkilled_run_takes_its_probe_and_its_query_with_it(tmp_path: Path, pg_main: PgServer) -> None:
    """SIGKILL to the run while its postgres probe waits in a 30 s query: both end within seconds (issue 13 item 18)."""
    profile = tmp_path / "slow.yaml"
    item = {
        "name": "app",
        "dsn": pg_main.dsn(postgres_servers.ROLE, "app"),
        "password": "${PG_PASSWORD}",
        "timeout": "40s",
        "queries": [{"name": "slow", "sql": "select pg_sleep(30) is null", "expect": {"equals": False}}],
    }
    profile.write_text(yaml.safe_dump({"environment": "test", "postgres": [item]}))
    env = {**{k: v for k, v in os.environ.items() if k != "OPSPROOF_PROFILE"}, "PG_PASSWORD": SECRET}
    command = [sys.executable, "-m", "pytest", "-q", "-m", "daily", f"--profile={profile}", f"--report-dir={tmp_path}"]
    run = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    sleeping = "select count(*) from pg_stat_activity where application_name = 'opsproof' and wait_event = 'PgSleep'"
    try:
        wait_for(lambda: pg_main.pg.execute(sleeping)[0][0] == 1, "the probe's query to sleep", timeout=60)
        probes = descendants(run.pid)
        assert probes, "the run forks a probe process per kind"
        run.kill()
        run.wait(10)
        killed = time.monotonic()
        wait_for(lambda: not any(process_alive(pid) for pid in probes), "the probe process to die with the run", 5)
        wait_for(lambda: pg_main.pg.execute(sleeping)[0][0] == 0, "the server to end the orphaned query", 5)
        assert time.monotonic() - killed < 5
    finally:
        if run.poll() is None:
            run.kill()
            run.wait(10)
