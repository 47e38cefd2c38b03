"""`opsproof demo`: start the demo environment, run the daily checks against it, point at the report.

Nothing waits for what it need not: pytest is spawned first and held, importing what the run
needs (`opsproof.demo.held`); the services start side by side meanwhile, Prometheus first
(`demo_environment`), whose back-filled data lets it settle at its first rule evaluation
rather than its 5 s discovery round. Once every service answers and Prometheus has settled,
pytest is let go with the run's arguments, and every check probes a settled service.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from opsproof.demo.held import GATE_VARIABLE, MARKS_VARIABLE
from opsproof.demo.startup import Timeline
from opsproof.local.processes import stop_process  # no import on the way out (see there)

GATE_PLUGIN = "opsproof.demo.gate"
VOLUNTARY_EXIT_S = 5.0  # after Ctrl-C, pytest (which got it too) writes its interrupted bundle: let it


def run_demo(root: Path, port: int, serve: bool, pytest_args: list[str], timeline: Timeline) -> int:
    """Serve the demo and run `pytest -m daily --profile demo` against it; pytest's exit status."""
    from opsproof.demo.environment import demo_environment

    with contextlib.ExitStack() as stack:
        held = None if serve else stack.enter_context(held_pytest(root, timeline))
        demo = stack.enter_context(demo_environment(port, settled=serve, timeline=timeline))
        command = [sys.executable, "-m", "pytest", "-m", "daily", "--profile", "demo", *demo.pytest_args()]
        command += pytest_args
        for line in demo.services:
            print(f"opsproof demo: {line}")
        if held is None:
            exports = " ".join(f"{name}={shlex.quote(value)}" for name, value in demo.environ.items())
            print(
                "opsproof demo: serving until Ctrl-C; in another shell, from this folder, run:\n  "
                + f"{exports} {shlex.join(command[2:])}".strip()
            )
            threading.Event().wait()  # until Ctrl-C, SIGTERM or SIGHUP (KeyboardInterrupt)
            return 0
        print("opsproof demo: running " + shlex.join(command[2:]), flush=True)
        started = time.time()
        code = held.go(command[3:], demo.environ, demo.settle)
        timeline.mark("pytest exited")
    timeline.mark("services stopped")
    report = newest_report(report_dir(root, pytest_args), since=started)
    if report is not None:
        timeline.mark_wall("bundle sealed (its newest file written)", _newest_mtime(report.parent))
        print(f"opsproof demo: open {report} in a browser (exit {code})")
    return code


class HeldPytest:
    """pytest spawned and held (`opsproof.demo.held`); `go()` lets it run."""

    def __init__(
        self, process: subprocess.Popen[bytes], write_end: int, timeline: Timeline, sigint: bool = True
    ) -> None:
        self.process = process
        self.write_end: int | None = write_end
        self.timeline = timeline
        self.sigint = sigint  # Ctrl-C was the demo's to take (not ignored, as under nohup): pytest's too
        self.let_go = False

    def go(self, args: list[str], secrets: dict[str, str], settle: Callable[[], None]) -> int:
        """Once `settle()` returns, run `pytest ARGS` with `secrets` in its environment; its exit status."""
        settle()
        assert self.write_end is not None
        order = json.dumps({"args": args, "environ": secrets, "sigint": self.sigint}).encode()
        try:
            while order:
                order = order[os.write(self.write_end, order) :]
            self.let_go = True
        finally:
            self.close()
        self.timeline.mark("gate opened: pytest goes on")
        return self.process.wait()

    def close(self) -> None:
        """The pipe's end: without a command, pytest ends before it probes anything."""
        if self.write_end is not None:
            os.close(self.write_end)
            self.write_end = None


@contextlib.contextmanager
def held_pytest(root: Path, timeline: Timeline) -> Iterator[HeldPytest]:
    """Spawn the held pytest now (in `root`); on the way out it is let go or told to end, and waited for."""
    read_end, write_end = os.pipe()
    plugins = ",".join(p for p in (os.environ.get("PYTEST_PLUGINS", ""), GATE_PLUGIN) if p)
    marks = Path(tempfile.mkdtemp(prefix="opsproof-demo-marks-")) / "marks"
    environ = {**os.environ, GATE_VARIABLE: str(read_end), MARKS_VARIABLE: str(marks), "PYTEST_PLUGINS": plugins}
    # Spawned with Ctrl-C ignored (an ignored signal stays so across exec, and Python keeps it):
    # one while held would interrupt an import with a traceback. The demo ends it then; once let
    # go, it takes Ctrl-C back, as pytest does.
    ignoring = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN) if ignoring else None
    try:
        process = subprocess.Popen(
            [sys.executable, "-m", "opsproof.demo.held"], cwd=root, env=environ, pass_fds=(read_end,)
        )
    except BaseException:
        os.close(write_end)
        raise
    finally:
        if ignoring:
            signal.signal(signal.SIGINT, previous)
        os.close(read_end)
    timeline.mark("pytest started (held at the gate)")
    held = HeldPytest(process, write_end, timeline, sigint=previous is not signal.SIG_IGN)
    try:
        yield held
    except BaseException as exc:
        held.close()
        # Ctrl-C (a KeyboardInterrupt of no signal name) reached a running pytest too, one process
        # group: it writes its interrupted bundle and ends. Still held, SIGTERM, SIGHUP or a service
        # that did not start: pytest is told to stop (SIGTERM, which it takes as Ctrl-C).
        if isinstance(exc, KeyboardInterrupt) and not exc.args and held.let_go:
            with contextlib.suppress(subprocess.TimeoutExpired, KeyboardInterrupt):
                process.wait(VOLUNTARY_EXIT_S)
        raise
    finally:
        held.close()
        if process.poll() is None:
            stop_process(process)
        _read_marks(marks, timeline)


def _read_marks(marks: Path, timeline: Timeline) -> None:
    """The moments pytest marked (`opsproof.demo.held`, `opsproof.demo.gate`) into the timeline; the file goes."""
    with contextlib.suppress(OSError):
        for line in marks.read_text(encoding="utf-8").splitlines():
            wall, what = line.split(" ", 1)
            timeline.mark_wall(what, float(wall))
    shutil.rmtree(marks.parent, ignore_errors=True)


def report_dir(root: Path, pytest_args: list[str]) -> Path:
    for index, arg in enumerate(pytest_args):
        if arg == "--report-dir" and index + 1 < len(pytest_args):
            return Path(pytest_args[index + 1])
        if arg.startswith("--report-dir="):
            return Path(arg.split("=", 1)[1])
    return root / "reports"


def newest_report(report_dir: Path, since: float) -> Path | None:
    reports = [p for p in report_dir.glob("demo-*/report.html") if p.stat().st_mtime >= since - 1]
    return max(reports, key=lambda p: p.stat().st_mtime) if reports else None


def _newest_mtime(folder: Path) -> float:
    return max((p.stat().st_mtime for p in folder.rglob("*") if p.is_file()), default=folder.stat().st_mtime)
