"""Starting the demo's services side by side, and the timeline of when each was ready.

Most of the demo's services spend their start-up waiting on another process (initdb and
postgres, redis-server, the health endpoints' interpreter, pg_dump): started one after
another, those waits add up; started from threads, the slowest one sets the pace::

    timeline = Timeline()
    with ExitStack() as stack:
        ready = start_together(stack, {"redis": lambda own: own.enter_context(serve_demo_redis())}, timeline)
        ready["redis"].address

Whatever happens (a service that fails, Ctrl-C in the middle), every service that did
start is stopped before the error goes on: the ones still starting are waited for first,
since a thread cannot be interrupted halfway through starting a server. They stop side by
side too, when the block ends.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from opsproof.errors import OpsproofError


class DemoStartError(OpsproofError, RuntimeError):
    """A demo service did not start or did not settle; the message says which and why."""


class DemoUsageError(OpsproofError, ValueError):
    """A setting of the demo's (an environment variable) is wrong; the message names it."""


# A task enters the contexts of its service into the ExitStack it is given and returns what it serves.
Task = Callable[[ExitStack], Any]


@dataclass
class Timeline:
    """Named moments, in seconds since the timeline began (thread-safe: services mark it from threads)."""

    began: float = field(default_factory=time.monotonic)
    began_wall: float = field(default_factory=time.time)
    marks: list[tuple[float, str]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def mark(self, what: str, at: float | None = None) -> None:
        """Record `what` now (or at the monotonic moment `at`)."""
        moment = (time.monotonic() if at is None else at) - self.began
        with self._lock:
            self.marks.append((moment, what))

    def mark_wall(self, what: str, wall: float) -> None:
        """Record `what` at a wall-clock moment (a file's mtime, written by another process)."""
        self.mark(what, at=self.began + (wall - self.began_wall))

    def mark_process_start(self, what: str) -> None:
        """Record when this process started (Linux: /proc/self/stat), before the timeline began."""
        try:
            fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
            started = int(fields[19]) / os.sysconf("SC_CLK_TCK")  # seconds after boot
        except (OSError, ValueError, IndexError):
            return
        self.mark(what, at=self.began - (time.clock_gettime(time.CLOCK_BOOTTIME) - started))

    def lines(self) -> list[str]:
        with self._lock:
            return [f"{moment:6.2f} s  {what}" for moment, what in sorted(self.marks)]


def start_together(
    stack: ExitStack, tasks: Mapping[str, Task], timeline: Timeline, started: Sequence[ExitStack] = ()
) -> dict[str, Any]:
    """Run every task in a thread of its own; their contexts join `stack`, to be closed side by side.

    Returns each task's result by name once all are done. When one fails, or the wait is
    interrupted, every task still running is waited for, everything started is stopped,
    and the (first) error is raised. `started`: services started before, stopped with these.
    """
    own = {name: ExitStack() for name in tasks}
    results: dict[str, Any] = {}
    errors: list[BaseException] = []

    def run(name: str, task: Task) -> None:
        try:
            results[name] = task(own[name])
            timeline.mark(f"{name} ready")
        except BaseException as exc:  # handed to the main thread, which raises it
            errors.append(exc)

    threads = [
        threading.Thread(target=run, args=(name, task), name=f"opsproof-demo-{name}", daemon=True)
        for name, task in tasks.items()
    ]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    except BaseException:
        _wait_out(threads)
        with contextlib.suppress(Exception):
            close_together([*own.values(), *started])
        raise
    if errors:
        with contextlib.suppress(Exception):
            close_together([*own.values(), *started])
        raise errors[0]
    stack.callback(close_together, [*own.values(), *started])
    return results


def close_together(stacks: list[ExitStack]) -> None:
    """Close every stack, each from a thread of its own (stopping a server is mostly waiting); the first error."""
    errors: list[BaseException] = []

    def close(each: ExitStack) -> None:
        try:
            each.close()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=close, args=(each,), name="opsproof-demo-stop") for each in stacks]
    for thread in threads:
        thread.start()
    _wait_out(threads)
    if errors:
        raise errors[0]


def _wait_out(threads: list[threading.Thread]) -> None:
    """Join every thread; a second Ctrl-C does not leave a server half-started or half-stopped unattended."""
    for thread in threads:
        while thread.is_alive():
            with contextlib.suppress(KeyboardInterrupt):
                thread.join()
