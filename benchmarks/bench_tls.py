"""Benchmark: a daily run over N TLS endpoints, each with a certificate of its own.

Target (issue): wall time of `pytest -m daily --profile ...` over 200 TLS items is at most
1.5 x the floor measured in the same run, and the pytest process peaks at 300 MiB RSS or less.
Each item is four checks (expiry, trust, hostname, protocol), so the floor is pytest running
4 x N trivial parametrized tests (same interpreter, same installed plugins, its own rootdir);
the endpoints answer at once, so nothing is added to it.

Usage, from anywhere (the opsproof run's cwd is the repository root)::

    /work/venv/bin/python benchmarks/bench_tls.py [--items 200] [--repeat 3] [--concurrency 256] [--json out.json]

Exit status 0 when both targets are met, 1 when one is missed, 2 when a run itself went wrong.
"""

from __future__ import annotations

import argparse
import functools
import json
import socket
import ssl
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import harness
from harness import BenchError, Measure

ASPECTS = ("expiry", "trust", "hostname", "protocol")


# -- the endpoints (run in their own process) ----------------------------------------------


def serve(items: int, folder: Path) -> None:
    """N TLS servers on 127.0.0.1, each with its own certificate; write the CA, print the ports, serve forever."""
    import asyncio

    from opsproof.testing.certs import Authority

    authority = Authority.create("bench CA")
    authority.write_pem(folder / "ca.pem")

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while await reader.read(65536):
                pass
        except OSError:
            pass
        finally:
            writer.close()

    async def main() -> None:
        ports = []
        for _ in range(items):
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            context = authority.issue().server_context()
            server = await asyncio.start_server(handle, sock=sock, ssl=context, backlog=512)
            ports.append(server.sockets[0].getsockname()[1])
        print(json.dumps(ports), flush=True)
        await asyncio.Event().wait()

    asyncio.run(main())


@contextmanager
def endpoints(items: int, folder: Path) -> Iterator[list[int]]:
    """Start `serve` in a separate process; yield the ports once the first one completes a handshake."""
    with harness.child_server(
        [sys.executable, __file__, "--serve", "--items", str(items), "--folder", str(folder)]
    ) as (
        line,
        proc,
    ):
        try:
            ports = json.loads(line)
        except ValueError:
            raise BenchError(f"the TLS endpoints did not start (said {line!r}, exit {proc.poll()})") from None
        _wait_ready(ports[0], folder / "ca.pem")
        yield ports


def _wait_ready(port: int, ca_file: Path) -> None:
    context = ssl.create_default_context(cafile=str(ca_file))

    def handshakes() -> bool:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
            context.wrap_socket(sock, server_hostname="localhost").close()
        return True

    harness.wait_until(handshakes, f"the TLS endpoint on port {port} never completed a handshake")


# -- the profile and the measured run (measuring itself: harness.py) -----------------------


def write_profile(path: Path, ports: list[int], ca_file: Path, concurrency: int) -> None:
    lines = ["environment: bench", f"defaults: {{timeout: 5s, concurrency: {concurrency}}}", "tls:"]
    for n, port in enumerate(ports, start=1):
        lines.append(
            f"  - {{name: ep-{n:04d}, host: 127.0.0.1, port: {port}, server_name: localhost, "
            f"ca_file: '{ca_file}', expires: {{warn: 30d, fail: 7d}}, min_version: TLSv1.2}}"
        )
    path.write_text("\n".join(lines) + "\n")


def run_opsproof(work: Path, profile: Path, items: int, index: int) -> tuple[Measure, dict[str, Any]]:
    result, results, bundle_bytes = harness.run_daily(work, profile, index)
    checks = harness.all_passed(results, items * len(ASPECTS))
    expiry = [c["observed"] for c in checks if c["check"].startswith("tls.expiry[")]
    handshake_ms = sorted(round(o["elapsed_s"] * 1000, 1) for o in expiry)
    extra = {
        "bundle_bytes": bundle_bytes,
        "handshakes": sum(o["handshakes"] for o in expiry),
        "handshake_ms_p50": handshake_ms[len(handshake_ms) // 2],
        "handshake_ms_max": handshake_ms[-1],
    }
    return result, extra


# -- the benchmark -------------------------------------------------------------------------


def bench(items: int, repeat: int, concurrency: int, keep: bool, *, bare: bool = True) -> dict[str, Any]:
    with harness.workdir(keep) as work, endpoints(items, work) as ports:
        profile = work / "bench.yaml"
        write_profile(profile, ports, work / "ca.pem", concurrency)
        floors, runs, extras = harness.alternate(
            repeat,
            lambda index: harness.run_floor(work, items * len(ASPECTS), index, bare=bare),
            lambda index: run_opsproof(work, profile, items, index),
        )
    setup = {"items": items, "checks": items * len(ASPECTS), "repeat": repeat, "concurrency": concurrency}
    return harness.figures(setup, floors, runs, extras, floor_extra_s=0.0)


def print_table(figures: dict[str, Any]) -> None:
    harness.print_table(
        f"TLS benchmark: {figures['items']} endpoints ({figures['checks']} checks)",
        figures,
        extra_row=None,
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = harness.parser(__doc__, 200, "TLS")
    parser.add_argument("--folder", type=Path, default=None, help=argparse.SUPPRESS)
    args, _ = parser.parse_known_args(argv)
    measure = functools.partial(bench, bare=not args.plugin_floor)
    return harness.main(parser, argv, lambda args: serve(args.items, args.folder), measure, print_table)


if __name__ == "__main__":
    sys.exit(main())
