"""PostgreSQL (runbook 000's KPI table; 001/003 connection-pool exhaustion and slow queries; 004 migration version).

Every check of an item reads the facts of ONE read-only session the probe opened for
the item: reachable with its version, connections as a share of max_connections,
waiting lock requests, the oldest active query and idle-in-transaction session,
transaction-ID wraparound, replication lag and WAL archiving where configured, new deadlocks
since the previous run and the database size's trend where configured (against the history),
and each custom query's result against its `expect`.
"""

from __future__ import annotations

from typing import Any

from opsproof import Check, CheckError, Part, applies, each, format_duration, format_percent, format_size
from opsproof.judging.over_time import judge_increase, judge_trend
from opsproof.judging.query_expect import judge_query, raise_for
from opsproof.probes.postgres import PostgresFacts
from opsproof.targets.postgres import PostgresQuery, PostgresTarget


def _session(facts: PostgresFacts) -> None:
    """Stop here unless the session was opened: a refused login is an error, anything else a failure."""
    if facts.login_rejected:
        raise CheckError(f"login refused: {facts.failure}")
    assert facts.reached, facts.failure


def _section(facts: PostgresFacts, name: str) -> None:
    """Stop here unless the section's statements ran (a timeout is the target's state; the rest is not)."""
    _session(facts)
    # The session's first statement (version, recovery state) failing stops every other section.
    for section in ("server", name):
        error = facts.errors.get(section)
        if error is not None:
            raise_for(error, f"{section.replace('_', ' ')} facts could not be read")


def _visible(facts: PostgresFacts, measure: str) -> None:
    """A role that cannot see other sessions would pass for want of looking: say so instead."""
    if facts.hidden_sessions:
        raise CheckError(
            f"{facts.hidden_sessions} session(s) of other roles are hidden from role {facts.user!r}, so "
            f"{measure} cannot be checked: grant it pg_monitor (or pg_read_all_stats)"
        )


def _offender(row: dict[str, Any], age_key: str) -> str:
    who = f"pid {row['pid']}" + (f" ({row['application']})" if row.get("application") else "")
    return f"worst: {who} for {format_duration(row[age_key])}: {row.get('query') or '?'}"


def _percent(value: float) -> str:
    """Small shares stay visible: 0.000035% rather than 0.0%."""
    return (f"{value:.1f}" if value >= 0.1 else f"{value:.6f}".rstrip("0").rstrip(".")) + "%"


def test_reachable(item: PostgresTarget, facts: PostgresFacts, check: Check) -> None:
    _section(facts, "server")
    role = "standby" if facts.in_recovery else "primary"
    check.observe(connect_ms=round((facts.connect_s or 0) * 1000, 1), backend_pid=facts.backend_pid)
    check.note(f"PostgreSQL {facts.server_version} ({role}), connected in {format_duration(facts.connect_s or 0)}")
    if facts.role_powers:
        # Read-only sessions and the SQL guard stop writes; a role that cannot write is the lock that needs neither.
        check.observe(role_powers=facts.role_powers)
        check.warn(
            f"role {facts.user!r} can do more than a check needs ({'; '.join(facts.role_powers)}): "
            "connect as a role with only pg_monitor (or pg_read_all_stats) and SELECT on the queried tables"
        )


def test_connections(item: PostgresTarget, facts: PostgresFacts, check: Check) -> None:
    _section(facts, "sessions")
    check.observe(
        connections=facts.connections,
        max_connections=facts.max_connections,
        reserved_connections=facts.reserved_connections,
        connections_pct=round(facts.connections_pct or 0, 1),
        sessions_by_state=facts.sessions_by_state,
    )
    check.note(
        f"{facts.connections} of {facts.max_connections} connections ({format_percent(facts.connections_pct or 0)})"
    )
    in_use = f"{facts.connections} of {facts.max_connections} in use"
    check.threshold("connections", facts.connections_pct, item.connections, show=format_percent, detail=in_use)


def test_blocked_locks(item: PostgresTarget, facts: PostgresFacts, check: Check) -> None:
    _section(facts, "locks")
    check.observe(blocked_locks=facts.blocked_locks, blocked=facts.blocked)
    check.note(f"{facts.blocked_locks} waiting lock requests")
    worst = None
    if facts.blocked:
        row = facts.blocked[0]
        waits = f" for {format_duration(row['waiting_s'])}" if row.get("waiting_s") is not None else ""
        blockers = ", ".join(map(str, row["blocked_by"])) or "?"
        query = row.get("query") or "?"
        worst = f"worst: pid {row['pid']} waits{waits} for {row['lock']}, blocked by pid {blockers}: {query}"
    check.threshold(
        "waiting lock requests", facts.blocked_locks, item.blocked_locks, show=lambda v: f"{v:g}", detail=worst
    )


def test_long_running_queries(item: PostgresTarget, facts: PostgresFacts, check: Check) -> None:
    _section(facts, "sessions")
    _visible(facts, "long-running queries")
    check.observe(oldest_query_s=facts.oldest_query_s, long_running=facts.long_running)
    running = facts.long_running
    check.note(f"oldest active query: {format_duration(facts.oldest_query_s or 0)}" if running else "no active query")
    worst = _offender(running[0], "age_s") if running else None
    check.threshold(
        "oldest active query", facts.oldest_query_s, item.long_running_queries, show=format_duration, detail=worst
    )


def test_idle_in_transaction(item: PostgresTarget, facts: PostgresFacts, check: Check) -> None:
    _section(facts, "sessions")
    _visible(facts, "idle-in-transaction sessions")
    oldest = facts.oldest_idle_in_transaction_s
    check.observe(oldest_idle_in_transaction_s=oldest, idle_in_transaction=facts.idle_in_transaction)
    idle = facts.idle_in_transaction
    check.note(
        f"oldest idle-in-transaction session: {format_duration(oldest or 0)}"
        if idle
        else "no idle-in-transaction session"
    )
    worst = _offender(idle[0], "idle_s") if idle else None
    check.threshold(
        "oldest idle-in-transaction session", oldest, item.idle_in_transaction, show=format_duration, detail=worst
    )


def test_wraparound(item: PostgresTarget, facts: PostgresFacts, check: Check) -> None:
    _section(facts, "wraparound")
    wrap = facts.wraparound
    assert wrap is not None, "wraparound facts missing"
    check.observe(wraparound=wrap)
    check.note(
        f"oldest transaction ID age {wrap['xid_age']:,} ({_percent(wrap['xid_age_pct'])} of the wraparound limit) "
        f"in {wrap['xid_database']}"
    )
    for measure, key in (("transaction ID age", "xid"), ("multixact ID age", "mxid")):
        detail = f"{wrap[f'{key}_age']:,} of 2^31 in database {wrap[f'{key}_database']}"
        check.threshold(measure, wrap[f"{key}_age_pct"], item.wraparound, show=_percent, detail=detail)


@applies(lambda item: item.replication is not None)
def test_replication_lag(item: PostgresTarget, facts: PostgresFacts, check: Check) -> None:
    _section(facts, "replication")
    if not facts.sees_all_sessions:
        # pg_stat_replication and pg_stat_wal_receiver show NULL state to such a role: no replica
        # would look like "streaming", a false failure (or, on a standby, a false "not streaming").
        raise CheckError(
            f"role {facts.user!r} cannot see replication state: grant it pg_monitor (or pg_read_all_stats)"
        )
    replication, wanted = facts.replication, item.replication
    assert replication is not None and wanted is not None
    check.observe(replication=replication)
    if replication["role"] == "standby":
        _standby_lag(replication, wanted.lag, check)
    else:
        _primary_lag(replication, wanted.lag, wanted.min_replicas, check)


def _standby_lag(replication: dict[str, Any], threshold: Any, check: Check) -> None:
    receiver = replication["wal_receiver"]
    assert receiver == "streaming", (
        f"this standby is not streaming from its primary (WAL receiver: {receiver or 'none'})"
    )
    lag = replication["lag_s"]
    assert lag is not None, "replication lag cannot be measured: nothing has been replayed since the standby started"
    check.note(f"standby replay lag {format_duration(lag)}")
    behind = replication["replay_behind_bytes"]
    why = f"{behind:,} bytes received and not replayed" if behind else None
    if replication["replay_paused"]:
        why = f"WAL replay is paused (pg_wal_replay_pause); {why or 'nothing waiting'}"
    check.threshold("replication lag", lag, threshold, show=format_duration, detail=why)


def _primary_lag(replication: dict[str, Any], threshold: Any, min_replicas: int | None, check: Check) -> None:
    replicas: list[dict[str, Any]] = replication["replicas"]
    streaming = replication["streaming"]
    if min_replicas is not None:
        check.expect(min_replicas=min_replicas)
        states = ", ".join(f"{r['name']}: {r['state']}" for r in replicas)
        assert streaming >= min_replicas, f"{streaming} streaming replica(s), expected at least {min_replicas}" + (
            f" ({states})" if states else ""
        )
    else:
        assert replicas, "this primary has no replicas (set replication.min_replicas: 0 if that is expected)"
    if not replicas:
        check.note("no replicas, as configured (min_replicas: 0)")
        return
    unmeasured = [r["name"] for r in replicas if r["lag_s"] is None]
    assert not unmeasured, f"replay lag not reported yet by {', '.join(unmeasured)}"
    worst = max(replicas, key=lambda r: float(r["lag_s"]))
    check.note(f"{streaming} streaming replica(s), worst replay lag {format_duration(worst['lag_s'])}")
    where = worst["client"] or "local"
    who = f"worst: {worst['name'] or '?'} ({where}, {worst['state']}, {worst['behind_bytes']:,} bytes behind)"
    check.threshold("replication lag", worst["lag_s"], threshold, show=format_duration, detail=who)


@applies(lambda item: item.wal_archiving is not None)
def test_wal_archiving(item: PostgresTarget, facts: PostgresFacts, check: Check) -> None:
    _section(facts, "wal_archiving")
    archiving, wanted = facts.wal_archiving, item.wal_archiving
    assert archiving is not None and wanted is not None
    check.observe(wal_archiving=archiving)
    mode = archiving["archive_mode"]
    if facts.in_recovery and mode == "on":
        raise CheckError("this server is a standby with archive_mode = on: it archives nothing; check the primary")
    assert mode in ("on", "always"), f"WAL archiving is off (archive_mode = {mode})"
    last_age = archiving["last_archived_age_s"]
    assert not archiving["failing"], (
        f"WAL archiving is failing: {archiving['failed_count']} failure(s), last failed segment "
        f"{archiving['last_failed_wal']} {format_duration(archiving['last_failed_age_s'] or 0)} ago; "
        + (
            f"last archived segment {archiving['last_archived_wal']} {format_duration(last_age)} ago"
            if last_age is not None
            else "no segment archived yet"
        )
    )
    assert last_age is not None, "no WAL segment has been archived since the statistics were reset"
    check.note(f"last archived segment {archiving['last_archived_wal']} {format_duration(last_age)} ago")
    check.threshold("age of the last archived WAL segment", last_age, wanted.max_age, show=format_duration)


# -- custom queries -----------------------------------------------------------------------


@each("queries")
def test_query(item: PostgresTarget, part: Part, facts: PostgresFacts, check: Check) -> None:
    spec: PostgresQuery = part.spec
    check.expect(**spec.expect.model_dump(exclude_unset=True))
    _section(facts, "server")
    judge_query(spec, facts.queries.get(part.name), check)


# -- counters and trends (judged against the history: docs/trends.md) ---------------------------


@applies(lambda item: item.deadlocks is not None)
def test_deadlocks(item: PostgresTarget, facts: PostgresFacts, check: Check) -> None:
    _section(facts, "database")
    assert facts.deadlocks is not None and item.deadlocks is not None
    check.observe(deadlocks=facts.deadlocks, stats_reset=facts.stats_reset)
    judge_increase(check, "deadlocks", facts.deadlocks, item.deadlocks.increase, what="deadlocks")


@applies(lambda item: item.database_size is not None)
def test_database_size(item: PostgresTarget, facts: PostgresFacts, check: Check) -> None:
    _section(facts, "database")
    assert facts.database_size is not None and item.database_size is not None
    check.observe(database_size=facts.database_size)
    judge_trend(check, "bytes", facts.database_size, item.database_size.trend, what="database size", show=format_size)
