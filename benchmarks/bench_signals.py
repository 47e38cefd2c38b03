"""Benchmark: what metrics and notifications add to a daily run of 1,000 HTTP checks.

The same profile runs with and without signals, alternating: 1,000 HTTP items, of which
`--failing` (default 100) answer 503 (severity low, so the run still exits 0), and a
`notify:` list of PagerDuty, Slack and a webhook (loopback receivers in their own process,
standing in for the services) plus `--metrics-file` and, when Debian's
prometheus-pushgateway is installed, `--pushgateway`. Two cases:

- **first**: a fresh report dir, so every failure is new: one PagerDuty trigger each, one
  Slack message, one webhook call, the textfile and the push;
- **steady**: the history holds the previous run, nothing changed: no message is sent, and
  what is left is the history lookup, the payload planning and the metrics.

Figures: wall time ratio (with signals / without), the extra seconds, and what the run
itself reports spending (notifications.json's `elapsed_s`, the metrics line).

Usage::

    .venv/bin/python benchmarks/bench_signals.py [--items 1000] [--failing 100] [--repeat 3] [--json out.json]
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import harness
from harness import BenchError, Measure

from opsproof.testing.servers import free_port, stop_process

SIGNALS_RATIO_REPORTED = "reported"  # no target in the issue: the figure is reported


def serve() -> None:
    """/ok/{n} 200, /bad/{n} 503, and receivers (/pd 202, /slack 200, /hook 200, PUT /gw...): print the port."""
    import asyncio

    from aiohttp import web

    async def ok(request: web.Request) -> web.Response:
        return web.json_response({"status": "healthy"})

    async def bad(request: web.Request) -> web.Response:
        return web.json_response({"status": "unhealthy"}, status=503)

    async def receive(request: web.Request) -> web.Response:
        await request.read()
        return web.json_response({"status": "success"}, status=202)

    async def main() -> None:
        app = web.Application(client_max_size=64 * 2**20)
        app.router.add_get("/ok/{n}", ok)
        app.router.add_get("/bad/{n}", bad)
        app.router.add_route("*", "/receive/{tail:.*}", receive)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        await web.SockSite(runner, sock, backlog=4096).start()
        print(sock.getsockname()[1], flush=True)
        await asyncio.Event().wait()

    asyncio.run(main())


@contextmanager
def pushgateway() -> Iterator[str | None]:
    binary = shutil.which("prometheus-pushgateway")
    if binary is None:
        yield None
        return
    port = free_port(0)
    proc = subprocess.Popen(
        [binary, f"--web.listen-address=127.0.0.1:{port}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        harness.wait_until(lambda: _answers(f"http://127.0.0.1:{port}/-/ready"), "the pushgateway never answered")
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_process(proc)


def _answers(url: str) -> bool:
    import urllib.request

    with urllib.request.urlopen(url, timeout=2) as answer:
        return bool(answer.status == 200)


def write_profile(path: Path, port: int, items: int, failing: int, concurrency: int, signals: bool) -> None:
    base = f"http://127.0.0.1:{port}"
    lines = ["environment: bench", f"defaults: {{timeout: 5s, concurrency: {concurrency}}}", "http:"]
    for n in range(1, items + 1):
        bad = n <= failing
        lines += [f"  - name: svc-{n:04d}", f"    url: {base}/{'bad' if bad else 'ok'}/{n}"]
        if bad:
            lines.append("    severity: low")
    if signals:
        lines += [
            "notify:",
            f"  - pagerduty: {{routing_key: '${{BENCH_ROUTING_KEY}}', url: '{base}/receive/pd'}}",
            "    when: {severity: [critical, high, medium, low]}",
            "  - slack: {webhook_url: '${BENCH_SLACK_WEBHOOK}'}",
            "    when: {severity: [critical, high, medium, low]}",
            f"  - webhook: {{url: '{base}/receive/hook'}}",
            "    when: {severity: [critical, high, medium, low]}",
        ]
    path.write_text("\n".join(lines) + "\n")


def run(work: Path, profile: Path, report_dir: Path, label: str, extra: Sequence[str]) -> tuple[Measure, Path]:
    cmd = [sys.executable, "-m", "pytest", "-q", "-m", "daily", f"--profile={profile}", f"--report-dir={report_dir}"]
    log = work / f"{label}.log"
    measured, code = harness.measure([*cmd, *extra], harness.REPO, log)
    if code != 0:
        raise BenchError(f"{label} exited {code}; see {log}")
    return measured, log


def _spent(log: Path, bundle: Path) -> dict[str, Any]:
    notified = json.loads((bundle / "notifications.json").read_text())
    found = re.search(r"metrics: (\d+) series in ([\d.]+) s", log.read_text())
    if found is None or (not notified.get("deliveries") and "elapsed_s" not in notified):
        raise BenchError(f"no signals figures in {log}")
    failed = [d for d in notified["deliveries"] if not d["delivered"]]
    if failed:
        raise BenchError(f"{len(failed)} deliveries failed; see {bundle / 'notifications.json'}")
    return {
        "messages": len(notified["deliveries"]),
        "notify_s": notified["elapsed_s"],
        "series": int(found.group(1)),
        "metrics_s": float(found.group(2)),
    }


def bench(items: int, failing: int, repeat: int, concurrency: int, keep: bool) -> dict[str, Any]:
    cases: dict[str, dict[str, list[Any]]] = {c: {"plain": [], "signals": [], "spent": []} for c in ("first", "steady")}
    os.environ["BENCH_ROUTING_KEY"] = "bench-routing-key"  # secrets by reference, as in a real profile
    with harness.workdir(keep) as work, harness.child_server([sys.executable, __file__, "--serve"]) as (line, _):
        if not line.isdigit():
            raise BenchError(f"the server did not start (said {line!r})")
        port = int(line)
        os.environ["BENCH_SLACK_WEBHOOK"] = f"http://127.0.0.1:{port}/receive/slack"
        plain, signals = work / "plain.yaml", work / "signals.yaml"
        write_profile(plain, port, items, failing, concurrency, signals=False)
        write_profile(signals, port, items, failing, concurrency, signals=True)
        with pushgateway() as gateway:
            flags = ["--metrics-file", str(work / "textfile" / "opsproof.prom")]
            flags += ["--pushgateway", gateway] if gateway else []
            steady_dir = work / "steady"
            run(work, signals, steady_dir, "seed", flags)  # the history the steady case starts from
            for index in range(repeat):
                for case in ("first", "steady"):
                    measured, _ = run(work, plain, work / f"plain-{case}-{index}", f"plain-{case}-{index}", [])
                    cases[case]["plain"].append(measured)
                    harness.progress(f"run {index + 1}/{repeat} {case:6} plain  ", measured)
                    report_dir = steady_dir if case == "steady" else work / f"first-{index}"
                    measured, log = run(work, signals, report_dir, f"signals-{case}-{index}", flags)
                    cases[case]["signals"].append(measured)
                    cases[case]["spent"].append(_spent(log, harness.bundle_of(log)))
                    harness.progress(f"run {index + 1}/{repeat} {case:6} signals", measured)
    figures: dict[str, Any] = {"items": items, "failing": failing, "repeat": repeat, "pushgateway": gateway is not None}
    for case, found in cases.items():
        plain_s = statistics.median(m.wall_s for m in found["plain"])
        signals_s = statistics.median(m.wall_s for m in found["signals"])
        figures[case] = {
            "plain_s": round(plain_s, 3),
            "signals_s": round(signals_s, 3),
            "ratio": round(signals_s / plain_s, 3),
            "extra_s": round(signals_s - plain_s, 3),
            "messages": found["spent"][0]["messages"],
            "notify_s": statistics.median(s["notify_s"] for s in found["spent"]),
            "metrics_s": statistics.median(s["metrics_s"] for s in found["spent"]),
            "series": found["spent"][0]["series"],
        }
    return figures


def print_table(figures: dict[str, Any]) -> None:
    print(
        f"signals benchmark: {figures['items']} HTTP checks, {figures['failing']} failing, "
        f"median of {figures['repeat']}, pushgateway {'yes' if figures['pushgateway'] else 'no (not installed)'}"
    )
    print(f"{'case':8}{'messages':>10}{'plain':>10}{'signals':>10}{'ratio':>8}{'notify':>10}{'metrics':>10}{'series':>8}")
    for case in ("first", "steady"):
        f = figures[case]
        print(
            f"{case:8}{f['messages']:>10}{f['plain_s']:>9.2f}s{f['signals_s']:>9.2f}s{f['ratio']:>8.2f}"
            f"{f['notify_s']:>9.3f}s{f['metrics_s']:>9.3f}s{f['series']:>8}"
        )


def main(argv: Sequence[str] | None = None) -> int:
    parser = harness.parser(__doc__, 1000, "HTTP")
    parser.add_argument("--failing", type=int, default=100, help="items answering 503 (default 100)")
    args = parser.parse_args(argv)
    if args.serve:
        serve()
        return 0
    try:
        figures = bench(args.items, min(args.failing, args.items), args.repeat, args.concurrency, args.keep)
    except BenchError as exc:
        print(f"bench_signals: {exc}", file=sys.stderr)
        return 2
    print_table(figures)
    if args.json is not None:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
