"""A throwaway local PostgreSQL cluster: for the tests, the demo and restore drills.

One call gives a running server on 127.0.0.1 (a free port) and a unix socket, in a
fresh temporary folder that is removed when the block ends, however it ends::

    with local_postgres(max_connections=20, settings={"log_statement": "all"}) as pg:
        pg.create_role("ops", password="s3cret", grants=("pg_monitor",))
        pg.execute("create table t (id int)", dbname="postgres")
        print(pg.dsn(user="ops"))           # postgresql://ops@127.0.0.1:54321/postgres

Binaries are found in this order (`find_binaries`): the `OPSPROOF_PG_BINDIR`
environment variable; the PostgreSQL bundled in the `pgserver` wheel (a dependency,
so a machine with only Python has one); `pg_config --bindir`; the highest
`/usr/lib/postgresql/<version>/bin`. PostgreSQL refuses to run as root, so as root
the cluster runs as an unprivileged system user (`postgres` if it exists, else a
`opsproof-pg` user created for it).

Authentication: the superuser `postgres` logs in over the unix socket without a
password (the socket lives in a folder only the service user and root can enter);
TCP logins use scram-sha-256 when `password_auth=True`, else trust.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib.util
import os
import pwd
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from opsproof.errors import OpsproofError
from opsproof.local.ports import free_port

if TYPE_CHECKING:
    import psycopg

SUPERUSER = "postgres"
SERVICE_USER = "opsproof-pg"  # created when running as root and no `postgres` user exists
ENV_BINDIR = "OPSPROOF_PG_BINDIR"
# Logged before each line: time, pid, application, user, database; tests read statements by application.
LOG_LINE_PREFIX = "%m [%p] app=%a user=%u db=%d "


# <base>/opsproof-pg-XXXXXXXX/sock/.s.PGSQL.65535 must fit a unix socket path (107 bytes).
_MAX_BASE_CHARS = 107 - len("/opsproof-pg-XXXXXXXX/sock/.s.PGSQL.65535")


class LocalPgError(OpsproofError, RuntimeError):
    """The local PostgreSQL could not be found, initialised or started; the message says why."""


@dataclass(frozen=True)
class PgBinaries:
    """A folder of PostgreSQL programs and where it was found."""

    bindir: Path
    source: str  # how it was found: the environment variable, pgserver, pg_config or /usr/lib/postgresql

    def tool(self, name: str) -> Path:
        """The path of one program (`psql`, `pg_dump`, `pg_restore`, `initdb`...); LocalPgError when missing."""
        path = self.bindir / name
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise LocalPgError(f"{name} is not in {self.bindir} (PostgreSQL binaries from {self.source})")
        return path

    @property
    def psql(self) -> Path:
        return self.tool("psql")

    @property
    def pg_dump(self) -> Path:
        return self.tool("pg_dump")

    @property
    def pg_restore(self) -> Path:
        return self.tool("pg_restore")

    def version(self) -> str:
        """'16.2', from `postgres --version`."""
        out = subprocess.run([self.tool("postgres"), "--version"], capture_output=True, text=True, check=True).stdout
        found = re.search(r"(\d+(?:\.\d+)*)", out)
        return found.group(1) if found else out.strip()


def _has_server(bindir: Path) -> bool:
    return all((bindir / name).is_file() for name in ("postgres", "initdb"))


def _pgserver_bindir() -> Path | None:
    # find_spec, not import: importing pgserver starts its own machinery (platformdirs, psutil).
    spec = importlib.util.find_spec("pgserver")
    if spec is None or spec.origin is None:
        return None
    return Path(spec.origin).parent / "pginstall" / "bin"


def _pg_config_bindir() -> Path | None:
    pg_config = shutil.which("pg_config")
    if pg_config is None:
        return None
    try:
        done = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, timeout=10, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return Path(done.stdout.strip())


def _debian_bindir(root: Path = Path("/usr/lib/postgresql")) -> Path | None:
    versions = [p for p in root.glob("*/bin") if p.parent.name.replace(".", "").isdigit()] if root.is_dir() else []
    if not versions:
        return None
    return max(versions, key=lambda p: tuple(int(part) for part in p.parent.name.split(".")))


def find_binaries() -> PgBinaries:
    """The first folder holding `postgres` and `initdb`, in the documented order."""
    explicit = os.environ.get(ENV_BINDIR)
    if explicit:
        # An explicit choice that does not work is an error, never a silent fallback to another version.
        if not _has_server(Path(explicit)):
            raise LocalPgError(f"{ENV_BINDIR}={explicit}: no postgres and initdb there")
        return PgBinaries(Path(explicit), ENV_BINDIR)
    tried = []
    for source, finder in (
        ("pgserver", _pgserver_bindir),
        ("pg_config --bindir", _pg_config_bindir),
        ("/usr/lib/postgresql", _debian_bindir),
    ):
        bindir = finder()
        if bindir is not None and _has_server(bindir):
            return PgBinaries(bindir, source)
        tried.append(f"{source} ({bindir or 'not found'})")
    raise LocalPgError(
        "no PostgreSQL server binaries (postgres, initdb) found; tried "
        + ", ".join(tried)
        + f"; install pgserver (pip install pgserver) or set {ENV_BINDIR}"
    )


@dataclass(frozen=True)
class ServiceUser:
    """Who runs initdb and postgres: ourselves, or an unprivileged user when we are root."""

    name: str
    uid: int
    gid: int

    @property
    def is_us(self) -> bool:
        return self.uid == os.geteuid()


def service_user() -> ServiceUser:
    """Ourselves unless root; as root `postgres` if it exists, else `opsproof-pg` (created now)."""
    if os.geteuid() != 0:
        me = pwd.getpwuid(os.geteuid())
        return ServiceUser(me.pw_name, me.pw_uid, me.pw_gid)
    for name in ("postgres", SERVICE_USER):
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            continue
        return ServiceUser(entry.pw_name, entry.pw_uid, entry.pw_gid)
    try:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", SERVICE_USER],
            capture_output=True,
            text=True,
            check=True,
        )
    except (OSError, subprocess.CalledProcessError) as exc:
        detail = exc.stderr.strip() if isinstance(exc, subprocess.CalledProcessError) else str(exc)
        raise LocalPgError(f"PostgreSQL cannot run as root and useradd {SERVICE_USER} failed: {detail}") from None
    entry = pwd.getpwnam(SERVICE_USER)
    return ServiceUser(entry.pw_name, entry.pw_uid, entry.pw_gid)


def _make_traversable(path: Path) -> None:
    """Let other users pass through `path` and its parents (search permission only, never read)."""
    for folder in (path, *path.parents):
        mode = folder.stat().st_mode
        if mode & 0o001 == 0 and folder.stat().st_uid == os.geteuid():
            folder.chmod(mode | 0o001)


@dataclass
class LocalPostgres:
    """A running local cluster. Admin helpers log in as the superuser over the unix socket."""

    binaries: PgBinaries
    root: Path  # the temporary folder: data/, sock/, archive/ (with archive_wal), postgres.log
    port: int
    user: ServiceUser
    password_auth: bool
    process: subprocess.Popen[bytes] | None = None
    settings: dict[str, str] = field(default_factory=dict)
    host: str = "127.0.0.1"

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def socket_dir(self) -> Path:
        return self.root / "sock"

    @property
    def log_file(self) -> Path:
        return self.root / "postgres.log"

    def dsn(self, user: str = SUPERUSER, dbname: str = "postgres", password: str | None = None) -> str:
        """A TCP URI; without `password` it holds none (give it separately, or from the environment)."""
        secret = f":{quote(password, safe='')}" if password is not None else ""
        return f"postgresql://{quote(user, safe='')}{secret}@{self.host}:{self.port}/{quote(dbname, safe='')}"

    def socket_conninfo(self, user: str = SUPERUSER, dbname: str = "postgres") -> str:
        return f"host={self.socket_dir} port={self.port} user={user} dbname={dbname}"

    @property
    def archive_dir(self) -> Path:
        """Where `archive_wal=True` copies WAL segments."""
        return self.root / "archive"

    def connect(self, dbname: str = "postgres", *, autocommit: bool = True, **kwargs: Any) -> psycopg.Connection[Any]:
        """A psycopg connection as the superuser over the socket (for setting things up and staging states)."""
        import psycopg

        return psycopg.connect(self.socket_conninfo(dbname=dbname), autocommit=autocommit, **kwargs)

    def execute(self, sql: Any, params: Sequence[Any] | None = None, *, dbname: str = "postgres") -> list[Any]:
        """Run one statement as the superuser; the rows it returns (none: [])."""
        with self.connect(dbname) as conn:
            cur = conn.execute(sql, params)
            return list(cur.fetchall()) if cur.description else []

    def create_role(
        self, name: str, *, password: str | None = None, superuser: bool = False, grants: Sequence[str] = ()
    ) -> None:
        """A login role; its password is set with statement logging off, so it never reaches the log."""
        from psycopg import sql

        with self.connect() as conn:
            conn.execute("set log_statement = 'none'")
            role = sql.Identifier(name)
            conn.execute(sql.SQL("create role {} login" + (" superuser" if superuser else "")).format(role))
            if password is not None:
                conn.execute(sql.SQL("alter role {} password {}").format(role, sql.Literal(password)))
            for granted in grants:
                conn.execute(sql.SQL("grant {} to {}").format(sql.Identifier(granted), role))

    def create_database(self, name: str, owner: str = SUPERUSER) -> None:
        from psycopg import sql

        self.execute(sql.SQL("create database {} owner {}").format(sql.Identifier(name), sql.Identifier(owner)))

    def log_text(self) -> str:
        """Everything the server has logged so far."""
        return self.log_file.read_text(errors="replace") if self.log_file.exists() else ""

    def is_running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self) -> None:
        """Fast shutdown (sessions are ended), then immediate, then kill; never raises."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        for sig, wait in ((signal.SIGINT, 15.0), (signal.SIGQUIT, 5.0), (signal.SIGKILL, 5.0)):
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(sig)
            try:
                process.wait(wait)
                return
            except subprocess.TimeoutExpired:
                continue


def _run_as(user: ServiceUser, args: Sequence[str | Path], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    if not user.is_us:
        kwargs.update(user=user.uid, group=user.gid, extra_groups=[])
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, **kwargs)


def _initdb(binaries: PgBinaries, user: ServiceUser, data: Path, password_auth: bool) -> None:
    done = _run_as(
        user,
        [
            binaries.tool("initdb"),
            "-D",
            data,
            "-U",
            SUPERUSER,
            "--auth-local=trust",
            f"--auth-host={'scram-sha-256' if password_auth else 'trust'}",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",  # a throwaway cluster: durability buys nothing and costs seconds
        ],
        timeout=120,
    )
    if done.returncode != 0:
        raise LocalPgError(f"initdb failed (exit {done.returncode}): {(done.stderr or done.stdout).strip()[-2000:]}")


def _base_backup(binaries: PgBinaries, user: ServiceUser, data: Path, primary: LocalPostgres) -> None:
    # -R writes standby.signal and primary_conninfo (the primary's socket): the copy starts as its standby.
    done = _run_as(
        user,
        [
            binaries.tool("pg_basebackup"),
            "-D",
            data,
            "-R",
            "-X",
            "stream",
            "--no-sync",
            "--checkpoint=fast",  # a spread checkpoint would make the copy wait minutes on an idle server
            "-d",
            primary.socket_conninfo(),
        ],
        timeout=120,
    )
    if done.returncode != 0:
        raise LocalPgError(
            f"pg_basebackup failed (exit {done.returncode}): {(done.stderr or done.stdout).strip()[-2000:]}"
        )


def _server_args(pg: LocalPostgres) -> list[str]:
    settings = {
        "listen_addresses": pg.host,
        "port": str(pg.port),
        "unix_socket_directories": str(pg.socket_dir),
        "logging_collector": "off",  # stderr goes to our log file, which we can read
        "log_line_prefix": LOG_LINE_PREFIX,
        "fsync": "off",
        "synchronous_commit": "off",
        "full_page_writes": "off",
        "shared_buffers": "16MB",
        "dynamic_shared_memory_type": "posix",
        **pg.settings,
    }
    args = [str(pg.binaries.tool("postgres")), "-D", str(pg.data_dir)]
    for key, value in settings.items():
        args += ["-c", f"{key}={value}"]
    return args


def _start(pg: LocalPostgres, start_timeout: float) -> None:
    kwargs: dict[str, Any] = {}
    if not pg.user.is_us:
        kwargs.update(user=pg.user.uid, group=pg.user.gid, extra_groups=[])
    with open(pg.log_file, "ab") as log:
        # Its own session: a Ctrl-C meant for the tests does not reach it before we stop it cleanly.
        pg.process = subprocess.Popen(
            _server_args(pg), stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True, **kwargs
        )
    deadline = time.monotonic() + start_timeout
    while not (pg.socket_dir / f".s.PGSQL.{pg.port}").exists() or not _accepts(pg):
        if pg.process.poll() is not None:
            raise LocalPgError(f"postgres exited with {pg.process.returncode}: {_tail(pg.log_text())}")
        if time.monotonic() > deadline:
            pg.stop()
            raise LocalPgError(f"postgres did not accept connections within {start_timeout:g}s: {_tail(pg.log_text())}")
        time.sleep(0.05)


def _accepts(pg: LocalPostgres) -> bool:
    import psycopg

    try:
        with psycopg.connect(pg.socket_conninfo(), connect_timeout=2):
            return True
    except psycopg.OperationalError:
        return False


def _tail(text: str, lines: int = 15) -> str:
    return "\n".join(text.strip().splitlines()[-lines:]) or "(nothing logged)"


@contextlib.contextmanager
def local_postgres(
    *,
    max_connections: int = 20,
    settings: Mapping[str, str | int | bool] | None = None,
    password_auth: bool = True,
    archive_wal: bool = False,
    replica_of: LocalPostgres | None = None,
    base_dir: Path | None = None,
    binaries: PgBinaries | None = None,
    keep: bool = False,
    start_timeout: float = 30.0,
) -> Iterator[LocalPostgres]:
    """Initialise and start a cluster; stop it and remove its folder when the block ends.

    `settings` are server parameters passed as `-c key=value` (`log_statement: all`,
    `log_connections: true`...). `archive_wal=True` archives WAL segments into
    `<folder>/archive` (`archive_mode=on`, a `cp` archive_command). `replica_of=primary`
    makes a streaming standby of another local cluster (`pg_basebackup -R`) instead of a
    new one. `base_dir` is where the temporary folder goes (default: the system temp dir);
    as root it is made traversable for the service user. `keep=True` leaves the folder
    (data and log) for a post-mortem.
    """
    binaries = binaries or find_binaries()
    user = service_user()
    base = Path(base_dir) if base_dir is not None else Path(tempfile.gettempdir())
    if len(str(base)) > _MAX_BASE_CHARS:
        # A unix socket path holds at most 107 bytes: a deep base_dir (pytest's tmp_path
        # under xdist) would leave PostgreSQL with no socket at all.
        base = Path(tempfile.gettempdir())
    base.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="opsproof-pg-", dir=base))
    shown = {k: ("on" if v is True else "off" if v is False else str(v)) for k, v in (settings or {}).items()}
    shown.setdefault("max_connections", str(max_connections))
    if archive_wal:
        shown = {"archive_mode": "on", "archive_command": f"cp %p {root / 'archive'}/%f", **shown}
    pg = LocalPostgres(binaries=binaries, root=root, port=0, user=user, password_auth=password_auth, settings=shown)
    stop_at_exit = pg.stop  # an interpreter that exits without unwinding this block still stops the server
    atexit.register(stop_at_exit)
    try:
        for sub in ("data", "sock", *(("archive",) if archive_wal else ())):
            (root / sub).mkdir(mode=0o700)
            if not user.is_us:
                os.chown(root / sub, user.uid, user.gid)
        if not user.is_us:
            _make_traversable(root)
        if replica_of is not None:
            _base_backup(binaries, user, pg.data_dir, replica_of)
        else:
            _initdb(binaries, user, pg.data_dir, password_auth)
        # The free port may be taken between our check and postgres binding it: try a few.
        for attempt in range(3):
            pg.port = free_port(0)
            try:
                _start(pg, start_timeout)
                break
            except LocalPgError:
                if attempt == 2 or "could not bind" not in pg.log_text():
                    raise
        yield pg
    finally:
        pg.stop()
        atexit.unregister(stop_at_exit)
        if not keep:
            shutil.rmtree(root, ignore_errors=True)
