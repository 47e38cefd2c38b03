"""The history store: every run's metadata and records, queried by period reports.

SQLite at `<report-dir>/history.sqlite` by default; PostgreSQL with `--history-dsn
postgresql://...` (or `$OPSPROOF_HISTORY_DSN`) for teams with many runners. The
bundles are the evidence and the history is an index of them: each run is recorded
from its sealed results.json (never from memory), with its bundle's name and
manifest hash, so `opsproof history rebuild` recreates exactly the same rows from
the bundles.

Concurrent runs never corrupt it: a run's rows go in one transaction (SQLite: WAL
and `BEGIN IMMEDIATE`, waiting up to 60 s for another writer; PostgreSQL: one
transaction, schema created under an advisory lock), and recording the same run
twice is a no-op. The attestations table (see attestations.py) is append-only: a
trigger refuses UPDATE and DELETE in both databases.

Tables: `runs` (one row per run), `records` (one per check record), `observations` (the numbers
records kept for `increase:` and `trend:`, see observations.py), `attestations`
and `attestation_evidence` (the evidence files, by sha256), `chain_heads` (in
PostgreSQL: each environment's newest bundle, shared by every runner), `opsproof_meta`.
"""

from __future__ import annotations

import contextlib
import json
import random
import sqlite3
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from opsproof.compliance.history_location import DSN_VARIABLE as DSN_VARIABLE
from opsproof.compliance.history_location import SQLITE_NAME as SQLITE_NAME
from opsproof.compliance.history_location import Location as Location
from opsproof.compliance.history_location import conninfo_parts as conninfo_parts
from opsproof.compliance.history_location import locate as locate
from opsproof.compliance.history_location import without_password as without_password
from opsproof.compliance.history_rows import (
    RECORD_COLUMNS,
    RUN_COLUMNS,
    CheckRows,
    RecordRow,
    RunRow,
    check_rows,
    run_row,
    sealed_by,
)
from opsproof.errors import OpsproofError
from opsproof.model.results import CheckRecord, Maintenance, Results, Run, Waiver
from opsproof.redaction import mask
from opsproof.units import utc_now

SCHEMA_VERSION = "1"
# How long a writer waits for another one (SQLite's busy timeout; PostgreSQL's lock_timeout).
WAIT_S = 60
ROWS_PER_BATCH = 1000  # records inserted per statement batch

_TABLES = (
    "CREATE TABLE IF NOT EXISTS opsproof_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    """CREATE TABLE IF NOT EXISTS runs (
        run_id TEXT PRIMARY KEY,
        environment TEXT NOT NULL,
        started_at TEXT NOT NULL,
        finished_at TEXT,
        status TEXT NOT NULL,
        exit_code INTEGER,
        markers TEXT,
        bundle TEXT NOT NULL,
        manifest_sha256 TEXT NOT NULL,
        signed_by TEXT,
        change_ticket TEXT,
        commit_sha TEXT,
        image_digest TEXT,
        upload TEXT,
        host TEXT,
        recorded_at TEXT NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS runs_by_time ON runs (environment, started_at)",
    """CREATE TABLE IF NOT EXISTS records (
        run_id TEXT NOT NULL REFERENCES runs (run_id),
        node_id TEXT NOT NULL,
        check_id TEXT NOT NULL,
        kind TEXT,
        target TEXT,
        cadence TEXT,
        severity TEXT,
        outcome TEXT NOT NULL,
        message TEXT,
        controls TEXT NOT NULL,
        waiver TEXT,
        started_at TEXT,
        maintenance TEXT,
        PRIMARY KEY (run_id, node_id)
    )""",
    "CREATE INDEX IF NOT EXISTS records_by_check ON records (check_id)",
    # The numbers a record kept for later runs' `increase:` and `trend:` (its `measures`), read by observations.py.
    """CREATE TABLE IF NOT EXISTS observations (
        run_id TEXT NOT NULL REFERENCES runs (run_id),
        environment TEXT NOT NULL,
        check_id TEXT NOT NULL,
        measure TEXT NOT NULL,
        value DOUBLE PRECISION NOT NULL,
        observed_at TEXT NOT NULL,
        -- one index serves the readers (a check's values in time order) and keeps a run's rows unique
        PRIMARY KEY (environment, check_id, observed_at, measure, run_id)
    )""",
    """CREATE TABLE IF NOT EXISTS attestations (
        seq {serial},
        environment TEXT NOT NULL,
        attestation_id TEXT NOT NULL,
        title TEXT,
        cadence TEXT NOT NULL,
        controls TEXT NOT NULL,
        attested_by TEXT NOT NULL,
        attested_at TEXT NOT NULL,
        note TEXT NOT NULL,
        evidence_name TEXT,
        evidence_sha256 TEXT,
        evidence_bytes BIGINT,
        host TEXT,
        os_user TEXT,
        previous_sha256 TEXT,
        entry_sha256 TEXT NOT NULL UNIQUE,
        change_ticket TEXT
    )""",
    "CREATE INDEX IF NOT EXISTS attestations_by_id ON attestations (environment, attestation_id, attested_at)",
    "CREATE TABLE IF NOT EXISTS attestation_evidence (sha256 TEXT PRIMARY KEY, content {blob} NOT NULL)",
    # The chain head of each environment when runners on many machines share one chain (evidence/chain_head.py).
    """CREATE TABLE IF NOT EXISTS chain_heads (
        environment TEXT PRIMARY KEY,
        bundle TEXT NOT NULL,
        manifest_sha256 TEXT NOT NULL,
        links BIGINT NOT NULL,
        advanced_at TEXT NOT NULL
    )""",
)
_SQLITE_GUARDS = (
    """CREATE TRIGGER IF NOT EXISTS attestations_no_update BEFORE UPDATE ON attestations
       BEGIN SELECT RAISE(ABORT, 'attestations are append-only'); END""",
    """CREATE TRIGGER IF NOT EXISTS attestations_no_delete BEFORE DELETE ON attestations
       BEGIN SELECT RAISE(ABORT, 'attestations are append-only'); END""",
)
_POSTGRES_GUARDS = (
    """CREATE OR REPLACE FUNCTION opsproof_append_only() RETURNS trigger LANGUAGE plpgsql AS
       $$ BEGIN RAISE EXCEPTION 'attestations are append-only'; END $$""",
    """CREATE OR REPLACE TRIGGER attestations_append_only BEFORE UPDATE OR DELETE ON attestations
       FOR EACH STATEMENT EXECUTE FUNCTION opsproof_append_only()""",
)
# pg_advisory_xact_lock key: "opsproof" as a number; serialises schema creation and appends.
# One column of each table, the newest a release added where it added one: all there, the schema is current.
_NEWEST_COLUMNS = (
    ("opsproof_meta", "value"),
    ("runs", "upload"),
    ("records", "maintenance"),
    ("observations", "value"),
    ("attestations", "change_ticket"),
    ("attestation_evidence", "content"),
    ("chain_heads", "advanced_at"),
)
_LOCK_KEY = 0x6F7073_70726F6F


def _enter_wal(conn: sqlite3.Connection) -> None:
    """Switch a store to WAL, waiting out other openers as the busy timeout would.

    Switching needs the read lock upgraded to a write lock; when two new connections both hold the
    read lock, SQLite answers "database is locked" at once rather than call the busy handler (waiting
    could deadlock), so runners that open a new store together retry here instead of failing.
    """
    deadline = time.monotonic() + WAIT_S
    pause = 0.005
    while True:
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
        time.sleep(pause * (1 + random.random()))  # jittered: the racers must not retry in step
        pause = min(pause * 2, 0.2)


class History:
    """One open connection to a history store; use as a context manager."""

    def __init__(self, location: Location, *, create: bool = True) -> None:
        """`create=False`: a reader (the attestation probe) that must not create a missing SQLite file."""
        self.location = location
        self._create = create
        self._conn: Any = None

    # -- connection -------------------------------------------------------------------------

    def __enter__(self) -> History:
        try:
            if self.location.kind == "sqlite":
                self._open_sqlite()
            else:
                self._open_postgres()
        except (sqlite3.Error, OSError) as exc:
            raise HistoryError(f"history {self.location.shown}: {exc}") from exc
        return self

    def __exit__(self, *exc: object) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _open_sqlite(self) -> None:
        path = Path(self.location.target)
        if not self._create and not path.exists():
            # Nothing recorded yet: an empty store, without leaving a file behind.
            self._conn = sqlite3.connect(":memory:", isolation_level=None)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            # Autocommit mode: transactions are explicit (BEGIN IMMEDIATE takes the write lock up front,
            # so two writers queue instead of deadlocking on a lock upgrade).
            self._conn = sqlite3.connect(path, timeout=WAIT_S, isolation_level=None)
            self._conn.execute(f"PRAGMA busy_timeout = {WAIT_S * 1000}")
            _enter_wal(self._conn)
            if not self._create:
                return  # a reader of a store someone created: WAL lets it read while a writer writes
        self._conn.execute("PRAGMA foreign_keys = ON")
        with self.transaction():
            for statement in (*_TABLES, *_SQLITE_GUARDS):
                self._conn.execute(statement.format(serial="INTEGER PRIMARY KEY AUTOINCREMENT", blob="BLOB"))
            if not self.has_column("attestations", "change_ticket"):  # a store made before change checklists
                self._conn.execute("ALTER TABLE attestations ADD COLUMN change_ticket TEXT")
            if not self.has_column("records", "maintenance"):  # a store from before maintenance windows
                self._conn.execute("ALTER TABLE records ADD COLUMN maintenance TEXT")
            self._conn.execute(
                "INSERT OR IGNORE INTO opsproof_meta (key, value) VALUES ('schema', ?)", (SCHEMA_VERSION,)
            )

    def _open_postgres(self) -> None:
        import psycopg

        try:
            # A connect_timeout in the DSN wins; else 10 s, never libpq's default of waiting forever.
            bound: dict[str, Any] = {} if "connect_timeout" in self.location.target else {"connect_timeout": 10}
            self._conn = psycopg.connect(self.location.target, autocommit=True, **bound)
        except psycopg.Error as exc:
            raise HistoryError(
                f"history {self.location.shown}: cannot connect: {_pg_message(exc, self.location)}"
            ) from None
        if not self._create and self._pg_schema_is_current():
            return  # a reader of a current store takes no lock: it never queues behind a runner's recording
        with self.transaction():
            self._conn.execute(f"SET LOCAL lock_timeout = '{WAIT_S}s'")
            self._conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
            for statement in (*_TABLES, *_POSTGRES_GUARDS):
                self._conn.execute(statement.format(serial="BIGSERIAL PRIMARY KEY", blob="BYTEA"))
            # Only when missing: ALTER TABLE takes an exclusive lock even when it has nothing to do,
            # and would queue every opening runner behind the appends of the others.
            if not self.has_column("attestations", "change_ticket"):
                self._conn.execute("ALTER TABLE attestations ADD COLUMN IF NOT EXISTS change_ticket TEXT")
            if not self.has_column("records", "maintenance"):
                self._conn.execute("ALTER TABLE records ADD COLUMN IF NOT EXISTS maintenance TEXT")
            self._conn.execute(
                "INSERT INTO opsproof_meta (key, value) VALUES ('schema', %s) ON CONFLICT DO NOTHING", (SCHEMA_VERSION,)
            )

    def _pg_schema_is_current(self) -> bool:
        """Whether every table and every column a newer opsproof added is there (else the opener adds them)."""
        wanted = _NEWEST_COLUMNS
        pairs = ", ".join("(%s, %s)" for _ in wanted)
        rows = self._conn.execute(
            f"SELECT count(*) FROM information_schema.columns WHERE (table_name, column_name) IN ({pairs})",
            [name for pair in wanted for name in pair],
        ).fetchall()
        return bool(rows[0][0] == len(wanted))

    def has_column(self, table: str, column: str) -> bool:
        """Whether a table has a column (a store written by an older opsproof may lack a newer one)."""
        if self.location.kind == "sqlite":
            return any(row[1] == column for row in self._conn.execute(f"PRAGMA table_info({table})").fetchall())
        rows = self.execute(
            "SELECT 1 FROM information_schema.columns WHERE table_name = ? AND column_name = ?", (table, column)
        )
        return bool(rows)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """One atomic unit: everything in it lands, or nothing does. Database errors become HistoryError."""
        errors = _database_errors(self.location.kind)
        try:
            if self.location.kind == "sqlite":
                self._conn.execute("BEGIN IMMEDIATE")
                try:
                    yield
                except BaseException:
                    self._conn.execute("ROLLBACK")
                    raise
                self._conn.execute("COMMIT")
            else:
                with self._conn.transaction():
                    yield
        except errors as exc:
            raise HistoryError(f"history {self.location.shown}: {_pg_message(exc, self.location)}") from exc

    def lock_appends(self) -> None:
        """Inside a transaction: serialise appends to a chain (SQLite's BEGIN IMMEDIATE already does)."""
        if self.location.kind == "postgres":
            self._conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY + 1,))

    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run one statement written with `?` placeholders; the rows it returns."""
        cursor = self._conn.execute(self._sql(sql), tuple(params))
        return list(cursor.fetchall()) if cursor.description else []

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        if not rows:
            return
        if self.location.kind == "sqlite":
            self._conn.executemany(sql, rows)
        else:
            with self._conn.cursor() as cursor:
                cursor.executemany(self._sql(sql), rows)

    def _sql(self, sql: str) -> str:
        return sql if self.location.kind == "sqlite" else sql.replace("?", "%s")

    @property
    def insert_or_ignore(self) -> tuple[str, str]:
        """(prefix, suffix) making an INSERT a no-op for a row that exists."""
        return ("INSERT OR IGNORE", "") if self.location.kind == "sqlite" else ("INSERT", " ON CONFLICT DO NOTHING")

    # -- runs -------------------------------------------------------------------------------

    def record_bundle(self, bundle: Path, manifest_sha256: str, upload: dict[str, Any] | None = None) -> bool:
        """Record one sealed bundle (its results.json) as a run; False when it was already recorded.

        Its checks are read one at a time (`results_json.read_streamed`), else whole, in a second transaction.
        """
        from opsproof.evidence.results_json import read_streamed

        manifest = json.loads((bundle / "manifest.json").read_text())
        try:
            head, checks = read_streamed(bundle / "results.json")
            with self.transaction():
                return self.insert_run(head, bundle.name, manifest_sha256, manifest, upload, checks)
        except ValueError:
            results = Results.model_validate_json((bundle / "results.json").read_text())
            with self.transaction():
                return self.insert_run(results, bundle.name, manifest_sha256, manifest, upload)

    def insert_run(
        self,
        results: Results,
        bundle: str,
        manifest_sha256: str,
        manifest: dict[str, Any],
        upload: dict[str, Any] | None,
        checks: Iterable[CheckRecord | CheckRows] | None = None,
    ) -> bool:
        """One run's rows; its records are `checks` when given (read as they go, or their rows), else its checks."""
        run = results.run
        if self.execute("SELECT 1 FROM runs WHERE run_id = ?", (run.id,)):
            return False
        self._insert_run_row(run_row(results, bundle, manifest_sha256, manifest), upload)
        self._insert_checks(run, results.checks if checks is None else checks)
        return True

    def begin_run(self, bundle: Path, known: Mapping[str, CheckRows] | None = None) -> str | None:
        """Inside a transaction, before the bundle is sealed: the rows of its written results.json.

        The run's row is written without what only the seal makes (the manifest's digest, the
        signer): `finish_run`, in the same transaction, adds them, so no reader ever sees the run
        without them. The run's id; None when the run is recorded already. A results.json that
        cannot be read one check at a time raises ValueError: the caller then records the sealed
        bundle with `record_bundle`, which reads it whole.
        `known`: a check's rows made ahead (`check_rows`) of its line of results.json, by the line's
        text: a line of exactly that text is not read again (at 1,000 checks, reading them was ~8 ms).
        """
        from opsproof.evidence.results_json import read_streamed

        head, checks = read_streamed(bundle / "results.json", known)
        # Unsealed: no digest, no signer (an empty manifest) and no upload yet.
        return head.run.id if self.insert_run(head, bundle.name, "", {}, None, checks) else None

    def finish_run(self, run_id: str, manifest_sha256: str, manifest: dict[str, Any]) -> None:
        """The sealed run's digest and signer, in the transaction `begin_run` wrote its rows in."""
        self.execute(
            "UPDATE runs SET manifest_sha256 = ?, signed_by = ?, recorded_at = ? WHERE run_id = ?",
            (*sealed_by(manifest_sha256, manifest), utc_now(), run_id),
        )

    def _insert_run_row(self, row: tuple[Any, ...], upload: dict[str, Any] | None) -> None:
        prefix, suffix = self.insert_or_ignore
        self.execute(
            f"{prefix} INTO runs ({', '.join(RUN_COLUMNS)}, upload, recorded_at) "
            f"VALUES ({', '.join('?' for _ in RUN_COLUMNS)}, ?, ?){suffix}",
            (*row, json.dumps(upload) if upload else None, utc_now()),
        )

    def hold_records(self) -> bool:
        """Make this connection's own table of records' rows written ahead of their run; False where there is none.

        SQLite: a TEMP table, which no other connection sees and which takes no lock on the store
        (its writers go on meanwhile), gone with the connection: rows held there and never
        inserted (a run that is not sealed) leave nothing. `hold_record` fills it as checks end;
        `begin_run` copies a run's rows from it, one statement for each run of them.
        """
        if self.location.kind != "sqlite":
            return False  # PostgreSQL: a round trip for each record, while a check waits; rows are written at the end
        columns = ", ".join(RECORD_COLUMNS)  # no types: the values are kept as given, as the records table gets them
        self._conn.execute(f"CREATE TEMP TABLE IF NOT EXISTS held_records (held INTEGER PRIMARY KEY, {columns})")
        return True

    def hold_record(self, held: int, record: tuple[Any, ...]) -> None:
        """A record's row (RECORD_COLUMNS) written ahead as number `held` (see `hold_records`)."""
        marks = ", ".join("?" for _ in record)
        self._conn.execute(f"INSERT INTO temp.held_records VALUES (?, {marks})", (held, *record))

    def _insert_checks(self, run: Run, checks: Iterable[CheckRecord | CheckRows]) -> None:
        prefix, suffix = self.insert_or_ignore
        columns = ", ".join(RECORD_COLUMNS)
        records_sql = (
            f"{prefix} INTO records (run_id, {columns}) VALUES (?, {', '.join('?' for _ in RECORD_COLUMNS)}){suffix}"
        )
        held_sql = (
            f"{prefix} INTO records (run_id, {columns}) SELECT ?, {columns} FROM temp.held_records "
            f"WHERE held BETWEEN ? AND ? ORDER BY held{suffix}"
        )
        rows: list[tuple[Any, ...]] = []
        held: list[int] = []  # the first and last of a run of rows held ahead, in the order the checks come
        observed: list[tuple[Any, ...]] = []

        def write() -> None:  # what is pending, in the order the checks came
            if rows:
                self.executemany(records_sql, rows)
                rows.clear()
            if held:
                self.execute(held_sql, (run.id, *held))
                held.clear()

        for check in checks:
            made = check if isinstance(check, CheckRows) else check_rows(check)
            if made.held is None:
                if held:
                    write()
                rows.append((run.id, *made.record))
            elif held and made.held == held[1] + 1:
                held[1] = made.held
            else:
                write()
                held[:] = [made.held, made.held]
            if made.measures:
                observed.extend(made.observations(run))
            if len(rows) == ROWS_PER_BATCH:  # in batches: a 10,000-check run's rows are never all held
                write()
        write()
        self.executemany(
            f"{prefix} INTO observations (run_id, environment, check_id, measure, value, observed_at) "
            f"VALUES (?, ?, ?, ?, ?, ?){suffix}",
            observed,
        )

    def set_upload(self, run_id: str, upload: dict[str, Any]) -> None:
        with self.transaction():
            self.execute("UPDATE runs SET upload = ? WHERE run_id = ?", (json.dumps(upload), run_id))

    def environments(self) -> list[str]:
        rows = self.execute("SELECT DISTINCT environment FROM runs UNION SELECT DISTINCT environment FROM attestations")
        return sorted(str(r[0]) for r in rows)

    def runs(self, environment: str | None = None, start: str | None = None, end: str | None = None) -> list[RunRow]:
        """Runs (of an environment, or all) started in [start, end) (ISO 8601 UTC strings), oldest first."""
        where, params = ["1 = 1"], []
        for clause, value in (("environment = ?", environment), ("started_at >= ?", start), ("started_at < ?", end)):
            if value is not None:
                where.append(clause)
                params.append(value)
        rows = self.execute(
            f"SELECT {', '.join(RUN_COLUMNS)}, upload FROM runs WHERE {' AND '.join(where)} "
            "ORDER BY started_at, run_id",
            params,
        )
        return [
            RunRow(**dict(zip(RUN_COLUMNS, row, strict=False)), upload=json.loads(row[-1]) if row[-1] else None)
            for row in rows
        ]

    def records(self, environment: str, start: str, end: str) -> list[RecordRow]:
        """Check records of an environment's runs started in [start, end), in run order."""
        rows = self.execute(
            "SELECT r.run_id, u.started_at, r.check_id, r.kind, r.target, r.cadence, r.severity, r.outcome, "
            "r.message, r.controls, r.waiver, r.maintenance FROM records r "
            "JOIN runs u ON u.run_id = r.run_id WHERE u.environment = ? AND u.started_at >= ? AND u.started_at < ? "
            "ORDER BY u.started_at, r.run_id, r.check_id",
            (environment, start, end),
        )
        found = []
        for run_id, started_at, check_id, kind, target, cadence, severity, outcome, message, *stored in rows:
            controls, waiver, maintenance = stored
            found.append(
                RecordRow(
                    run_id,
                    started_at,
                    check_id,
                    kind,
                    target,
                    cadence,
                    severity,
                    outcome,
                    message,
                    controls=tuple(json.loads(controls)),
                    waiver=Waiver.model_validate_json(waiver) if waiver else None,
                    maintenance=Maintenance.model_validate_json(maintenance) if maintenance else None,
                )
            )
        return found

    def runs_before(self, environment: str, before: str, limit: int) -> list[tuple[str, str]]:
        """(run id, started_at) of an environment's runs started before `before`, newest first."""
        rows = self.execute(
            "SELECT run_id, started_at FROM runs WHERE environment = ? AND started_at < ? "
            "ORDER BY started_at DESC, run_id DESC LIMIT ?",
            (environment, before, limit),
        )
        return [(str(r[0]), str(r[1])) for r in rows]

    def outcomes_of_runs(self, run_ids: Sequence[str]) -> list[tuple[str, str, str, str | None, bool]]:
        """(run id, check id, outcome, severity, in maintenance) of every record of these runs."""
        if not run_ids:
            return []
        marks = ", ".join("?" for _ in run_ids)
        rows = self.execute(
            "SELECT run_id, check_id, outcome, severity, maintenance IS NOT NULL FROM records "
            f"WHERE run_id IN ({marks})",
            tuple(run_ids),
        )
        return [(str(r[0]), str(r[1]), str(r[2]), r[3], bool(r[4])) for r in rows]

    def count(self, table: str) -> int:
        assert table in ("runs", "records", "attestations", "attestation_evidence")
        return int(self.execute(f"SELECT count(*) FROM {table}")[0][0])


class HistoryError(OpsproofError):
    """The history store could not be opened or written; the message says which and why."""


def read_receipt(report_dir: Path, bundle: str) -> dict[str, Any] | None:
    """The upload receipt of a bundle (`<report-dir>/.uploads/<bundle>.json`), if it was uploaded."""
    path = report_dir / ".uploads" / f"{bundle}.json"
    try:
        found: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return found


def _database_errors(kind: str) -> tuple[type[Exception], ...]:
    if kind == "sqlite":
        return (sqlite3.Error,)
    import psycopg  # imported only for PostgreSQL stores: SQLite runs never pay for it

    return (sqlite3.Error, psycopg.Error)


def _pg_message(exc: Exception, location: Location) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return mask(text, location.password)
