"""Real PostgreSQL servers for the postgres checks' tests, and the states they stage on them.

Session-scoped clusters (from opsproof.local.postgres; as root they run as an unprivileged user):

- `pg_main`: the primary. scram passwords over TCP (role `ops` with pg_monitor, role `weak`
  without), max_connections 20, WAL archived with `cp`, and every statement logged with the
  application name (`log_statement=all`, `%a` in log_line_prefix) plus every connection, so
  the tests can prove what opsproof sent and how many sessions it opened.
- `pg_standby`: a streaming standby of `pg_main` (pg_basebackup -R).
- `pg_bad_archive`: a server whose archive_command fails.

Staging helpers hold real sessions in real states (a lock and its waiter, a long pg_sleep,
an idle transaction, a full connection table) and always release them.
"""

from __future__ import annotations

import contextlib
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest

from conftest import SECRET, wait_for
from opsproof.local.postgres import LocalPostgres, local_postgres

ROLE = "ops"
WEAK_ROLE = "weak"  # no pg_monitor, no grants on the app's tables
SCHEMA_VERSION = "abc123"
ACCOUNTS = 50

_ENTRY = re.compile(
    r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+ \S+ \[(?P<pid>\d+)\] app=(?P<app>\S*) user=(?P<user>\S*) db=(?P<db>\S*) "
    r"(?P<level>[A-Z]+):\s+(?P<message>.*)$"
)
_STATEMENT = re.compile(r"^(?:statement|execute [^:]*): (?P<sql>.*)$", re.DOTALL)


@dataclass(frozen=True)
class LogEntry:
    pid: int
    app: str
    user: str
    level: str
    message: str

    @property
    def statement(self) -> str | None:
        """The SQL of a `statement:` or `execute <name>:` line; None for other messages."""
        found = _STATEMENT.match(self.message) if self.level == "LOG" else None
        return found.group("sql").strip() if found else None


def parse_log(text: str) -> list[LogEntry]:
    """Entries of a server log written with localpg's log_line_prefix; continuation lines joined."""
    entries: list[LogEntry] = []
    for line in text.splitlines():
        found = _ENTRY.match(line)
        if found:
            entries.append(
                LogEntry(
                    int(found.group("pid")),
                    found.group("app"),
                    found.group("user"),
                    found.group("level"),
                    found["message"],
                )
            )
        elif entries:
            last = entries[-1]
            entries[-1] = LogEntry(last.pid, last.app, last.user, last.level, last.message + "\n" + line)
    return entries


@dataclass
class PgServer:
    pg: LocalPostgres

    @property
    def port(self) -> int:
        return self.pg.port

    def dsn(self, user: str = ROLE, dbname: str = "app", password: str | None = None) -> str:
        """A URI; profiles give the password beside it (`password: ${PG_PASSWORD}`) unless one is passed here."""
        secret = f":{password}" if password is not None else ""
        return f"postgresql://{user}{secret}@127.0.0.1:{self.pg.port}/{dbname}"

    def log_mark(self) -> int:
        return len(self.pg.log_text())

    def log_since(self, mark: int) -> list[LogEntry]:
        return parse_log(self.pg.log_text()[mark:])


def _setup_app(pg: LocalPostgres) -> None:
    pg.create_role(ROLE, password=SECRET, grants=("pg_monitor",))
    pg.create_role(WEAK_ROLE, password=SECRET)
    pg.create_database("app")
    with pg.connect("app") as conn:
        conn.execute("create table alembic_version (version_num varchar(32) primary key)")
        conn.execute("insert into alembic_version values (%s)", [SCHEMA_VERSION])
        conn.execute("create table accounts (id serial primary key, name text not null)")
        conn.execute("insert into accounts (name) select 'account ' || n from generate_series(1, %s) n", [ACCOUNTS])
        conn.execute(f"grant select on alembic_version, accounts to {ROLE}")


def archived_count(pg: LocalPostgres) -> tuple[int, int]:
    ((archived, failed),) = pg.execute("select archived_count, failed_count from pg_stat_archiver")
    return int(archived), int(failed)


@pytest.fixture(scope="session")
def pg_main() -> Iterator[PgServer]:
    settings = {"log_statement": "all", "log_connections": True, "wal_level": "replica"}
    with local_postgres(max_connections=20, archive_wal=True, settings=settings) as pg:
        _setup_app(pg)
        pg.execute("select pg_switch_wal()")
        wait_for(lambda: archived_count(pg)[0] >= 1, "the first archived WAL segment")
        yield PgServer(pg)


@pytest.fixture(scope="session")
def pg_standby(pg_main: PgServer) -> Iterator[PgServer]:
    with local_postgres(replica_of=pg_main.pg) as pg:
        wait_for(lambda: _streaming(pg_main.pg) >= 1, "the standby to stream")
        yield PgServer(pg)


@pytest.fixture(scope="session")
def pg_bad_archive() -> Iterator[PgServer]:
    settings = {"archive_mode": "on", "archive_command": "false"}
    with local_postgres(max_connections=10, settings=settings) as pg:
        pg.create_role(ROLE, password=SECRET, grants=("pg_monitor",))
        pg.execute("create table t (id int)")
        pg.execute("insert into t values (1)")
        pg.execute("select pg_switch_wal()")
        wait_for(lambda: archived_count(pg)[1] >= 1, "the first failed archive attempt")
        yield PgServer(pg)


def _streaming(primary: LocalPostgres) -> int:
    ((count,),) = primary.execute("select count(*) from pg_stat_replication where state = 'streaming'")
    return int(count)


@pytest.fixture
def pg_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PG_PASSWORD", SECRET)


# -- staged states ---------------------------------------------------------------------------


def _in_thread(pg: LocalPostgres, sql: str) -> tuple[psycopg.Connection[Any], threading.Thread, list[BaseException]]:
    """Run `sql` on a new superuser session from a thread (it blocks); the session, the thread, its errors."""
    conn = pg.connect("app")
    errors: list[BaseException] = []

    def run() -> None:
        try:
            conn.execute(sql)
        except psycopg.Error as exc:  # cancelled or terminated when the test releases it
            errors.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return conn, thread, errors


def _pid_running(pg: LocalPostgres, query: str) -> int:
    rows = pg.execute("select pid from pg_stat_activity where state = 'active' and query = %s", [query])
    return int(rows[0][0]) if rows else 0


@contextlib.contextmanager
def blocked_lock(pg: LocalPostgres) -> Iterator[tuple[int, int]]:
    """One session holds ACCESS EXCLUSIVE on accounts; another waits to read it. Yields (holder, waiter)."""
    holder = pg.connect("app", autocommit=False)
    holder.execute("lock table accounts in access exclusive mode")
    holder_pid = holder.info.backend_pid
    waiter_sql = "select count(*) from accounts /* staged waiter */"
    waiter, thread, _ = _in_thread(pg, waiter_sql)
    try:
        wait_for(lambda: bool(pg.execute("select 1 from pg_locks where not granted")), "the waiter to block")
        yield holder_pid, waiter.info.backend_pid
    finally:
        holder.rollback()
        holder.close()
        thread.join(10)
        waiter.close()


@contextlib.contextmanager
def long_query(pg: LocalPostgres, seconds: int = 60) -> Iterator[int]:
    """A query that runs (pg_sleep) until released. Yields its pid."""
    sql = f"select pg_sleep({seconds}) /* staged long query */"
    conn, thread, _ = _in_thread(pg, sql)
    try:
        wait_for(lambda: _pid_running(pg, sql) != 0, "the long query to start")
        yield conn.info.backend_pid
    finally:
        pg.execute("select pg_cancel_backend(%s)", [conn.info.backend_pid])
        thread.join(10)
        conn.close()


@contextlib.contextmanager
def idle_in_transaction(pg: LocalPostgres) -> Iterator[int]:
    """A session that opened a transaction, read, and went quiet. Yields its pid."""
    conn = pg.connect("app", autocommit=False)
    try:
        conn.execute("select count(*) from accounts /* staged idle transaction */").fetchall()
        yield conn.info.backend_pid
    finally:
        conn.rollback()
        conn.close()


@contextlib.contextmanager
def held_sessions(pg: LocalPostgres, count: int) -> Iterator[list[psycopg.Connection[Any]]]:
    """`count` idle superuser sessions (superusers may also take the reserved slots)."""
    sessions: list[psycopg.Connection[Any]] = []
    try:
        for _ in range(count):
            sessions.append(pg.connect("app"))
        yield sessions
    finally:
        for conn in sessions:
            conn.close()


@contextlib.contextmanager
def replay_paused(primary: LocalPostgres, standby: LocalPostgres) -> Iterator[None]:
    """Replay paused on the standby after it replayed one write, then a second write received, not replayed."""
    primary.execute("create table if not exists lag_probe (at timestamptz)", dbname="app")
    primary.execute("insert into lag_probe values (now())", dbname="app")
    wait_for(lambda: _replayed_up_to_primary(primary, standby), "the standby to replay the first write")
    standby.execute("select pg_wal_replay_pause()")
    try:
        primary.execute("insert into lag_probe values (now())", dbname="app")
        wait_for(lambda: _received_not_replayed(standby), "the standby to receive the second write")
        yield
    finally:
        standby.execute("select pg_wal_replay_resume()")
        wait_for(lambda: _replayed_up_to_primary(primary, standby), "the standby to catch up again")


def _replayed_up_to_primary(primary: LocalPostgres, standby: LocalPostgres) -> bool:
    ((lsn,),) = primary.execute("select pg_current_wal_lsn()::text")
    ((done,),) = standby.execute("select pg_last_wal_replay_lsn() >= %s::pg_lsn", [lsn])
    return bool(done)


def _received_not_replayed(standby: LocalPostgres) -> bool:
    ((behind,),) = standby.execute("select pg_last_wal_receive_lsn() > pg_last_wal_replay_lsn()")
    return bool(behind)


@contextlib.contextmanager
def terminate_when_sleeping(pg: LocalPostgres) -> Iterator[list[int]]:
    """Terminate an opsproof session as soon as it waits in pg_sleep (the server ending a session mid-run)."""
    killed: list[int] = []
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set() and not killed:
            rows = pg.execute(
                "select pg_terminate_backend(pid), pid from pg_stat_activity "
                "where application_name = 'opsproof' and state = 'active' and wait_event = 'PgSleep'"
            )
            killed.extend(pid for done, pid in rows if done)
            time.sleep(0.02)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    try:
        yield killed
    finally:
        stop.set()
        thread.join(5)


def deadlocks_of(pg: LocalPostgres, dbname: str) -> int:
    rows = pg.execute("select deadlocks from pg_stat_database where datname = %s", [dbname])
    return int(rows[0][0]) if rows else 0


def provoke_deadlock(pg: LocalPostgres, dbname: str) -> None:
    """A real deadlock in `dbname` (a table `pair` with rows 1 and 2): two sessions lock the rows in opposite order.

    The server's deadlock detector (after deadlock_timeout, 1 s) cancels one of them; this returns
    once pg_stat_database counts it (statistics are flushed by the backends, not at once).
    """
    before = deadlocks_of(pg, dbname)
    first, second = pg.connect(dbname, autocommit=False), pg.connect(dbname, autocommit=False)
    errors: list[BaseException] = []
    try:
        first.execute("update pair set n = n + 1 where id = 1")
        second.execute("update pair set n = n + 1 where id = 2")

        def cross(conn: psycopg.Connection[Any], row: int) -> None:
            try:
                conn.execute("update pair set n = n + 1 where id = %s", [row])
            except psycopg.errors.DeadlockDetected as exc:
                errors.append(exc)
            finally:
                conn.rollback()

        threads = [threading.Thread(target=cross, args=(first, 2)), threading.Thread(target=cross, args=(second, 1))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
    finally:
        first.close()
        second.close()
    assert len(errors) == 1, f"expected one deadlock victim, got {errors}"
    wait_for(lambda: deadlocks_of(pg, dbname) > before, f"pg_stat_database to count the deadlock in {dbname}")
