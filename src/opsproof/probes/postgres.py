"""PostgreSQL: one read-only session per item per run, shared by all of the item's checks.

The probe opens ONE connection per item (`application_name=opsproof`, connect timeout
and `statement_timeout` from the item's `timeout`, `default_transaction_read_only=on`),
runs every statement the item's checks need inside one `BEGIN READ ONLY` transaction,
rolls it back and closes. Each section (server, sessions, locks, wraparound,
replication, WAL archiving, each custom query) runs in its own savepoint, so one that
fails (a missing table, a statement timeout) costs only its own checks.

Custom queries are read through a server-side cursor: the first rows are fetched, the
rest only counted (`MOVE FORWARD ALL`), so a query over a large table never loads it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

from pydantic import Field

from opsproof.model.sql_guard import ROLE_POWERS_SQL, refusal
from opsproof.probes import Facts, ProbeContext, ProbeKind, each_as_done
from opsproof.probes.postgres_describe import (
    APPLICATION_NAME,
    QueryResult,
    SectionError,
    connect_params,
    cut_long,
    describe_connect_error,
    describe_query_error,
    dsn_without_password,
    json_value,
    query_text,
    scrub_postgres_error,
    value_text,
)
from opsproof.redaction import Redactor
from opsproof.targets.postgres import PostgresQuery, PostgresTarget

OFFENDERS = 5  # worst sessions/locks shown per measure
SAMPLE_ROWS = 5  # rows of a custom query kept in the facts
WRAPAROUND_LIMIT = 2**31  # transaction IDs: the server stops assigning them shortly before this
# Client-side backstop past the server's statement_timeout: the server's own clean
# "canceling statement due to statement timeout" should arrive first.
GRACE_S = 1.0


class PostgresFacts(Facts):
    """One item's session: server, sessions, locks, wraparound, and what was configured."""

    dsn: str = Field(description="the connection string without its password")
    login_rejected: bool = Field(False, description="the server refused the login (an `error`, not a failure)")
    server_version: str | None = None
    server_version_num: int | None = None
    in_recovery: bool | None = None
    user: str | None = None
    database: str | None = None
    backend_pid: int | None = None
    sees_all_sessions: bool | None = Field(None, description="superuser or pg_read_all_stats (pg_monitor)")
    role_powers: list[str] = Field(
        default_factory=list, description="what the session's role could do that a check never needs (a warning)"
    )
    connect_s: float | None = None
    max_connections: int | None = None
    reserved_connections: int | None = None
    connections: int | None = Field(None, description="client sessions, this one included")
    hidden_sessions: int = Field(0, description="sessions of other roles whose state this role cannot see")
    sessions_by_state: dict[str, int] = Field(default_factory=dict)
    oldest_query_s: float | None = None
    long_running: list[dict[str, Any]] = Field(default_factory=list)
    oldest_idle_in_transaction_s: float | None = None
    idle_in_transaction: list[dict[str, Any]] = Field(default_factory=list)
    blocked_locks: int | None = None
    blocked: list[dict[str, Any]] = Field(default_factory=list)
    wraparound: dict[str, Any] | None = None
    replication: dict[str, Any] | None = None
    wal_archiving: dict[str, Any] | None = None
    deadlocks: int | None = Field(None, description="pg_stat_database.deadlocks of this database (cumulative)")
    stats_reset: str | None = Field(None, description="when this database's statistics were last reset")
    database_size: int | None = Field(None, description="pg_database_size of this database, in bytes")
    queries: dict[str, QueryResult] = Field(default_factory=dict)
    errors: dict[str, SectionError] = Field(default_factory=dict, description="sections that produced no facts")

    def observed(self) -> dict[str, Any]:
        # The session's identity only: each check adds the measures it is about, so a query's
        # record does not repeat the item's locks and sessions.
        shown: dict[str, Any] = {"dsn": self.dsn, "reached": self.reached}
        for key in ("timed_out", "failure", "server_version", "in_recovery", "user", "database"):
            value = getattr(self, key)
            if value not in (None, False) or (key == "in_recovery" and value is not None):
                shown[key] = value
        if self.login_rejected:
            shown["login_rejected"] = True
        shown["elapsed_s"] = round(self.elapsed_s, 4)
        return shown

    @property
    def connections_pct(self) -> float | None:
        if self.connections is None or not self.max_connections:
            return None
        return 100.0 * self.connections / self.max_connections


# -- the statements -------------------------------------------------------------------------

SERVER_SQL = """select current_setting('server_version'), current_setting('server_version_num')::int,
       pg_is_in_recovery(), current_user::text, current_database()::text, pg_backend_pid(),
       current_setting('max_connections')::int,
       current_setting('superuser_reserved_connections')::int
         + coalesce(current_setting('reserved_connections', true), '0')::int,
       pg_has_role('pg_read_all_stats', 'USAGE')
"""

# Rows of other roles' sessions show only datid, pid and application_name to a role without
# pg_read_all_stats: those with a database are counted as client sessions, and as hidden
# unless they are opsproof's own (whose state is known: a few quick read-only statements).
SESSIONS_SQL = f"""select case when backend_type is not null then coalesce(state, 'unknown')
            when application_name = '{APPLICATION_NAME}' then 'hidden ({APPLICATION_NAME})'
            else 'hidden' end,
       count(*)::int
from pg_stat_activity
where backend_type = 'client backend' or (backend_type is null and datid is not null)
group by 1
"""

# Counters for `deadlocks: {increase}` and the size for `database_size: {trend}` (judged against the history).
DATABASE_SQL = """select deadlocks, to_char(stats_reset at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
       pg_database_size(current_database())
from pg_stat_database where datname = current_database()
"""

# opsproof's own sessions (this one, and other items' on the same server) are not the slow
# queries or idle transactions the runbooks hunt: a slow custom query of one item must not
# show up as a long-running query of another.
NOT_OURS = f"pid <> pg_backend_pid() and application_name <> '{APPLICATION_NAME}'"

SESSION_COLUMNS = "pid, usename::text, datname::text, application_name, left(query, 1000)"

LONG_RUNNING_SQL = f"""select {SESSION_COLUMNS},
       greatest(0, extract(epoch from now() - query_start))::float8, wait_event_type, wait_event
from pg_stat_activity
where state = 'active' and backend_type = 'client backend' and {NOT_OURS}
order by query_start limit {OFFENDERS}
"""

IDLE_IN_TRANSACTION_SQL = f"""select {SESSION_COLUMNS},
       greatest(0, extract(epoch from now() - state_change))::float8,
       greatest(0, extract(epoch from now() - xact_start))::float8, state
from pg_stat_activity
where state like 'idle in transaction%' and backend_type = 'client backend' and {NOT_OURS}
order by state_change limit {OFFENDERS}
"""


def blocked_sql(server_version_num: int) -> str:
    # pg_locks.waitstart exists from PostgreSQL 14; before, the session's last state change is the best guess.
    since = "coalesce(l.waitstart, a.state_change)" if server_version_num >= 140000 else "a.state_change"
    return f"""select count(*) over ()::int,
       l.pid, a.usename::text, a.datname::text, a.application_name, left(a.query, 1000),
       greatest(0, extract(epoch from now() - {since}))::float8, l.locktype, l.mode,
       l.relation::regclass::text, pg_blocking_pids(l.pid)
from pg_locks l left join pg_stat_activity a on a.pid = l.pid
where not l.granted
order by {since} nulls last limit {OFFENDERS}
"""


WRAPAROUND_SQL = "select datname::text, age(datfrozenxid)::bigint, mxid_age(datminmxid)::bigint from pg_database"

STANDBY_SQL = """select pg_last_wal_receive_lsn()::text, pg_last_wal_replay_lsn()::text,
       coalesce(pg_wal_lsn_diff(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn()), 0)::bigint,
       extract(epoch from now() - pg_last_xact_replay_timestamp())::float8,
       pg_is_wal_replay_paused(),
       (select status from pg_stat_wal_receiver limit 1),
       (select sender_host from pg_stat_wal_receiver limit 1)
"""

PRIMARY_SQL = """select application_name, client_addr::text, state, sync_state,
       extract(epoch from replay_lag)::float8,
       pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)::bigint
from pg_stat_replication
order by application_name
"""

ARCHIVER_SQL = """select current_setting('archive_mode'), archived_count::bigint, last_archived_wal,
       extract(epoch from now() - last_archived_time)::float8,
       failed_count::bigint, last_failed_wal, extract(epoch from now() - last_failed_time)::float8,
       coalesce(last_failed_time > coalesce(last_archived_time, '-infinity'), false),
       extract(epoch from now() - stats_reset)::float8
from pg_stat_archiver
"""


def _session_row(row: Sequence[Any]) -> dict[str, Any]:
    pid, user, database, application, query = row[:5]
    return {
        "pid": pid,
        "user": user,
        "database": database,
        "application": application or None,
        "query": query_text(query),
    }


class Session:
    """One item's connection and what it has gathered so far."""

    def __init__(
        self, conn: Any, target: PostgresTarget, timeout: float, facts: PostgresFacts, redactor: Redactor
    ) -> None:
        self.conn = conn
        self.target = target
        self.redactor = redactor
        self.timeout = timeout
        self.facts = facts
        self.lost: SectionError | None = None
        self.statement_timeout = timeout

    async def rows(self, sql: str, params: Sequence[Any] | None = None) -> list[Any]:
        cur = await self.conn.execute(sql, params)
        return list(await cur.fetchall())

    async def section(
        self, name: str, work: Any, timeout: float | None = None, *, savepoint: bool = True
    ) -> SectionError | None:
        """Run `work()` in a savepoint within a client deadline; an error is recorded, never raised."""
        import psycopg

        if self.lost is not None:
            return self._not_run(name)
        budget = timeout if timeout is not None else self.timeout
        try:
            # Inner deadline: psycopg then asks the server to cancel the statement. Outer deadline:
            # a second cancellation makes psycopg drop the connection if that request hangs too.
            async with asyncio.timeout(budget + 2 * GRACE_S), asyncio.timeout(budget + GRACE_S):
                if savepoint:
                    async with self.conn.transaction():
                        await work()
                else:
                    await work()
            return None
        except TimeoutError:
            # The server did not cancel the statement by itself: the link is gone or the server is stuck.
            self.lost = SectionError(
                message=f"timed out after {budget:g}s (no answer from the server)", timed_out=True, session_lost=True
            )
            return self._record(name, self.lost)
        except psycopg.Error as exc:
            error = describe_query_error(exc, budget)
            error.message = scrub_postgres_error(error.message, self.target, self.redactor)
            if error.session_lost:
                self.lost = error
            return self._record(name, error)

    def _not_run(self, name: str) -> SectionError:
        assert self.lost is not None
        error = SectionError(
            message=f"not run: the session was lost earlier ({self.lost.message})",
            timed_out=self.lost.timed_out,
            session_lost=True,
        )
        return self._record(name, error)

    def _record(self, name: str, error: SectionError) -> SectionError:
        if not name.startswith("query:"):
            self.facts.errors[name] = error
        return error

    # -- built-in sections --

    async def server(self) -> None:
        (row,) = await self.rows(SERVER_SQL)
        f = self.facts
        (
            f.server_version,
            f.server_version_num,
            f.in_recovery,
            f.user,
            f.database,
            f.backend_pid,
            f.max_connections,
            f.reserved_connections,
            f.sees_all_sessions,
        ) = row
        if (f.server_version_num or 0) >= 140000:
            # A run killed outright leaves no one to cancel a long query: the server looks for its
            # client every second and ends the query itself, instead of at statement_timeout.
            await self.conn.execute("select set_config('client_connection_check_interval', '1000', true)")

    async def role(self) -> None:
        # Its own section: on a database of many tables the write-grant scan may be slow, and
        # a statement timeout here must cost only the warning, not the server's facts.
        self.facts.role_powers = [power for power, held in await self.rows(ROLE_POWERS_SQL) if held]

    async def sessions(self) -> None:
        f = self.facts
        by_state = {state: count for state, count in await self.rows(SESSIONS_SQL)}
        f.hidden_sessions = by_state.get("hidden", 0)
        f.sessions_by_state = by_state
        f.connections = sum(by_state.values())
        long_running = await self.rows(LONG_RUNNING_SQL)
        f.long_running = [
            {**_session_row(r), "age_s": round(r[5], 3), "wait": ":".join(filter(None, r[6:8])) or None}
            for r in long_running
        ]
        f.oldest_query_s = f.long_running[0]["age_s"] if f.long_running else 0.0
        idle = await self.rows(IDLE_IN_TRANSACTION_SQL)
        f.idle_in_transaction = [
            {**_session_row(r), "idle_s": round(r[5], 3), "transaction_s": round(r[6], 3), "state": r[7]} for r in idle
        ]
        f.oldest_idle_in_transaction_s = f.idle_in_transaction[0]["idle_s"] if f.idle_in_transaction else 0.0

    async def locks(self) -> None:
        f = self.facts
        rows = await self.rows(blocked_sql(f.server_version_num or 0))
        f.blocked_locks = rows[0][0] if rows else 0
        f.blocked = [
            {
                **_session_row(r[1:6]),
                "waiting_s": round(r[6], 3) if r[6] is not None else None,
                "lock": f"{r[8]} on {r[7]}" + (f" {r[9]}" if r[9] else ""),
                "blocked_by": list(r[10] or []),
            }
            for r in rows
        ]

    async def wraparound(self) -> None:
        rows = await self.rows(WRAPAROUND_SQL)
        xid = max(rows, key=lambda r: r[1])
        mxid = max(rows, key=lambda r: r[2])
        self.facts.wraparound = {
            "xid_age": xid[1],
            "xid_age_pct": 100.0 * xid[1] / WRAPAROUND_LIMIT,
            "xid_database": xid[0],
            "mxid_age": mxid[2],
            "mxid_age_pct": 100.0 * mxid[2] / WRAPAROUND_LIMIT,
            "mxid_database": mxid[0],
        }

    async def database(self) -> None:
        ((deadlocks, stats_reset, size),) = await self.rows(DATABASE_SQL)
        self.facts.deadlocks = int(deadlocks or 0)
        self.facts.stats_reset = stats_reset
        self.facts.database_size = int(size)

    async def replication(self) -> None:
        if self.facts.in_recovery:
            ((receive, replay, behind, replay_age, paused, receiver, sender),) = await self.rows(STANDBY_SQL)
            # Caught up (nothing received waits for replay): no lag, however old the last replayed
            # transaction (an idle primary sends nothing to replay).
            lag = 0.0 if behind == 0 and receive is not None else replay_age
            self.facts.replication = {
                "role": "standby",
                "lag_s": round(lag, 3) if lag is not None else None,
                "receive_lsn": receive,
                "replay_lsn": replay,
                "replay_behind_bytes": behind,
                "replay_paused": paused,
                "wal_receiver": receiver,
                "primary_host": sender,
            }
            return
        replicas = [
            {
                "name": r[0],
                "client": r[1],
                "state": r[2],
                "sync_state": r[3],
                # NULL replay_lag: the standby has caught up and WAL is idle (or it has not reported yet).
                "lag_s": round(r[4], 3) if r[4] is not None else (0.0 if r[5] == 0 else None),
                "behind_bytes": r[5],
            }
            for r in await self.rows(PRIMARY_SQL)
        ]
        self.facts.replication = {
            "role": "primary",
            "replicas": replicas,
            "streaming": sum(1 for r in replicas if r["state"] == "streaming"),
        }

    async def wal_archiving(self) -> None:
        ((mode, archived, last_wal, last_age, failed, failed_wal, failed_age, failing, reset_age),) = await self.rows(
            ARCHIVER_SQL
        )
        self.facts.wal_archiving = {
            "archive_mode": mode,
            "archived_count": archived,
            "last_archived_wal": last_wal,
            "last_archived_age_s": round(last_age, 3) if last_age is not None else None,
            "failed_count": failed,
            "last_failed_wal": failed_wal,
            "last_failed_age_s": round(failed_age, 3) if failed_age is not None else None,
            "failing": failing,
            "stats_reset_age_s": round(reset_age, 3) if reset_age is not None else None,
        }

    # -- custom queries --

    async def query(self, query: PostgresQuery) -> QueryResult:
        timeout = query.timeout if query.timeout is not None else self.timeout
        result = QueryResult(sql=query.sql, timeout_s=timeout)
        started = time.perf_counter()

        refused: list[str] = []

        async def work() -> None:
            # The server's own catalogue, asked in this session: what each name resolves to here.
            reason = await refusal(self.conn, query.sql)
            if reason is not None:
                refused.append(reason)
                return
            if timeout != self.statement_timeout:
                # Local to the transaction: kept once this savepoint is released, undone with it on an
                # error; `self.statement_timeout` follows which one happened.
                await self.conn.execute(
                    "select set_config('statement_timeout', %s, true)", [f"{round(timeout * 1000)}"]
                )
            await self._read(query.sql, result)

        error = await self.section(f"query:{query.name}", work, timeout)
        if error is None and timeout != self.statement_timeout:
            self.statement_timeout = timeout
        result.elapsed_s = round(time.perf_counter() - started, 4)
        result.error = SectionError(message=f"refused before it ran: {refused[0]}") if refused else error
        return result

    async def _read(self, sql: str, result: QueryResult) -> None:
        first = sql.lstrip().split(None, 1)[0].lower()
        if first in ("select", "with", "values", "table"):
            # A server-side cursor: SAMPLE_ROWS rows cross the wire, the rest are only counted.
            cur = self.conn.cursor(name="opsproof_query")
            await cur.execute(sql)
            rows = list(await cur.fetchmany(SAMPLE_ROWS))
            more = await self.conn.execute('move forward all in "opsproof_query"')
            result.row_count = len(rows) + max(more.rowcount, 0)
            description = cur.description
            await cur.close()
        else:
            # SHOW and EXPLAIN cannot be a cursor's query; binary=True forces the extended protocol,
            # which refuses more than one statement (the profile check already did).
            cur = await self.conn.cursor().execute(sql, binary=True)
            all_rows = list(await cur.fetchall()) if cur.description else []
            rows = all_rows[:SAMPLE_ROWS]
            result.row_count = len(all_rows)
            description = cur.description
        result.columns = [c.name for c in description or []]
        if description:
            result.value_type = description[0].type_display
        if rows:
            first_value = rows[0][0]
            result.value, cut = cut_long(json_value(first_value))
            result.value_text, cut_text = cut_long(value_text(first_value))
            result.value_truncated = cut or cut_text
        result.sample = [[cut_long(json_value(v))[0] for v in row] for row in rows]


# -- the probe ------------------------------------------------------------------------------


async def probe_one(target: PostgresTarget, ctx: ProbeContext) -> PostgresFacts:
    """Open one read-only session, gather every section the item's checks need, close it."""
    facts = await _probe(target, ctx)
    # The facts were filled in field by field, which pydantic does not validate: validating the
    # whole once more redacts every value, as the constructor would have.
    return PostgresFacts.model_validate(facts.model_dump())


async def _probe(target: PostgresTarget, ctx: ProbeContext) -> PostgresFacts:
    import psycopg

    timeout = ctx.profile.timeout_of(target)
    facts = PostgresFacts(target=target.name, reached=False, dsn=ctx.redactor.redact(dsn_without_password(target.dsn)))
    async with ctx.limit:
        started = time.perf_counter()
        try:
            # The whole connect (DNS, TCP, TLS, authentication) inside the item's timeout:
            # a black hole costs `timeout`, no more.
            async with asyncio.timeout(timeout):
                conn = await psycopg.AsyncConnection.connect(
                    target.dsn, autocommit=False, prepare_threshold=None, **connect_params(target, timeout)
                )
        except TimeoutError:
            facts.timed_out = True
            facts.failure = f"timed out after {time.perf_counter() - started:.2f}s connecting (timeout {timeout:g}s)"
            facts.elapsed_s = time.perf_counter() - started
            return facts
        except (psycopg.Error, OSError) as exc:
            message, rejected = describe_connect_error(exc)
            facts.failure = scrub_postgres_error(message, target, ctx.redactor)
            facts.login_rejected = rejected
            facts.timed_out = isinstance(exc, psycopg.errors.ConnectionTimeout)
            facts.elapsed_s = time.perf_counter() - started
            return facts
        facts.reached = True
        facts.connect_s = round(time.perf_counter() - started, 4)
        try:
            await conn.set_read_only(True)  # BEGIN READ ONLY, on top of default_transaction_read_only
            session = Session(conn, target, timeout, facts, ctx.redactor)
            await _gather_sections(session, target)
            if session.lost is None:
                async with asyncio.timeout(timeout):
                    await conn.rollback()  # nothing to commit: a read-only transaction ends with ROLLBACK
        except (TimeoutError, psycopg.Error):
            pass  # the facts already say what went wrong; closing is all that is left
        finally:
            await conn.close()  # never waits on the server
        facts.elapsed_s = time.perf_counter() - started
    return facts


async def _gather_sections(session: Session, target: PostgresTarget) -> None:
    # The first statement opens the transaction (BEGIN READ ONLY); each later section is a savepoint in it.
    if await session.section("server", session.server, savepoint=False) is not None:
        return  # without the server's basics (version, recovery state) the rest cannot be read
    await session.section("role", session.role)
    await session.section("sessions", session.sessions)
    await session.section("locks", session.locks)
    await session.section("wraparound", session.wraparound)
    if target.deadlocks is not None or target.database_size is not None:
        await session.section("database", session.database)
    if target.replication is not None:
        await session.section("replication", session.replication)
    if target.wal_archiving is not None:
        await session.section("wal_archiving", session.wal_archiving)
    for query in target.queries:
        session.facts.queries[query.name] = await session.query(query)


async def gather_postgres(targets: Sequence[PostgresTarget], ctx: ProbeContext) -> AsyncIterator[PostgresFacts]:
    """Probe every item concurrently (one session each); yield each one's facts as it completes."""
    async for facts in each_as_done(probe_one(t, ctx) for t in targets):
        yield facts


PROBE: ProbeKind[PostgresTarget, PostgresFacts] = ProbeKind(
    name="postgres",
    facts=PostgresFacts,
    gather=gather_postgres,
    imports=("psycopg",),
)
