"""Prometheus blackbox_exporter probing the same endpoints as opsproof: the comparison of bench_http.

Debian's `prometheus-blackbox-exporter` runs in its own process with one `http_2xx` module
(status 200, the body must say `healthy`, as the opsproof items expect). A driver, also in a
process of its own, asks it to probe every endpoint through `/probe?target=...&module=http_2xx`
with aiohttp, at most `concurrency` probes at a time (the profile's `defaults.concurrency`),
and reports the time from its first request to its last answer: what Prometheus would
spend scraping those probes, with the exporter already running.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import harness
from harness import BenchError

EXPORTER = "prometheus-blackbox-exporter"
MODULE = "http_2xx"
CONFIG = f"""\
modules:
  {MODULE}:
    prober: http
    timeout: 5s
    http:
      valid_status_codes: [200]
      fail_if_body_not_matches_regexp: ["healthy"]
      preferred_ip_protocol: ip4
"""


def available() -> bool:
    return shutil.which(EXPORTER) is not None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def exporter(work: Path) -> Iterator[int]:
    """The exporter on a free loopback port; yields the port once /metrics answers."""
    import urllib.request

    config = work / "blackbox.yml"
    config.write_text(CONFIG)
    port = _free_port()
    cmd = [EXPORTER, f"--config.file={config}", f"--web.listen-address=127.0.0.1:{port}", "--log.level=error"]
    log = open(work / "blackbox.log", "wb")  # noqa: SIM115 - closed below, after the process
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    try:

        def ready() -> bool:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as response:
                return bool(response.status == 200)

        harness.wait_until(ready, f"{EXPORTER} never answered on port {port}; see {work / 'blackbox.log'}")
        yield port
    finally:
        harness.stop_process(proc)
        log.close()


def run(exporter_port: int, server_port: int, items: int, concurrency: int) -> float:
    """Drive one round of probes from a child process; the seconds it took. BenchError unless all succeeded."""
    cmd = [
        sys.executable,
        __file__,
        str(exporter_port),
        str(server_port),
        str(items),
        str(concurrency),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise BenchError(f"the blackbox driver failed (exit {done.returncode}): {done.stderr[-2000:]}")
    figures = json.loads(done.stdout)
    if figures["succeeded"] != items:
        raise BenchError(f"blackbox_exporter: {figures['succeeded']} of {items} probes succeeded")
    return float(figures["seconds"])


async def _drive(exporter_port: int, server_port: int, items: int, concurrency: int) -> dict[str, float]:
    import aiohttp

    limit = asyncio.Semaphore(concurrency)
    probe = f"http://127.0.0.1:{exporter_port}/probe"
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one(n: int) -> bool:
            params = {"target": f"http://127.0.0.1:{server_port}/svc/{n}", "module": MODULE}
            async with limit, session.get(probe, params=params) as response:
                text = await response.text()
            return "\nprobe_success 1\n" in f"\n{text}"

        started = time.perf_counter()
        results = await asyncio.gather(*(one(n) for n in range(1, items + 1)))
        seconds = time.perf_counter() - started
    return {"seconds": seconds, "succeeded": sum(results)}


if __name__ == "__main__":
    exporter_port, server_port, items, concurrency = map(int, sys.argv[1:5])
    print(json.dumps(asyncio.run(_drive(exporter_port, server_port, items, concurrency))))
