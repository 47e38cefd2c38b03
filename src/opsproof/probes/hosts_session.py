"""A testinfra host whose every command ends by its item's deadline, and whose SSH host keys are checked.

testinfra is synchronous: each host is probed in a worker thread, and `DEADLINE.at` (per
thread) is the time.monotonic() by which its commands must end. `install_deadlines()`
patches testinfra's backends once per process: programs run locally (local://, ssh://,
docker://, ...) are killed with their whole process group at the deadline, and paramiko://
channels get the remaining time as their socket timeout. `HostKeys` makes a paramiko://
login check the host key as OpenSSH would.
"""


from __future__ import annotations

import contextlib
import importlib
import logging
import math
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from opsproof.errors import OpsproofError
from opsproof.targets.hosts import HostAddress


class CommandTimeout(OpsproofError):
    """The item's deadline passed while a command ran; `output` is what it printed until then."""

    def __init__(self, output: bytes = b"") -> None:
        super().__init__("timed out")
        self.output = output


DEADLINE = threading.local()  # .at: time.monotonic() by which this thread's commands must end
_INSTALLED: list[bool] = []


def remaining() -> float | None:
    at = getattr(DEADLINE, "at", None)
    return None if at is None else at - time.monotonic()


def _bounded_run_local(original: Callable[..., Any]) -> Callable[..., Any]:
    def run_local(self: Any, command: str, *args: str) -> Any:
        left = remaining()
        if left is None:  # not a probe thread (a user's own testinfra test): testinfra as it was
            return original(self, command, *args)
        if left <= 0:
            raise CommandTimeout()
        cmd = self.encode(self.quote(command, *args))
        # A session of its own: the deadline kills the shell and everything it started
        # (ssh, docker exec, a hung df), and ssh cannot ask for a password on our terminal.
        process = subprocess.Popen(
            cmd,
            shell=True,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        try:
            stdout, stderr = process.communicate(timeout=left)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            try:
                stdout, _ = process.communicate(timeout=1)
            except subprocess.TimeoutExpired:  # a grandchild left the group and holds the pipe
                process.kill()
                stdout = b""
            raise CommandTimeout(stdout or b"") from None
        return self.result(process.returncode, cmd, stdout, stderr)

    return run_local


def _bounded_paramiko_exec(self: Any, command: bytes) -> tuple[int, bytes, bytes]:
    left = remaining()
    if left is not None and left <= 0:
        raise CommandTimeout()
    transport = self.client.get_transport()
    channel = transport.open_session(timeout=left)
    if left is not None:
        channel.settimeout(left)  # every read of the channel: a silent host costs the deadline, no more
    if self.get_pty:
        channel.get_pty()
    channel.exec_command(command)
    stdout = b"".join(channel.makefile("rb"))
    stderr = b"".join(channel.makefile_stderr("rb"))
    return int(channel.recv_exit_status()), stdout, stderr


def _bounded_paramiko_connect(original: Callable[..., Any]) -> Callable[..., Any]:
    def connect(self: Any, *args: Any, **kwargs: Any) -> Any:
        trust = getattr(DEADLINE, "host_keys", None)
        if trust is not None:
            trust.apply(self)
        left = remaining()
        if left is not None:
            # testinfra sets only the TCP connect timeout; the banner and the login wait 15 s each by default.
            left = max(0.1, left)
            kwargs["timeout"] = min(kwargs.get("timeout") or left, left)
            kwargs.setdefault("banner_timeout", left)
            kwargs.setdefault("auth_timeout", left)
            kwargs.setdefault("channel_timeout", left)
        return original(self, *args, **kwargs)

    return connect


@dataclass(frozen=True)
class HostKeys:
    """How a paramiko:// login checks the host's key: as OpenSSH's `ssh` would, not as testinfra does.

    testinfra's paramiko backend reads no known_hosts file and accepts any key it does not
    know with a warning, so a password in the URL would go to whoever answers at the
    address. Here the known_hosts files OpenSSH would read (the ssh_config's
    `UserKnownHostsFile`, else ~/.ssh/known_hosts; and /etc/ssh/ssh_known_hosts) are
    loaded, and an unknown key is refused, unless the ssh_config says
    `StrictHostKeyChecking no` (testinfra then accepts any key) or `accept-new`.
    """

    files: tuple[str, ...]
    strict: str  # "yes", "no", "accept-new" (OpenSSH's words; "ask" counts as "yes": nobody is there to ask)

    @classmethod
    def of(cls, address: HostAddress) -> HostKeys:
        import paramiko

        params = dict(address.params)
        path = params.get("ssh_config") or os.path.expanduser("~/.ssh/config")
        options: dict[str, Any] = {}
        with contextlib.suppress(OSError, ValueError):
            config = paramiko.SSHConfig.from_path(path)
            options = dict(config.lookup(address.host))
        files = str(options.get("userknownhostsfile") or "~/.ssh/known_hosts ~/.ssh/known_hosts2").split()
        files += str(options.get("globalknownhostsfile") or "/etc/ssh/ssh_known_hosts").split()
        strict = str(options.get("stricthostkeychecking", "yes")).lower()
        return cls(tuple(os.path.expanduser(f) for f in files), "no" if strict in ("no", "off") else strict)

    def apply(self, client: Any) -> None:
        import paramiko

        for path in self.files:
            if os.path.isfile(path):
                client.load_system_host_keys(path)
        if self.strict == "no":
            return  # testinfra set its IgnorePolicy from the same ssh_config
        policy = paramiko.AutoAddPolicy() if self.strict == "accept-new" else paramiko.RejectPolicy()
        client.set_missing_host_key_policy(policy)


def install_deadlines() -> None:
    """Bound testinfra's commands by the calling thread's deadline (once per process; idempotent)."""
    if _INSTALLED:
        return
    import testinfra.backend.base as base

    base.BaseBackend.run_local = _bounded_run_local(base.BaseBackend.run_local)
    with contextlib.suppress(ImportError, RuntimeError):  # paramiko is optional to testinfra
        paramiko = importlib.import_module("paramiko")  # untyped: reached through Any
        import testinfra.backend.paramiko as paramiko_backend

        paramiko_backend.ParamikoBackend._exec_command = _bounded_paramiko_exec
        paramiko.SSHClient.connect = _bounded_paramiko_connect(paramiko.SSHClient.connect)
        # paramiko's transport thread logs a traceback for a failed banner or login: the facts
        # report it in words, and Python's last-resort handler would print it on stderr.
        logging.getLogger("paramiko").addHandler(logging.NullHandler())
    _INSTALLED.append(True)


@contextlib.contextmanager
def thread_deadline(address: HostAddress, timeout: float) -> Iterator[None]:
    """Every testinfra command this thread runs inside ends by `timeout` from now (the `logs` kind's too)."""
    install_deadlines()
    DEADLINE.at = time.monotonic() + timeout
    if address.scheme == "paramiko":
        with contextlib.suppress(ImportError):  # no paramiko: the backend says so itself
            DEADLINE.host_keys = HostKeys.of(address)
    try:
        yield
    finally:
        DEADLINE.at = None
        DEADLINE.host_keys = None


def testinfra_host(address: HostAddress, timeout: float) -> Any:
    """A testinfra Host for the address (never testinfra's cache: each item gets its own backend)."""
    import testinfra.backend
    import testinfra.host

    class RecordingHost(testinfra.host.Host):  # type: ignore[misc]
        """Lists every command testinfra's modules send, for the record."""

        commands: list[str]

        def run(self, command: str, *args: str, **kwargs: Any) -> Any:
            self.commands.append(self.backend.quote(command, *args))
            return super().run(command, *args, **kwargs)

    options: dict[str, Any] = {"timeout": max(1, math.ceil(timeout))}
    if address.scheme in ("ssh", "safe-ssh") and address.password is None:
        # No password: never wait for one. Keys or an agent log in, or the login fails now.
        options["ssh_extra_args"] = "-o BatchMode=yes"
    backend = testinfra.backend.get_backend(address.hostspec, **options)
    host = RecordingHost(backend)
    host.commands = []
    backend.set_host(host)
    return host
