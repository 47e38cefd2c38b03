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
import socket
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import harness
from harness import BenchError, Measure

DELAY_S = 0.1


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
    with harness.child_server([sys.executable, __file__, "--serve", "--delay", str(delay_s)]) as (line, proc):
        if not line.isdigit():
            raise BenchError(f"the slow server did not start (said {line!r}, exit {proc.poll()})")
        port = int(line)
        _wait_ready(port)
        yield port


def _wait_ready(port: int) -> None:
    import urllib.request

    url = f"http://127.0.0.1:{port}/svc/0"

    def healthy() -> bool:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(json.loads(response.read()) == {"status": "healthy"})

    harness.wait_until(healthy, f"the slow server on port {port} never answered {url}")


# -- the profile and the measured run (measuring itself: harness.py) -----------------------


def write_profile(
    path: Path, port: int, items: int, concurrency: int, *, timeout: str = "5s", latency: str = "{warn: 1s, fail: 3s}"
) -> None:
    lines = [
        "environment: bench",
        f"defaults: {{timeout: {timeout}, concurrency: {concurrency}}}",
        "http:",
    ]
    for n in range(1, items + 1):
        lines += [
            f"  - name: svc-{n:04d}",
            f"    url: http://127.0.0.1:{port}/svc/{n}",
            f"    expect: {{status: 200, json: {{status: healthy}}, latency: {latency}}}",
        ]
    path.write_text("\n".join(lines) + "\n")


def run_opsproof(work: Path, profile: Path, items: int, index: int) -> tuple[Measure, dict[str, Any]]:
    result, results, bundle_bytes = harness.run_daily(work, profile, index)
    checks = harness.all_passed(results, items)
    latencies = sorted(c["observed"]["latency_ms"] for c in checks)
    extra = {
        "bundle_bytes": bundle_bytes,
        "latency_ms_p50": latencies[len(latencies) // 2],
        "latency_ms_max": latencies[-1],
    }
    return result, extra


# -- the benchmark -------------------------------------------------------------------------


def bench(items: int, repeat: int, concurrency: int, keep: bool) -> dict[str, Any]:
    with harness.workdir(keep) as work, slow_server(DELAY_S) as port:
        profile = work / "bench.yaml"
        write_profile(profile, port, items, concurrency)
        floors, runs, extras = harness.alternate(
            repeat,
            lambda index: harness.run_floor(work, items, index),
            lambda index: run_opsproof(work, profile, items, index),
        )
    setup = {"items": items, "repeat": repeat, "concurrency": concurrency, "endpoint_delay_s": DELAY_S}
    return harness.figures(setup, floors, runs, extras, floor_extra_s=DELAY_S)


def print_table(figures: dict[str, Any]) -> None:
    harness.print_table(
        f"HTTP benchmark: {figures['items']} items answering in {DELAY_S * 1000:.0f} ms",
        figures,
        extra_row="floor + 0.1 s",
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = harness.parser(__doc__, 1000, "HTTP")
    parser.add_argument("--delay", type=float, default=DELAY_S, help=argparse.SUPPRESS)
    return harness.main(parser, argv, lambda args: serve(args.delay), bench, print_table)


if __name__ == "__main__":
    sys.exit(main())
