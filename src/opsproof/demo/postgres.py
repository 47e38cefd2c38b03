"""The demo's PostgreSQL: the Scorpius `app` database on a throwaway local cluster.

It holds a migrated schema (`alembic_version`, runbook 004's migration check), some
projects and users, and a monitoring role `ops` (pg_monitor, read grants) whose password
is made up for each run and handed to the checks as a secret. One mildly interesting
state: the application's pool holds 15 of the 20 connections, so with the checks' own
session the connections check warns at 80% (runbook 003: "Set alert at 80% capacity").
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any

from opsproof.local.postgres import LocalPostgres, local_postgres

SCHEMA_VERSION = "4f2a9c1d7e3b"
PROJECTS = 50
AUDIT_EVENTS = 2000  # rows enough that a dump without them is visibly smaller (the weekly backups)
MAX_CONNECTIONS = 20
POOL_SESSIONS = 15  # the app's idle pool: 15 + the checks' session = 80% of 20 (3 more are reserved)


@dataclass(frozen=True)
class DemoPostgres:
    """What the demo profile needs: a DSN without password, and the password (a secret, via the environment)."""

    dsn: str
    password: str
    server: LocalPostgres

    @property
    def environment(self) -> dict[str, str]:
        return {"DEMO_PG_PASSWORD": self.password}

    @property
    def variables(self) -> dict[str, str]:
        """Plain values for `--var`: the DSN holds no secret."""
        return {"DEMO_PG_DSN": self.dsn}


def _create_schema(pg: LocalPostgres) -> None:
    with pg.connect("app") as conn:
        conn.execute("create table alembic_version (version_num varchar(32) primary key)")
        conn.execute("insert into alembic_version values (%s)", [SCHEMA_VERSION])
        conn.execute(
            "create table users (id serial primary key, email text not null unique, "
            "created_at timestamptz not null default now())"
        )
        conn.execute(
            "insert into users (email) select 'user' || n || '@scorpius.example' from generate_series(1, 12) n"
        )
        conn.execute(
            "create table projects (id serial primary key, owner_id int not null references users, "
            "name text not null, status text not null default 'active')"
        )
        conn.execute(
            "insert into projects (owner_id, name, status) "
            "select 1 + n %% 12, 'project ' || n, case when n %% 10 = 0 then 'archived' else 'active' end "
            "from generate_series(1, %s) n",
            [PROJECTS],
        )
        conn.execute(
            "create table audit_events (id bigserial primary key, at timestamptz not null, action text not null)"
        )
        conn.execute(
            "insert into audit_events (at, action) select now() - n * interval '1 minute', "
            "'project.update:' || md5(n::text) from generate_series(1, %s) n",
            [AUDIT_EVENTS],
        )
        conn.execute("grant select on alembic_version, users, projects, audit_events to ops")


@contextmanager
def serve_demo_postgres(**options: Any) -> Iterator[DemoPostgres]:
    """Start the demo cluster (options go to `local_postgres`); stop and remove it when the block ends."""
    password = secrets.token_urlsafe(18)
    with ExitStack() as stack:
        pg = stack.enter_context(local_postgres(max_connections=MAX_CONNECTIONS, **options))
        pg.create_role("ops", password=password, grants=("pg_monitor",))
        pg.create_role("app")
        pg.create_database("app", owner="app")
        _create_schema(pg)
        for _ in range(POOL_SESSIONS):
            # The app's pool: idle sessions of role `app` (the socket needs no password).
            conn = stack.enter_context(pg.connect("app", user="app", application_name="scorpius-api"))
            conn.execute("select 1")
        yield DemoPostgres(dsn=pg.dsn("ops", "app"), password=password, server=pg)
