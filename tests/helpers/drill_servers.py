"""Real dumps and real PostgreSQL servers for the drill checks, and the proofs that nothing is left.

- `drill_dumps` (session): a database made the way production makes them (an owner role,
  grants to a reader, a second schema, a function whose body holds a GRANT line, a comment
  and a COPY row that read like statements), dumped by pg_dump in every format drills
  take; plus the same database with its events three days older (a stale backup) and a
  dump that sleeps in the middle of its restore (for timeouts and interrupts).
- `scratch_pg` (session): a server with a password-protected role `drill` owning an empty
  database per test (`scratch_pg.fresh()`), the target of `{dsn: ...}` drills.
- `work_dir`: a short private folder a drill puts its files and its throwaway cluster in,
  and `assert_nothing_left(work_dir)`: no process works in it, nothing is left in it.
"""

from __future__ import annotations

import gzip
import itertools
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from conftest import SECRET, Run, wait_for
from opsproof.backup.reaper import processes_under
from opsproof.local.postgres import LocalPostgres, local_postgres

PROJECTS = 500
ACCOUNTS = 50
EVENTS = 1000
INVOICES = 10
SCHEMA_VERSION = "abc123"
SLEEP_STATEMENT = b"SELECT pg_sleep(60);\n"


# Every table of the source database with its expected rows (a drill's `tables:`).
EVERY_TABLE = (
    f"{{projects: {PROJECTS}, accounts: {ACCOUNTS}, events: {EVENTS}, billing.invoices: {INVOICES}, notes: 1}}"
)


def backups_item(name: str, folder: Path, pattern: str) -> str:
    """A `backups` item whose files the drill restores."""
    return f"{{name: {name}, path: '{folder}', pattern: '{pattern}', max_age: 30d}}"


def assert_never_shown(run: Run, secret: str) -> None:
    """`secret` is in neither the run's output nor any file of its bundle."""
    assert secret not in run.output
    for path in run.bundle.rglob("*"):
        if path.is_file():
            assert secret not in path.read_text(errors="replace"), path.name


SOURCE_SQL = f"""
create table projects (id int primary key, name text not null, created_at timestamptz not null default now());
insert into projects select g, 'project ' || g, now() - (g || ' minutes')::interval from generate_series(1, {PROJECTS}) g;
create table accounts (id serial primary key, name text);
insert into accounts (name) select 'account ' || g from generate_series(1, {ACCOUNTS}) g;
create table events (id bigserial primary key, kind text not null, at timestamptz not null);
insert into events (kind, at) select 'e' || (g % 7), now() - (g || ' seconds')::interval
  from generate_series(1, {EVENTS}) g;
create table alembic_version (version_num varchar(32) primary key);
insert into alembic_version values ('{SCHEMA_VERSION}');
create table notes (body text);
insert into notes values ('GRANT ALL ON everything TO everyone;');
create schema billing;
create table billing.invoices (id int primary key, amount numeric(10, 2));
insert into billing.invoices select g, g * 10.5 from generate_series(1, {INVOICES}) g;
create function grant_in_body() returns text language plpgsql as $body$
begin
GRANT SELECT ON projects TO reader;
return 'ok';
end;
$body$;
comment on table projects is 'every project
GRANT SELECT ON projects TO reader;';
grant select on all tables in schema public to reader;
grant usage on schema billing to reader;
alter default privileges grant select on tables to reader;
"""


@dataclass(frozen=True)
class DrillDumps:
    """pg_dump output of the source database: plain, custom, and the variants tests stage."""

    plain: bytes
    custom: bytes
    stale_plain: bytes  # events three days older
    binaries_version: str
    created: bytes = b""  # pg_dump --create: CREATE DATABASE app, \connect app, COMMENT ON DATABASE...

    @property
    def plain_gz(self) -> bytes:
        return gzip.compress(self.plain, mtime=0)

    @property
    def custom_gz(self) -> bytes:
        return gzip.compress(self.custom, mtime=0)

    @property
    def stale_plain_gz(self) -> bytes:
        return gzip.compress(self.stale_plain, mtime=0)

    @property
    def restricted(self) -> bytes:
        """The plain dump fenced as pg_dump 17.6 and 16.10 write it (`\\restrict KEY` ... `\\unrestrict KEY`)."""
        header = b"--\n-- PostgreSQL database dump\n--\n\n"
        assert self.plain.startswith(header)
        key = b"Hn8yJd0ZkqfC3PbTZQ0oR1xW5uVvA9"
        body = self.plain[len(header) :]
        return header + b"\\restrict " + key + b"\n\n" + body + b"\n\\unrestrict " + key + b"\n\n"

    def with_line(self, command: bytes) -> bytes:
        """The plain dump with one line after its settings, as a tampered backup could hold."""
        marker = b"SET row_security = off;\n"
        return self.plain.replace(marker, marker + command + b"\n", 1)

    @property
    def slow_plain(self) -> bytes:
        """The plain dump with one statement that sleeps a minute, after its settings."""
        marker = b"SET row_security = off;\n"
        assert marker in self.plain
        return self.plain.replace(marker, marker + SLEEP_STATEMENT, 1)


def _dump(pg: LocalPostgres, database: str, *options: str) -> bytes:
    return subprocess.run(
        [pg.binaries.pg_dump, *options, "-d", pg.socket_conninfo(dbname=database)], capture_output=True, check=True
    ).stdout


@pytest.fixture(scope="session")
def drill_dumps() -> DrillDumps:
    with local_postgres(max_connections=10) as pg:
        pg.create_role("app_owner")
        pg.create_role("reader")
        pg.create_database("app", owner="app_owner")
        with pg.connect("app") as conn:
            conn.execute("set role app_owner")
            conn.execute(SOURCE_SQL)
        pg.execute("create database app_stale template app")
        pg.execute("update events set at = at - interval '3 days'", dbname="app_stale")
        pg.execute("comment on database app is 'the app''s data'")
        return DrillDumps(
            plain=_dump(pg, "app"),
            custom=_dump(pg, "app", "-Fc"),
            stale_plain=_dump(pg, "app_stale"),
            binaries_version=pg.binaries.version(),
            created=_dump(pg, "app", "--create"),
        )


@dataclass
class ScratchServer:
    """A server whose role `drill` (password SECRET) owns one empty database per test."""

    pg: LocalPostgres
    _names: Iterator[int] = field(default_factory=itertools.count)

    def fresh(self) -> str:
        name = f"scratch{next(self._names)}"
        self.pg.create_database(name, owner="drill")
        return name

    def dsn(self, database: str, password: str | None = None) -> str:
        secret = f":{password}" if password is not None else ""
        return f"postgresql://drill{secret}@127.0.0.1:{self.pg.port}/{database}"

    def tables(self, database: str) -> list[str]:
        rows = self.pg.execute(
            "select schemaname || '.' || tablename from pg_tables "
            "where schemaname not in ('pg_catalog', 'information_schema') order by 1",
            dbname=database,
        )
        return [row[0] for row in rows]


@pytest.fixture(scope="session")
def scratch_pg() -> Iterator[ScratchServer]:
    with local_postgres(max_connections=30, password_auth=True) as pg:
        pg.create_role("drill", password=SECRET)
        yield ScratchServer(pg)


# -- backups on disk -------------------------------------------------------------------------


def write_backups(folder: Path, backups: Sequence[tuple[str, bytes, float]]) -> Path:
    """Files (name, bytes, age in hours) with their mtime that many hours ago."""
    folder.mkdir(parents=True, exist_ok=True)
    now = time.time()
    for name, body, age_hours in backups:
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(body)
        when = now - age_hours * 3600
        os.utime(path, (when, when))
    return folder


def truncated(body: bytes, keep: float = 0.6) -> bytes:
    return body[: int(len(body) * keep)]


def corrupted(body: bytes, at: float = 0.5, span: int = 64) -> bytes:
    """`span` bytes flipped in the middle (past any header, inside the data)."""
    start = int(len(body) * at)
    damaged = bytearray(body)
    for i in range(start, min(start + span, len(damaged))):
        damaged[i] ^= 0x5A
    return bytes(damaged)


# -- nothing left behind ---------------------------------------------------------------------


@pytest.fixture
def work_dir() -> Iterator[Path]:
    """A short folder (a throwaway cluster's socket path must stay under 107 bytes) for drills' files."""
    path = Path(tempfile.mkdtemp(prefix="odw-", dir="/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def leftovers(work_dir: Path) -> tuple[dict[int, list[str]], list[str]]:
    """(processes whose arguments name a path in work_dir, entries left in it)."""
    return processes_under(str(work_dir)), sorted(p.name for p in work_dir.iterdir())


def assert_nothing_left(work_dir: Path, timeout: float = 0.0) -> None:
    """No postgres, psql or pg_restore works in work_dir and it is empty (waiting up to `timeout`)."""
    if timeout:
        wait_for(lambda: leftovers(work_dir) == ({}, []), f"nothing left in {work_dir}", timeout=timeout)
    processes, entries = leftovers(work_dir)
    assert processes == {}, f"processes left working in {work_dir}: {processes}"
    assert entries == [], f"left in {work_dir}: {entries}"


def postgres_processes_under(work_dir: Path) -> list[int]:
    return [pid for pid, argv in processes_under(str(work_dir)).items() if argv and argv[0].endswith("postgres")]


def drills_profile(backups: Sequence[str], drills: Sequence[str], *, extra: str = "", timeout: str = "5s") -> str:
    """A profile whose backups and drills items are given as YAML flow mappings."""
    backup_lines = "\n".join(f"  - {item}" for item in backups)
    drill_lines = "\n".join(f"  - {item}" for item in drills)
    return f"environment: test\ndefaults: {{timeout: {timeout}}}\nbackups:\n{backup_lines}\ndrills:\n{drill_lines}\n{extra}"
