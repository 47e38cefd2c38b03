"""Profile model of `postgres` items: a database checked through one read-only session."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import (
    AfterValidator,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    field_validator,
    model_validator,
)

from opsproof.model.fields import (
    AspectThreshold,
    Duration,
    Item,
    Name,
    OwnCadence,
    OwnSeverity,
    Percent,
    Regex,
    Rising,
    Size,
    Strict,
    Threshold,
    check_order,
    default_threshold,
)
from opsproof.model.kind import Kind
from opsproof.model.sql_guard import read_only_sql
from opsproof.model.trends import CountIncrease, Increase, Trend
from opsproof.targets.valued import Unit, UnitLimit, limits_in_unit, with_trend_in_unit

ReadOnlySql = Annotated[str, AfterValidator(read_only_sql)]
Scalar = StrictStr | StrictInt | StrictFloat | StrictBool | None


class QueryExpect(Strict):
    """What a custom query's result must be; the value is the first column of the first row.

    Numbers compare as numbers (an interval as its seconds); anything else compares as its
    text (`equals: "2026-01-31"` matches a date). Operators combine: all must hold.
    """

    equals: Scalar = Field(None, description="the value equals this")
    one_of: list[Scalar] | None = Field(None, description="the value is one of these")
    min: float | None = Field(None, description="the value is at least this (a number, or in `unit`: 5m, 10GB, 80%)")
    max: float | None = Field(None, description="the value is at most this (a number, or in `unit`: 5m, 10GB, 80%)")
    matches: Regex | None = Field(None, description="the value, as text, matches this regular expression")
    rows: StrictInt | None = Field(None, ge=0, description="exactly this many rows")
    min_rows: StrictInt | None = Field(None, ge=0, description="at least this many rows")
    max_rows: StrictInt | None = Field(None, ge=0, description="at most this many rows")
    threshold: Threshold[float] | None = Field(
        None, description="{warn, fail} on the value, in `unit`: warns before it fails (a limit is reached at it)"
    )
    unit: Unit = Field(
        "number", description="what the value measures: number, seconds, percent (0-100), ratio (0-1) or bytes"
    )
    lower_is_worse: StrictBool = Field(False, description="with threshold: true when less is worse (a hit ratio)")
    increase: Increase[UnitLimit] | None = Field(
        None,
        description="{warn, fail} on the value's growth since the previous run, in `unit` (a cumulative count: "
        "pg_stat_statements calls, deadlocks); a value that went down is a reset and passes",
    )
    trend: Trend[UnitLimit] | None = Field(
        None,
        description="{limit, window, min_points, full_in}: the value's least-squares line over the history; fails "
        "when it reaches `limit` (in `unit`) sooner than full_in",
    )

    @model_validator(mode="before")
    @classmethod
    def _known_operators(cls, data: object) -> object:
        # "unknown key" alone would not say what the choices are.
        if isinstance(data, dict):
            unknown = sorted(str(key) for key in data if key not in cls.model_fields)
            if unknown:
                raise ValueError(f"unknown expect operator {unknown[0]!r}: use {', '.join(cls.model_fields)}")
            return with_trend_in_unit(limits_in_unit(data, ("min", "max", "threshold", "increase")))
        return data

    @model_validator(mode="after")
    def _something_expected(self) -> QueryExpect:
        if not self.model_fields_set - {"unit", "lower_is_worse"}:
            raise ValueError(
                "expect needs at least one of: equals, one_of, min, max, threshold, matches, rows, min_rows, max_rows, "
                "increase, trend"
            )
        if self.threshold is not None:
            check_order(self.threshold, lower_is_worse=self.lower_is_worse)
        for low, high in (("min", "max"), ("min_rows", "max_rows")):
            low_value, high_value = getattr(self, low), getattr(self, high)
            if low_value is not None and high_value is not None and low_value > high_value:
                raise ValueError(f"{low} {low_value:g} is above {high} {high_value:g}: nothing could pass")
        return self


class PostgresQuery(Strict):
    """A named read-only query and what its result must be."""

    name: Name
    sql: ReadOnlySql = Field(description="one read-only statement: SELECT, WITH, VALUES, TABLE, SHOW or EXPLAIN")
    expect: QueryExpect = Field(description="what the first column of the first row (or the row count) must be")
    timeout: Duration | None = Field(None, gt=0, description="statement timeout (default: the item's timeout)")
    post_deploy: StrictBool | None = Field(
        None, description="true puts this query's check in `pytest -m post_deploy` (e.g. the migration version)"
    )
    severity: OwnSeverity = None
    cadence: OwnCadence = None


def _unique_queries(queries: list[PostgresQuery]) -> list[PostgresQuery]:
    names = [q.name for q in queries]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"duplicate query name {duplicates[0]!r}")
    return queries


# Named queries: the names are check ids (postgres.query[item/name], drills.sql[item/name]).
Queries = Annotated[list[PostgresQuery], AfterValidator(_unique_queries)]


class Replication(Strict):
    """Replication lag, seen from a standby (replay delay) or from the primary (pg_stat_replication)."""

    lag: Annotated[Threshold[Duration], Rising] = Field(
        default_factory=default_threshold(warn="30s", fail="5m"),
        validate_default=True,
        description="replay lag: on a standby its own, on a primary the worst its replicas report",
    )
    min_replicas: StrictInt | None = Field(None, ge=0, description="on a primary: streaming replicas expected")


class WalArchiving(Strict):
    """pg_stat_archiver: failures since the last success, and the age of the last archived segment."""

    max_age: Annotated[Threshold[Duration], Rising] = Field(
        default_factory=default_threshold(warn="15m", fail="1h"),
        validate_default=True,
        description="age of the last archived WAL segment (set archive_timeout on quiet servers)",
    )
    severity: OwnSeverity = None
    cadence: OwnCadence = None


class Deadlocks(Strict):
    """Deadlocks of this database (pg_stat_database, cumulative): judged on their growth since the previous run."""

    increase: CountIncrease = Field(
        description="{warn, fail} on new deadlocks since the previous run of this check (fail: 0 fails on any)"
    )


class DatabaseSize(Strict):
    """pg_database_size of this database, fitted over the history: when will it reach the limit?"""

    trend: Trend[Size] = Field(
        description="{limit: 100GB, window: 14d, min_points: 3, full_in: {warn: 30d, fail: 7d}}: the projected "
        "time until the size reaches the limit"
    )


def _libpq_words(message: str) -> str:
    """libpq's message about a DSN, quoting only its keywords and separators.

    libpq quotes the token it stopped at, which may be part of a ${SECRET} (`invalid
    percent-encoded token: "p%zz"`): any other quoted text is left out.
    """
    from psycopg import pq

    keywords = {option.keyword.decode() for option in pq.Conninfo.get_defaults()}

    def shown(match: re.Match[str]) -> str:
        quoted = match.group(1)
        return match.group(0) if quoted in keywords or re.fullmatch(r"[=&?/:@]", quoted) else "(not shown)"

    return re.sub(r'"([^"]*)"', shown, message)


class PostgresTarget(Item):
    """A PostgreSQL server: one read-only session per run, shared by all its checks."""

    dsn: Annotated[str, Field(min_length=1, description="libpq connection string or postgresql:// URI")]
    password: str | None = Field(
        None,
        description="the password, apart from the DSN so it needs no URL-encoding: `password: ${PG_PASSWORD}`",
    )
    connections: Annotated[AspectThreshold[Percent], Rising] = Field(
        default_factory=default_threshold(warn="80%", fail="95%"),
        validate_default=True,
        description="sessions as a share of max_connections",
    )
    long_running_queries: Annotated[AspectThreshold[Duration], Rising] = Field(
        default_factory=default_threshold(warn="1m", fail="5m"),
        validate_default=True,
        description="age of the oldest active query",
    )
    blocked_locks: Annotated[AspectThreshold[StrictInt], Rising] = Field(
        default_factory=default_threshold(fail=0), validate_default=True, description="count of waiting lock requests"
    )
    idle_in_transaction: Annotated[AspectThreshold[Duration], Rising] = Field(
        default_factory=default_threshold(warn="5m", fail="30m"),
        validate_default=True,
        description="age of the oldest idle-in-transaction session",
    )
    wraparound: Annotated[AspectThreshold[Percent], Rising] = Field(
        default_factory=default_threshold(warn="50%", fail="75%"),
        validate_default=True,
        description="oldest transaction ID age as a share of the 2^31 wraparound limit",
    )
    replication: Replication | None = Field(None, description="check replication lag (where configured)")
    wal_archiving: WalArchiving | None = Field(None, description="check WAL archiving (where configured)")
    deadlocks: Deadlocks | None = Field(
        None, description="`{increase: {warn: 1, fail: 5}}`: new deadlocks since the previous run (docs/trends.md)"
    )
    database_size: DatabaseSize | None = Field(
        None, description="`{trend: {limit: 100GB, full_in: {warn: 30d, fail: 7d}}}`: growth toward a limit"
    )
    queries: Queries = Field(default_factory=list, description="custom read-only assertions, run in the same session")

    @field_validator("dsn")
    @classmethod
    def _dsn_parses(cls, dsn: str) -> str:
        from psycopg import conninfo

        try:
            params = conninfo.conninfo_to_dict(dsn)
        except Exception as exc:  # psycopg raises ProgrammingError; say why in libpq's words
            raise ValueError(f"malformed DSN: {_libpq_words(str(exc).strip())}") from None
        port = str(params.get("port") or "")
        if port and not all(p.strip().isdigit() for p in port.split(",")):
            # Typically a password with / @ : or # pasted into a URI: never echo the value, it may hold the secret.
            raise ValueError(
                "malformed DSN: the port is not a number; a password holding / @ : # ? must be URL-encoded "
                "in a URI, or given as `password:` beside the DSN"
            )
        return dsn


KIND = Kind(
    name="postgres",
    target=PostgresTarget,
    probe="opsproof.probes.postgres",
    checks="checks/infra/test_postgres.py",
    cadence="daily",
    areas=("infra",),
    controls={
        # Databases and caches: monitoring, capacity (A1.1, ISO A.8.6) and operations.
        "postgres": ("SOC2:CC7.1", "SOC2:A1.1", "ISO27001:A.8.6", "ISO27001:A.8.16", "SOX-ITGC:OPS"),
        "postgres.query": ("SOC2:CC7.1", "SOX-ITGC:OPS"),
        "postgres.replication_lag": ("SOC2:CC7.1", "SOC2:A1.2", "ISO27001:A.8.14", "SOX-ITGC:OPS"),
        "postgres.wal_archiving": ("SOC2:CC7.1", "SOC2:A1.2", "ISO27001:A.8.13", "SOX-ITGC:OPS"),
    },
)
