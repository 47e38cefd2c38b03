"""`opsproof demo`: start the demo environment, run the daily checks against it, point at the report.

The run's time is Prometheus's: its first round of target discovery comes 5 s after it
starts, and no setting shortens it. So Prometheus starts first, the other services start
side by side meanwhile (`demo_environment`), and pytest starts as soon as they answer,
held by `opsproof.demo.gate` until Prometheus has scraped its targets and fired its
alerts: pytest's start-up overlaps the wait, and every check probes a settled service.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from opsproof.demo.gate import GATE_VARIABLE, GO, MARKS_VARIABLE
from opsproof.demo.startup import Timeline
from opsproof.local.processes import stop_process  # no import on the way out (see there)

GATE_PLUGIN = "opsproof.demo.gate"
VOLUNTARY_EXIT_S = 5.0  # after Ctrl-C, pytest (which got it too) writes its interrupted bundle: let it


def run_demo(root: Path, port: int, serve: bool, pytest_args: list[str], timeline: Timeline) -> int:
    """Serve the demo and run `pytest -m daily --profile demo` against it; pytest's exit status."""
    from opsproof.demo.environment import demo_environment

    with demo_environment(port, settled=serve, timeline=timeline) as demo:
        command = [sys.executable, "-m", "pytest", "-m", "daily", "--profile", "demo", *demo.pytest_args()]
        command += pytest_args
        for line in demo.services:
            print(f"opsproof demo: {line}")
        if serve:
            exports = " ".join(f"{name}={shlex.quote(value)}" for name, value in demo.environ.items())
            print(
                "opsproof demo: serving until Ctrl-C; in another shell, from this folder, run:\n  "
                + f"{exports} {shlex.join(command[2:])}".strip()
            )
            threading.Event().wait()  # until Ctrl-C, SIGTERM or SIGHUP (KeyboardInterrupt)
        print("opsproof demo: running " + shlex.join(command[2:]), flush=True)
        started = time.time()
        code = _run_gated(command, root, {**os.environ, **demo.environ}, demo.settle, timeline)
        timeline.mark("pytest exited")
    timeline.mark("services stopped")
    report = newest_report(report_dir(root, pytest_args), since=started)
    if report is not None:
        timeline.mark_wall("bundle sealed (its newest file written)", _newest_mtime(report.parent))
        print(f"opsproof demo: open {report} in a browser (exit {code})")
    return code


def _run_gated(
    command: list[str], root: Path, environ: dict[str, str], settle: Callable[[], None], timeline: Timeline
) -> int:
    """Start pytest now, let it past the gate once `settle()` returns; its exit status."""
    read_end, write_end = os.pipe()
    plugins = ",".join(p for p in (environ.get("PYTEST_PLUGINS", ""), GATE_PLUGIN) if p)
    marks = Path(tempfile.mkdtemp(prefix="opsproof-demo-marks-")) / "marks"
    environ = {**environ, GATE_VARIABLE: str(read_end), MARKS_VARIABLE: str(marks), "PYTEST_PLUGINS": plugins}
    try:
        process = subprocess.Popen(command, cwd=root, env=environ, pass_fds=(read_end,))
    finally:
        os.close(read_end)
    timeline.mark("pytest started (held at the gate)")
    try:
        try:
            settle()
            os.write(write_end, GO)
            timeline.mark("gate opened: pytest goes on")
        finally:
            os.close(write_end)  # without "go": pytest ends before it probes anything
        return process.wait()
    except BaseException as exc:
        # Ctrl-C (a KeyboardInterrupt of no signal name) reached pytest too, one process group:
        # it writes its interrupted bundle and ends. SIGTERM, SIGHUP or a service that did not
        # settle: pytest is told to stop (SIGTERM, which it takes as Ctrl-C).
        if isinstance(exc, KeyboardInterrupt) and not exc.args:
            with contextlib.suppress(subprocess.TimeoutExpired, KeyboardInterrupt):
                process.wait(VOLUNTARY_EXIT_S)
        raise
    finally:
        if process.poll() is None:
            stop_process(process)
        _read_marks(marks, timeline)


def _read_marks(marks: Path, timeline: Timeline) -> None:
    """The moments pytest marked (`opsproof.demo.gate`) into the timeline; the file goes."""
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
