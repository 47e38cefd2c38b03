"""What every step of a restore drill shares: its error, its cancellation and its timed phases."""


from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from opsproof.errors import OpsproofError

T = TypeVar("T")
Stage = Literal["choose", "prepare", "fetch", "restore", "verify"]


class DrillError(OpsproofError):
    """The drill stopped; the message says why in words, `stage` where.

    `misconfigured`: the reason is not the backup's or the target's state but the
    set-up (no PostgreSQL binaries, access denied, a scratch database that is not empty):
    an `error` record, not a `failed` one.
    """

    def __init__(self, message: str, *, stage: Stage, misconfigured: bool = False, timed_out: bool = False) -> None:
        super().__init__(message)
        self.stage = stage
        self.misconfigured = misconfigured
        self.timed_out = timed_out


class CancelToken:
    """Stops a drill running in another thread: kills its subprocesses and makes its loops raise."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self._lock = threading.Lock()
        self._processes: set[subprocess.Popen[bytes]] = set()
        self.reason = ""

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def cancel(self, reason: str) -> None:
        with self._lock:
            if not self._event.is_set():
                self.reason = reason
                self._event.set()
            processes = list(self._processes)
        for process in processes:
            kill_group(process)

    def check(self, stage: Stage) -> None:
        if self._event.is_set():
            raise DrillError(f"stopped: {self.reason}", stage=stage, timed_out=True)

    @contextlib.contextmanager
    def tracking(self, process: subprocess.Popen[bytes]) -> Iterator[None]:
        """Kill `process` (and its group) if the drill is cancelled while it runs; always on the way out."""
        with self._lock:
            self._processes.add(process)
            cancelled = self._event.is_set()
        if cancelled:
            kill_group(process)
        try:
            yield
        finally:
            with self._lock:
                self._processes.discard(process)
            if process.poll() is None:
                kill_group(process)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(10)


def kill_group(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL a restore tool and whatever it forked (pg_restore's parallel workers share its group)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)


# -- phases ---------------------------------------------------------------------------------


@dataclass
class Phase:
    """One timed step of a drill, in POSIX seconds."""

    name: str
    started: float
    finished: float | None = None
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def seconds(self) -> float | None:
        return None if self.finished is None else max(0.0, self.finished - self.started)


class Phases:
    """The timeline of a drill: phases in the order they started (streamed ones overlap)."""

    def __init__(self) -> None:
        self.items: list[Phase] = []
        self._lock = threading.Lock()

    def add(self, name: str, started: float, finished: float | None = None, **detail: Any) -> Phase:
        phase = Phase(name, started, finished, dict(detail))
        with self._lock:
            self.items.append(phase)
            self.items.sort(key=lambda p: p.started)
        return phase

    @contextlib.contextmanager
    def timing(self, name: str, **detail: Any) -> Iterator[Phase]:
        """Time a block; the phase is recorded (unfinished: with the time it stopped) however it ends."""
        phase = self.add(name, time.time(), **detail)
        try:
            yield phase
        finally:
            phase.finished = time.time()

    def get(self, name: str) -> Phase | None:
        return next((p for p in self.items if p.name == name), None)

    def wall_seconds(self) -> float | None:
        """From the first phase's start to the last one's end (streamed phases overlap, so not a sum)."""
        if not self.items or any(p.finished is None for p in self.items):
            return None
        return max(p.finished or 0.0 for p in self.items) - min(p.started for p in self.items)



async def in_thread(function: Callable[[], T], on_cancel: Callable[[], None] | None = None) -> T:
    """Run `function` in a thread of its own; if we are cancelled, stop it and wait for it to unwind.

    Not the loop's default executor: a restore holds its thread for hours, and the other
    probes of the run must keep theirs.
    """
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def settle(result: Any = None, error: BaseException | None = None) -> None:
        if future.done():
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)

    def run() -> None:
        try:
            outcome: tuple[Any, BaseException | None] = (function(), None)
        except BaseException as exc:
            outcome = (None, exc)
        with contextlib.suppress(RuntimeError):  # the loop is gone: nobody waits any more
            loop.call_soon_threadsafe(settle, *outcome)

    threading.Thread(target=run, name="opsproof-drill", daemon=True).start()
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        if on_cancel is not None:
            on_cancel()
        # The thread's cleanup (processes killed, files closed) finishes before we go on.
        with contextlib.suppress(BaseException):
            await asyncio.shield(future)
        raise
