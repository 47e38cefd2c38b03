"""The whole demo environment of `opsproof demo`: every service the demo profile checks.

Each piece runs on loopback and reaches the profile through `--var` (addresses, shown
in reports) and environment variables (passwords, which the profile takes as `${...}`
secrets, so the demo also shows that secrets never reach a report).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field


@dataclass
class DemoEnvironment:
    """What the checks need to find the demo services."""

    plain_vars: dict[str, str] = field(default_factory=dict)  # --var NAME=VALUE
    environ: dict[str, str] = field(default_factory=dict)  # secrets, as environment variables
    services: list[str] = field(default_factory=list)  # one line each, for the terminal
    deselect: list[str] = field(default_factory=list)  # kinds the demo cannot serve on this machine

    def var_args(self) -> list[str]:
        return [arg for name, value in self.plain_vars.items() for arg in ("--var", f"{name}={value}")]

    def pytest_args(self) -> list[str]:
        """--var for every plain value, and -k leaving out the kinds this machine cannot serve."""
        leave_out = " and ".join(f"not test_{kind}" for kind in self.deselect)
        return [*self.var_args(), *(("-k", leave_out) if leave_out else ())]


@contextmanager
def demo_environment(http_port: int, *, any_ports: bool = False) -> Iterator[DemoEnvironment]:
    """Start every demo service (stopping all of them on the way out, whatever happens).

    `any_ports`: every service on a free port, not the demo's usual ones: for tests that run
    beside a demo, where a usual port seen free a moment ago may be taken when bound.
    """
    anywhere: dict[str, int] = {"port": 0} if any_ports else {}
    from opsproof.demo.backups import serve_demo_backups
    from opsproof.demo.certs import serve_demo_tls
    from opsproof.demo.dns import DEMO_ZONE, serving_dns
    from opsproof.demo.kubernetes import serve_demo_kubernetes
    from opsproof.demo.postgres import serve_demo_postgres
    from opsproof.demo.prometheus import serve_demo_prometheus
    from opsproof.demo.redis import serve_demo_redis
    from opsproof.demo.services import free_port, serving_apart

    demo = DemoEnvironment()
    with ExitStack() as stack:
        address = stack.enter_context(serving_apart(free_port(http_port)))
        demo.plain_vars["DEMO_HTTP"] = address
        demo.services.append(f"health endpoints of runbook 000 on http://{address} (Reporting is down on purpose)")

        names = stack.enter_context(serving_dns(DEMO_ZONE))
        demo.plain_vars["DEMO_DNS"] = names.address
        demo.services.append(f"DNS for the scorpius-platform services on {names.address} (reporting has no name)")

        tls = stack.enter_context(serve_demo_tls(any_ports=any_ports))
        demo.plain_vars.update(tls.plain_vars)
        demo.services.append(tls.line)

        database = stack.enter_context(serve_demo_postgres())
        demo.plain_vars.update(database.variables)
        demo.environ.update(database.environment)
        demo.services.append(f"PostgreSQL scorpius-db at {database.dsn} (its pool is over the warn share)")

        backups = stack.enter_context(serve_demo_backups(database.server))
        demo.plain_vars.update(backups.plain_vars)
        demo.environ.update(backups.environ)
        demo.services.append(backups.line)

        redis = stack.enter_context(serve_demo_redis(**anywhere))
        demo.plain_vars["DEMO_REDIS"] = redis.address
        demo.environ.update(redis.environ)
        demo.services.append(f"Redis redis-0 on {redis.address} (background_jobs is over its warn depth)")
        cluster = stack.enter_context(serve_demo_kubernetes(**anywhere))
        demo.plain_vars.update(cluster.plain_vars)
        demo.environ.update(cluster.environ)
        demo.services.append(cluster.line)

        prometheus = stack.enter_context(serve_demo_prometheus(**anywhere))
        if prometheus is not None:
            demo.plain_vars["DEMO_PROMETHEUS"] = prometheus.url
            demo.services.append(prometheus.line)
        else:
            # No server binary on this machine: say so and leave its checks out, rather than
            # show failures that are about the demo, not the checks.
            demo.deselect.append("prometheus")
            demo.services.append("Prometheus: not installed (apt-get install prometheus): its checks are left out")
        yield demo
