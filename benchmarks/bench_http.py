"""Benchmark: a daily run over N HTTP items whose endpoints each answer after 100 ms.

Target (issue): wall time of `pytest -m daily --profile ...` over 1,000 such items is at most
1.5 x the floor measured in the same run, and the pytest process peaks at 300 MiB RSS or less.
The floor is pytest running N trivial parametrized tests (same interpreter, same installed
plugins, its own rootdir) plus 0.1 s, the time one round of the slow endpoints needs.

Usage, from anywhere (the opsproof run's cwd is the repository root)::

    /work/venv/bin/python benchmarks/bench_http.py [--items 1000] [--repeat 3] [--concurrency 256] [--json out.json]

Exit status 0 when both targets are met, 1 when one is missed, 2 when a run itself went wrong.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
DELAY_S = 0.1
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


# -- the slow server (runs in its own process) ---------------------------------------------


def serve(delay_s: float) -> None:
    """Serve /svc/{n} on 127.0.0.1 (a free port), answering after `delay_s`; print the port, serve forever."""
    import asyncio

    from aiohttp import web

    async def svc(request: web.Request) -> web.Response:
        await asyncio.sleep(delay_s)
        return web.json_response({"status": "healthy"})

    async def main() -> None:
        app = web.Application()
        app.router.add_get("/svc/{n}", svc)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        # A backlog of the usual kernel maximum: 1,000 simultaneous connects must not overflow the accept queue.
        await web.SockSite(runner, sock, backlog=4096).start()
        print(port, flush=True)
        await asyncio.Event().wait()

    asyncio.run(main())


@contextmanager
def slow_server(delay_s: float) -> Iterator[int]:
    """Start `serve` in a separate process; yield its port once it answers."""
    proc = subprocess.Popen(
        [sys.executable, __file__, "--serve", "--delay", str(delay_s)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        if not line.isdigit():
            raise BenchError(f"the slow server did not start (said {line!r}, exit {proc.poll()})")
        port = int(line)
        _wait_ready(port)
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _wait_ready(port: int, timeout_s: float = 10.0) -> None:
    import urllib.request

    deadline = time.monotonic() + timeout_s
    url = f"http://127.0.0.1:{port}/svc/0"
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if json.loads(response.read()) == {"status": "healthy"}:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise BenchError(f"the slow server on port {port} never answered {url}")
        time.sleep(0.05)


# -- measuring one run ---------------------------------------------------------------------


@dataclass
class Measure:
    wall_s: float
    cpu_s: float  # user + system of the child (and any children it waited for)
    maxrss_mib: float


def measure(cmd: Sequence[str], cwd: Path, log: Path) -> tuple[Measure, int]:
    """Run `cmd`, output to `log`; wall time, CPU and peak RSS of that one child, and its exit code.

    `os.wait4` gives the rusage of this child alone, unlike RUSAGE_CHILDREN, whose ru_maxrss is the
    maximum over every child the benchmark has reaped so far.
    """
    with open(log, "wb") as out:
        started = time.perf_counter()
        proc = subprocess.Popen(list(cmd), cwd=cwd, stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - started
    code = os.waitstatus_to_exitcode(status)
    proc.returncode = code  # reaped here, so Popen must not wait for it again
    # Linux reports ru_maxrss in KiB, macOS in bytes.
    rss_bytes = usage.ru_maxrss if sys.platform == "darwin" else usage.ru_maxrss * 1024
    return Measure(wall, usage.ru_utime + usage.ru_stime, rss_bytes / 2**20), code


def write_profile(path: Path, port: int, items: int, concurrency: int) -> None:
    lines = [
        "environment: bench",
        f"defaults: {{timeout: 5s, concurrency: {concurrency}}}",
        "http:",
    ]
    for n in range(1, items + 1):
        lines += [
            f"  - name: svc-{n:04d}",
            f"    url: http://127.0.0.1:{port}/svc/{n}",
            "    expect: {status: 200, json: {status: healthy}, latency: {warn: 1s, fail: 3s}}",
        ]
    path.write_text("\n".join(lines) + "\n")


def run_floor(work: Path, items: int, index: int) -> Measure:
    floor_dir = work / "floor"
    if not floor_dir.exists():
        floor_dir.mkdir()
        # Its own (empty) ini makes the temp dir the rootdir: no opsproof ini, so the plugin is inert.
        (floor_dir / "pytest.ini").write_text("[pytest]\n")
        (floor_dir / "test_floor.py").write_text(FLOOR_TEST.format(items=items))
    # -p no:cacheprovider: the repository's addopts disable it for the opsproof run too.
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_floor.py"]
    log = work / f"floor-{index}.log"
    result, code = measure(cmd, floor_dir, log)
    if code != 0:
        raise BenchError(f"the floor run exited {code}; see {log}:\n{_tail(log)}")
    return result


def run_opsproof(work: Path, profile: Path, items: int, index: int) -> tuple[Measure, dict[str, Any]]:
    report_dir = work / f"reports-{index}"
    # `--opt=VALUE`, not `--opt VALUE`: pytest picks the rootdir before plugin options are known, so a
    # separate value outside the repository counts as a path argument and moves the rootdir (and loses
    # the repository's ini: testpaths, addopts, `opsproof = true`).
    cmd = [sys.executable, "-m", "pytest", "-q", "-m", "daily", f"--profile={profile}", f"--report-dir={report_dir}"]
    log = work / f"opsproof-{index}.log"
    result, code = measure(cmd, REPO, log)
    if code != 0:
        raise BenchError(f"the opsproof run exited {code}; see {log}:\n{_tail(log)}")
    bundle = _bundle_of(log)
    results = json.loads((bundle / "results.json").read_text())
    checks = results["checks"]
    passed = [c for c in checks if c["outcome"] == "passed"]
    reached = [c for c in checks if c.get("observed", {}).get("reached") is True]
    if len(checks) != items or len(passed) != items or len(reached) != items:
        raise BenchError(
            f"expected {items} passed checks, all reached; results.json has {len(checks)} checks, "
            f"{len(passed)} passed, {len(reached)} reached; by outcome {results['summary']['by_outcome']}"
        )
    latencies = sorted(c["observed"]["latency_ms"] for c in checks)
    extra = {
        "bundle_bytes": sum(p.stat().st_size for p in bundle.iterdir() if p.is_file()),
        "latency_ms_p50": latencies[len(latencies) // 2],
        "latency_ms_max": latencies[-1],
    }
    shutil.rmtree(report_dir, ignore_errors=True)
    return result, extra


def _bundle_of(log: Path) -> Path:
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


# -- the benchmark -------------------------------------------------------------------------


def bench(items: int, repeat: int, concurrency: int, keep: bool) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="opsproof-bench-"))
    floors: list[Measure] = []
    runs: list[Measure] = []
    extras: list[dict[str, Any]] = []
    try:
        with slow_server(DELAY_S) as port:
            profile = work / "bench.yaml"
            write_profile(profile, port, items, concurrency)
            for index in range(repeat):
                floors.append(run_floor(work, items, index))
                _progress(f"run {index + 1}/{repeat}  floor   ", floors[-1])
                measured, extra = run_opsproof(work, profile, items, index)
                runs.append(measured)
                extras.append(extra)
                _progress(f"run {index + 1}/{repeat}  opsproof", measured)
    finally:
        if keep:
            print(f"kept {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)
    floor_pytest_s = statistics.median(m.wall_s for m in floors)
    floor_s = floor_pytest_s + DELAY_S
    opsproof_s = statistics.median(m.wall_s for m in runs)
    rss_mib = statistics.median(m.maxrss_mib for m in runs)
    ratio = opsproof_s / floor_s
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
        "items": items,
        "repeat": repeat,
        "concurrency": concurrency,
        "endpoint_delay_s": DELAY_S,
        "floor_pytest_s": round(floor_pytest_s, 3),
        "floor_s": round(floor_s, 3),
        "opsproof_s": round(opsproof_s, 3),
        "ratio": round(ratio, 3),
        "opsproof_maxrss_mib": round(rss_mib, 1),
        "floor_maxrss_mib": round(statistics.median(m.maxrss_mib for m in floors), 1),
        "opsproof_cpu_s": round(statistics.median(m.cpu_s for m in runs), 3),
        "floor_cpu_s": round(statistics.median(m.cpu_s for m in floors), 3),
        "targets": {"ratio": RATIO_TARGET, "maxrss_mib": RSS_TARGET_MIB},
        "ratio_ok": ratio <= RATIO_TARGET,
        "rss_ok": rss_mib <= RSS_TARGET_MIB,
        "runs": {
            "floor": [asdict(m) for m in floors],
            "opsproof": [{**asdict(m), **e} for m, e in zip(runs, extras, strict=True)],
        },
    }


def _progress(label: str, m: Measure) -> None:
    print(f"  {label}  wall {m.wall_s:6.2f} s  cpu {m.cpu_s:6.2f} s  maxrss {m.maxrss_mib:6.1f} MiB", file=sys.stderr)


def print_table(figures: dict[str, Any]) -> None:
    verdict = {True: "PASS", False: "FAIL"}
    rows = [
        ("floor (trivial tests)", f"{figures['floor_pytest_s']:.2f} s", f"{figures['floor_maxrss_mib']:.0f} MiB"),
        ("floor + 0.1 s", f"{figures['floor_s']:.2f} s", ""),
        ("opsproof daily run", f"{figures['opsproof_s']:.2f} s", f"{figures['opsproof_maxrss_mib']:.0f} MiB"),
    ]
    print(
        f"opsproof HTTP benchmark: {figures['items']} items answering in {DELAY_S * 1000:.0f} ms, "
        f"concurrency {figures['concurrency']}, median of {figures['repeat']}, {figures['machine']['cpus']} CPUs"
    )
    print(f"{'':32}{'wall':>10}{'peak RSS':>12}")
    for name, wall, rss in rows:
        print(f"{name:32}{wall:>10}{rss:>12}")
    print(f"ratio opsproof/floor: {figures['ratio']:.2f} (target <= {RATIO_TARGET}) {verdict[figures['ratio_ok']]}")
    print(
        f"peak RSS: {figures['opsproof_maxrss_mib']:.0f} MiB (target <= {RSS_TARGET_MIB:.0f} MiB) "
        f"{verdict[figures['rss_ok']]}"
    )


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--items", type=int, default=1000, help="HTTP items in the profile (default 1000)")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each, alternating; medians (default 3)")
    parser.add_argument("--concurrency", type=int, default=256, help="the profile's defaults.concurrency")
    parser.add_argument("--json", type=Path, default=None, metavar="PATH", help="also write the figures here")
    parser.add_argument("--keep", action="store_true", help="keep the temp folder (profile, logs)")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--delay", type=float, default=DELAY_S, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.items < 1 or args.repeat < 1 or args.concurrency < 1:
        parser.error("--items, --repeat and --concurrency must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.serve:
        serve(args.delay)
        return 0
    try:
        figures = bench(args.items, args.repeat, args.concurrency, args.keep)
    except BenchError as exc:
        print(f"bench_http: {exc}", file=sys.stderr)
        return 2
    print_table(figures)
    if args.json is not None:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0 if figures["ratio_ok"] and figures["rss_ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
