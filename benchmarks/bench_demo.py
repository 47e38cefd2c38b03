"""Benchmark: `opsproof demo` end to end, against the 5 s of the issue and Prometheus's own floor.

Target (issue 18 item 5): `opsproof demo` in at most 5 s on this machine, from the command's
start to its exit (every service started, the daily checks run, the bundle sealed, every
service stopped).

Usage, from the repository root::

    .venv/bin/python benchmarks/bench_demo.py [--repeat 3] [--checkout DIR] [--json out.json]

What is measured, `--repeat` times, alternating:

- **demo**: `opsproof demo --port 0 --timeline -- --report-dir TMP -q` (the console script of
  this environment), wall time from spawn to exit; its exit status must be 0 and its last line
  must name the report. The timeline it prints (when each service was ready, pytest started,
  the gate opened, the bundle was sealed) is shown for the median run.
- **floor: Prometheus's first target** (what the demo waited for until it back-filled its
  Prometheus, and no longer does): a bare `prometheus` with one static target, from spawn to
  the first `/api/v1/targets` answer that lists it with a health. Prometheus's discovery
  manager sends its first targets on a fixed 5 s tick; a demo under it settles before then.
- with `--checkout DIR` (a copy of another commit, e.g. `git archive main | tar -x -C DIR`):
  **before**, the same demo command run from DIR with DIR/src first on PYTHONPATH.

Prints one line per run on stderr (with the 1-minute load average, the machine being shared),
then the medians, and PASS/FAIL against 5 s on stdout.
Exit status: 0 target met, 1 missed, 2 a run went wrong (it is left out of the medians, and
said). A benchmark, not a timed test.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
TARGET_S = 5.0


class BenchError(RuntimeError):
    """A demo run did not do what it should."""


def run_demo(cwd: Path, python_path: Path | None, report_dir: Path) -> tuple[float, list[str]]:
    """One `opsproof demo` run: its wall seconds and its timeline lines; BenchError unless it exited 0."""
    env = dict(os.environ)
    if python_path is not None:
        env["PYTHONPATH"] = str(python_path)
        command = [sys.executable, "-m", "opsproof.cli", "demo", "--port", "0"]
    else:
        command = [str(Path(sys.executable).parent / "opsproof"), "demo", "--port", "0", "--timeline"]
    command += ["--", "--report-dir", str(report_dir), "-q"]
    started = time.monotonic()
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=300, check=False)
    wall = time.monotonic() - started
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines or not lines[-1].startswith("opsproof demo: open "):
        raise BenchError(f"demo exited {done.returncode}:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    timeline = done.stderr.split("opsproof demo: timeline", 1)
    return wall, timeline[1].strip().splitlines()[1:] if len(timeline) == 2 else []


def prometheus_floor() -> float:
    """Seconds from spawning a bare prometheus to its first listed target with a health."""
    from opsproof.demo.prometheus import prometheus_binary
    from opsproof.local.ports import free_port
    from opsproof.testing.servers import stop_process

    binary = prometheus_binary()
    if binary is None:
        raise BenchError("no prometheus binary")
    with tempfile.TemporaryDirectory(prefix="bench-prom-") as tmp:
        port = free_port(0)
        config = {
            "global": {"scrape_interval": "100ms", "scrape_timeout": "100ms"},
            "scrape_configs": [{"job_name": "self", "static_configs": [{"targets": [f"127.0.0.1:{port}"]}]}],
        }
        (Path(tmp) / "p.yml").write_text(json.dumps(config))
        started = time.monotonic()
        process = subprocess.Popen(
            [
                binary,
                f"--config.file={tmp}/p.yml",
                f"--storage.tsdb.path={tmp}/data",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            while time.monotonic() - started < 30:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/targets", timeout=1) as answer:
                        targets = json.loads(answer.read())["data"]["activeTargets"]
                    if any(t["health"] != "unknown" for t in targets):
                        return time.monotonic() - started
                except OSError:
                    pass
                time.sleep(0.01)
            raise BenchError("prometheus listed no target within 30 s")
        finally:
            stop_process(process)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--checkout", type=Path, help="another commit's tree: its demo measured too (before)")
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args(argv)
    runs: dict[str, list[float]] = {"demo": [], "floor": [], **({"before": []} if args.checkout else {})}
    timelines: list[tuple[float, list[str]]] = []
    loads: list[float] = []  # the 1-minute load average as each demo run began
    scratch = Path(tempfile.mkdtemp(prefix="bench-demo-"))
    wrong = 0  # runs that did not exit 0 (a port taken by another process, checks failing under load)
    try:
        for index in range(args.repeat):
            if args.checkout:
                try:
                    wall, _ = run_demo(args.checkout, args.checkout / "src", scratch / f"before-{index}")
                    runs["before"].append(wall)
                    print(f"run {index + 1}: before {wall:.2f} s", file=sys.stderr)
                except BenchError as exc:
                    wrong += 1
                    print(f"run {index + 1}: before went wrong, left out: {exc}", file=sys.stderr)
            try:
                load = os.getloadavg()[0]
                wall, timeline = run_demo(REPO, None, scratch / f"demo-{index}")
                runs["demo"].append(wall)
                loads.append(load)
                timelines.append((wall, timeline))
                print(f"run {index + 1}: demo {wall:.2f} s (load average {load:.2f})", file=sys.stderr)
            except BenchError as exc:
                wrong += 1
                print(f"run {index + 1}: demo went wrong, left out: {exc}", file=sys.stderr)
            floor = prometheus_floor()
            runs["floor"].append(floor)
            print(f"run {index + 1}: prometheus floor {floor:.2f} s", file=sys.stderr)
    except BenchError as exc:
        print(f"bench_demo: {exc}", file=sys.stderr)
        return 2
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    if not runs["demo"] or (args.checkout and not runs["before"]):
        print("bench_demo: no run of the demo went right", file=sys.stderr)
        return 2
    medians = {name: statistics.median(values) for name, values in runs.items()}
    median_timeline = sorted(timelines)[len(timelines) // 2][1]
    print(f"opsproof demo, median of {args.repeat}: {medians['demo']:.2f} s (runs: {_shown(runs['demo'])})")
    if args.checkout:
        print(f"before ({args.checkout}), median: {medians['before']:.2f} s (runs: {_shown(runs['before'])})")
    print(f"floor: prometheus's first target, median: {medians['floor']:.2f} s (runs: {_shown(runs['floor'])})")
    print(f"demo / floor: {medians['demo'] / medians['floor']:.2f}")
    if args.checkout:
        print(f"demo / before: {medians['demo'] / medians['before']:.2f}")
    print(f"load average (1 min) as the demo runs began: {_shown(loads)}")
    print("timeline of the median run:", *median_timeline, sep="\n  ")
    passed = medians["demo"] <= TARGET_S
    print(f"{'PASS' if passed else 'FAIL'}: demo {medians['demo']:.2f} s {'<=' if passed else '>'} {TARGET_S:g} s")
    if wrong:
        print(f"{wrong} run(s) went wrong and were left out of the medians (see stderr)")
    if args.json:
        figures: dict[str, Any] = {"medians": medians, "runs": runs, "timeline": median_timeline, "target_s": TARGET_S}
        figures["load_average"] = loads
        args.json.write_text(json.dumps(figures, indent=2))
    return 2 if wrong else 0 if passed else 1


def _shown(values: list[float]) -> str:
    return ", ".join(f"{v:.2f}" for v in values)


if __name__ == "__main__":
    sys.exit(main())
