"""Benchmark: a daily run of 1,000 `metrics` series across 100 exporter endpoints.

Each endpoint (`/e/<n>/metrics`, answering after 100 ms) exposes the ten series its item judges
and forty more it does not (as an exporter's go_* and process_* series would be), written by
prometheus_client. The figures: the HTTP requests the run made to the exporters (one per
endpoint, however many series it names, is the design) and the ratio of the run's wall time to
the floor: bare pytest (`PYTEST_DISABLE_PLUGIN_AUTOLOAD=1 pytest -q -p no:cacheprovider`) over
as many trivial tests as the run has checks, plus the 100 ms one round of the exporters needs.

Usage, from anywhere (the opsproof run's cwd is the repository root)::

    .venv/bin/python benchmarks/bench_metrics.py [--items 100] [--series 10] [--repeat 3] [--json out.json]

Exit status 0 when both targets are met, 1 when one is missed, 2 when a run itself went wrong.
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import harness
from harness import BenchError, Measure

DELAY_S = 0.1
SERIES = 10
NOISE = 40  # series each exporter exposes that no check asks for


# -- the exporters (one process of their own) ------------------------------------------------


def exposition(n: int, series: int) -> bytes:
    """Endpoint n's /metrics: `series` judged gauges (two shards each) and NOISE others."""
    from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest

    registry = CollectorRegistry()
    for k in range(series):
        gauge = Gauge(f"bench_value_{k}", "a judged value", ["shard"], registry=registry)
        gauge.labels("a").set(n + k)
        gauge.labels("b").set(k)
    for k in range(NOISE):
        Counter(f"noise_events_{k}", "not judged", registry=registry).inc(n * k)
    return generate_latest(registry)


def serve(delay_s: float, endpoints: int, series: int) -> None:
    """Serve /e/{n}/metrics and /requests (how many scrapes so far) on a free port; print it; serve forever."""
    import asyncio

    from aiohttp import web

    bodies = {n: exposition(n, series) for n in range(1, endpoints + 1)}
    scrapes = {"count": 0}

    async def metrics(request: web.Request) -> web.Response:
        scrapes["count"] += 1
        await asyncio.sleep(delay_s)
        return web.Response(body=bodies[int(request.match_info["n"])], content_type="text/plain")

    async def requests(request: web.Request) -> web.Response:
        return web.json_response(scrapes)

    async def main() -> None:
        app = web.Application()
        app.router.add_get("/e/{n}/metrics", metrics)
        app.router.add_get("/requests", requests)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        await web.SockSite(runner, sock, backlog=4096).start()
        print(sock.getsockname()[1], flush=True)
        await asyncio.Event().wait()

    asyncio.run(main())


def scrapes_so_far(port: int) -> int:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/requests", timeout=5) as response:
        return int(json.loads(response.read())["count"])


@contextmanager
def exporters(delay_s: float, endpoints: int, series: int) -> Iterator[int]:
    cmd = [sys.executable, __file__, "--serve", "--delay", str(delay_s), "--items", str(endpoints)]
    with harness.child_server([*cmd, "--series", str(series)]) as (line, proc):
        if not line.isdigit():
            raise BenchError(f"the exporters did not start (said {line!r}, exit {proc.poll()})")
        port = int(line)
        harness.wait_until(lambda: scrapes_so_far(port) == 0, f"the exporters on port {port} never answered")
        yield port


# -- the profile and the measured run ------------------------------------------------------


def write_profile(path: Path, port: int, endpoints: int, series: int, concurrency: int) -> None:
    lines = ["environment: bench", f"defaults: {{timeout: 5s, concurrency: {concurrency}}}", "metrics:"]
    aggregates = ("each", "max", "sum", "avg", "min")
    for n in range(1, endpoints + 1):
        lines += [f"  - name: exp-{n:03d}", f"    url: http://127.0.0.1:{port}/e/{n}/metrics", "    series:"]
        for k in range(series):
            lines.append(
                f"      - {{name: s{k}, metric: bench_value_{k}, aggregate: {aggregates[k % len(aggregates)]}, "
                "threshold: {warn: 100000, fail: 200000}}"
            )
    path.write_text("\n".join(lines) + "\n")


def run_opsproof(work: Path, profile: Path, port: int, checks: int, index: int) -> tuple[Measure, dict[str, Any]]:
    before = scrapes_so_far(port)
    result, results, bundle_bytes = harness.run_daily(work, profile, index)
    made = scrapes_so_far(port) - before
    harness.all_passed(results, checks)
    return result, {"bundle_bytes": bundle_bytes, "http_requests": made}


# -- the benchmark -------------------------------------------------------------------------


def bench(endpoints: int, series: int, repeat: int, concurrency: int, keep: bool, bare: bool = True) -> dict[str, Any]:
    checks = endpoints * series
    with harness.workdir(keep) as work, exporters(DELAY_S, endpoints, series) as port:
        profile = work / "bench.yaml"
        write_profile(profile, port, endpoints, series, concurrency)
        floors, runs, extras = harness.alternate(
            repeat,
            lambda index: harness.run_floor(work, checks, index, bare=bare),
            lambda index: run_opsproof(work, profile, port, checks, index),
        )
    requests = {extra["http_requests"] for extra in extras}
    if requests != {endpoints}:
        raise BenchError(f"expected {endpoints} HTTP requests per run (one per endpoint), saw {sorted(requests)}")
    setup = {
        "items": endpoints,
        "series": checks,
        "repeat": repeat,
        "concurrency": concurrency,
        "endpoint_delay_s": DELAY_S,
        "http_requests_per_run": endpoints,
        "floor": ("PYTEST_DISABLE_PLUGIN_AUTOLOAD=1 " if bare else "")
        + "pytest -q -p no:cacheprovider (as many trivial tests as the run has checks)",
    }
    return harness.figures(setup, floors, runs, extras, floor_extra_s=DELAY_S)


def print_table(figures: dict[str, Any]) -> None:
    harness.print_table(
        f"metrics benchmark: {figures['series']} series across {figures['items']} endpoints answering in "
        f"{DELAY_S * 1000:.0f} ms",
        figures,
        extra_row=("bare " if figures["floor"].startswith("PYTEST_DISABLE") else "") + "floor + 0.1 s",
    )
    print(f"HTTP requests per run: {figures['http_requests_per_run']} (one per endpoint)")


def main(argv: Sequence[str] | None = None) -> int:
    parser = harness.parser(__doc__, 100, "endpoint")
    parser.add_argument("--series", type=int, default=SERIES, help=f"series per endpoint (default {SERIES})")
    parser.add_argument("--delay", type=float, default=DELAY_S, help=argparse.SUPPRESS)
    args, _ = parser.parse_known_args(argv)
    return harness.main(
        parser,
        argv,
        lambda a: serve(a.delay, a.items, a.series),
        lambda items, repeat, concurrency, keep: bench(
            items, args.series, repeat, concurrency, keep, bare=not args.plugin_floor
        ),
        print_table,
    )


if __name__ == "__main__":
    sys.exit(main())
