"""PostgreSQL checks against real servers: every outcome comes from a state staged on a real cluster."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from helpers import postgres_servers
from helpers.postgres_servers import (
    ACCOUNTS,
    ROLE,
    SCHEMA_VERSION,
    WEAK_ROLE,
    PgServer,
    blocked_lock,
    held_sessions,
    idle_in_transaction,
    long_query,
    replay_paused,
    terminate_when_sleeping,
)

from conftest import SECRET, HttpServer, Run, Runner, listening_black_hole
from opsproof import ProfileError, load_profile
from opsproof.testing.servers import free_port

# The servers' fixtures live in their own module (conftest.py is shared by every kind's tests).
pg_main = postgres_servers.pg_main
pg_standby = postgres_servers.pg_standby
pg_bad_archive = postgres_servers.pg_bad_archive
pg_env = postgres_servers.pg_env
pytestmark = pytest.mark.usefixtures("pg_env")

BUILT_IN = ("reachable", "connections", "blocked_locks", "long_running_queries", "idle_in_transaction", "wraparound")


def profile(*items: dict[str, Any], timeout: str = "3s") -> str:
    return yaml.safe_dump({"environment": "test", "defaults": {"timeout": timeout}, "postgres": list(items)})


def item(name: str, server: PgServer, user: str = ROLE, dbname: str = "app", **extra: Any) -> dict[str, Any]:
    """A profile item; the password comes from the environment, as a secret."""
    return {"name": name, "dsn": server.dsn(user, dbname), "password": "${PG_PASSWORD}", **extra}


def outcomes(run: Run, target: str) -> dict[str, str]:
    """aspect (or query/<name>) -> outcome, for one item."""
    found = {}
    for record in run.results["checks"]:
        if record["target"] == target:
            aspect, _, rest = record["check"].removeprefix("postgres.").partition("[")
            part = rest.rstrip("]").partition("/")[2]
            found[f"{aspect}/{part}" if part else aspect] = record["outcome"]
    return found


# -- a healthy server -----------------------------------------------------------------------


def test_healthy_primary_passes_every_check_with_observed_facts(runner: Runner, pg_main: PgServer) -> None:
    runner.profile(
        profile(
            item(
                "primary",
                pg_main,
                replication={"min_replicas": 0},
                wal_archiving={"max_age": {"warn": "1h", "fail": "1d"}},
                queries=[
                    {
                        "name": "schema-version",
                        "sql": "select version_num from alembic_version",
                        "expect": {"equals": SCHEMA_VERSION},
                    }
                ],
            )
        )
    )
    run = runner.run("-m", "daily")
    assert run.ret == 0, run.output
    assert outcomes(run, "primary") == {
        **dict.fromkeys(BUILT_IN, "passed"),
        "replication_lag": "passed",
        "wal_archiving": "passed",
        "query/schema-version": "passed",
    }
    reachable = run.record("postgres.reachable[primary]")
    assert re.fullmatch(r"PostgreSQL 1\d\.\d+ \(primary\), connected in \d+ms", reachable["message"])
    assert reachable["observed"]["dsn"] == f"postgresql://{ROLE}@127.0.0.1:{pg_main.port}/app"
    assert reachable["markers"] == ["daily", "infra"]
    assert reachable["severity"] == "critical"
    connections = run.record("postgres.connections[primary]")
    assert connections["observed"]["max_connections"] == 20
    assert connections["observed"]["connections"] >= 1
    assert connections["expected"] == {"connections": {"warn": "80.0%", "fail": "95.0%"}}
    assert run.record("postgres.blocked_locks[primary]")["message"] == "0 waiting lock requests"
    assert run.record("postgres.long_running_queries[primary]")["message"] == "no active query"
    archiving = run.record("postgres.wal_archiving[primary]")
    assert archiving["observed"]["wal_archiving"]["archived_count"] >= 1
    assert archiving["message"].startswith("last archived segment ")
    query = run.record("postgres.query[primary/schema-version]")
    assert query["observed"]["value"] == SCHEMA_VERSION
    assert query["observed"]["row_count"] == 1
    assert query["expected"] == {"equals": SCHEMA_VERSION}
    assert query["controls"] == ["SOC2:CC7.1", "SOX-ITGC:OPS"]


def test_custom_queries_compare_values_rows_and_types(runner: Runner, pg_main: PgServer) -> None:
    queries = [
        ("version-ok", "select version_num from alembic_version", {"equals": SCHEMA_VERSION}),
        ("version-behind", "select version_num from alembic_version", {"equals": "def456"}),
        ("accounts-min", "select count(*) from accounts", {"min": 10}),
        ("accounts-max", "select count(*) from accounts", {"max": 10}),
        ("accounts-rows", "select id, name from accounts order by id", {"rows": ACCOUNTS}),
        ("accounts-min-rows", "select id from accounts", {"min_rows": 100}),
        ("version-matches", "select version()", {"matches": "^PostgreSQL 1[0-9]"}),
        ("one-of", "select 'b'", {"one_of": ["a", "b"]}),
        ("null", "select null::int", {"equals": None}),
        ("boolean", "select pg_is_in_recovery()", {"equals": False}),
        ("interval-seconds", "select now() - pg_postmaster_start_time()", {"min": 0, "max": 3600}),
        ("show", "show max_connections", {"equals": 20}),
        ("no-rows", "select version_num from alembic_version where false", {"equals": SCHEMA_VERSION}),
    ]
    runner.profile(
        profile(
            item("app", pg_main, queries=[{"name": n, "sql": sql, "expect": e} for n, sql, e in queries]),
        )
    )
    run = runner.run("-m", "daily", "-k", "query")
    got = {k.removeprefix("query/"): v for k, v in outcomes(run, "app").items()}
    assert got == {
        "version-ok": "passed",
        "version-behind": "failed",
        "accounts-min": "passed",
        "accounts-max": "failed",
        "accounts-rows": "passed",
        "accounts-min-rows": "failed",
        "version-matches": "passed",
        "one-of": "passed",
        "null": "passed",
        "boolean": "passed",
        "interval-seconds": "passed",
        "show": "passed",
        "no-rows": "failed",
    }, run.output
    assert run.record("postgres.query[app/version-behind]")["message"] == "value is 'abc123', expected 'def456'"
    assert run.record("postgres.query[app/accounts-max]")["message"] == f"value {ACCOUNTS} is above the maximum 10"
    assert run.record("postgres.query[app/accounts-min-rows]")["message"] == f"{ACCOUNTS} row(s), expected at least 100"
    assert run.record("postgres.query[app/no-rows]")["message"] == "no rows; expected a value (equals)"
    rows = run.record("postgres.query[app/accounts-rows]")["observed"]
    # Only a sample crosses the wire (a server-side cursor); the rest is counted on the server.
    assert rows["row_count"] == ACCOUNTS and rows["sample"] == [[n, f"account {n}"] for n in range(1, 6)]
    assert rows["columns"] == ["id", "name"]
    assert run.record("postgres.query[app/interval-seconds]")["observed"]["value_type"] == "interval"


def test_query_errors_missing_table_fails_permission_denied_is_an_error(runner: Runner, pg_main: PgServer) -> None:
    runner.profile(
        profile(
            item(
                "app",
                pg_main,
                queries=[
                    {"name": "missing-table", "sql": "select count(*) from projects", "expect": {"min": 1}},
                    {"name": "after-it", "sql": "select count(*) from accounts", "expect": {"equals": ACCOUNTS}},
                ],
            ),
            item(
                "weak",
                pg_main,
                user=WEAK_ROLE,
                queries=[{"name": "no-grant", "sql": "select count(*) from accounts", "expect": {"min": 1}}],
            ),
        )
    )
    run = runner.run("-m", "daily", "-k", "query")
    missing = run.record("postgres.query[app/missing-table]")
    assert missing["outcome"] == "failed"
    assert missing["message"] == 'the query failed: relation "projects" does not exist'
    assert missing["observed"]["sqlstate"] == "42P01"
    # The failed statement was rolled back to its savepoint: the next query of the session still runs.
    assert run.record("postgres.query[app/after-it]")["outcome"] == "passed"
    denied = run.record("postgres.query[weak/no-grant]")
    assert denied["outcome"] == "error"
    assert denied["message"] == "the query failed: permission denied for table accounts (SQLSTATE 42501)"


# -- staged trouble -------------------------------------------------------------------------


def test_blocked_lock_fails_and_names_waiter_and_holder(runner: Runner, pg_main: PgServer) -> None:
    runner.profile(profile(item("primary", pg_main)))
    with blocked_lock(pg_main.pg) as (holder, waiter):
        time.sleep(0.2)
        run = runner.run("-m", "daily", "-k", "blocked_locks")
    record = run.record("postgres.blocked_locks[primary]")
    assert record["outcome"] == "failed", run.output
    assert record["observed"]["blocked_locks"] == 1
    (blocked,) = record["observed"]["blocked"]
    assert blocked["pid"] == waiter and blocked["blocked_by"] == [holder]
    assert blocked["lock"] == "AccessShareLock on relation accounts"
    assert blocked["query"] == "select count(*) from accounts /* staged waiter */"
    assert blocked["waiting_s"] >= 0.2
    assert record["message"].startswith("waiting lock requests 1 is over the fail threshold 0; worst: ")
    assert f"pid {waiter} waits for " in record["message"] and f"blocked by pid {holder}:" in record["message"]


def test_long_running_query_warns_then_fails_with_pid_and_text(runner: Runner, pg_main: PgServer) -> None:
    runner.profile(
        profile(
            item("strict", pg_main, long_running_queries={"fail": "500ms"}),
            item("lenient", pg_main, long_running_queries={"warn": "500ms", "fail": "1h"}),
        )
    )
    with long_query(pg_main.pg) as pid:
        time.sleep(0.7)
        run = runner.run("-m", "daily", "-k", "long_running")
    strict = run.record("postgres.long_running_queries[strict]")
    assert strict["outcome"] == "failed", run.output
    assert re.match(
        r"oldest active query \d[\d.]*m?s is over the fail threshold 500ms; worst: pid \d+ for ", strict["message"]
    )
    assert strict["message"].endswith("select pg_sleep(60) /* staged long query */")
    oldest = strict["observed"]["long_running"][0]
    assert oldest["pid"] == pid and oldest["age_s"] >= 0.7 and oldest["wait"] == "Timeout:PgSleep"
    lenient = run.record("postgres.long_running_queries[lenient]")
    assert lenient["outcome"] == "warned"
    assert "is over the warn threshold 500ms; worst: pid " in lenient["message"]
    assert run.ret == 1


def test_idle_in_transaction_session_fails(runner: Runner, pg_main: PgServer) -> None:
    runner.profile(profile(item("primary", pg_main, idle_in_transaction={"warn": "200ms", "fail": "500ms"})))
    with idle_in_transaction(pg_main.pg) as pid:
        time.sleep(0.7)
        run = runner.run("-m", "daily", "-k", "idle_in_transaction")
    record = run.record("postgres.idle_in_transaction[primary]")
    assert record["outcome"] == "failed", run.output
    (idle,) = record["observed"]["idle_in_transaction"]
    assert idle["pid"] == pid and idle["idle_s"] >= 0.7 and idle["state"] == "idle in transaction"
    assert idle["query"] == "select count(*) from accounts /* staged idle transaction */"
    assert "is over the fail threshold 500ms; worst: pid" in record["message"]


def test_connections_near_max_connections_fail_and_warn(runner: Runner, pg_main: PgServer) -> None:
    runner.profile(
        profile(
            item("strict", pg_main, connections={"warn": "50%", "fail": "70%"}),
            item("lenient", pg_main, connections={"warn": "50%", "fail": "95%"}),
        )
    )
    # 14 held + this run's 1 or 2 sessions (the items are probed concurrently): 75%..80% of 20.
    with held_sessions(pg_main.pg, 14):
        run = runner.run("-m", "daily", "-k", "connections")
    strict = run.record("postgres.connections[strict]")
    assert strict["outcome"] == "failed", run.output
    assert strict["observed"]["connections"] in (15, 16)
    assert re.fullmatch(
        r"connections (75|80)\.0% is over the fail threshold 70\.0%; 1[56] of 20 in use", strict["message"]
    )
    assert run.record("postgres.connections[lenient]")["outcome"] == "warned"


def test_exhausted_connection_table_fails_every_check(runner: Runner, pg_main: PgServer) -> None:
    runner.profile(profile(item("primary", pg_main)))
    with held_sessions(pg_main.pg, 20):
        run = runner.run("-m", "daily")
    assert set(outcomes(run, "primary").values()) == {"failed"}
    assert run.record("postgres.connections[primary]")["message"] == "sorry, too many clients already"


def test_role_without_pg_monitor_cannot_pass_on_sessions_it_cannot_see(runner: Runner, pg_main: PgServer) -> None:
    runner.profile(profile(item("weak", pg_main, user=WEAK_ROLE, replication={}, wal_archiving={})))
    with idle_in_transaction(pg_main.pg):
        run = runner.run("-m", "daily")
    got = outcomes(run, "weak")
    assert got["long_running_queries"] == "error" and got["idle_in_transaction"] == "error"
    assert got["replication_lag"] == "error"
    assert run.record("postgres.replication_lag[weak]")["message"] == (
        f"role '{WEAK_ROLE}' cannot see replication state: grant it pg_monitor (or pg_read_all_stats)"
    )
    assert got["connections"] == "passed" and got["blocked_locks"] == "passed" and got["wraparound"] == "passed"
    assert got["wal_archiving"] == "passed"
    message = run.record("postgres.long_running_queries[weak]")["message"]
    assert message.endswith(
        f"hidden from role '{WEAK_ROLE}', so long-running queries cannot be checked: grant it pg_monitor (or pg_read_all_stats)"
    )


def test_wraparound_measures_transaction_id_age(runner: Runner, pg_main: PgServer) -> None:
    # A real age against a real (if tiny) threshold: no server of a test lives to 2^31 transactions.
    runner.profile(profile(item("primary", pg_main), item("tiny", pg_main, wraparound={"warn": "0%"})))
    run = runner.run("-m", "daily", "-k", "wraparound")
    healthy = run.record("postgres.wraparound[primary]")
    assert healthy["outcome"] == "passed"
    assert healthy["observed"]["wraparound"]["xid_age"] > 0
    tiny = run.record("postgres.wraparound[tiny]")
    assert tiny["outcome"] == "warned"
    assert re.fullmatch(
        r"transaction ID age 0\.\d+% is over the warn threshold 0%; [\d,]+ of 2\^31 in database \w+", tiny["message"]
    ), tiny["message"]


# -- replication and WAL archiving ----------------------------------------------------------


def test_replication_seen_from_the_primary_and_the_standby(
    runner: Runner, pg_main: PgServer, pg_standby: PgServer
) -> None:
    runner.profile(
        profile(
            item("primary", pg_main, replication={"min_replicas": 1}),
            item("primary-wants-two", pg_main, replication={"min_replicas": 2}),
            item("standby", pg_standby, replication={}, wal_archiving={}),
        )
    )
    run = runner.run("-m", "daily", "-k", "replication or reachable or wal_archiving")
    primary = run.record("postgres.replication_lag[primary]")
    assert primary["outcome"] == "passed", run.output
    (replica,) = primary["observed"]["replication"]["replicas"]
    assert replica["state"] == "streaming"
    two = run.record("postgres.replication_lag[primary-wants-two]")
    assert two["outcome"] == "failed"
    assert two["message"].startswith("1 streaming replica(s), expected at least 2 (")
    standby = run.record("postgres.replication_lag[standby]")
    assert standby["outcome"] == "passed"
    assert standby["message"] == "standby replay lag 0ms"
    assert run.record("postgres.reachable[standby]")["message"].startswith("PostgreSQL 1")
    assert "(standby)" in run.record("postgres.reachable[standby]")["message"]
    # The standby was started without archive_mode: the check says so rather than passing.
    off = run.record("postgres.wal_archiving[standby]")
    assert off["outcome"] == "failed" and off["message"] == "WAL archiving is off (archive_mode = off)"


def test_replication_lag_on_a_standby_whose_replay_is_paused(
    runner: Runner, pg_main: PgServer, pg_standby: PgServer
) -> None:
    runner.profile(profile(item("standby", pg_standby, replication={"lag": {"warn": "200ms", "fail": "1s"}})))
    with replay_paused(pg_main.pg, pg_standby.pg):
        time.sleep(1.1)
        run = runner.run("-m", "daily", "-k", "replication")
    record = run.record("postgres.replication_lag[standby]")
    assert record["outcome"] == "failed", run.output
    assert re.match(
        r"replication lag [\d.]+s is over the fail threshold 1s; WAL replay is paused \(pg_wal_replay_pause\); [\d,]+ bytes received and not replayed",
        record["message"],
    )
    assert record["observed"]["replication"]["replay_paused"] is True


def test_failing_wal_archiving_fails_with_the_failed_segment(
    runner: Runner, pg_main: PgServer, pg_bad_archive: PgServer
) -> None:
    runner.profile(
        profile(
            item("broken", pg_bad_archive, dbname="postgres", wal_archiving={}),
            item("fresh-only", pg_main, wal_archiving={"max_age": {"warn": "1ms", "fail": "1d"}}),
        )
    )
    run = runner.run("-m", "daily", "-k", "wal_archiving")
    broken = run.record("postgres.wal_archiving[broken]")
    assert broken["outcome"] == "failed", run.output
    assert re.match(
        r"WAL archiving is failing: \d+ failure\(s\), last failed segment [0-9A-F]{24} .* ago; no segment archived yet",
        broken["message"],
    )
    warned = run.record("postgres.wal_archiving[fresh-only]")
    assert warned["outcome"] == "warned"
    assert (
        warned["message"].startswith("age of the last archived WAL segment ")
        and "over the warn threshold 1ms" in warned["message"]
    )


# -- unreachable, refused, timed out ----------------------------------------------------------


@pytest.fixture
def black_hole_port() -> Iterator[int]:
    """Completes TCP handshakes (the kernel does) and never answers the startup packet."""
    with listening_black_hole(backlog=16) as port:
        yield port


def test_black_hole_closed_port_and_unknown_host_fail_with_the_reason(runner: Runner, black_hole_port: int) -> None:
    closed = free_port(0)
    runner.profile(
        profile(
            {
                "name": "hole",
                "dsn": f"postgresql://{ROLE}@127.0.0.1:{black_hole_port}/app",
                "password": "${PG_PASSWORD}",
                "timeout": "1s",
            },
            {"name": "closed", "dsn": f"host=127.0.0.1 port={closed} user={ROLE} password=${{PG_PASSWORD}} dbname=app"},
            {"name": "nowhere", "dsn": "postgresql://ops@db.invalid/app"},
        )
    )
    started = time.monotonic()
    run = runner.run("-m", "daily")
    elapsed = time.monotonic() - started
    assert run.ret == 1
    for name in ("hole", "closed", "nowhere"):
        assert set(outcomes(run, name).values()) == {"failed"}, name
    hole = run.record("postgres.reachable[hole]")
    assert re.fullmatch(r"timed out after 1\.\d\ds connecting \(timeout 1s\)", hole["message"]), hole["message"]
    assert hole["observed"]["timed_out"] is True
    assert elapsed < 1 + 3, f"a 1s black hole took the run {elapsed:.1f}s"
    assert (
        run.record("postgres.reachable[closed]")["message"]
        == f"cannot connect to 127.0.0.1:{closed}: connection refused"
    )
    # The keyword DSN is shown without its password too.
    assert (
        run.record("postgres.reachable[closed]")["observed"]["dsn"]
        == f"host=127.0.0.1 port={closed} user={ROLE} dbname=app"
    )
    assert run.record("postgres.reachable[nowhere]")["message"].startswith("cannot resolve db.invalid: ")


def test_statement_timeout_bounds_a_slow_query_and_the_rest_still_runs(runner: Runner, pg_main: PgServer) -> None:
    runner.profile(
        profile(
            item(
                "slow",
                pg_main,
                timeout="1s",
                queries=[
                    {"name": "sleepy", "sql": "select pg_sleep(30)", "expect": {"rows": 1}},
                    {"name": "own-timeout", "sql": "select pg_sleep(30)", "timeout": "300ms", "expect": {"rows": 1}},
                    {"name": "after", "sql": "select count(*) from accounts", "expect": {"equals": ACCOUNTS}},
                ],
            )
        )
    )
    mark = pg_main.log_mark()
    started = time.monotonic()
    run = runner.run("-m", "daily")
    elapsed = time.monotonic() - started
    got = outcomes(run, "slow")
    assert got == {
        **dict.fromkeys(BUILT_IN, "passed"),
        "query/sleepy": "failed",
        "query/own-timeout": "failed",
        "query/after": "passed",
    }, run.output
    assert (
        run.record("postgres.query[slow/sleepy]")["message"]
        == "the query failed: timed out after 1s (statement_timeout)"
    )
    assert (
        run.record("postgres.query[slow/own-timeout]")["message"]
        == "the query failed: timed out after 0.3s (statement_timeout)"
    )
    assert elapsed < 1 + 0.3 + 3, f"two 30s queries under a 1s and a 300ms timeout took the run {elapsed:.1f}s"
    cancelled = [
        e
        for e in pg_main.log_since(mark)
        if e.app == "opsproof" and "canceling statement due to statement timeout" in e.message
    ]
    assert len(cancelled) == 2


def test_a_session_killed_mid_run_fails_what_it_had_not_read(runner: Runner, pg_main: PgServer) -> None:
    runner.profile(
        profile(
            item(
                "primary",
                pg_main,
                queries=[
                    {"name": "slow", "sql": "select pg_sleep(2)", "expect": {"rows": 1}},
                    {"name": "after", "sql": "select 1", "expect": {"equals": 1}},
                ],
            )
        )
    )
    with terminate_when_sleeping(pg_main.pg):
        run = runner.run("-m", "daily")
    got = outcomes(run, "primary")
    assert got == {**dict.fromkeys(BUILT_IN, "passed"), "query/slow": "failed", "query/after": "failed"}, run.output
    assert run.record("postgres.query[primary/slow]")["message"] == (
        "the query failed: the session ended: terminating connection due to administrator command"
    )
    assert run.record("postgres.query[primary/after]")["message"].startswith(
        "the query failed: not run: the session was lost earlier (the session ended: "
    )


def test_wrong_password_is_an_error_and_never_shown(
    runner: Runner, pg_main: PgServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    wrong = "Wr0ng/" + SECRET[::-1]
    monkeypatch.setenv("PG_PASSWORD", wrong)
    runner.profile(
        profile(item("primary", pg_main, queries=[{"name": "q", "sql": "select 1", "expect": {"equals": 1}}]))
    )
    run = runner.run("-m", "daily")
    assert run.ret == 1
    assert set(outcomes(run, "primary").values()) == {"error"}
    record = run.record("postgres.reachable[primary]")
    assert record["message"] == f'login refused: password authentication failed for user "{ROLE}"'
    assert record["observed"]["login_rejected"] is True
    _assert_never_shown(run, wrong)


def test_literal_password_in_a_dsn_is_not_shown(runner: Runner, pg_main: PgServer) -> None:
    literal = "L1teral-" + SECRET[:6]
    runner.profile(profile({"name": "primary", "dsn": pg_main.dsn(password=literal)}))
    run = runner.run("-m", "daily", "-k", "reachable")
    record = run.record("postgres.reachable[primary]")
    assert record["outcome"] == "error"
    assert record["observed"]["dsn"] == f"postgresql://{ROLE}@127.0.0.1:{pg_main.port}/app"
    assert literal not in run.output and literal not in (run.bundle / "results.json").read_text()


def _assert_never_shown(run: Run, *secrets: str) -> None:
    for secret in secrets:
        assert secret not in run.output
        for path in run.bundle.rglob("*"):
            if path.is_file():
                assert secret not in path.read_text(errors="replace"), path.name


# -- read-only and one session per item -------------------------------------------------------

_ALLOWED = re.compile(
    r"^(BEGIN READ ONLY|ROLLBACK|SAVEPOINT \S+|RELEASE \S+|ROLLBACK TO \S+|FETCH FORWARD \d+ FROM \S+|CLOSE \S+"
    r"|move forward all in \S+|DECLARE \S+ CURSOR FOR (select|with|values|table)\b.*|(select|with)\b.*|show\b.*)$",
    re.DOTALL | re.IGNORECASE,
)
_WRITES = re.compile(
    r"\b(insert|update|delete|merge|truncate|drop|create|alter|grant|revoke|copy|vacuum|analyze|cluster|reindex"
    r"|lock|comment|security label|refresh|nextval|setval|pg_terminate_backend|pg_cancel_backend|commit)\b",
    re.IGNORECASE,
)


def test_sessions_are_read_only_and_one_per_item(runner: Runner, pg_main: PgServer, pg_standby: PgServer) -> None:
    runner.profile(
        profile(
            item(
                "primary",
                pg_main,
                replication={"min_replicas": 1},
                wal_archiving={},
                queries=[
                    {
                        "name": "version",
                        "sql": "select version_num from alembic_version",
                        "expect": {"equals": SCHEMA_VERSION},
                    },
                    {"name": "missing", "sql": "select * from nope", "expect": {"rows": 0}},
                    {"name": "setting", "sql": "show max_connections", "expect": {"equals": 20}},
                    {"name": "slow", "sql": "select pg_sleep(5)", "timeout": "200ms", "expect": {"rows": 1}},
                    {
                        "name": "cte",
                        "sql": "with n as (select count(*) c from accounts) select c from n",
                        "expect": {"min": 1},
                    },
                    # The session as the server sees it (after the 200ms query, its timeout is the item's again):
                    {"name": "read-only", "sql": "show transaction_read_only", "expect": {"equals": "on"}},
                    {"name": "statement-timeout", "sql": "show statement_timeout", "expect": {"equals": "3s"}},
                    {
                        "name": "application",
                        "sql": "select current_setting('application_name')",
                        "expect": {"equals": "opsproof"},
                    },
                ],
            ),
            item("second", pg_main, queries=[{"name": "q", "sql": "select 1", "expect": {"equals": 1}}]),
            item("weak", pg_main, user=WEAK_ROLE),
        )
    )
    mark = pg_main.log_mark()
    run = runner.run("-m", "daily")
    assert len(run.results["checks"]) == 8 + 8 + 6 + 1 + 6
    for name in ("read-only", "statement-timeout", "application"):
        assert run.record(f"postgres.query[primary/{name}]")["outcome"] == "passed", run.output
    ours = [e for e in pg_main.log_since(mark) if e.app == "opsproof"]
    statements = [(e.pid, e.statement) for e in ours if e.statement is not None]
    assert statements, "no statement from application opsproof was logged"
    for pid, sql in statements:
        assert _ALLOWED.match(sql), f"pid {pid} sent a statement outside the read-only set: {sql!r}"
        assert not _WRITES.search(re.sub(r"'[^']*'", "''", sql)), f"pid {pid} sent a write: {sql!r}"
    # One session per item: three connections authorised for application opsproof, each opening
    # its one read-only transaction first and rolling it back at the end.
    authorized = [
        e
        for e in pg_main.log_since(mark)
        if "connection authorized" in e.message and "application_name=opsproof" in e.message
    ]
    assert len(authorized) == 3
    by_pid: dict[int, list[str]] = {}
    for pid, sql in statements:
        by_pid.setdefault(pid, []).append(sql)
    assert len(by_pid) == 3
    for sqls in by_pid.values():
        assert sqls[0] == "BEGIN READ ONLY" and sqls[-1] == "ROLLBACK"
        assert sqls.count("BEGIN READ ONLY") == 1


def test_a_write_smuggled_into_a_function_is_refused_before_it_runs(runner: Runner, pg_main: PgServer) -> None:
    # The profile check cannot see inside a function; the server's catalogue says it is VOLATILE, so
    # the query never runs (and the read-only session would refuse the UPDATE if it did).
    pg_main.pg.execute(
        "create or replace function touch_accounts() returns int language sql as "
        "$$ update accounts set name = name where id = 1 returning id $$",
        dbname="app",
    )
    runner.profile(
        profile(
            item(
                "app", pg_main, queries=[{"name": "sneaky", "sql": "select touch_accounts()", "expect": {"equals": 1}}]
            )
        )
    )
    mark = pg_main.log_mark()
    run = runner.run("-m", "daily", "-k", "query")
    record = run.record("postgres.query[app/sneaky]")
    assert record["outcome"] == "error"
    assert record["message"] == (
        "the query failed: refused before it ran: public.touch_accounts() is VOLATILE (it may change something) "
        "and not on opsproof's list of read-only functions"
    )
    assert not [e for e in pg_main.log_since(mark) if "touch_accounts" in (e.statement or "")]


def test_secret_never_appears_in_output_or_bundle(runner: Runner, pg_main: PgServer) -> None:
    runner.profile(
        profile(
            item("primary", pg_main, queries=[{"name": "q", "sql": "select current_user", "expect": {"equals": ROLE}}])
        )
    )
    run = runner.run("-m", "daily")
    assert run.ret == 0, run.output
    _assert_never_shown(run, SECRET)


# -- bad input --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("dsn: 'host=db port'", 'postgres[0].dsn: malformed DSN: missing "=" after "port"'),
        (
            "dsn: 'postgresql://ops:pa/ss@db:5432/app'",
            "postgres[0].dsn: malformed DSN: the port is not a number; a password holding / @ : # ? must be URL-encoded",
        ),
        (
            "dsn: 'postgresql://ops@db/app'\n    queries: [{name: q, sql: select 1, expect: {equal: 1}}]",
            "postgres[0].queries[0].expect: unknown expect operator 'equal': use equals, one_of, min, max, matches, rows, min_rows, max_rows, threshold, unit, lower_is_worse",
        ),
        (
            "dsn: 'postgresql://ops@db/app'\n    queries: [{name: q, sql: 'delete from accounts', expect: {rows: 0}}]",
            "postgres[0].queries[0].sql: DELETE is not a read-only statement",
        ),
        (
            "dsn: 'postgresql://ops@db/app'\n    queries: [{name: q, sql: 'select 1; select 2', expect: {rows: 1}}]",
            "postgres[0].queries[0].sql: more than one statement",
        ),
        (
            "dsn: 'postgresql://ops@db/app'\n    queries: [{name: q, sql: \"select set_config('default_transaction_read_only', 'off', false)\", expect: {rows: 1}}]",
            "postgres[0].queries[0].sql: SET_CONFIG is not allowed",
        ),
        (
            "dsn: 'postgresql://ops@db/app'\n    queries: [{name: q, sql: select 1, expect: {min: 5, max: 1}}]",
            "postgres[0].queries[0].expect: min 5 is above max 1",
        ),
        (
            "dsn: 'postgresql://ops@db/app'\n    queries: [{name: q, sql: select 1, expect: {}}]",
            "postgres[0].queries[0].expect: expect needs at least one of",
        ),
    ],
)
def test_static_mistakes_are_usage_errors_with_file_line_and_key(tmp_path: Path, entry: str, message: str) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(f"environment: test\npostgres:\n  - name: db\n    {entry}\n")
    with pytest.raises(ProfileError) as raised:
        load_profile(path)
    assert re.search(rf"p\.yaml:\d+: {re.escape(message)}", str(raised.value)), str(raised.value)


def test_bad_profile_exits_4_naming_the_line(runner: Runner) -> None:
    runner.profile(
        "environment: test\npostgres:\n  - name: db\n    dsn: 'postgresql://ops@db/app'\n    queries:\n      - {name: q, sql: 'update accounts set name = 1', expect: {rows: 1}}\n"
    )
    run = runner.run("-m", "daily")
    assert run.ret == 4
    assert "test.yaml:6: postgres[0].queries[0].sql: UPDATE is not a read-only statement" in run.output


# -- the demo ---------------------------------------------------------------------------------

# What profiles/demo.yaml carries for the demo database (`opsproof demo` passes the DSN as
# --var DEMO_PG_DSN and the made-up password as the environment variable DEMO_PG_PASSWORD).
DEMO_SNIPPET = """\
postgres:
  - name: scorpius-db
    dsn: ${vars.DEMO_PG_DSN:-postgresql://ops@127.0.0.1:15432/app}
    password: ${DEMO_PG_PASSWORD}
    connections: {warn: 75%, fail: 95%}
    queries:
      - name: schema-version
        sql: select version_num from alembic_version
        expect: {equals: 4f2a9c1d7e3b}
      - name: active-projects
        sql: select count(*) from projects where status = 'active'
        expect: {min: 1}
"""


def test_demo_database_is_green_but_for_a_warned_pool(runner: Runner, monkeypatch: pytest.MonkeyPatch) -> None:
    from opsproof.demo.postgres import serve_demo_postgres

    runner.profile("environment: demo\ndefaults: {timeout: 2s}\n" + DEMO_SNIPPET)
    with serve_demo_postgres() as demo:
        for name, value in demo.environment.items():
            monkeypatch.setenv(name, value)
        run = runner.run("-m", "daily", *(f"--var={k}={v}" for k, v in demo.variables.items()))
        password = demo.password
    assert run.ret == 0, run.output
    assert outcomes(run, "scorpius-db") == {
        **dict.fromkeys(BUILT_IN, "passed"),
        "connections": "warned",
        "query/schema-version": "passed",
        "query/active-projects": "passed",
    }
    assert run.record("postgres.connections[scorpius-db]")["message"] == (
        "connections 80.0% is over the warn threshold 75.0%; 16 of 20 in use"
    )
    _assert_never_shown(run, password)


def test_post_deploy_gate_holds_the_migration_query_and_fails_on_a_mismatch(
    runner: Runner, pg_main: PgServer, http_server: HttpServer
) -> None:
    """`-m post_deploy` after a deploy: the migration version query joins the gate; the other checks do not."""
    migration = {
        "name": "alembic",
        "sql": "select version_num from alembic_version",
        "expect": {"equals": "${vars.EXPECTED_ALEMBIC}"},
        "post_deploy": True,
    }
    text = profile(
        item("db", pg_main, queries=[migration, {"name": "accounts", "sql": "select 1", "expect": {"equals": 1}}])
    )
    runner.profile(
        text
        + f"http:\n  - {{name: api, url: '{http_server.base}/health'}}\n"
        + f"  - {{name: batch, url: '{http_server.base}/health', post_deploy: false}}\n"
    )
    run = runner.run("-m", "post_deploy", "--var", "EXPECTED_ALEMBIC=def456")
    assert run.ret == 1, run.output
    assert sorted(c["check"] for c in run.results["checks"]) == ["http.health[api]", "postgres.query[db/alembic]"]
    migration_record = run.record("postgres.query[db/alembic]")
    assert migration_record["outcome"] == "failed" and "post_deploy" in migration_record["markers"]
    assert f"'{SCHEMA_VERSION}'" in migration_record["message"] and "def456" in migration_record["message"]
    deployed = runner.run("-m", "post_deploy", "--var", f"EXPECTED_ALEMBIC={SCHEMA_VERSION}")
    assert deployed.ret == 0, deployed.output


def test_a_weekly_query_of_a_daily_item_has_its_own_cadence_and_severity_and_one_session(
    runner: Runner, pg_main: PgServer
) -> None:
    """Per-part cadence and severity: the weekly query runs only weekly, as `low`, in the run's one session."""
    weekly = {"name": "size", "sql": "select 1", "expect": {"equals": 2}, "cadence": "weekly", "severity": "low"}
    daily = {"name": "version", "sql": "select version_num from alembic_version", "expect": {"equals": SCHEMA_VERSION}}
    runner.profile(profile(item("db", pg_main, queries=[daily, weekly])))
    day = runner.run("-m", "daily")
    assert day.ret == 0, day.output
    checks = {c["check"] for c in day.results["checks"]}
    assert "postgres.query[db/version]" in checks and "postgres.query[db/size]" not in checks
    earlier = set(day.bundles)
    mark = pg_main.log_mark()
    week = runner.run("-m", "weekly")
    assert week.ret == 0, week.output  # a failed `low` check does not block at --fail-on high
    (bundle,) = set(week.bundles) - earlier
    (record,) = yaml.safe_load((bundle / "results.json").read_text())["checks"]
    assert (record["check"], record["outcome"], record["severity"]) == ("postgres.query[db/size]", "failed", "low")
    assert "weekly" in record["markers"] and "daily" not in record["markers"]
    sessions = {e.pid for e in pg_main.log_since(mark) if e.user == ROLE}
    assert len(sessions) == 1, sessions


def test_query_expectations_take_warn_fail_and_units(runner: Runner, pg_main: PgServer, tmp_path: Path) -> None:
    """`{warn, fail}` and units on a query's value: a database size in bytes, an age in seconds, a ratio."""
    queries = [
        {
            "name": "db-size",
            "sql": "select pg_database_size(current_database())",
            "expect": {"threshold": {"warn": "1KB", "fail": "1TB"}, "unit": "bytes"},
        },
        {
            "name": "db-size-max",
            "sql": "select pg_database_size(current_database())",
            "expect": {"max": "1KB", "unit": "bytes"},
        },
        {"name": "age", "sql": "select 600", "expect": {"threshold": {"warn": "5m", "fail": "10m"}, "unit": "seconds"}},
        {
            "name": "hit",
            "sql": "select 0.5",
            "expect": {"threshold": {"warn": "90%", "fail": "60%"}, "unit": "ratio", "lower_is_worse": True},
        },
    ]
    runner.profile(profile(item("db", pg_main, queries=queries)))
    run = runner.run("-m", "daily", "-k", "query")
    size = run.record("postgres.query[db/db-size]")
    assert size["outcome"] == "warned" and "is over the warn threshold 1.0KB" in size["message"], size
    assert size["expected"]["db-size"] == {"warn": "1.0KB", "fail": "1.0TB"}
    too_big = run.record("postgres.query[db/db-size-max]")
    assert too_big["outcome"] == "failed" and "is above the maximum 1.0KB" in too_big["message"]
    age = run.record("postgres.query[db/age]")
    assert age["outcome"] == "failed" and age["message"].startswith("age 10m is at the fail threshold 10m")
    hit = run.record("postgres.query[db/hit]")
    assert hit["outcome"] == "failed" and "hit 50% is under the fail threshold 60%" in hit["message"]
    for bad, message in [
        ({"max": "ten", "unit": "bytes"}, "max: "),
        ({"threshold": {"warn": "5m"}}, "threshold.warn: invalid threshold '5m': a number is expected"),
        ({"threshold": {"warn": "10m", "fail": "5m"}, "unit": "seconds"}, "warn must be at or below fail"),
        ({"threshold": {}, "unit": "seconds"}, "an empty threshold {} judges nothing"),
    ]:
        text = profile(
            {
                "name": "db",
                "dsn": "postgresql://ops@db/app",
                "queries": [{"name": "q", "sql": "select 1", "expect": bad}],
            }
        )
        (tmp_path / "bad.yaml").write_text(text)
        with pytest.raises(ProfileError, match=re.escape(message)):
            load_profile(tmp_path / "bad.yaml")
