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

from opsproof.model.fields import Duration, Item, Name, Percent, Regex, Rising, Strict, Threshold, default_threshold
from opsproof.model.kind import Kind

# A literal, a quoted identifier, a comment: the places a keyword is not a keyword.
_NOT_CODE = re.compile(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|--[^\n]*|/\*.*?\*/|\$(\w*)\$.*?\$\1\$", re.DOTALL)
_READ_ONLY_START = ("select", "with", "show", "values", "table", "explain")
_WRITING = re.compile(
    r"\b(insert|update|delete|merge|truncate|drop|create|alter|grant|revoke|copy|vacuum|analyze|"
    r"cluster|reindex|lock|call|do|refresh|notify|listen|set|reset|prepare|execute|begin|commit|"
    r"rollback|into|nextval|setval|pg_terminate_backend|pg_cancel_backend|pg_reload_conf|"
    # Functions with side effects a read-only transaction does not stop: session settings that
    # outlive the statement, another connection (dblink), server actions, replication slots.
    r"set_config|dblink\w*|lo_\w+|pg_notify|pg_advisory\w*|pg_switch_wal|pg_create_restore_point|pg_promote|"
    r"pg_rotate_logfile|pg_stat_reset\w*|pg_\w*replication_slot\w*|pg_logical_\w+|pg_wal_replay_\w+|"
    r"pg_backup_\w+|pg_start_backup|pg_stop_backup|pg_signal_backend|pg_log_backend_memory_contexts)\b",
    re.IGNORECASE,
)


def read_only_sql(sql: str) -> str:
    """Refuse, before anything is sent, SQL that is not one read-only statement.

    The session is read-only as well; this is the first of two locks, and the one
    that gives the profile's author a message at the line they wrote.
    """
    code = _NOT_CODE.sub(" ", sql).strip().rstrip(";").strip()
    if not code:
        raise ValueError("empty SQL")
    if ";" in code:
        raise ValueError("more than one statement: a query is one read-only statement")
    first = code.split(None, 1)[0].lower()
    if first not in _READ_ONLY_START:
        raise ValueError(f"{first.upper()} is not a read-only statement: use SELECT, WITH, SHOW, VALUES or TABLE")
    writing = _WRITING.search(code)
    if writing:
        raise ValueError(f"{writing.group(1).upper()} is not allowed: checks never write to their targets")
    if re.search(r"\bfor\s+(update|share|no\s+key\s+update|key\s+share)\b", code, re.IGNORECASE):
        raise ValueError("SELECT ... FOR UPDATE/SHARE takes row locks: checks never write to their targets")
    if first == "explain" and re.search(r"\banaly[sz]e\b", code, re.IGNORECASE):
        raise ValueError("EXPLAIN ANALYZE runs the statement: use EXPLAIN without ANALYZE")
    return sql


ReadOnlySql = Annotated[str, AfterValidator(read_only_sql)]
Scalar = StrictStr | StrictInt | StrictFloat | StrictBool | None


class QueryExpect(Strict):
    """What a custom query's result must be; the value is the first column of the first row.

    Numbers compare as numbers (an interval as its seconds); anything else compares as its
    text (`equals: "2026-01-31"` matches a date). Operators combine: all must hold.
    """

    equals: Scalar = Field(None, description="the value equals this")
    one_of: list[Scalar] | None = Field(None, description="the value is one of these")
    min: StrictInt | StrictFloat | None = Field(None, description="the value is at least this number")
    max: StrictInt | StrictFloat | None = Field(None, description="the value is at most this number")
    matches: Regex | None = Field(None, description="the value, as text, matches this regular expression")
    rows: StrictInt | None = Field(None, ge=0, description="exactly this many rows")
    min_rows: StrictInt | None = Field(None, ge=0, description="at least this many rows")
    max_rows: StrictInt | None = Field(None, ge=0, description="at most this many rows")

    @model_validator(mode="before")
    @classmethod
    def _known_operators(cls, data: object) -> object:
        # "unknown key" alone would not say what the choices are.
        if isinstance(data, dict):
            unknown = sorted(str(key) for key in data if key not in cls.model_fields)
            if unknown:
                raise ValueError(f"unknown expect operator {unknown[0]!r}: use {', '.join(cls.model_fields)}")
        return data

    @model_validator(mode="after")
    def _something_expected(self) -> QueryExpect:
        if not self.model_fields_set:
            raise ValueError(
                "expect needs at least one of: equals, one_of, min, max, matches, rows, min_rows, max_rows"
            )
        for low, high in (("min", "max"), ("min_rows", "max_rows")):
            low_value, high_value = getattr(self, low), getattr(self, high)
            if low_value is not None and high_value is not None and low_value > high_value:
                raise ValueError(f"{low} {low_value} is above {high} {high_value}: nothing could pass")
        return self


class PostgresQuery(Strict):
    """A named read-only query and what its result must be."""

    name: Name
    sql: ReadOnlySql = Field(description="one read-only statement: SELECT, WITH, VALUES, TABLE, SHOW or EXPLAIN")
    expect: QueryExpect = Field(description="what the first column of the first row (or the row count) must be")
    timeout: Duration | None = Field(None, gt=0, description="statement timeout (default: the item's timeout)")


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


class PostgresTarget(Item):
    """A PostgreSQL server: one read-only session per run, shared by all its checks."""

    dsn: Annotated[str, Field(min_length=1, description="libpq connection string or postgresql:// URI")]
    password: str | None = Field(
        None,
        description="the password, apart from the DSN so it needs no URL-encoding: `password: ${PG_PASSWORD}`",
    )
    connections: Annotated[Threshold[Percent], Rising] = Field(
        default_factory=default_threshold(warn="80%", fail="95%"),
        validate_default=True,
        description="sessions as a share of max_connections",
    )
    long_running_queries: Annotated[Threshold[Duration], Rising] = Field(
        default_factory=default_threshold(warn="1m", fail="5m"),
        validate_default=True,
        description="age of the oldest active query",
    )
    blocked_locks: Annotated[Threshold[StrictInt], Rising] = Field(
        default_factory=default_threshold(fail=0), validate_default=True, description="count of waiting lock requests"
    )
    idle_in_transaction: Annotated[Threshold[Duration], Rising] = Field(
        default_factory=default_threshold(warn="5m", fail="30m"),
        validate_default=True,
        description="age of the oldest idle-in-transaction session",
    )
    wraparound: Annotated[Threshold[Percent], Rising] = Field(
        default_factory=default_threshold(warn="50%", fail="75%"),
        validate_default=True,
        description="oldest transaction ID age as a share of the 2^31 wraparound limit",
    )
    replication: Replication | None = Field(None, description="check replication lag (where configured)")
    wal_archiving: WalArchiving | None = Field(None, description="check WAL archiving (where configured)")
    queries: Queries = Field(default_factory=list, description="custom read-only assertions, run in the same session")

    @field_validator("dsn")
    @classmethod
    def _dsn_parses(cls, dsn: str) -> str:
        from psycopg import conninfo

        try:
            params = conninfo.conninfo_to_dict(dsn)
        except Exception as exc:  # psycopg raises ProgrammingError; say why in libpq's words
            raise ValueError(f"malformed DSN: {str(exc).strip()}") from None
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
