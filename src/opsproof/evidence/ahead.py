"""A process forked ahead of the work it will do: it loads what that work needs when told, then waits for it.

The bundle's report.html needs jinja2, the page's modules and its compiled template (~30 ms of
CPU, compiled). A run's own process imported them while the checks ran and forked a child to
render the page at the end; the import delayed the first check whenever the first facts came
sooner. `Ahead.start` forks that child early instead, and it does nothing until it is told
to prepare (`prepare_now`: the run says so once its probe processes are done, so the import
takes a core nobody needs rather than the probes' or the run's), or handed its work (`hand`,
which prepares first if need be), or told it is not needed (`dismiss`, or the run's process
ending).

The work travels pickled through a memory file (memfd) both processes hold since the fork, and
a tag and a length through a pipe: writing them never waits on the reader, so a process that is
slow, stuck or gone never holds the run up (the caller waits for it within a bound and does the
work itself when it failed). Nothing of it touches the disk. Linux only (memfd); elsewhere
`start` says None.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import signal
import struct
import time
from collections.abc import Callable
from typing import Any, NoReturn

_LENGTH = struct.Struct("!Q")  # the pickled work's size, after the tag WORK
PREPARE, WORK = b"p", b"w"  # the tags of the two messages on the pipe


class Ahead:
    """The caller's view of a process forked ahead: its pid, and the ends of the pipe and memory file it reads."""

    def __init__(self, pid: int, control: int, memory: int) -> None:
        self.pid = pid
        self._control: int | None = control
        self._memory: int | None = memory
        self._handed = False  # handed its work, not reaped yet

    @classmethod
    def start(cls, prepare: Callable[[], None], work: Callable[[Any], None]) -> Ahead | None:
        """Fork a process to run `prepare()` when told and `work(payload)` when handed one; None without fork or memfd.

        Call it from the main thread: the process never returns into the caller's code, and it
        closes every file descriptor it inherited (a pipe end held there would keep another
        process of the caller's from ever seeing its end of file).
        """
        if not hasattr(os, "fork") or not hasattr(os, "memfd_create"):
            return None
        memory = os.memfd_create("opsproof-ahead")
        read, write = os.pipe()
        try:
            pid = os.fork()
        except OSError:
            for fd in (memory, read, write):
                os.close(fd)
            return None
        if pid == 0:
            _serve(read, memory, prepare, work)
        os.close(read)
        return cls(pid, write, memory)

    @property
    def waiting(self) -> bool:
        """Neither handed its work nor dismissed yet."""
        return self._control is not None

    @property
    def working(self) -> bool:
        """Handed its work, and not reaped yet (`finish`)."""
        return self._handed

    def prepare_now(self) -> None:
        """Tell the process to run `prepare()` (once; `hand` does it first otherwise)."""
        if self._control is not None:
            with contextlib.suppress(OSError):  # gone: `hand` finds out, and the caller does the work
                os.write(self._control, PREPARE)

    def hand(self, payload: Any) -> int | None:
        """Hand the process its work; its pid (`finish` reaps it).

        None when it cannot take it (the payload does not pickle, the process is gone): it is
        then dismissed, and the caller does the work itself.
        """
        if self._control is None or self._memory is None:
            return None
        try:
            data = pickle.dumps(payload, protocol=pickle.HIGHEST_PROTOCOL)
            written = 0
            while written < len(data):
                written += os.pwrite(self._memory, memoryview(data)[written:], written)
            os.write(self._control, WORK + _LENGTH.pack(len(data)))
        except Exception:  # not picklable, or the process is gone (a broken pipe): the caller does the work
            self.dismiss()
            return None
        self._close()
        self._handed = True
        return self.pid

    def finish(self, wait_s: float) -> bool:
        """Reap it once handed its work: True when it did the work (exit 0); killed past `wait_s` (False)."""
        if not self._handed:
            return False
        self._handed = False
        return reap(self.pid, wait_s)

    def dismiss(self) -> None:
        """Not needed (any more): killed and reaped. A process not handed its work has written nothing."""
        if self._control is None and not self._handed:
            return
        self._close()
        self._handed = False
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(self.pid, 0)

    def _close(self) -> None:
        for fd in (self._control, self._memory):
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._control = self._memory = None


def _serve(control: int, memory: int, prepare: Callable[[], None], work: Callable[[Any], None]) -> NoReturn:
    """The process forked ahead: prepare when told, do the work when handed it; exit 0 (1 if anything failed).

    The end of file on `control` before the work (the caller dismissed it, or ended) exits 0, having done nothing.
    """
    code = 1
    try:
        _close_inherited(keep=(control, memory))
        prepared = False
        while (tag := os.read(control, 1)) == PREPARE:
            if not prepared:
                prepare()
                prepared = True
        head = _read_exactly(control, _LENGTH.size) if tag == WORK else b""
        if len(head) < _LENGTH.size:
            code = 0
        else:
            (size,) = _LENGTH.unpack(head)
            if not prepared:
                prepare()
            data = bytearray()
            while len(data) < size:
                piece = os.pread(memory, size - len(data), len(data))
                if not piece:
                    raise EOFError("the payload is shorter than its length")
                data += piece
            work(pickle.loads(data))
            code = 0
    finally:
        os._exit(code)  # never back into the caller's code, no atexit handler, no inherited buffer flushed


def reap(pid: int, wait_s: float) -> bool:
    """Reap a child; True when it exited 0. One that outlives `wait_s` is killed (False).

    Bounded because a fork copies other threads' locks: a child stuck on one must not hang the
    caller, which then does the child's work itself, as when it fails.
    """
    deadline = time.monotonic() + wait_s
    try:
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                return os.waitstatus_to_exitcode(status) == 0
            left = deadline - time.monotonic()
            if left <= 0:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                return False
            time.sleep(min(0.002, left))  # the caller did its own work meanwhile: the wait is short
    except ChildProcessError:
        return False


def _read_exactly(fd: int, size: int) -> bytes:
    data = b""
    while len(data) < size:
        piece = os.read(fd, size - len(data))
        if not piece:
            break
        data += piece
    return data


def _close_inherited(keep: tuple[int, ...]) -> None:
    """Close every descriptor but stdin, stdout, stderr and `keep`."""
    low = 3
    for fd in sorted(keep):
        if fd >= low:
            os.closerange(low, fd)
            low = fd + 1
    os.closerange(low, os.sysconf("SC_OPEN_MAX") if hasattr(os, "sysconf") else 65536)
