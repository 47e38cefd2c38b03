"""What the benchmarks share: measuring one pytest run, the floor, the opsproof run, the figures.

Each benchmark compares `pytest -m daily --profile ...` with a floor measured in the same
session: bare pytest (`PYTEST_DISABLE_PLUGIN_AUTOLOAD=1 pytest -q -p no:cacheprovider`, so no
installed plugin, opsproof's own included, is in the floor) running as many trivial
parametrized tests as the opsproof run has checks, in its own rootdir, plus whatever time the
endpoints themselves must take. Runs alternate, `--repeat` times; the figures are medians.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from opsproof.testing.servers import stop_process

REPO = Path(__file__).resolve().parent.parent
RATIO_TARGET = 1.5
RSS_TARGET_MIB = 300.0
FLOOR_TEST = """\
import pytest


@pytest.mark.parametrize("i", range({items}))
def test_trivial(i: int) -> None:
    assert i >= 0
"""


class BenchError(RuntimeError):
    """A measured run did not do what it should (bad exit code, missing or wrong results)."""


@contextmanager
def child_server(cmd: Sequence[str]) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """Start a server in its own process (its CPU is not the measured run's); yield the first line it prints."""
    proc = subprocess.Popen(list(cmd), stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        yield proc.stdout.readline().strip(), proc
    finally:
        stop_process(proc)


def wait_until(ready: Callable[[], bool], failure: str, timeout_s: float = 10.0) -> None:
    """Poll `ready` (an OSError counts as not yet) until it is true; BenchError(failure) after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if ready():
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise BenchError(failure)
        time.sleep(0.05)


# -- measuring one run ---------------------------------------------------------------------


@dataclass
class Measure:
    wall_s: float
    cpu_s: float  # user + system of the child (and any children it waited for)
    maxrss_mib: float


def measure(cmd: Sequence[str], cwd: Path, log: Path, env: dict[str, str] | None = None) -> tuple[Measure, int]:
    """Run `cmd`, output to `log`; wall time, CPU and peak RSS of that one child, and its exit code.

    `os.wait4` gives the rusage of this child alone, unlike RUSAGE_CHILDREN, whose ru_maxrss is the
    maximum over every child the benchmark has reaped so far.
    """
    with open(log, "wb") as out:
        started = time.perf_counter()
        proc = subprocess.Popen(list(cmd), cwd=cwd, stdout=out, stderr=subprocess.STDOUT, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - started
    code = os.waitstatus_to_exitcode(status)
    proc.returncode = code  # reaped here, so Popen must not wait for it again
    # Linux reports ru_maxrss in KiB, macOS in bytes.
    rss_bytes = usage.ru_maxrss if sys.platform == "darwin" else usage.ru_maxrss * 1024
    return Measure(wall, usage.ru_utime + usage.ru_stime, rss_bytes / 2**20), code


# A fresh interpreter that runs a module (`-m NAME ...`) or a script (`PATH ...`) and, at exit, writes its
# own peak RSS (VmHWM, KiB) to argv[1]. ru_maxrss cannot say it: Linux carries the forking parent's
# peak across exec into the child's, so every child of a 56 MiB benchmark "peaked" at 56 MiB or more.
OWN_PEAK = """\
import atexit, runpy, sys
peak_file = sys.argv[1]
def record():
    with open("/proc/self/status") as status, open(peak_file, "w") as out:
        out.write(next(line.split()[1] for line in status if line.startswith("VmHWM:")))
atexit.register(record)
if sys.argv[2] == "-m":
    sys.argv = [sys.argv[3], *sys.argv[4:]]
    runpy.run_module(sys.argv[0], run_name="__main__", alter_sys=True)
else:
    sys.argv = sys.argv[2:]
    sys.path[0] = __import__("os").path.dirname(sys.argv[0])
    runpy.run_path(sys.argv[0], run_name="__main__")
"""


def measure_own_peak(cmd: Sequence[str], cwd: Path, log: Path) -> tuple[Measure, int]:
    """As `measure`, for `[python, (-m module | script), args...]`, with `maxrss_mib` the process's own peak (VmHWM)."""
    peak_file = log.with_suffix(".peak")
    measured, code = measure([cmd[0], "-c", OWN_PEAK, str(peak_file), *cmd[1:]], cwd, log)
    if peak_file.exists():
        measured.maxrss_mib = int(peak_file.read_text()) / 1024
    return measured, code


@contextmanager
def workdir(keep: bool, prefix: str = "opsproof-bench-") -> Iterator[Path]:
    """A temp folder for profiles, logs and reports; removed afterwards unless `keep`."""
    work = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield work
    finally:
        if keep:
            print(f"kept {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)


def alternate(
    repeat: int, floor: Callable[[int], Measure], opsproof: Callable[[int], tuple[Measure, dict[str, Any]]]
) -> tuple[list[Measure], list[Measure], list[dict[str, Any]]]:
    """Floor and opsproof runs, alternating `repeat` times: whatever else loads the machine hits both alike."""
    floors: list[Measure] = []
    runs: list[Measure] = []
    extras: list[dict[str, Any]] = []
    for index in range(repeat):
        floors.append(floor(index))
        progress(f"run {index + 1}/{repeat}  floor   ", floors[-1])
        measured, extra = opsproof(index)
        runs.append(measured)
        extras.append(extra)
        progress(f"run {index + 1}/{repeat}  opsproof", measured)
    return floors, runs, extras


def run_floor(
    work: Path, items: int, index: int, *, bare: bool = True, args: Sequence[str] = (), label: str = "floor"
) -> Measure:
    """Bare pytest over `items` trivial tests in a folder of its own: the floor every ratio is against.

    Bare: with entry-point plugins off (PYTEST_DISABLE_PLUGIN_AUTOLOAD=1), the floor holds none of
    opsproof's start-up cost (nor xdist's, allure's or testinfra's), so the ratio charges opsproof
    with all of it. `bare=False` (a benchmark's `--plugin-floor`) loads every installed plugin, for
    comparison with the figures of sessions 1-4 only. `args` go before the test file (`-p xdist -n 2`);
    `label` names the log.
    """
    floor_dir = work / "floor"
    if not floor_dir.exists():
        floor_dir.mkdir()
        # Its own (empty) ini makes the temp dir the rootdir: no opsproof ini, so the plugin is inert.
        (floor_dir / "pytest.ini").write_text("[pytest]\n")
        (floor_dir / "test_floor.py").write_text(FLOOR_TEST.format(items=items))
    # -p no:cacheprovider: the repository's addopts disable it for the opsproof run too.
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args, "test_floor.py"]
    log = work / f"{label}-{index}.log"
    env = {**os.environ, "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"} if bare else None
    result, code = measure(cmd, floor_dir, log, env)
    if code != 0:
        raise BenchError(f"the floor run exited {code}; see {log}:\n{_tail(log)}")
    return result


def run_daily(
    work: Path,
    profile: Path,
    index: int,
    *,
    args: Sequence[str] = (),
    label: str = "opsproof",
    cwd: Path = REPO,
    env: dict[str, str] | None = None,
) -> tuple[Measure, dict[str, Any], int]:
    """`pytest -m daily` over `profile` from the repository root: its measure, results.json and bundle size.

    `args` are added to the command line (`-n 2`); `label` names the log and the report folder;
    `cwd` is another project (its own checks/ and ini) to run in, `env` the run's environment.
    """
    report_dir = work / f"reports-{label}-{index}"
    # `--opt=VALUE`, not `--opt VALUE`: pytest picks the rootdir before plugin options are known, so a
    # separate value outside the repository counts as a path argument and moves the rootdir (and loses
    # the repository's ini: testpaths, addopts, `opsproof = true`).
    cmd = [sys.executable, "-m", "pytest", "-q", "-m", "daily", f"--profile={profile}", f"--report-dir={report_dir}"]
    cmd += args
    log = work / f"{label}-{index}.log"
    result, code = measure(cmd, cwd, log, env)
    if code != 0:
        raise BenchError(f"the opsproof run exited {code}; see {log}:\n{_tail(log)}")
    bundle = bundle_of(log)
    results = json.loads((bundle / "results.json").read_text())
    bundle_bytes = sum(p.stat().st_size for p in bundle.iterdir() if p.is_file())
    shutil.rmtree(report_dir, ignore_errors=True)
    return result, results, bundle_bytes


def all_passed(results: dict[str, Any], expected: int) -> list[dict[str, Any]]:
    """The checks of results.json, once sure there are `expected` of them, all passed and all reached."""
    checks: list[dict[str, Any]] = results["checks"]
    passed = [c for c in checks if c["outcome"] == "passed"]
    reached = [c for c in checks if c.get("observed", {}).get("reached") is True]
    if len(checks) != expected or len(passed) != expected or len(reached) != expected:
        raise BenchError(
            f"expected {expected} passed checks, all reached; results.json has {len(checks)} checks, "
            f"{len(passed)} passed, {len(reached)} reached; by outcome {results['summary']['by_outcome']}"
        )
    return checks


def bundle_of(log: Path) -> Path:
    """The bundle named by the run's last line, `opsproof: passed (exit 0); evidence bundle: <dir>`."""
    lines = log.read_text(errors="replace").splitlines()
    last = lines[-1] if lines else ""
    marker = "; evidence bundle: "
    if not last.startswith("opsproof: ") or marker not in last:
        raise BenchError(f"the opsproof run's last line names no evidence bundle: {last!r}")
    bundle = Path(last.split(marker, 1)[1])
    return bundle if bundle.is_absolute() else REPO / bundle


def _tail(log: Path, lines: int = 30) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


def progress(label: str, m: Measure) -> None:
    print(f"  {label}  wall {m.wall_s:6.2f} s  cpu {m.cpu_s:6.2f} s  maxrss {m.maxrss_mib:6.1f} MiB", file=sys.stderr)


# -- the figures ---------------------------------------------------------------------------


def figures(
    setup: dict[str, Any],
    floors: list[Measure],
    runs: list[Measure],
    extras: list[dict[str, Any]],
    floor_extra_s: float,
    **targets: float,
) -> dict[str, Any]:
    """When, where, what (`setup`), and the medians both targets (`medians`' keywords) are judged on."""
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        **setup,
        **medians(floors, runs, extras, floor_extra_s, **targets),
    }


def medians(
    floors: list[Measure],
    runs: list[Measure],
    extras: list[dict[str, Any]],
    floor_extra_s: float,
    *,
    ratio_target: float = RATIO_TARGET,
    rss_target_mib: float = RSS_TARGET_MIB,
) -> dict[str, Any]:
    """The figures both targets are judged on: ratio opsproof/floor and the run's peak RSS."""
    floor_pytest_s = statistics.median(m.wall_s for m in floors)
    floor_s = floor_pytest_s + floor_extra_s
    opsproof_s = statistics.median(m.wall_s for m in runs)
    rss_mib = statistics.median(m.maxrss_mib for m in runs)
    ratio = opsproof_s / floor_s
    return {
        "floor_pytest_s": round(floor_pytest_s, 3),
        "floor_s": round(floor_s, 3),
        "opsproof_s": round(opsproof_s, 3),
        "ratio": round(ratio, 3),
        "opsproof_maxrss_mib": round(rss_mib, 1),
        "floor_maxrss_mib": round(statistics.median(m.maxrss_mib for m in floors), 1),
        "opsproof_cpu_s": round(statistics.median(m.cpu_s for m in runs), 3),
        "floor_cpu_s": round(statistics.median(m.cpu_s for m in floors), 3),
        "targets": {"ratio": ratio_target, "maxrss_mib": rss_target_mib},
        "ratio_ok": ratio <= ratio_target,
        "rss_ok": rss_mib <= rss_target_mib,
        "runs": {
            "floor": [asdict(m) for m in floors],
            "opsproof": [{**asdict(m), **e} for m, e in zip(runs, extras, strict=True)],
        },
    }


def print_table(subject: str, figures: dict[str, Any], extra_row: str | None) -> None:
    """The table, the ratio and PASS/FAIL for each target, on stdout."""
    title = (
        f"opsproof {subject}, concurrency {figures['concurrency']}, median of {figures['repeat']}, "
        f"{figures['machine']['cpus']} CPUs"
    )
    if "opsproof_bytecode" in figures:
        compiled = figures["opsproof_bytecode"]
        title += ", opsproof's bytecode " + ("compiled beforehand" if compiled else "none (compiled per run)")
    verdict = {True: "PASS", False: "FAIL"}
    rows = [("floor (trivial tests)", f"{figures['floor_pytest_s']:.2f} s", f"{figures['floor_maxrss_mib']:.0f} MiB")]
    if extra_row is not None:
        rows.append((extra_row, f"{figures['floor_s']:.2f} s", ""))
    rows.append(("opsproof daily run", f"{figures['opsproof_s']:.2f} s", f"{figures['opsproof_maxrss_mib']:.0f} MiB"))
    print(title)
    print(f"{'':32}{'wall':>10}{'peak RSS':>12}")
    for name, wall, rss in rows:
        print(f"{name:32}{wall:>10}{rss:>12}")
    targets = figures["targets"]
    print(f"ratio opsproof/floor: {figures['ratio']:.2f} (target <= {targets['ratio']}) {verdict[figures['ratio_ok']]}")
    print(
        f"peak RSS: {figures['opsproof_maxrss_mib']:.0f} MiB (target <= {targets['maxrss_mib']:.0f} MiB) "
        f"{verdict[figures['rss_ok']]}"
    )


# -- the command line ----------------------------------------------------------------------


def parser(doc: str | None, items: int, what: str) -> argparse.ArgumentParser:
    """The options every benchmark takes; a benchmark adds its hidden server options."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0] if doc else None)
    parser.add_argument("--items", type=int, default=items, help=f"{what} items in the profile (default {items})")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each, alternating; medians (default 3)")
    parser.add_argument("--concurrency", type=int, default=256, help="the profile's defaults.concurrency")
    parser.add_argument("--json", type=Path, default=None, metavar="PATH", help="also write the figures here")
    parser.add_argument("--keep", action="store_true", help="keep the temp folder (profile, logs)")
    parser.add_argument(
        "--plugin-floor",
        action="store_true",
        help="measure the floor with the installed plugins loaded, as sessions 1-4 did (default: bare pytest)",
    )
    parser.add_argument(
        "--compiled",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="compile opsproof's modules to bytecode first (the default since session 9), as pip compiles "
        "a wheel's at install and as the floor's pytest has its own; removed again after, unless they were "
        "there before. --no-compiled: from source on every run, as an editable install under this "
        "machine's PYTHONDONTWRITEBYTECODE=1 does",
    )
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    return parser


PACKAGE = REPO / "src" / "opsproof"


def bytecode_present() -> bool:
    """Whether opsproof's modules have bytecode (an editable install under PYTHONDONTWRITEBYTECODE has none)."""
    return any(PACKAGE.rglob("__pycache__/*.pyc"))


@contextmanager
def compiled_package(wanted: bool) -> Iterator[None]:
    """With `wanted`, opsproof's modules compiled for the runs inside; removed after unless there before."""
    if not wanted or bytecode_present():
        yield
        return
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(PACKAGE)], check=True, stdout=subprocess.DEVNULL)
    try:
        yield
    finally:
        for cache in list(PACKAGE.rglob("__pycache__")):
            shutil.rmtree(cache, ignore_errors=True)


def main(
    parser: argparse.ArgumentParser,
    argv: Sequence[str] | None,
    serve: Callable[[argparse.Namespace], None],
    bench: Callable[[int, int, int, bool], dict[str, Any]],
    table: Callable[[dict[str, Any]], None],
) -> int:
    """Serve (the hidden --serve), or measure, print the table and write the figures where asked.

    Exit 0 when both targets are met, 1 when one is missed, 2 when a run went wrong.
    """
    args = parser.parse_args(argv)
    if args.items < 1 or args.repeat < 1 or args.concurrency < 1:
        parser.error("--items, --repeat and --concurrency must be at least 1")
    if args.serve:
        serve(args)
        return 0
    try:
        with compiled_package(args.compiled):
            bytecode = bytecode_present()
            figures = bench(args.items, args.repeat, args.concurrency, args.keep)
        figures["opsproof_bytecode"] = bytecode  # compiled beforehand, or compiled from source by every run
    except BenchError as exc:
        print(f"{parser.prog.removesuffix('.py')}: {exc}", file=sys.stderr)
        return 2
    table(figures)
    if args.json is not None:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0 if figures["ratio_ok"] and figures["rss_ok"] and figures.get("ratio_blackbox_ok", True) else 1
