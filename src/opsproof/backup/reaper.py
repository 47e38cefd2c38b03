"""The drills' last line of defence: removes what a drill left when its process died.

A restore drill starts processes (a throwaway PostgreSQL, psql, pg_restore) and fills a
temporary folder. The drill cleans up after itself on success, failure, timeout and
interrupt; but the run may also end the probe process with SIGKILL, which no `finally`
survives. So each drill process starts this watcher first, as a script in its own
session (a Ctrl-C on the terminal does not reach it), and tells it on stdin which
folders it made::

    + /tmp/opsproof-drill-abc123      a folder to remove if the drill does not
    - /tmp/opsproof-drill-abc123      the drill removed it itself: forget it

When stdin ends (the drill process exited, however it died) or on SIGTERM/SIGHUP, every
folder still registered is reaped: each process whose command line names a path inside
it (the postmaster's `-D`, psql's socket directory or `--set` marker, pg_restore's
archive file, initdb) is stopped, postmasters with SIGQUIT (immediate shutdown: they
end their backends and release shared memory) and the rest with SIGKILL, then the
folder is removed. Processes are found by command line rather than by pid, so a pid
reused by an unrelated process is never signalled, and a process started in the instant
before the drill died is found too.

Standard library only, run by path (`python -I reaper.py`), so it starts in ~20 ms and
imports nothing of the run.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import sys
import time
from pathlib import Path
from types import FrameType

STOP_WAIT_S = 10.0  # for an immediate shutdown (SIGQUIT) to end the postmaster and its backends
KILL_WAIT_S = 5.0


def processes_under(folder: str) -> dict[int, list[str]]:
    """pid -> argv of every process (not us) whose arguments name `folder` or a path inside it."""
    found: dict[int, list[str]] = {}
    prefix = folder.rstrip("/") + "/"
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            raw = Path("/proc", entry, "cmdline").read_bytes()
        except OSError:  # ended meanwhile, or not ours to read
            continue
        argv = [part.decode("utf-8", "replace") for part in raw.split(b"\0") if part]
        if any(arg == folder or prefix in arg for arg in argv):
            found[int(entry)] = argv
    return found


def _is_postmaster(argv: list[str]) -> bool:
    return bool(argv) and os.path.basename(argv[0]) == "postgres" and "-D" in argv


def _signal(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, sig)


def _alive(pids: set[int]) -> set[int]:
    # Not our children: /proc/<pid> vanishes once init reaps them. A zombie counts as gone.
    alive = set()
    for pid in pids:
        try:
            state = Path("/proc", str(pid), "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if state != "Z":
            alive.add(pid)
    return alive


def _wait_gone(pids: set[int], seconds: float) -> set[int]:
    deadline = time.monotonic() + seconds
    left = _alive(pids)
    while left and time.monotonic() < deadline:
        time.sleep(0.05)
        left = _alive(left)
    return left


def reap(folder: str) -> None:
    """Stop every process working in `folder`, then remove it."""
    found = processes_under(folder)
    postmasters = {pid for pid, argv in found.items() if _is_postmaster(argv)}
    for pid in found:
        _signal(pid, signal.SIGQUIT if pid in postmasters else signal.SIGKILL)
    left = _wait_gone(set(found), STOP_WAIT_S)
    # Anything still there (or started meanwhile by a dying parent) gets SIGKILL.
    left |= set(processes_under(folder))
    for pid in left:
        _signal(pid, signal.SIGKILL)
    _wait_gone(left, KILL_WAIT_S)
    shutil.rmtree(folder, ignore_errors=True)


def main() -> int:
    registered: list[str] = []

    def reap_all() -> None:
        while registered:
            reap(registered.pop())

    def on_signal(signum: int, frame: FrameType | None) -> None:
        reap_all()
        sys.exit(0)

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a terminal's Ctrl-C is for the run, not for us
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    for line in sys.stdin:
        op, _, path = line.rstrip("\n").partition(" ")
        if op == "+" and path and path not in registered:
            registered.append(path)
        elif op == "-" and path in registered:
            registered.remove(path)
    reap_all()
    return 0


if __name__ == "__main__":
    sys.exit(main())
