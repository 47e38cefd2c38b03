"""Benchmark: one daily run over 20,000 HTTP items, as one process and as 4 shards, then seal-run.

What it measures (issue 17): the wall time of `pytest -m daily` over N HTTP items answering in
100 ms as one process, against the same profile run as 4 shards (`--shard I/4`, 4 processes
started together on this machine, each probing a quarter), the peak RSS of each shard and of
the single process, and the time `opsproof seal-run` takes to make one run bundle of the
shards' bundles. With `--kill`, one shard is killed as soon as it starts probing, so the seal
step also collects that shard's checks and records them as errors.

Usage, from anywhere (the runs' cwd is the repository root)::

    python benchmarks/bench_shards.py [--items 20000] [--shards 4] [--repeat 1] [--kill] [--json out.json]

Exit status 0 when every run did what it should (all checks passed, one run bundle of N
checks), 2 when a run went wrong. There is no pass/fail target: the figures are reported.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import bench_http
import harness
from bench_http import DELAY_S, slow_server
from harness import REPO, BenchError, Measure


def _started(cmd: Sequence[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    with open(log, "wb") as out:
        return subprocess.Popen(list(cmd), cwd=REPO, stdout=out, stderr=subprocess.STDOUT, env=env)


def _reap(proc: subprocess.Popen[bytes], started: float, into: dict[int, tuple[Measure, int]]) -> None:
    """Wait for one child with os.wait4 (its own rusage), as harness.measure does for one."""
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = code = os.waitstatus_to_exitcode(status)
    rss = usage.ru_maxrss if sys.platform == "darwin" else usage.ru_maxrss * 1024
    into[proc.pid] = (Measure(time.perf_counter() - started, usage.ru_utime + usage.ru_stime, rss / 2**20), code)


def run_shards(work: Path, profile: Path, shards: int, index: int, kill: bool) -> dict[str, Any]:
    """`shards` processes started together, each `--shard I/N`; their measures and the whole wall time."""
    reports = work / f"shards-{index}"
    run_id = uuid.uuid4().hex
    command = [sys.executable, "-m", "pytest", "-q", "-m", "daily", f"--profile={profile}", f"--report-dir={reports}"]
    started = time.perf_counter()
    procs = [
        _started([*command, f"--shard={i}/{shards}", f"--run-id={run_id}"], work / f"shard-{index}-{i}.log")
        for i in range(shards)
    ]
    if kill:  # the last shard is lost as soon as it is probing: no bundle, the seal records its checks as errors
        time.sleep(3.0)
        procs[-1].send_signal(signal.SIGKILL)
    measured: dict[int, tuple[Measure, int]] = {}
    waiters = [threading.Thread(target=_reap, args=(p, started, measured)) for p in procs]
    for waiter in waiters:
        waiter.start()
    for waiter in waiters:
        waiter.join()
    wall = time.perf_counter() - started
    per_shard = [measured[p.pid] for p in procs]
    for i, (_, code) in enumerate(per_shard):
        if code != 0 and not (kill and i == shards - 1):
            raise BenchError(f"shard {i} exited {code}; see {work / f'shard-{index}-{i}.log'}")
    return {"reports": reports, "run_id": run_id, "wall_s": wall, "shards": [m for m, _ in per_shard]}


def run_seal(work: Path, profile: Path, reports: Path, index: int, items: int, kill: bool) -> Measure:
    seal = [str(Path(sys.executable).parent / "opsproof"), "seal-run", str(reports), f"--profile={profile}"]
    log = work / f"seal-{index}.log"
    measured, code = harness.measure(seal, REPO, log)
    if code != (1 if kill else 0):
        raise BenchError(f"seal-run exited {code}; see {log}")
    bundles = [p for p in reports.iterdir() if p.is_dir() and "-shard" not in p.name and not p.name.startswith(".")]
    results = json.loads((bundles[0] / "results.json").read_text())
    outcomes = results["summary"]["by_outcome"]
    # Latency warnings are the machine's load (4 shards and the server on 2 cores), not a wrong run.
    broken = outcomes["failed"] + outcomes["error"] if not kill else 0
    if len(bundles) != 1 or results["summary"]["total"] != items or broken:
        raise BenchError(f"the run bundle holds {results['summary']['total']} checks ({outcomes}); expected {items}")
    return measured


def write_profile(path: Path, port: int, items: int, concurrency: int) -> None:
    """bench_http's items, with limits this shared two-core machine cannot trip: the figures are time and memory.

    Under a load average of 20 a 5 s timeout or a 3 s latency limit fails checks that the
    endpoint answered in 100 ms; those failures would say nothing about sharding.
    """
    bench_http.write_profile(path, port, items, concurrency, timeout="60s", latency="{warn: 30s}")


def _all_reached(results: dict[str, Any], items: int) -> None:
    """N checks, every target reached, none failed: latency warnings are this loaded machine's, not the run's."""
    checks = results["checks"]
    reached = sum(1 for c in checks if c.get("observed", {}).get("reached") is True)
    bad = results["summary"]["by_outcome"]["failed"] + results["summary"]["by_outcome"]["error"]
    if len(checks) != items or reached != items or bad:
        raise BenchError(f"{len(checks)} checks, {reached} reached, by outcome {results['summary']['by_outcome']}")


def bench(items: int, repeat: int, concurrency: int, keep: bool, shards: int, kill: bool) -> dict[str, Any]:
    with harness.workdir(keep) as work, slow_server(DELAY_S) as port:
        profile = work / "bench.yaml"
        write_profile(profile, port, items, concurrency)
        singles: list[Measure] = []
        sharded: list[dict[str, Any]] = []
        seals: list[Measure] = []
        for index in range(repeat):
            single, results, _ = harness.run_daily(work, profile, index)
            _all_reached(results, items)
            singles.append(single)
            harness.progress(f"run {index + 1}/{repeat}  one process", single)
            run = run_shards(work, profile, shards, index, kill)
            sharded.append(run)
            for i, measure in enumerate(run["shards"]):
                harness.progress(f"run {index + 1}/{repeat}  shard {i}/{shards}", measure)
            seals.append(run_seal(work, profile, run["reports"], index, items, kill))
            harness.progress(f"run {index + 1}/{repeat}  seal-run   ", seals[-1])
    return {
        "items": items,
        "shards": shards,
        "repeat": repeat,
        "concurrency": concurrency,
        "killed_one": kill,
        "machine": {"cpus": os.cpu_count()},
        "one_process_wall_s": round(statistics.median(m.wall_s for m in singles), 2),
        "one_process_maxrss_mib": round(statistics.median(m.maxrss_mib for m in singles), 1),
        "sharded_wall_s": round(statistics.median(r["wall_s"] for r in sharded), 2),
        "shard_maxrss_mib": [
            round(statistics.median(r["shards"][i].maxrss_mib for r in sharded), 1) for i in range(shards)
        ],
        "shard_wall_s": [round(statistics.median(r["shards"][i].wall_s for r in sharded), 2) for i in range(shards)],
        "seal_wall_s": round(statistics.median(m.wall_s for m in seals), 2),
        "seal_maxrss_mib": round(statistics.median(m.maxrss_mib for m in seals), 1),
        "runs": {
            "one_process": [asdict(m) for m in singles],
            "shards": [[asdict(m) for m in r["shards"]] for r in sharded],
            "seal": [asdict(m) for m in seals],
        },
    }


def print_table(figures: dict[str, Any]) -> None:
    print(
        f"opsproof shards: {figures['items']} HTTP items answering in {DELAY_S * 1000:.0f} ms, "
        f"{figures['shards']} shards, median of {figures['repeat']}, {figures['machine']['cpus']} CPUs"
    )
    print(f"{'':36}{'wall':>10}{'peak RSS':>12}")
    print(f"{'one process':36}{figures['one_process_wall_s']:>8.2f} s{figures['one_process_maxrss_mib']:>8.0f} MiB")
    label = f"{figures['shards']} shards at once (all done)"
    print(f"{label:36}{figures['sharded_wall_s']:>8.2f} s")
    for i, (wall, rss) in enumerate(zip(figures["shard_wall_s"], figures["shard_maxrss_mib"], strict=True)):
        print(f"{f'  shard {i}':36}{wall:>8.2f} s{rss:>8.0f} MiB")
    print(f"{'seal-run':36}{figures['seal_wall_s']:>8.2f} s{figures['seal_maxrss_mib']:>8.0f} MiB")


def main(argv: Sequence[str] | None = None) -> int:
    parser = harness.parser(__doc__, 20000, "HTTP")
    parser.set_defaults(repeat=1)
    parser.add_argument("--shards", type=int, default=4, help="shards started together (default 4)")
    parser.add_argument("--kill", action="store_true", help="kill the last shard while it probes")
    parser.add_argument("--delay", type=float, default=DELAY_S, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.shards < 1:
        parser.error("--shards must be at least 1")
    try:
        figures = bench(args.items, args.repeat, args.concurrency, args.keep, args.shards, args.kill)
    except BenchError as exc:
        print(f"bench_shards: {exc}", file=sys.stderr)
        return 2
    print_table(figures)
    if args.json is not None:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
