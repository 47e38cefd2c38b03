"""Profile model of `drills` items: restore a backup, prove it holds the data, within the RTO.

A drill restores one backup of a `backups` item into a throwaway PostgreSQL that opsproof
starts and removes (`target: ephemeral`), or into a scratch database (`target: {dsn: ...}`),
then counts rows, runs read-only assertions and times every phase::

    drills:
      - name: restore-latest
        backup: postgres-daily          # a backups item
        choose: newest                  # or oldest (in retention), random
        target: ephemeral
        expect:
          tables: {projects: 50, public.accounts: 1}
        sql:
          - {name: schema-version, sql: "select version_num from alembic_version", expect: {equals: abc123}}
        recency: {table: events, column: created_at}
        rto: 4h                         # or {warn: 2h, fail: 4h}
        rpo: 1h
"""

from __future__ import annotations

import getpass
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BeforeValidator,
    Field,
    StrictBool,
    StrictInt,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from opsproof.model.fields import Item, Name, PositiveDuration, Strict
from opsproof.model.kind import Kind
from opsproof.targets.backups import AgeLimit
from opsproof.targets.postgres import PostgresTarget, Queries

Choose = Literal["newest", "oldest", "random"]
CHOOSE_VALUES = ("newest", "oldest", "random")
# The whole drill is stopped past this when `max_duration` is not given (1.5 x the runbooks' 4h RTO).
DEFAULT_MAX_DURATION_S = 6 * 3600.0
MAX_DURATION_RTO_FACTOR = 1.5
# A table as written in the profile: `projects` or `schema.projects`, each part an identifier
# as the catalog spells it (case matters: `Projects` is the table created as "Projects").
_IDENTIFIER = r"[^\W\d]\w*(?:\$\w*)*"
_TABLE = re.compile(rf"{_IDENTIFIER}(?:\.{_IDENTIFIER})?")
_COLUMN = re.compile(_IDENTIFIER)
_LOCAL_HOSTS = {"", "localhost", "127.0.0.1", "::1", "[::1]"}


def _choose(value: Any) -> Any:
    # pydantic's literal error lists the choices but not what was wrong with the word given.
    if isinstance(value, str) and value not in CHOOSE_VALUES:
        raise ValueError(f"unknown choose {value!r}: use newest, oldest or random")
    return value


def _table_name(value: str) -> str:
    if not _TABLE.fullmatch(value):
        raise ValueError(f"table {value!r}: expected a table name or schema.table (letters, digits, _ and $)")
    return value


TableName = Annotated[str, Field(description="a table, or schema.table; case as in the catalog")]


def _tables(value: Any) -> Any:
    """`{projects: 50}`: table name -> minimum row count; say so when it is anything else."""
    if not isinstance(value, dict):
        raise ValueError(
            f"expect.tables is a mapping of table name to minimum row count, e.g. {{projects: 50}} "
            f"(got {type(value).__name__})"
        )
    for name, minimum in value.items():
        if not isinstance(name, str):
            raise ValueError(f"expect.tables: table name {name!r} is not text")
        _table_name(name)
        if isinstance(minimum, bool) or not isinstance(minimum, int) or minimum < 0:
            raise ValueError(
                f"expect.tables.{name}: the minimum row count is a whole number of at least 0 (got {minimum!r})"
            )
    return value


class DrillExpect(Strict):
    """What the restored database must hold."""

    tables: Annotated[dict[str, int], BeforeValidator(_tables)] = Field(
        default_factory=dict,
        description="table (or schema.table) -> minimum row count, by an exact count(*) after the restore",
    )


class Recency(Strict):
    """Where the newest data is: max(column) of table is the recovery point the backup holds."""

    table: TableName
    column: Annotated[str, Field(description="a timestamp, timestamptz or date column")]
    against: Literal["now", "backup"] | None = Field(
        None,
        description="measure the RPO up to now (what a restore now would lose) or up to the backup's time "
        "(how stale the data was when backed up); default: now for choose newest, else backup",
    )

    @field_validator("table")
    @classmethod
    def _table(cls, value: str) -> str:
        return _table_name(value)

    @field_validator("column")
    @classmethod
    def _column(cls, value: str) -> str:
        if not _COLUMN.fullmatch(value):
            raise ValueError(f"column {value!r}: expected a column name (letters, digits, _ and $)")
        return value


class DsnTarget(Strict):
    """A scratch database the drill restores into; it is never dropped, and never the source."""

    dsn: Annotated[str, Field(min_length=1, description="libpq connection string or postgresql:// URI")]
    password: str | None = Field(None, description="the password, apart from the DSN: `password: ${SCRATCH_PW}`")
    allow_overwrite: StrictBool = Field(
        False,
        description="a database that already holds user tables is emptied first (every user schema dropped); "
        "without this such a database is refused",
    )

    @field_validator("dsn")
    @classmethod
    def _dsn_parses(cls, dsn: str) -> str:
        # The postgres kind's checks (libpq's parser, a port that is a number, no password echoed).
        validated: str = PostgresTarget._dsn_parses(dsn)
        return validated

    def endpoints(self) -> tuple[set[tuple[str, int]], str]:
        """((host, port) pairs, database) this DSN connects to, local names folded together."""
        return dsn_endpoints(self.dsn)


def dsn_endpoints(dsn: str) -> tuple[set[tuple[str, int]], str]:
    """Where a DSN points: its (host, port) pairs and its database, with libpq's defaults filled in.

    A unix socket, `localhost`, 127.0.0.1 and ::1 all count as the same local server.
    """
    from psycopg.conninfo import conninfo_to_dict

    params = conninfo_to_dict(dsn)
    hosts = str(params.get("host") or params.get("hostaddr") or "").split(",")
    ports = str(params.get("port") or "").split(",")
    user = str(params.get("user") or getpass.getuser())
    database = str(params.get("dbname") or user)
    found = set()
    for index, host in enumerate(hosts):
        port_text = (ports[index] if index < len(ports) else ports[-1]).strip() or "5432"
        host = host.strip().lower()
        found.add(("local" if host in _LOCAL_HOSTS or host.startswith("/") else host, int(port_text)))
    return found, database


def _target(value: Any) -> Any:
    # `ephemeral` is held as None, so a mapping's mistakes are reported against DsnTarget alone
    # (a union would add "input should be 'ephemeral'" to every one of them).
    if value == "ephemeral":
        return None
    if not isinstance(value, dict):
        raise ValueError(f"target {value!r}: use `ephemeral` or a mapping {{dsn: ...}} of a scratch database")
    return value


_TARGET_SCHEMA = WithJsonSchema(
    {
        "anyOf": [
            {"const": "ephemeral", "description": "a throwaway local PostgreSQL opsproof starts and removes"},
            DsnTarget.model_json_schema(),
        ]
    }
)


def _work_dir(path: Path | None, info: ValidationInfo) -> Path | None:
    """A directory that exists; relative to the profile's folder, like every path in a profile."""
    if path is None:
        return None
    base = (info.context or {}).get("profile_dir")
    if not path.is_absolute() and base is not None:
        path = Path(base) / path
    if not path.is_dir():
        raise ValueError(f"work_dir {str(path)!r} is not a directory")
    return path


class DrillTarget(Item):
    """A restore drill of one `backups` item: restore, count, assert, time."""

    backup: Name = Field(description="the name of the `backups` item whose backup is restored")
    choose: Annotated[Choose, BeforeValidator(_choose)] = Field(
        "newest",
        description="which backup: newest, oldest (the oldest still kept) or random (so drills do not "
        "always test the easiest case)",
    )
    target: Annotated[DsnTarget | None, BeforeValidator(_target), _TARGET_SCHEMA] = Field(
        "ephemeral",  # validated into None (see _target)
        validate_default=True,
        description="ephemeral: a throwaway local PostgreSQL opsproof starts and removes; or {dsn: ...}",
    )
    expect: DrillExpect = Field(default_factory=DrillExpect)
    sql: Queries = Field(
        default_factory=list, description="read-only assertions on the restored database (as postgres queries)"
    )
    recency: Recency | None = Field(None, description="{table, column}: where the newest data is (for rpo)")
    rto: AgeLimit | None = Field(None, description="the whole drill's wall-clock time: 4h or {warn: 2h, fail: 4h}")
    rpo: AgeLimit | None = Field(None, description="the age of the newest data (needs recency): 1h or {warn, fail}")
    max_duration: PositiveDuration | None = Field(
        None,
        description="the drill is stopped (and cleaned up) after this; default 6h, or 1.5 x rto's fail "
        "limit when that is longer",
    )
    jobs: StrictInt | None = Field(
        None, ge=1, le=64, description="parallel pg_restore jobs for custom-format archives (default: up to 4)"
    )
    work_dir: Annotated[Path | None, Field(description="where the fetched archive and the throwaway cluster go")] = None

    @field_validator("work_dir")
    @classmethod
    def _work_dir_exists(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        return _work_dir(value, info)

    @model_validator(mode="after")
    def _consistent(self) -> DrillTarget:
        if self.rpo is not None and self.recency is None:
            raise ValueError("rpo needs recency: {table, column}: the column whose newest value is the recovery point")
        if self.recency is not None and self.recency.against == "now" and self.choose != "newest":
            raise ValueError(
                f"recency.against: now measures what a restore now would lose, which only the newest backup "
                f"says; with choose: {self.choose} use against: backup"
            )
        return self

    @property
    def tables(self) -> dict[str, int]:
        """`expect.tables`: the checks run once per table."""
        return self.expect.tables

    @property
    def is_ephemeral(self) -> bool:
        return self.target is None

    @property
    def recency_against(self) -> Literal["now", "backup"]:
        assert self.recency is not None
        if self.recency.against is not None:
            return self.recency.against
        return "now" if self.choose == "newest" else "backup"

    @property
    def time_limit(self) -> float:
        """The bound on the whole drill, in seconds."""
        if self.max_duration is not None:
            return self.max_duration
        rto_fail = self.rto.fail if self.rto is not None and self.rto.fail is not None else 0.0
        return max(DEFAULT_MAX_DURATION_S, MAX_DURATION_RTO_FACTOR * rto_fail)

    def source_clash(self, sources: list[PostgresTarget]) -> str | None:
        """Why the dsn target is one of the profile's `postgres` items (same host, port and database), or None.

        A drill overwrites its target: pointing it at a monitored database is refused.
        """
        if self.target is None:
            return None
        ours, database = self.target.endpoints()
        for source in sources:
            theirs, their_database = dsn_endpoints(source.dsn)
            if database == their_database and ours & theirs:
                host, port = sorted(ours & theirs)[0]
                return (
                    f"the target is the database of postgres item {source.name!r} ({host}:{port}/{database}): "
                    "a drill restores into a scratch database, never into a source"
                )
        return None


KIND = Kind(
    name="drills",
    target=DrillTarget,
    probe="opsproof.probes.drills",
    checks="checks/dr/test_drills.py",
    cadence="monthly",
    areas=("dr",),
    controls={
        # Restore drills test the recovery plan: A1.3, information backup and ICT continuity.
        "drills": ("SOC2:A1.3", "SOC2:A1.2", "ISO27001:A.8.13", "ISO27001:A.5.30", "SOX-ITGC:OPS"),
    },
)
