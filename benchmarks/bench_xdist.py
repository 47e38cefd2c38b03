"""Benchmark: `pytest -n W` (pytest-xdist) against one process, over N HTTP items that answer at once.

Target (issue 18): over 10,000 HTTP items against an instant local server, `-n 2` takes no longer
than the same run in one process. Each repeat runs, one after the other (so the machine's load hits
all alike): the bare floor (`PYTEST_DISABLE_PLUGIN_AUTOLOAD=1 pytest -q -p no:cacheprovider` over
N trivial tests), the same floor with `-p xdist -n W`, the opsproof daily run, the opsproof daily
run with `-n W` as a user runs it (opsproof declines workers that cannot help and runs in one
process: its log must say so), and with `-n W --use-workers` (the workers themselves). The figures
are medians; every other repeat runs the rows in the reverse order. Every opsproof run must exit
0 with N passed, reached checks, and the same records (check, outcome, severity) in results.json.

`--baseline DIR` also runs another version of opsproof, one process and `-n W`, in the same
alternation (DIR: a checkout, e.g. `git archive REV | tar -x -C DIR`; its src/ goes first on
PYTHONPATH): before and after a change, under the same load.

`--check-cpu-ms MS` adds a custom check to every item that computes for MS ms of CPU (as a check
that parses a large body or verifies a signature would), in a copy of the repository's checks/:
the case where more workers can help.

Usage, from anywhere (the opsproof runs' cwd is the repository root)::

    .venv/bin/python benchmarks/bench_xdist.py [--items 10000] [--workers 2] [--repeat 3] [--json out.json]
    .venv/bin/python benchmarks/bench_xdist.py --items 200 --check-cpu-ms 20

Exit status 0 when `-n W` as a user runs it is no slower than one process (medians), 1 when it is,
2 when a run went wrong (or opsproof kept or declined the workers where it should not have).
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import bench_http
import harness
from harness import BenchError, Measure

from opsproof.run.worker_policy import usable_cores

ROWS = ("floor", "floor_xdist", "opsproof", "opsproof_xdist", "opsproof_workers")
DECLINED = " not used: "  # opsproof's line when it runs `-n W` in one process
BASELINE_ROWS = ("baseline", "baseline_xdist")
CPU_CHECK = """\
\"\"\"A custom check that computes for {ms} ms of CPU per item.\"\"\"

import time

from opsproof.probes.http import HttpFacts


def test_computes(facts: HttpFacts) -> None:
    until = time.thread_time() + {ms} / 1000
    while time.thread_time() < until:
        pass
    assert facts.reached
"""
# importlib: the CPU check's checks/custom/test_http.py and checks/health/test_http.py share a basename.
INI = "[pytest]\ntestpaths = checks\naddopts = --strict-markers -p no:cacheprovider --import-mode=importlib\n"
INI += "opsproof = true\n"


def _project(work: Path, cpu_ms: float) -> tuple[Path, int]:
    """Where the opsproof runs start, and how many checks each item has: the repository, or a copy with a CPU check."""
    if not cpu_ms:
        return harness.REPO, 1
    project = work / "project"
    shutil.copytree(harness.REPO / "checks", project / "checks")
    (project / "checks" / "custom").mkdir()
    (project / "checks" / "custom" / "test_http.py").write_text(CPU_CHECK.format(ms=cpu_ms))
    (project / "pytest.ini").write_text(INI)
    return project, 2


def _records(results: dict[str, Any]) -> list[tuple[str, str, str]]:
    """What must not depend on the number of workers (a passed check's message carries its latency)."""
    return sorted((c["check"], c["outcome"], c["severity"]) for c in results["checks"])


def bench(
    items: int, repeat: int, concurrency: int, workers: int, cpu_ms: float, keep: bool, baseline: Path | None = None
) -> dict[str, Any]:
    xdist = ("-n", str(workers))
    rows = ROWS + (BASELINE_ROWS if baseline is not None else ())
    runs: dict[str, list[Measure]] = {row: [] for row in rows}
    with harness.workdir(keep, prefix="opsproof-bench-xdist-") as work, bench_http.slow_server(0.0) as port:
        project, per_item = _project(work, cpu_ms)
        # A check of one's own (--check-cpu-ms) keeps the workers where the cores suffice.
        declines = not cpu_ms or usable_cores() < workers + 2
        checks = items * per_item
        profile = work / "bench.yaml"
        # Thresholds no loaded machine reaches: the benchmark is about wall time, not latency.
        bench_http.write_profile(profile, port, items, concurrency, timeout="30s", latency="{fail: 20s}")

        def daily(
            index: int, args: Sequence[str], label: str, other: Path | None = None, declined: bool | None = None
        ) -> tuple[Measure, list[tuple[str, str, str]]]:
            cwd, env = project, None
            if other is not None:
                cwd, env = other, {**os.environ, "PYTHONPATH": str(other / "src")}
            measured, results, _ = harness.run_daily(work, profile, index, args=args, label=label, cwd=cwd, env=env)
            harness.all_passed(results, checks)
            said = DECLINED in (work / f"{label}-{index}.log").read_text(errors="replace")
            if declined is not None and said != declined:
                raise BenchError(f"{label}: opsproof {'kept' if declined else 'declined'} the workers; see its log")
            return measured, _records(results)

        floor_xdist = ("-p", "xdist", *xdist)  # bare: no plugin is loaded unless named
        measures: dict[str, Callable[[int], tuple[Measure, Any]]] = {
            "floor": lambda i: (harness.run_floor(work, checks, i), None),
            "floor_xdist": lambda i: (harness.run_floor(work, checks, i, args=floor_xdist, label="fx"), None),
            "opsproof": lambda i: daily(i, (), "opsproof"),
            "opsproof_xdist": lambda i: daily(i, xdist, "opsproof-xdist", declined=declines),
            "opsproof_workers": lambda i: daily(i, (*xdist, "--use-workers"), "opsproof-workers", declined=False),
            "baseline": lambda i: daily(i, (), "baseline", baseline),
            "baseline_xdist": lambda i: daily(i, xdist, "baseline-xdist", baseline),
        }
        for index in range(repeat):
            records = {}
            # Every other repeat in the reverse order: a load that rises or falls during a repeat
            # (other work on the machine) then favours no row, least of all the one run next to another.
            for row in rows if index % 2 == 0 else reversed(rows):
                measured, records[row] = measures[row](index)
                runs[row].append(measured)
                harness.progress(f"run {index + 1}/{repeat}  {row:15}", measured)
            differ = [
                row for row in rows if row.startswith(("opsproof_", "baseline")) and records[row] != records["opsproof"]
            ]
            if differ:
                raise BenchError(f"run {index + 1}: the records of {', '.join(differ)} differ from one process's")
    wall = {row: statistics.median(m.wall_s for m in runs[row]) for row in rows}
    if baseline is not None:
        compared = {
            "baseline": str(baseline),
            "baseline_xdist_vs_one_process": round(wall["baseline_xdist"] / wall["baseline"], 3),
            "baseline_xdist_vs_xdist_floor": round(wall["baseline_xdist"] / wall["floor_xdist"], 3),
        }
    return {
        **harness.figures(
            {
                **{"items": items, "checks": checks, "check_cpu_ms": cpu_ms, "workers": workers},
                **{"repeat": repeat, "concurrency": concurrency, "endpoint_delay_s": 0},
            },
            runs["floor"],
            runs["opsproof"],
            [{} for _ in runs["opsproof"]],
            floor_extra_s=0.0,
        ),
        **(compared if baseline is not None else {}),
        "wall_s": {row: round(seconds, 3) for row, seconds in wall.items()},
        "cpu_s": {row: round(statistics.median(m.cpu_s for m in runs[row]), 3) for row in rows},
        "maxrss_mib": {row: round(statistics.median(m.maxrss_mib for m in runs[row]), 1) for row in rows},
        "xdist_declined": declines,
        "xdist_vs_one_process": round(wall["opsproof_xdist"] / wall["opsproof"], 3),
        "xdist_cpu_vs_one_process": round(
            statistics.median(m.cpu_s for m in runs["opsproof_xdist"])
            / statistics.median(m.cpu_s for m in runs["opsproof"]),
            3,
        ),
        "workers_vs_one_process": round(wall["opsproof_workers"] / wall["opsproof"], 3),
        "workers_vs_xdist_floor": round(wall["opsproof_workers"] / wall["floor_xdist"], 3),
        "opsproof_vs_floor": round(wall["opsproof"] / wall["floor"], 3),
        "xdist_vs_floor": round(wall["opsproof_xdist"] / wall["floor"], 3),
        "xdist_vs_xdist_floor": round(wall["opsproof_xdist"] / wall["floor_xdist"], 3),
        "xdist_floor_vs_floor": round(wall["floor_xdist"] / wall["floor"], 3),
        "all_runs": {row: [asdict(m) for m in runs[row]] for row in rows},
    }


def print_table(figures: dict[str, Any]) -> None:
    workers = figures["workers"]
    names = {
        "floor": "bare floor, one process",
        "floor_xdist": f"bare floor, -n {workers}",
        "opsproof": "opsproof, one process",
        "opsproof_xdist": f"opsproof, -n {workers}" + (" (declined)" if figures["xdist_declined"] else ""),
        "opsproof_workers": f"opsproof, -n {workers} --use-workers",
        "baseline": "baseline, one process",
        "baseline_xdist": f"baseline, -n {workers}",
    }
    computing = f", a check of {figures['check_cpu_ms']:g} ms CPU on each" if figures["check_cpu_ms"] else ""
    print(
        f"opsproof under pytest-xdist: {figures['items']} HTTP items answering at once{computing} "
        f"({figures['checks']} checks), median of {figures['repeat']}, {figures['machine']['cpus']} CPUs"
    )
    print(f"{'':36}{'wall':>10}{'cpu':>10}{'peak RSS':>12}")
    for row in figures["wall_s"]:
        wall, cpu, rss = figures["wall_s"][row], figures["cpu_s"][row], figures["maxrss_mib"][row]
        print(f"{names[row]:36}{wall:>8.2f} s{cpu:>8.2f} s{rss:>8.0f} MiB")
    if "baseline" in figures:
        print(
            f"baseline: -n {workers} / one process: {figures['baseline_xdist_vs_one_process']:.2f}; "
            f"-n {workers} / bare floor -n {workers}: {figures['baseline_xdist_vs_xdist_floor']:.2f}"
        )
    verdict = "PASS" if figures["xdist_vs_one_process"] <= 1.0 else "FAIL"
    print(
        f"-n {workers} as a user runs it ({'declined: one process' if figures['xdist_declined'] else 'workers'}) "
        "/ one process: "
        f"{figures['xdist_vs_one_process']:.2f} (target <= 1.0) {verdict}; "
        f"CPU {figures['xdist_cpu_vs_one_process']:.2f}"
    )
    print(
        f"-n {workers} --use-workers (the workers) / one process: {figures['workers_vs_one_process']:.2f}; "
        f"/ bare floor -n {workers}: {figures['workers_vs_xdist_floor']:.2f}"
    )
    print(
        f"one process / bare floor: {figures['opsproof_vs_floor']:.2f}; "
        f"bare floor -n {workers} / bare floor: {figures['xdist_floor_vs_floor']:.2f}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = harness.parser(__doc__, 10_000, "HTTP")
    parser.add_argument("--workers", type=int, default=2, help="pytest-xdist workers, -n (default 2)")
    parser.add_argument("--baseline", type=Path, default=None, metavar="DIR", help="also run the opsproof in DIR")
    parser.add_argument(
        "--check-cpu-ms", type=float, default=0.0, metavar="MS", help="add a custom check of MS ms CPU to each item"
    )
    args = parser.parse_args(argv)
    if min(args.items, args.repeat, args.concurrency, args.workers) < 1 or args.check_cpu_ms < 0:
        parser.error("--items, --repeat, --concurrency and --workers must be at least 1, --check-cpu-ms at least 0")
    if args.baseline is not None and (args.check_cpu_ms or not (args.baseline / "src" / "opsproof").is_dir()):
        parser.error("--baseline DIR: a checkout of opsproof (DIR/src/opsproof), without --check-cpu-ms")
    try:
        figures = bench(
            args.items, args.repeat, args.concurrency, args.workers, args.check_cpu_ms, args.keep, args.baseline
        )
    except BenchError as exc:
        print(f"bench_xdist: {exc}", file=sys.stderr)
        return 2
    print_table(figures)
    if args.json is not None:
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")
    return 0 if figures["xdist_vs_one_process"] <= 1.0 else 1


if __name__ == "__main__":
    sys.exit(main())
