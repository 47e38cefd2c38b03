"""Restore drills: choose a backup, restore it, verify it, time it, and always clean up.

A drill runs in five timed phases, each with start and end timestamps in the facts:

1. **choose**: list the `backups` item's store and pick the newest, the oldest still
   kept, or a random backup;
2. **prepare**: start a throwaway PostgreSQL (`ephemeral`, opsproof.local.postgres), or connect
   to the scratch database of `target.dsn`, refuse it if it is one of the profile's
   `postgres` items or already holds user tables (unless `allow_overwrite`, which
   empties it first);
3. **fetch** and 4. **restore**: stream the backup into psql, or fetch a custom-format
   archive and run pg_restore (opsproof.backup.restore); a plain dump's fetch and restore
   overlap, so the phases do too;
5. **verify**: in one read-only session, exact `count(*)` of each expected table, the
   newest value of the recency column, and each `sql` assertion (the postgres kind's
   query machinery).

The measured RTO is the wall clock from the start of choose to the end of verify. The
cleanup that follows (the cluster stopped, the drill's folder removed) is timed and
recorded too, but is not part of the RTO. Drills run one at a time: two restores
sharing the machine would each measure the other's load in their RTO.

Work that blocks (listing the store, starting the cluster, the restore) runs in a
thread of its own, with a CancelToken the event loop uses to stop it: on the drill's
`max_duration`, or when the run is interrupted, the restore tools are killed, the
thread unwinds, and the cleanup runs before the facts are reported.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import math
import os
import random
import time
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from pydantic import Field

from opsproof.backup.deadline import deadline
from opsproof.backup.drill_steps import (
    CancelToken,
    DrillError,
    Phase,
    Phases,
    Stage,
    in_thread,
)
from opsproof.backup.opening import (
    BackupFormat,
    Fetch,
    OpenedBackup,
    open_backup,
)
from opsproof.backup.restore import (
    EphemeralCluster,
    RestoreReport,
    RestoreTarget,
    default_jobs,
    make_drill_dir,
    password_file,
    record_fetch,
    remove_drill_dir,
    restore_backup,
)
from opsproof.backup.store import BackupStore, StoredObject, StoreError, store_for
from opsproof.local.postgres import LocalPgError, PgBinaries, find_binaries
from opsproof.probes import Facts, ProbeContext, ProbeKind, each_as_done, utc_iso
from opsproof.probes.postgres import PostgresFacts, Session
from opsproof.probes.postgres_describe import (
    QueryResult,
    SectionError,
    describe_connect_error,
    dsn_without_password,
    scrub_postgres_error,
)
from opsproof.targets.backups import BackupsTarget
from opsproof.targets.drills import DrillTarget, DsnTarget
from opsproof.targets.postgres import PostgresTarget
from opsproof.units import format_duration

T = TypeVar("T")
TABLES_SHOWN = 20
ORPHAN_POLL_S = 1.0
RECENCY_TYPES = ("timestamp with time zone", "timestamp without time zone", "date")

USER_TABLES_SQL = """select n.nspname::text, c.relname::text
from pg_class c join pg_namespace n on n.oid = c.relnamespace
where c.relkind in ('r', 'p', 'm', 'f')
  and n.nspname not in ('pg_catalog', 'information_schema')
  and n.nspname not like 'pg\\_toast%' and n.nspname not like 'pg\\_temp%'
  and not exists (select 1 from pg_depend d
                  where d.classid = 'pg_class'::regclass and d.objid = c.oid and d.deptype = 'e')
order by 1, 2
"""
# Schemas a scratch database is emptied of (allow_overwrite): all but the system's and extensions'.
USER_SCHEMAS_SQL = """select n.nspname::text from pg_namespace n
where n.nspname not in ('pg_catalog', 'information_schema')
  and n.nspname not like 'pg\\_toast%' and n.nspname not like 'pg\\_temp%'
  and not exists (select 1 from pg_depend d
                  where d.classid = 'pg_namespace'::regclass and d.objid = n.oid and d.deptype = 'e')
order by 1
"""
SLOTS_SQL = """select current_setting('max_connections')::int
       - current_setting('superuser_reserved_connections')::int
       - (select count(*) from pg_stat_activity where backend_type = 'client backend')::int,
       current_setting('server_version'), current_database()::text, current_user::text
"""


class DrillFacts(Facts):
    """What one drill did: the backup it used, every phase, what the restored database holds."""

    store: str = Field(description="where the backups item's backups are (s3://bucket/prefix or a folder)")
    choose: str
    candidates: int | None = Field(None, description="backups matching the item's pattern")
    backup: dict[str, Any] | None = Field(None, description="the backup restored: name, key, size, time, sha256")
    into: dict[str, Any] = Field(default_factory=dict, description="the restore target: kind, server, binaries")
    stage: Stage | None = Field(None, description="the phase the drill stopped in, when it stopped early")
    misconfigured: bool = Field(False, description="stopped by the set-up, not the backup's or target's state")
    restored: bool = False
    phases: list[dict[str, Any]] = Field(default_factory=list)
    rto_s: float | None = Field(None, description="wall clock from the start of choose to the end of verify")
    restore: dict[str, Any] = Field(default_factory=dict, description="tool, format, jobs, bytes, its output")
    tables: dict[str, int] = Field(default_factory=dict, description="exact row counts of the expected tables")
    table_errors: dict[str, SectionError] = Field(default_factory=dict)
    present_tables: list[str] = Field(default_factory=list, description=f"the first {TABLES_SHOWN} restored tables")
    present_table_count: int | None = None
    recency: dict[str, Any] | None = None
    recency_error: SectionError | None = None
    queries: dict[str, QueryResult] = Field(default_factory=dict)
    verify_error: SectionError | None = Field(None, description="the restored database could not be read")
    cleanup: dict[str, Any] = Field(default_factory=dict, description="what was stopped and removed, how long it took")

    def observed(self) -> dict[str, Any]:
        # What every record of the drill shows; each check adds the measures it is about.
        shown: dict[str, Any] = {"reached": self.reached, "restored": self.restored}
        for key in ("backup", "timed_out", "failure", "stage", "rto_s"):
            value = getattr(self, key)
            if value not in (None, False):
                shown[key] = value
        if self.into:
            shown["into"] = self.into.get("shown")
        shown["elapsed_s"] = round(self.elapsed_s, 4)
        return shown

    def phase(self, name: str) -> dict[str, Any] | None:
        return next((p for p in self.phases if p["name"] == name), None)


def _phase_dict(phase: Phase) -> dict[str, Any]:
    shown: dict[str, Any] = {"name": phase.name, "started_at": utc_iso(phase.started)}
    if phase.finished is not None:
        shown["finished_at"] = utc_iso(phase.finished)
        shown["seconds"] = round(phase.seconds or 0.0, 3)
    else:
        shown["finished_at"] = None
    return {**shown, **phase.detail}


# -- one drill -------------------------------------------------------------------------------


class Drill:
    """One drill's state while it runs: what it made (to clean up) and what it found (the facts)."""

    def __init__(self, item: DrillTarget, backups: BackupsTarget, ctx: ProbeContext, facts: DrillFacts) -> None:
        self.item = item
        self.backups = backups
        self.ctx = ctx
        self.facts = facts
        self.timeout = ctx.profile.timeout_of(item)
        self.phases = Phases()
        self.token = CancelToken()
        self.stage: Stage = "choose"
        self.deadline = time.monotonic() + item.time_limit
        self.drill_dir: Path | None = None
        self.cluster: EphemeralCluster | None = None
        self.dsn_password: str | None = None
        self.fetch = Fetch()  # filled while the backup is read: its size and sha256, even if the restore fails
        self.opened: OpenedBackup | None = None
        self.restoring: BackupFormat | None = None  # set when the restore into the target begins

    # -- the phases --

    async def run(self) -> None:
        store, chosen = await self.choose()
        self.stage = "fetch"
        # The first bytes say the format before any cluster starts; the rest streams during the restore.
        self.opened = opened = await self.thread(
            lambda: open_backup(store, chosen, self.token, self.fetch, self.deadline)
        )
        self.stage = "prepare"
        with self.phases.timing("prepare"):
            binaries = await self.thread(_binaries)
            self.facts.into["binaries"] = {"bindir": str(binaries.bindir), "source": binaries.source}
            self.drill_dir = await self.thread(self.make_dir)
            if self.item.target is None:
                target = await self.prepare_ephemeral(binaries)
            else:
                target = await self.prepare_dsn(self.item.target)
        self.stage = "restore"
        self.restoring = opened.format
        drill_dir = self.drill_dir
        report = await self.thread(lambda: restore_backup(opened, target, binaries, drill_dir, self.token, self.phases))
        self.facts.restored = True
        self.facts.restore = _report(report)
        assert self.facts.backup is not None
        self.facts.backup["format"] = report.format
        self.stage = "verify"
        with self.phases.timing("verify"):
            await self.verify(target)

    async def choose(self) -> tuple[BackupStore, StoredObject]:
        backups = self.backups
        with self.phases.timing("choose") as phase:
            # One attempt per store request (backup_store): a store that does not answer costs `timeout`.
            store = await self.thread(lambda: store_for(backups, self.timeout))
            listing = time.perf_counter()
            try:
                at = min(self.deadline, time.monotonic() + self.timeout)
                found = await self.thread(lambda: _list_by(store, backups.pattern, backups.max_listed, at))
            except StoreError as exc:
                phase.detail["listing_s"] = round(time.perf_counter() - listing, 3)
                raise DrillError(
                    f"listing the backups failed: {exc}",
                    stage="choose",
                    misconfigured=exc.denied,
                    timed_out=exc.timed_out,
                ) from None
            self.facts.reached = True
            self.facts.candidates = len(found)
            if not found:
                raise DrillError(f"no backup matches {backups.pattern!r} in {backups.location}", stage="choose")
            index = _pick(len(found), self.item.choose)
            chosen = found[index]
            phase.detail.update(
                candidates=len(found), chosen=chosen.name, listing_s=round(time.perf_counter() - listing, 3)
            )
        newest_rank = len(found) - index  # 1 = the newest
        self.facts.backup = {
            "name": chosen.name,
            "key": chosen.key,
            "location": backups.location,
            "size": chosen.size,
            "modified": utc_iso(chosen.modified),
            "age_s": round(max(0.0, time.time() - chosen.modified), 3),
            "rank": f"{_ordinal(newest_rank)} newest of {len(found)}",
        }
        if chosen.etag:
            self.facts.backup["etag"] = chosen.etag
        return store, chosen

    def make_dir(self) -> Path:
        try:
            return make_drill_dir(self.item.work_dir)
        except OSError as exc:
            where = self.item.work_dir or "the temp dir"
            raise DrillError(
                f"cannot make the drill's folder in {where}: {(exc.strerror or str(exc)).lower()}",
                stage="prepare",
                misconfigured=True,
            ) from None

    async def prepare_ephemeral(self, binaries: PgBinaries) -> RestoreTarget:
        assert self.drill_dir is not None
        jobs = self.item.jobs or default_jobs()
        self.cluster = cluster = EphemeralCluster(self.drill_dir, jobs, binaries)
        try:
            target = await self.thread(cluster.start)
            version = await self.thread(cluster.version)
        except LocalPgError as exc:
            raise DrillError(
                f"the throwaway PostgreSQL did not start: {exc}", stage="prepare", misconfigured=True
            ) from None
        self.facts.into.update(kind="ephemeral", shown=target.shown, server_version=version, jobs=jobs)
        return target

    async def prepare_dsn(self, wanted: DsnTarget) -> RestoreTarget:
        import psycopg

        assert self.drill_dir is not None
        clash = self.item.source_clash(self.ctx.profile.postgres)
        if clash is not None:
            raise DrillError(clash, stage="prepare", misconfigured=True)
        shown = self.ctx.redactor.redact(dsn_without_password(wanted.dsn))
        self.facts.into.update(kind="dsn", shown=shown, dsn=shown)
        self.dsn_password = wanted.password or _password_of(wanted.dsn)
        conn = await self.connect(wanted.dsn, self.dsn_password, autocommit=True)
        try:
            async with asyncio.timeout(self.timeout * 2):
                free, version, database, user = (await (await conn.execute(SLOTS_SQL)).fetchall())[0]
                tables = [_table_label(s, t) for s, t in await (await conn.execute(USER_TABLES_SQL)).fetchall()]
            self.facts.into.update(server_version=version, database=database, user=user, user_tables_before=len(tables))
            if tables and not wanted.allow_overwrite:
                raise DrillError(
                    f"the scratch database {database} already holds {len(tables)} user table(s) "
                    f"({_some(tables)}): a drill restores into an empty database; empty it, or set "
                    "target.allow_overwrite: true to let the drill empty it first",
                    stage="prepare",
                    misconfigured=True,
                )
            if tables:
                self.facts.into["emptied_schemas"] = await self.empty(conn)
        except TimeoutError:
            raise DrillError(
                f"the scratch database did not answer within {format_duration(self.timeout * 2)}",
                stage="prepare",
                timed_out=True,
            ) from None
        except psycopg.Error as exc:
            said = str(exc).strip()
            message = scrub_postgres_error(
                said.splitlines()[0] if said else type(exc).__name__, self._pg(), self.ctx.redactor
            )
            raise DrillError(f"the scratch database refused: {message}", stage="prepare", misconfigured=True) from None
        finally:
            await conn.close()
        jobs = self.item.jobs or max(1, min(default_jobs(), int(free) - 2))
        self.facts.into["jobs"] = jobs
        env = _dsn_env(self.timeout)
        if self.dsn_password:
            env["PGPASSFILE"] = str(password_file(self.drill_dir, self.dsn_password))
        return RestoreTarget(conninfo=dsn_without_password(wanted.dsn), env=env, jobs=jobs, shown=shown)

    async def empty(self, conn: Any) -> list[str]:
        """Drop every user schema (allow_overwrite), then give the database back its `public` schema."""
        from psycopg import sql

        schemas = [row[0] for row in await (await conn.execute(USER_SCHEMAS_SQL)).fetchall()]
        async with conn.transaction():
            for schema in schemas:
                await conn.execute(sql.SQL("drop schema {} cascade").format(sql.Identifier(schema)))
            await conn.execute("create schema if not exists public")
        return schemas

    async def verify(self, target: RestoreTarget) -> None:
        import psycopg

        budget = max(1.0, self.deadline - time.monotonic())
        password = self.dsn_password if self.item.target is not None else None
        dsn = self.item.target.dsn if self.item.target is not None else target.conninfo
        try:
            conn = await self.connect(dsn, password, autocommit=False, statement_timeout=budget)
        except DrillError as exc:
            self.facts.verify_error = SectionError(message=str(exc), timed_out=exc.timed_out, session_lost=True)
            return
        pg_target = PostgresTarget(name=self.item.name, dsn=dsn, password=password, queries=self.item.sql)
        pg_facts = PostgresFacts(target=self.item.name, reached=True, dsn=target.shown)
        session = Session(conn, pg_target, budget, pg_facts, self.ctx.redactor)
        try:
            await conn.set_read_only(True)
            error = await session.section("tables", lambda: self._present(session), savepoint=False)
            if error is not None:
                self.facts.verify_error = error
                return
            for table in self.item.expect.tables:
                error = await session.section(f"table:{table}", functools.partial(self._count, session, table))
                if error is not None:
                    self.facts.table_errors[table] = error
            if self.item.recency is not None:
                error = await session.section("recency", lambda: self._recency(session))
                if error is not None:
                    self.facts.recency_error = error
            for query in self.item.sql:
                self.facts.queries[query.name] = await session.query(query)
            if session.lost is None:
                with contextlib.suppress(TimeoutError, psycopg.Error):
                    async with asyncio.timeout(self.timeout):
                        await conn.rollback()
        finally:
            await conn.close()

    async def _present(self, session: Session) -> None:
        # UTC, so a `timestamp without time zone` recency column is read as UTC.
        await session.rows("select set_config('TimeZone', 'UTC', false)")
        tables = [_table_label(s, t) for s, t in await session.rows(USER_TABLES_SQL)]
        self.facts.present_table_count = len(tables)
        self.facts.present_tables = tables[:TABLES_SHOWN]

    async def _count(self, session: Session, table: str) -> None:
        from psycopg import sql

        ((count,),) = await _rows(session, sql.SQL("select count(*) from {}").format(_identifier(table)))
        self.facts.tables[table] = int(count)

    async def _recency(self, session: Session) -> None:
        """max(column) of the recency table; a missing table or column, or a wrong type, is recorded."""
        from psycopg import sql

        recency = self.item.recency
        assert recency is not None and self.facts.backup is not None
        table = _identifier(recency.table)
        rows = await session.rows(
            "select c.oid is not null, format_type(a.atttypid, a.atttypmod) "
            "from (select to_regclass(%s) as oid) c "
            "left join pg_attribute a on a.attrelid = c.oid and a.attname = %s and not a.attisdropped",
            [table.as_string(session.conn), recency.column],
        )
        exists, column_type = rows[0]
        shown: dict[str, Any] = {"table": recency.table, "column": recency.column, "against": self.item.recency_against}
        self.facts.recency = shown
        if not exists:
            message = f"table {recency.table} does not exist in the restored database"
            self.facts.recency_error = SectionError(message=message, sqlstate="42P01", missing_object=True)
            return
        if column_type is None:
            message = f"column {recency.column} does not exist in table {recency.table}"
            self.facts.recency_error = SectionError(message=message, sqlstate="42703", missing_object=True)
            return
        shown["type"] = column_type
        if column_type not in RECENCY_TYPES:
            message = (
                f"column {recency.table}.{recency.column} is of type {column_type}: recency needs a "
                "timestamp, timestamptz or date column"
            )
            self.facts.recency_error = SectionError(message=message)
            return
        query = sql.SQL(
            "select max({c})::timestamptz::text, extract(epoch from max({c})::timestamptz)::float8 from {t}"
        )
        ((newest, epoch),) = await _rows(session, query.format(c=sql.Identifier(recency.column), t=table))
        now = time.time()
        shown.update(newest=newest, measured_at=utc_iso(now))
        if epoch is None:
            return  # an empty table: the check says so
        shown["lag_now_s"] = round(now - epoch, 3)
        shown["lag_backup_s"] = round(_epoch_of(self.facts.backup["modified"]) - epoch, 3)
        shown["lag_s"] = max(0.0, shown["lag_now_s" if self.item.recency_against == "now" else "lag_backup_s"])

    # -- helpers --

    def _pg(self) -> PostgresTarget:
        assert self.item.target is not None
        return PostgresTarget(name=self.item.name, dsn=self.item.target.dsn, password=self.item.target.password)

    async def connect(
        self, dsn: str, password: str | None, *, autocommit: bool, statement_timeout: float | None = None
    ) -> Any:
        import psycopg

        params: dict[str, Any] = {
            "application_name": "opsproof-drill",
            "connect_timeout": max(2, math.ceil(self.timeout)),
            "autocommit": autocommit,
            "prepare_threshold": None,
        }
        if password is not None:
            params["password"] = password
        if statement_timeout is not None:
            params["options"] = f"-c statement_timeout={max(1, round(statement_timeout * 1000))}"
        try:
            async with asyncio.timeout(self.timeout):
                return await psycopg.AsyncConnection.connect(dsn, **params)
        except TimeoutError:
            shown = self.ctx.redactor.redact(dsn_without_password(dsn))
            raise DrillError(
                f"timed out after {format_duration(self.timeout)} connecting to {shown}",
                stage=self.stage,
                timed_out=True,
            ) from None
        except (psycopg.Error, OSError) as exc:
            message, rejected = describe_connect_error(exc)
            if self.item.target is not None:
                message = scrub_postgres_error(message, self._pg(), self.ctx.redactor)
            raise DrillError(message, stage=self.stage, misconfigured=rejected) from None

    async def thread(self, function: Callable[[], T]) -> T:
        return await in_thread(function, lambda: self.token.cancel(self.why_stopped()))

    def why_stopped(self) -> str:
        if time.monotonic() >= self.deadline - 0.05:
            return f"timed out after {format_duration(self.item.time_limit)} (max_duration)"
        return "the run was interrupted"

    async def clean_up(self) -> None:
        """Stop what the drill started and remove what it wrote; recorded in the facts."""
        started = time.time()
        done: dict[str, Any] = {}
        cluster, drill_dir, opened = self.cluster, self.drill_dir, self.opened
        if opened is not None:
            await in_thread(opened.close)
        if cluster is not None:
            await in_thread(cluster.stop)
            done["cluster_stopped"] = cluster.stopped
            done["cluster_removed"] = cluster.pg is None or not cluster.pg.root.exists()
        if drill_dir is not None:
            done["work_dir_removed"] = await in_thread(lambda: remove_drill_dir(drill_dir))
            done["work_dir"] = str(drill_dir)
        if self.item.target is not None:
            done["target_left"] = self.left_in_target()
        done["seconds"] = round(time.time() - started, 3)
        self.facts.cleanup = done

    def left_in_target(self) -> str:
        """What the scratch database holds now: it is never dropped."""
        emptied = "emptied (allow_overwrite), then " if self.facts.into.get("emptied_schemas") is not None else ""
        if self.facts.restored:
            return f"not dropped: {emptied}it holds the restored data"
        if self.restoring is None:
            return "not dropped: " + (emptied.removesuffix(", then ") if emptied else "the drill did not write to it")
        if self.restoring.kind == "plain" or self.facts.into.get("jobs") == 1:
            return f"not dropped: {emptied}nothing restored (the restore's transaction was rolled back)"
        return f"not dropped: {emptied}it may hold part of the data (a parallel pg_restore is not one transaction)"

    def fail(self, exc: DrillError) -> None:
        self.facts.failure = self.ctx.redactor.redact(str(exc))
        self.facts.stage = exc.stage
        self.facts.misconfigured = exc.misconfigured
        self.facts.timed_out = exc.timed_out

    def finish(self, started: float) -> None:
        facts = self.facts
        record_fetch(self.phases, self.fetch)
        if facts.backup is not None and self.fetch.started:
            facts.backup["sha256"] = self.fetch.sha256  # None unless the whole object was read
            facts.backup["bytes_read"] = self.fetch.bytes_read
        facts.phases = [_phase_dict(p) for p in self.phases.items]
        if facts.restored and facts.failure is None:
            facts.rto_s = _round(self.phases.wall_seconds())
        facts.elapsed_s = time.perf_counter() - started


async def _rows(session: Session, query: Any) -> list[Any]:
    """Session.rows for a composed statement (identifiers quoted by psycopg.sql)."""
    cur = await session.conn.execute(query)
    return list(await cur.fetchall())


def _binaries() -> PgBinaries:
    try:
        binaries = find_binaries()
        binaries.tool("psql")
        binaries.tool("pg_restore")
    except LocalPgError as exc:
        raise DrillError(str(exc), stage="prepare", misconfigured=True) from None
    return binaries


def _list_by(store: BackupStore, pattern: str, limit: int, at: float) -> list[StoredObject]:
    """The listing within its deadline: an S3 answer dripping past it is cut and said to have timed out."""
    with deadline(at) as watch:
        try:
            return store.list(pattern, limit)
        except StoreError:
            if watch.expired:
                why = "the drill's timeout or max_duration"
                raise StoreError(f"{store.location}: timed out ({why})", timed_out=True) from None
            raise


def _pick(count: int, choose: str) -> int:
    if choose == "oldest":
        return 0
    if choose == "random":
        return random.SystemRandom().randrange(count)
    return count - 1


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _table_label(schema: str, table: str) -> str:
    return table if schema == "public" else f"{schema}.{table}"


def _some(names: Sequence[str], shown: int = 5) -> str:
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more


def _identifier(table: str) -> Any:
    from psycopg import sql

    return sql.Identifier(*table.split(".", 1))


def _epoch_of(iso: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def _password_of(dsn: str) -> str | None:
    from psycopg.conninfo import conninfo_to_dict

    password = conninfo_to_dict(dsn).get("password")
    return str(password) if password else None


def _dsn_env(timeout: float) -> dict[str, str]:
    # The caller's PGPASSWORD would win over our password file: it is for some other database.
    env = {k: v for k, v in os.environ.items() if k not in ("PGPASSWORD", "PGPASSFILE")}
    return {**env, "PGAPPNAME": "opsproof-drill", "PGCONNECT_TIMEOUT": str(max(2, math.ceil(timeout)))}


def _report(report: RestoreReport) -> dict[str, Any]:
    return {
        "tool": report.tool,
        "format": report.format,
        "jobs": report.jobs,
        "bytes_read": report.fetch.bytes_read,
        "bytes_restored": report.bytes_restored,
        "statements_dropped": report.statements_dropped,
        "tool_output": report.tool_output or None,
    }


# -- the probe -------------------------------------------------------------------------------


async def drill_one(item: DrillTarget, ctx: ProbeContext, one_at_a_time: asyncio.Lock) -> DrillFacts:
    """Run one drill to the end, whatever happens; its facts say how far it got and why."""
    backups: BackupsTarget = ctx.profile.targets("backups")[item.backup]  # type: ignore[assignment]
    facts = DrillFacts(
        target=item.name,
        reached=False,
        store=backups.location,
        choose=item.choose,
        into={"kind": "ephemeral" if item.target is None else "dsn"},
    )
    async with one_at_a_time, ctx.limit:
        facts.probed_at = utc_iso(time.time())
        drill = Drill(item, backups, ctx, facts)
        started = time.perf_counter()
        try:
            async with asyncio.timeout(item.time_limit):
                await drill.run()
        except TimeoutError:
            drill.fail(DrillError(drill.why_stopped(), stage=drill.stage, timed_out=True))
        except DrillError as exc:
            drill.fail(exc)
        except Exception as exc:  # a bug or an unforeseen failure: this drill's error, not the whole run's
            message = f"the drill stopped unexpectedly: {type(exc).__name__}: {exc}"
            drill.fail(DrillError(message, stage=drill.stage, misconfigured=True))
        finally:
            await drill.clean_up()
            drill.finish(started)
    # Filled in field by field: validating the whole redacts every value, as the constructor would.
    return DrillFacts.model_validate(facts.model_dump())


async def gather_drills(targets: Sequence[DrillTarget], ctx: ProbeContext) -> AsyncIterator[DrillFacts]:
    """Run the drills one after another; yield each one's facts as it completes."""
    one_at_a_time = asyncio.Lock()
    drills = [asyncio.create_task(drill_one(t, ctx, one_at_a_time)) for t in targets]
    watch = asyncio.create_task(_stop_when_orphaned(drills))
    try:
        async for facts in each_as_done(drills):
            yield facts
    finally:
        watch.cancel()


async def _stop_when_orphaned(drills: Sequence[asyncio.Task[DrillFacts]]) -> None:
    """Stop (and clean up) the drills if the run that asked for them is gone.

    The probe process is a fork of the run; a run killed outright (SIGKILL, an OOM kill)
    cannot stop it, and a restore could go on for hours with nobody to report to.
    """
    parent = os.getppid()
    while True:
        await asyncio.sleep(ORPHAN_POLL_S)
        if os.getppid() != parent:
            for drill in drills:
                drill.cancel()
            return


PROBE: ProbeKind[DrillTarget, DrillFacts] = ProbeKind(
    name="drills",
    facts=DrillFacts,
    gather=gather_drills,
    imports=("psycopg", "boto3"),
    times_targets=True,  # the RTO
    cleans_up=True,  # _stop_when_orphaned: a run killed outright still gets its cluster stopped
)
