"""The whole demo environment of `opsproof demo`: every service the demo profile checks.

Each piece runs on loopback and reaches the profile through `--var` (addresses, shown
in reports) and environment variables (passwords, which the profile takes as `${...}`
secrets, so the demo also shows that secrets never reach a report).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from opsproof.demo.startup import Timeline, start_together

if TYPE_CHECKING:
    from opsproof.demo.prometheus import StartingPrometheus


@dataclass
class DemoEnvironment:
    """What the checks need to find the demo services."""

    plain_vars: dict[str, str] = field(default_factory=dict)  # --var NAME=VALUE
    environ: dict[str, str] = field(default_factory=dict)  # secrets, as environment variables
    services: list[str] = field(default_factory=list)  # one line each, for the terminal
    deselect: list[str] = field(default_factory=list)  # kinds the demo cannot serve on this machine
    # Waits until every service shows the state the demo stages (Prometheus: `up` of both targets, alerts firing).
    settle: Callable[[], None] = field(default=lambda: None, repr=False)

    def var_args(self) -> list[str]:
        return [arg for name, value in self.plain_vars.items() for arg in ("--var", f"{name}={value}")]

    def pytest_args(self) -> list[str]:
        """--var for every plain value, and -k leaving out the kinds this machine cannot serve."""
        leave_out = " and ".join(f"not test_{kind}" for kind in self.deselect)
        return [*self.var_args(), *(("-k", leave_out) if leave_out else ())]


@contextmanager
def demo_environment(
    http_port: int, *, any_ports: bool = False, settled: bool = True, timeline: Timeline | None = None
) -> Iterator[DemoEnvironment]:
    """Start every demo service (stopping all of them on the way out, whatever happens).

    Every service starts side by side (`start_together`), Prometheus first. `settled=False`
    yields as soon as every service answers, before Prometheus may have evaluated its
    rules: call `demo.settle()` before its checks probe. `any_ports`: every service on a
    free port, not the demo's usual ones: for tests that run beside a demo, where a usual
    port seen free a moment ago may be taken when bound. `timeline` records when each
    service was ready.
    """
    from opsproof.demo.prometheus import prometheus_binary

    timeline = timeline if timeline is not None else Timeline()
    demo = DemoEnvironment()
    with ExitStack() as stack:
        _start_all(stack, demo, prometheus_binary() is not None, http_port, any_ports, timeline)
        if settled:
            demo.settle()
        yield demo


def _start_all(
    stack: ExitStack, demo: DemoEnvironment, prometheus: bool, http_port: int, any_ports: bool, timeline: Timeline
) -> None:
    """Start every service side by side, and fill `demo`; all of them stop when `stack` closes.

    `prometheus`: its binary is installed (the demo leaves it out otherwise).
    """
    anywhere: dict[str, int] = {"port": 0} if any_ports else {}
    database: Future[Any] = Future()

    # Each task imports its own modules, in its own thread: PostgreSQL, the slowest (initdb, the
    # schema, then the dumps of the backups), runs initdb while the others import moto, the
    # Kubernetes emulator and the TLS libraries.
    def start_postgres(own: ExitStack) -> Any:
        try:
            from opsproof.demo.postgres import serve_demo_postgres

            served = own.enter_context(serve_demo_postgres())
        except BaseException as exc:
            database.set_exception(exc)
            raise
        database.set_result(served.server)
        return served

    def start_prometheus_and_exporter(own: ExitStack) -> StartingPrometheus | None:
        from opsproof.demo.prometheus import serve_exporter, start_demo_prometheus

        # Back-filled by promtool, then spawned; its exporter served where it scrapes.
        started = own.enter_context(start_demo_prometheus(**anywhere))
        if started is not None:
            own.enter_context(serve_exporter(started))
        return started

    def start_backups(own: ExitStack) -> Any:
        from opsproof.demo.backups import serve_demo_backups

        return own.enter_context(serve_demo_backups(database.result))

    def start_health_endpoints(own: ExitStack) -> str:
        from opsproof.demo.services import serving_apart
        from opsproof.local.ports import free_port

        return own.enter_context(serving_apart(free_port(http_port)))

    def start_dns(own: ExitStack) -> Any:
        from opsproof.demo.dns import DEMO_ZONE, serving_dns

        return own.enter_context(serving_dns(DEMO_ZONE))

    def start_tls(own: ExitStack) -> Any:
        from opsproof.demo.certs import serve_demo_tls

        return own.enter_context(serve_demo_tls(any_ports=any_ports))

    def start_redis(own: ExitStack) -> Any:
        from opsproof.demo.redis import serve_demo_redis

        return own.enter_context(serve_demo_redis(**anywhere))

    def start_kubernetes(own: ExitStack) -> Any:
        from opsproof.demo.kubernetes import serve_demo_kubernetes

        return own.enter_context(serve_demo_kubernetes(**anywhere))

    tasks: dict[str, Callable[[ExitStack], Any]] = {"postgres": start_postgres}
    if prometheus:
        tasks["prometheus"] = start_prometheus_and_exporter
    tasks |= {
        "backups": start_backups,
        "health endpoints": start_health_endpoints,
        "dns": start_dns,
        "tls": start_tls,
        "redis": start_redis,
        "kubernetes": start_kubernetes,
    }
    ready = start_together(stack, tasks, timeline)

    # The lines and variables in one fixed order, whichever service was ready first.
    address, names, tls, db = ready["health endpoints"], ready["dns"], ready["tls"], ready["postgres"]
    backups, redis, cluster = ready["backups"], ready["redis"], ready["kubernetes"]
    for plain, secrets, line in (
        (
            {"DEMO_HTTP": address},
            {},
            f"health endpoints of runbook 000 on http://{address} (Reporting is down on purpose)",
        ),
        (
            {"DEMO_DNS": names.address},
            {},
            f"DNS for the scorpius-platform services on {names.address} (reporting has no name)",
        ),
        (tls.plain_vars, {}, tls.line),
        (db.variables, db.environment, f"PostgreSQL scorpius-db at {db.dsn} (its pool is over the warn share)"),
        (backups.plain_vars, backups.environ, backups.line),
        (
            {"DEMO_REDIS": redis.address},
            redis.environ,
            f"Redis redis-0 on {redis.address} (background_jobs is over its warn depth)",
        ),
        (cluster.plain_vars, cluster.environ, cluster.line),
    ):
        demo.plain_vars.update(plain)
        demo.environ.update(secrets)
        demo.services.append(line)

    served: StartingPrometheus | None = ready.get("prometheus")
    if served is not None:
        demo.plain_vars["DEMO_PROMETHEUS"] = served.url
        demo.services.append(served.demo.line)

        def settle() -> None:
            served.settle()
            timeline.mark("prometheus settled (up of both targets, alerts firing)")

        demo.settle = settle
    else:
        # No server binary on this machine: say so and leave its checks out, rather than
        # show failures that are about the demo, not the checks.
        demo.deselect.append("prometheus")
        demo.services.append("Prometheus: not installed (apt-get install prometheus): its checks are left out")
