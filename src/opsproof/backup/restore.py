"""Restoring a backup into PostgreSQL: the I/O of a restore drill, synchronous and cancellable.

One pass over the stored object does everything its format allows:

- **plain SQL** (optionally gzip): streamed from the store, hashed, decompressed and fed
  to `psql -v ON_ERROR_STOP=1` as it arrives, never written to disk. opsproof opens the
  transaction (`BEGIN`) and sends `COMMIT` only once the whole dump has arrived and ends
  with pg_dump's completion marker, so a truncated, corrupt or interrupted backup
  commits nothing, even into a scratch database. Ownership and privilege statements
  (`ALTER ... OWNER TO`, `GRANT`, `REVOKE`, `ALTER DEFAULT PRIVILEGES`, `SET SESSION
  AUTHORIZATION`) are left out of the stream, as `pg_restore --no-owner --no-acl` does:
  the roles of production do not exist in a throwaway cluster.
- **custom format** (`pg_dump -Fc`, optionally gzipped whole): fetched into a temporary
  file (pg_restore needs to seek), hashed on the way, then `pg_restore --no-owner
  --no-acl --exit-on-error`, with `-j N` parallel jobs (or `--single-transaction` when N is 1).

Everything a drill makes lives in one temporary folder (`opsproof-drill-*`): the fetched
archive, psql's error output, the password file for a scratch database, and the
throwaway cluster (`opsproof.local.postgres`). The folder is registered with the reaper
(`opsproof.backup.reaper`) before anything is put in it, so it is removed even when the
process running the drill is killed outright.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from opsproof.backup.drill_steps import CancelToken, DrillError, Phases
from opsproof.backup.integrity import PLAIN_DUMP_END
from opsproof.backup.opening import (
    HEAD_BYTES,
    BackupFormat,
    Fetch,
    OpenedBackup,
)
from opsproof.backup.plain_dump import PlainDumpFilter, UnsafeDump
from opsproof.local.postgres import LocalPgError, LocalPostgres, PgBinaries, local_postgres

EPHEMERAL_DATABASE = "drill"
APPLICATION_NAME = "opsproof-drill"
# The throwaway cluster is tuned for one bulk load it will never need to recover from:
# no TCP at all (the socket lives in the drill's private folder), WAL only as much as a
# crash-unsafe server needs (with `minimal`, COPY into a table created in the same
# transaction writes no WAL), big maintenance memory for the index builds, no checkpoints
# or autovacuum in the middle of the load.
EPHEMERAL_SETTINGS: dict[str, str | int | bool] = {
    "listen_addresses": "",
    "wal_level": "minimal",
    "max_wal_senders": 0,
    "archive_mode": "off",
    "shared_buffers": "128MB",
    "maintenance_work_mem": "256MB",
    "max_wal_size": "8GB",
    "checkpoint_timeout": "1h",
    "autovacuum": False,
}
# localpg puts the cluster's socket under its folder; a unix socket path holds 107 bytes, so a
# folder deeper than this gets a second, short one in the system temp dir (also reaped).
MAX_CLUSTER_BASE_CHARS = 60
DEFAULT_MAX_JOBS = 4
PIPE_BYTES = 1 << 20
STDERR_SHOWN_CHARS = 1500
REAPER_SCRIPT = Path(__file__).with_name("reaper.py")


# -- the reaper -----------------------------------------------------------------------------


class _Reaper:
    """This process's watcher (opsproof.backup.reaper), started on first use; one per process, forks included."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._process: subprocess.Popen[bytes] | None = None
        self._owner_pid = 0
        self._registered: set[str] = set()

    def _ensure(self) -> subprocess.Popen[bytes]:
        process = self._process
        if process is None or self._owner_pid != os.getpid() or process.poll() is not None:
            if self._owner_pid != os.getpid():
                self._registered = set()  # a forked child: the parent's folders are the parent's
            process = subprocess.Popen(
                [sys.executable, "-I", str(REAPER_SCRIPT)],
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,  # a Ctrl-C for the run must not stop it before it cleans up
            )
            self._process, self._owner_pid = process, os.getpid()
            for path in self._registered:  # a watcher that died is replaced and told everything again
                self._write(process, f"+ {path}")
        return process

    @staticmethod
    def _write(process: subprocess.Popen[bytes], line: str) -> None:
        assert process.stdin is not None
        process.stdin.write(line.encode() + b"\n")
        process.stdin.flush()

    def register(self, path: Path) -> None:
        with self._lock:
            self._registered.add(str(path))
            try:
                self._write(self._ensure(), f"+ {path}")
            except OSError:  # it died between the check and the write: the next one is told all
                self._process = None
                self._ensure()

    def unregister(self, path: Path) -> None:
        with self._lock:
            self._registered.discard(str(path))
            process = self._process
            if process is not None and self._owner_pid == os.getpid() and process.poll() is None:
                with contextlib.suppress(OSError):
                    self._write(process, f"- {path}")

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None and self._owner_pid == os.getpid() else None


REAPER = _Reaper()


def make_drill_dir(work_dir: Path | None) -> Path:
    """A private folder for one drill, registered with the reaper before anything goes in it."""
    path = Path(tempfile.mkdtemp(prefix="opsproof-drill-", dir=work_dir))
    REAPER.register(path)
    return path


def remove_drill_dir(path: Path) -> bool:
    """Remove the folder; True when it is gone. The reaper forgets it either way."""
    shutil.rmtree(path, ignore_errors=True)
    gone = not path.exists()
    if gone:
        REAPER.unregister(path)
    return gone


# -- targets --------------------------------------------------------------------------------


@dataclass(frozen=True)
class RestoreTarget:
    """Where psql and pg_restore restore to: a libpq connection string WITHOUT its password.

    The password, if any, is in a password file in the drill's folder (PGPASSFILE), never
    on a command line, which any local user can read in /proc.
    """

    conninfo: str
    env: Mapping[str, str]
    jobs: int
    shown: str  # how reports name it


def clean_env(extra: Mapping[str, str]) -> dict[str, str]:
    """The environment for libpq tools, without the caller's PG* variables (PGHOST, PGSERVICE...)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    return {**env, "PGAPPNAME": APPLICATION_NAME, **extra}


def password_file(drill_dir: Path, password: str) -> Path:
    """A .pgpass in the drill's folder matching any server: `*:*:*:*:<password>`, mode 0600."""
    escaped = password.replace("\\", "\\\\").replace(":", "\\:")
    path = drill_dir / "pgpass"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(f"*:*:*:*:{escaped}\n")
    return path


def default_jobs() -> int:
    return max(1, min(DEFAULT_MAX_JOBS, os.cpu_count() or 1))


class EphemeralCluster:
    """A throwaway PostgreSQL in the drill's folder, with one empty database to restore into."""

    def __init__(self, drill_dir: Path, jobs: int, binaries: PgBinaries | None = None) -> None:
        self.drill_dir = drill_dir
        self.jobs = jobs
        self.binaries = binaries
        self.pg: LocalPostgres | None = None
        self.extra_dir: Path | None = None
        self._stack = ExitStack()

    def start(self) -> RestoreTarget:
        base = self.drill_dir
        if len(str(base)) > MAX_CLUSTER_BASE_CHARS:
            base = self.extra_dir = make_drill_dir(None)
        self.pg = self._stack.enter_context(
            local_postgres(
                max_connections=self.jobs + 10,
                settings=EPHEMERAL_SETTINGS,
                base_dir=base,
                binaries=self.binaries,
                start_timeout=60.0,
            )
        )
        self.pg.create_database(EPHEMERAL_DATABASE)
        return RestoreTarget(
            conninfo=self.pg.socket_conninfo(dbname=EPHEMERAL_DATABASE),
            env=clean_env({}),
            jobs=self.jobs,
            shown=f"ephemeral PostgreSQL {self.version()} (database {EPHEMERAL_DATABASE})",
        )

    def version(self) -> str:
        assert self.pg is not None
        rows = self.pg.execute("select current_setting('server_version')")
        return str(rows[0][0])

    def stop(self) -> None:
        """Stop the server and remove its folder (localpg's own cleanup); never raises."""
        with contextlib.suppress(Exception):
            self._stack.close()
        if self.extra_dir is not None:
            remove_drill_dir(self.extra_dir)

    @property
    def stopped(self) -> bool:
        return self.pg is None or not self.pg.is_running()


# -- plain SQL ------------------------------------------------------------------------------


def _error_lines(text: str) -> str:
    """The lines of a tool's stderr worth showing: its errors first, then the rest, cut short."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    errors = [line for line in lines if "ERROR:" in line or "FATAL:" in line or "error:" in line]
    shown = "; ".join(errors or lines)
    return shown if len(shown) <= STDERR_SHOWN_CHARS else shown[: STDERR_SHOWN_CHARS - 3] + "..."


def _read_text(path: Path) -> str:
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - 64 * 1024))
            return handle.read().decode("utf-8", "replace")
    except OSError:
        return ""


@dataclass
class RestoreReport:
    """What the restore did: format, tool, bytes, checksum, statements left out, the tool's output."""

    format: str
    tool: str
    command: list[str]
    fetch: Fetch
    bytes_restored: int = 0
    jobs: int | None = None
    statements_dropped: int = 0
    tool_output: str = ""


def restore_backup(
    opened: OpenedBackup,
    target: RestoreTarget,
    binaries: PgBinaries,
    drill_dir: Path,
    token: CancelToken,
    phases: Phases,
) -> RestoreReport:
    """Fetch the rest of the backup and restore it into `target`; DrillError (stage fetch or restore) if not."""
    backup_format, blocks, fetch = opened.format, opened.blocks, opened.fetch
    try:
        if backup_format.kind == "plain":
            return _restore_plain(backup_format, blocks, target, binaries, drill_dir, token, phases, fetch)
        return _restore_custom(backup_format, blocks, target, binaries, drill_dir, token, phases, fetch)
    finally:
        opened.close()
        record_fetch(phases, fetch)


def _tool(binaries: PgBinaries, name: str) -> Path:
    try:
        return binaries.tool(name)
    except LocalPgError as exc:
        raise DrillError(str(exc), stage="restore", misconfigured=True) from None


def _restore_plain(
    backup_format: BackupFormat,
    blocks: Iterator[bytes],
    target: RestoreTarget,
    binaries: PgBinaries,
    drill_dir: Path,
    token: CancelToken,
    phases: Phases,
    fetch: Fetch,
) -> RestoreReport:
    psql = _tool(binaries, "psql")
    # The drill's folder on the command line lets the reaper find this psql by its arguments.
    command = [
        str(psql),
        "-X",
        "-q",
        "-v",
        "ON_ERROR_STOP=1",
        "--set",
        f"opsproof_drill={drill_dir}",
        "-d",
        target.conninfo,
    ]
    report = RestoreReport(backup_format.label, "psql", command, fetch)
    errors = drill_dir / "psql.stderr"
    dump_filter = PlainDumpFilter()
    tail = b""
    with phases.timing("restore", tool="psql") as restore, open(errors, "wb") as stderr:
        process = subprocess.Popen(
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            env=dict(target.env),
            start_new_session=True,
        )
        with token.tracking(process):
            stdin = process.stdin
            assert stdin is not None
            _widen_pipe(stdin.fileno())
            try:
                stdin.write(b"BEGIN;\n")
                for block in blocks:
                    report.bytes_restored += len(block)
                    tail = (tail + block[-HEAD_BYTES:])[-HEAD_BYTES:]
                    try:
                        stdin.write(dump_filter.feed(block))
                    except UnsafeDump as exc:
                        raise DrillError(f"{exc}; a drill does not run it", stage="restore") from None
                    token.check("restore")
                stdin.write(dump_filter.finish())
                if PLAIN_DUMP_END not in tail:
                    # Never COMMIT a dump that did not end the way pg_dump ends one: psql is killed
                    # with the transaction open, so the server rolls it back.
                    raise DrillError(
                        "the dump is incomplete: it does not end with pg_dump's completion marker "
                        f"({PLAIN_DUMP_END.decode()!r}); truncated?",
                        stage="fetch",
                    )
                stdin.write(b"\nCOMMIT;\n")
                stdin.close()
            except BrokenPipeError:
                pass  # psql stopped reading: its exit status and stderr say why
            finally:
                record_fetch(phases, fetch)
                report.statements_dropped = dump_filter.dropped
            code = process.wait()
        restore.finished = time.time()
    token.check("restore")
    report.tool_output = _error_lines(_read_text(errors))
    if code != 0:
        raise DrillError(f"psql failed (exit {code}): {report.tool_output or 'no message'}", stage="restore")
    return report


def _widen_pipe(fd: int) -> None:
    """A 1 MiB pipe to psql (Linux; default 64 KiB): a chunk crosses in one wake-up instead of sixteen."""
    set_size = getattr(fcntl, "F_SETPIPE_SZ", None)
    if set_size is not None:
        with contextlib.suppress(OSError):  # above /proc/sys/fs/pipe-max-size for this user: keep the default
            fcntl.fcntl(fd, set_size, PIPE_BYTES)


def record_fetch(phases: Phases, fetch: Fetch) -> None:
    """The fetch phase, from the reading thread's own timestamps (a streamed fetch has no block of its own)."""
    if fetch.started and phases.get("fetch") is None:
        phases.add("fetch", fetch.started, fetch.finished or time.time(), bytes=fetch.bytes_read, streamed=True)


def _restore_custom(
    backup_format: BackupFormat,
    blocks: Iterator[bytes],
    target: RestoreTarget,
    binaries: PgBinaries,
    drill_dir: Path,
    token: CancelToken,
    phases: Phases,
    fetch: Fetch,
) -> RestoreReport:
    pg_restore = _tool(binaries, "pg_restore")
    archive = drill_dir / "backup.dump"
    with phases.timing("fetch") as fetching:
        fetching.started = fetch.started or fetching.started
        written = _write_file(archive, blocks, token)
        fetching.detail.update(bytes=fetch.bytes_read, archive_bytes=written)
    options = ["--single-transaction"] if target.jobs == 1 else ["-j", str(target.jobs)]
    command = [
        str(pg_restore),
        "--no-owner",
        "--no-acl",
        "--exit-on-error",
        *options,
        "-d",
        target.conninfo,
        str(archive),
    ]
    report = RestoreReport(backup_format.label, "pg_restore", command, fetch, bytes_restored=written, jobs=target.jobs)
    errors = drill_dir / "pg_restore.stderr"
    with phases.timing("restore", tool="pg_restore", jobs=target.jobs), open(errors, "wb") as stderr:
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            env=dict(target.env),
            start_new_session=True,
        )
        with token.tracking(process):
            code = process.wait()
    token.check("restore")
    report.tool_output = _error_lines(_read_text(errors))
    if code != 0:
        raise DrillError(f"pg_restore failed (exit {code}): {report.tool_output or 'no message'}", stage="restore")
    return report


def _write_file(path: Path, blocks: Iterable[bytes], token: CancelToken) -> int:
    written = 0
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    out: IO[bytes]
    with os.fdopen(fd, "wb") as out:
        for block in blocks:
            out.write(block)
            written += len(block)
            token.check("fetch")
    return written
