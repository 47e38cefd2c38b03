"""Benchmark: a daily run over N HTTP items whose endpoints each answer after 100 ms (or at once).

Targets (issue 18): over 1,000 items answering in 100 ms, the wall time of `pytest -m daily
--profile ...` is at most 1.5 x the floor + 0.1 s and at most 1.5 x Prometheus
blackbox_exporter probing the same endpoints (measured in the same run, see blackbox.py);
over 10,000 items against an instant server (`--instant`), at most 1.3 x the floor with a
peak RSS of 200 MiB or less. The floor is bare pytest running N trivial parametrized tests
(harness.run_floor) plus the endpoints' delay.

Usage, from anywhere (the opsproof run's cwd is the repository root)::

    .venv/bin/python benchmarks/bench_http.py [--items 1000] [--repeat 3] [--concurrency 256] [--json out.json]
    .venv/bin/python benchmarks/bench_http.py --instant --items 10000

Exit status 0 when every target is met, 1 when one is missed, 2 when a run itself went wrong.
"""

from __future__ import annotations

import functools
import json
import socket
import sys
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import blackbox
import harness
from harness import BenchError, Measure

DELAY_S = 0.1
# Issue 18's targets: 1,000 items at 100 ms within 1.5 x (floor + 0.1 s) and 1.5 x blackbox_exporter,
# under the older 300 MiB; 10,000 against an instant server within 1.3 x the floor and 200 MiB.
TARGETS = {"slow": (1.5, 300.0), "instant": (1.3, 200.0)}
BLACKBOX_RATIO_TARGET = 1.5


# -- the endpoints' server (runs in its own process) ----------------------------------------

BODY = b'{"status": "healthy"}'
ANSWER = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json; charset=utf-8\r\n"
    b"Content-Length: %d\r\n\r\n%s" % (len(BODY), BODY)
)
NOT_FOUND = b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"


def serve(delay_s: float, server: str = "lean") -> None:
    """Serve /svc/{n} on 127.0.0.1 (a free port), answering after `delay_s`; print the port, serve forever.

    `lean` (the default since session 8): HTTP/1.1 keep-alive on asyncio's bare protocol, one canned
    answer. The server shares the machine's two cores with the run it serves, so its own CPU per
    request (aiohttp.web's 0.062 ms in a 10,000-item run, the lean one's 0.025 ms) was charged to
    opsproof's wall time. `aiohttp` keeps the server of sessions 1-7 for comparing with their figures.
    """
    import asyncio

    if server == "aiohttp":
        return _serve_aiohttp(delay_s)

    class Endpoint(asyncio.Protocol):
        # Neither aiohttp's client nor blackbox_exporter's pipelines requests: one at a time per connection.
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport: Any = transport
            self.pending = b""

        def data_received(self, data: bytes) -> None:
            self.pending += data
            while (end := self.pending.find(b"\r\n\r\n")) >= 0:
                head, self.pending = self.pending[:end], self.pending[end + 4 :]
                answer = ANSWER if head.startswith(b"GET /svc/") else NOT_FOUND
                close = b"connection: close" in head.lower()
                if delay_s > 0:
                    asyncio.get_running_loop().call_later(delay_s, self.answer, answer, close)
                else:
                    self.answer(answer, close)

        def answer(self, answer: bytes, close: bool) -> None:
            if self.transport.is_closing():
                return
            self.transport.write(answer)
            if close:
                self.transport.close()

    async def main() -> None:
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        # A backlog of the usual kernel maximum: 1,000 simultaneous connects must not overflow the accept queue.
        server = await asyncio.get_running_loop().create_server(Endpoint, sock=sock, backlog=4096)
        print(sock.getsockname()[1], flush=True)
        await server.serve_forever()

    asyncio.run(main())


def _serve_aiohttp(delay_s: float) -> None:
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
        await web.SockSite(runner, sock, backlog=4096).start()
        print(port, flush=True)
        await asyncio.Event().wait()

    asyncio.run(main())


@contextmanager
def slow_server(delay_s: float, server: str = "lean") -> Iterator[int]:
    """Start `serve` in a separate process; yield its port once it answers."""
    command = [sys.executable, __file__, "--serve", "--delay", str(delay_s), "--server", server]
    with harness.child_server(command) as (line, proc):
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


def bench(
    items: int,
    repeat: int,
    concurrency: int,
    keep: bool,
    *,
    delay_s: float = DELAY_S,
    with_blackbox: bool = True,
    loaded: bool = False,
    bare: bool = True,
    server: str = "lean",
) -> dict[str, Any]:
    """Floor, blackbox_exporter (when installed and asked) and opsproof runs, alternating; the medians."""
    with harness.workdir(keep) as work, slow_server(delay_s, server) as port, ExitStack() as stack:
        profile = work / "bench.yaml"
        if loaded:  # bench_shards' thresholds: on a starved machine a 100 ms answer is measured in seconds
            write_profile(profile, port, items, concurrency, timeout="60s", latency="{warn: 30s, fail: 60s}")
        else:
            write_profile(profile, port, items, concurrency)
        exporter = stack.enter_context(blackbox.exporter(work)) if with_blackbox else None

        def measured(index: int) -> tuple[Measure, dict[str, Any]]:
            extra: dict[str, Any] = {}
            if exporter is not None:
                extra["blackbox_s"] = blackbox.run(exporter, port, items, concurrency)
                print(f"  run {index + 1}/{repeat}  blackbox  wall {extra['blackbox_s']:6.2f} s", file=sys.stderr)
            result, own = run_opsproof(work, profile, items, index)
            return result, {**extra, **own}

        floors, runs, extras = harness.alternate(
            repeat, lambda index: harness.run_floor(work, items, index, bare=bare), measured
        )
    ratio_target, rss_target = TARGETS["instant" if delay_s == 0 else "slow"]
    setup = {
        "items": items,
        "repeat": repeat,
        "concurrency": concurrency,
        "endpoint_delay_s": delay_s,
        "loaded": loaded,
        "server": server,
    }
    figures = harness.figures(
        setup, floors, runs, extras, floor_extra_s=delay_s, ratio_target=ratio_target, rss_target_mib=rss_target
    )
    if exporter is not None:
        blackbox_s = sorted(e["blackbox_s"] for e in extras)[len(extras) // 2]
        ratio = figures["opsproof_s"] / blackbox_s
        figures |= {
            "blackbox_s": round(blackbox_s, 3),
            "ratio_blackbox": round(ratio, 3),
            "ratio_blackbox_ok": ratio <= BLACKBOX_RATIO_TARGET,
        }
    return figures


def print_table(figures: dict[str, Any]) -> None:
    delay = figures["endpoint_delay_s"]
    answering = f"answering in {delay * 1000:.0f} ms" if delay else "against an instant server"
    harness.print_table(
        f"HTTP benchmark: {figures['items']} items {answering} ({figures.get('server', 'aiohttp')} server)",
        figures,
        extra_row=f"floor + {delay:g} s" if delay else None,
    )
    if "blackbox_s" in figures:
        verdict = "PASS" if figures["ratio_blackbox_ok"] else "FAIL"
        print(
            f"blackbox_exporter, same endpoints: {figures['blackbox_s']:.2f} s; ratio opsproof/blackbox: "
            f"{figures['ratio_blackbox']:.2f} (target <= {BLACKBOX_RATIO_TARGET}) {verdict}"
        )


def main(argv: Sequence[str] | None = None) -> int:
    parser = harness.parser(__doc__, 1000, "HTTP")
    parser.add_argument(
        "--delay", type=float, default=DELAY_S, metavar="SECONDS", help=f"each endpoint's delay (default {DELAY_S})"
    )
    parser.add_argument("--instant", action="store_const", const=0.0, dest="delay", help="same as --delay 0")
    parser.add_argument(
        "--no-blackbox",
        action="store_true",
        help="leave out the blackbox_exporter comparison (made by default when the exporter is installed "
        "and the endpoints have a delay)",
    )
    parser.add_argument(
        "--loaded",
        action="store_true",
        help="a machine shared with other work: timeout 60s and latency {warn: 30s, fail: 60s}, so a "
        "starved process's slow measurements do not turn checks into warnings and abort the benchmark",
    )
    parser.add_argument(
        "--server",
        choices=("lean", "aiohttp"),
        default="lean",
        help="the endpoints' server: lean (asyncio's bare protocol, the default) or aiohttp (aiohttp.web, "
        "the server of the figures before session 8)",
    )
    args, _ = parser.parse_known_args(argv)
    with_blackbox = not args.no_blackbox and args.delay > 0 and blackbox.available()
    measure = functools.partial(
        bench,
        delay_s=args.delay,
        with_blackbox=with_blackbox,
        loaded=args.loaded,
        bare=not args.plugin_floor,
        server=args.server,
    )
    return harness.main(parser, argv, lambda args: serve(args.delay, args.server), measure, print_table)


if __name__ == "__main__":
    sys.exit(main())
