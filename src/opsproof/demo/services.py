"""Health endpoints modelled on runbook 000's table, served from one loopback port.

Wallet Guard, Auth Proxy, Usage Metering and Audit Trail (critical) answer
healthy; the Web Dashboard (non-critical) is healthy but slow, so its latency
warns; Reporting (non-critical) is down with a 503, a non-blocking failure.

Beside them, on the same port: the mempool service's /metrics (runbook 001: the celery
queue is deep, so its series warns; 003: the pool and the 5xx counters), written by
prometheus_client as any Python exporter writes it, and the SLO service's
/slos/status and /slos/error-budget (runbook 004: the error budget is running low).
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

if __name__ == "__main__":
    # Run by its path (see serving_apart): this folder, first on sys.path, holds dns.py, redis.py...
    # which would hide the libraries of those names.
    del sys.path[0]

from aiohttp import web

HEALTHY = ("wallet-guard", "auth-proxy", "usage-meter", "audit-trail")
SLOW = {"dashboard": 0.15}
DOWN = {"reporting": "reporting database unreachable"}


def make_app() -> web.Application:
    async def health(request: web.Request) -> web.Response:
        service = request.match_info["service"]
        if service in DOWN:
            return web.json_response({"status": "unhealthy", "reason": DOWN[service]}, status=503)
        if service in SLOW:
            await asyncio.sleep(SLOW[service])
        if service in HEALTHY or service in SLOW:
            return web.json_response({"status": "healthy", "service": service})
        raise web.HTTPNotFound()

    exposition = mempool_metrics()

    async def metrics(request: web.Request) -> web.Response:
        return web.Response(body=exposition, content_type="text/plain", charset="utf-8")

    async def slo_status(request: web.Request) -> web.Response:
        return web.json_response(SLO_STATUS)

    async def error_budget(request: web.Request) -> web.Response:
        return web.json_response(ERROR_BUDGET)

    app = web.Application()
    app.router.add_get("/mempool/metrics", metrics)
    app.router.add_get("/slos/status", slo_status)
    app.router.add_get("/slos/error-budget", error_budget)
    app.router.add_get("/{service}/health", health)
    return app


SLO_STATUS = {
    "slos": {"api_availability": {"status": "healthy", "current": 99.95}, "latency": {"status": "at_risk"}},
    "overall": "at_risk",
}
ERROR_BUDGET = {"slo": "api_availability", "objective": 99.9, "error_budget": {"remaining_percent": 23.5}}


def mempool_metrics() -> bytes:
    """The mempool service's exposition: the celery queue over its warn depth, the pool and 5xx counters calm."""
    from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest

    registry = CollectorRegistry()
    depth = Gauge("queue_depth", "Jobs waiting, per queue", ["queue"], registry=registry)
    depth.labels("celery").set(240)
    depth.labels("default").set(3)
    Gauge("apex_pg_pool_used", "Connections of the pool in use", registry=registry).set(12)
    requests = Counter("http_requests", "Requests served, per status", ["status"], registry=registry)
    requests.labels("200").inc(48_211)
    requests.labels("503").inc(2)
    return generate_latest(registry)


@contextmanager
def serving_apart(port: int) -> Iterator[str]:
    """Serve the demo services from a process of their own; yields 'host:port'.

    Their latency is judged: in the demo's process they would share one interpreter
    lock with the Kubernetes emulator and the S3 server, and a busy emulator would
    show up as a slow health endpoint.
    """
    # A session of its own: a Ctrl-C in the demo's terminal would interrupt its imports with a
    # traceback; the demo stops it itself, whatever ends the demo.
    from opsproof.local.processes import stop_process

    # By its path, not `-m opsproof.demo.services`: the opsproof package's imports (its models,
    # pydantic; ~0.25 s of CPU) are nothing this process needs.
    process = subprocess.Popen(
        [sys.executable, __file__, str(port)],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline().strip()
        if not line.startswith("serving "):
            raise RuntimeError(f"the demo services did not start (exit {process.poll()})")
        yield line.removeprefix("serving ")
    finally:
        stop_process(process)


def _serve_forever(port: int) -> None:
    async def main() -> None:
        runner = web.AppRunner(make_app(), access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        print(f"serving 127.0.0.1:{port}", flush=True)
        await asyncio.Event().wait()

    asyncio.run(main())


if __name__ == "__main__":
    # Run by hand, Ctrl-C stops it quietly.
    with contextlib.suppress(KeyboardInterrupt):
        _serve_forever(int(sys.argv[1]))
