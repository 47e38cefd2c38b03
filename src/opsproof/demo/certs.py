"""The demo's pair of TLS endpoints (runbook 003, scenario 8: alert at 30 days).

`api` has 60 of its 90 days left; `auth-proxy` expires in 12 days, which the daily run
warns about. Both serve the demo health app over HTTPS with certificates from
`opsproof.testing.certs.Authority`.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from opsproof.demo.services import make_app
from opsproof.local.ports import free_port
from opsproof.testing.certs import Authority
from opsproof.testing.servers import serving

# name -> (preferred port, days left, lifetime in days)
DEMO_ENDPOINTS = {"api": (18443, 60, 90), "auth-proxy": (18444, 12, 90)}
CA_VARIABLE = "DEMO_TLS_CA"


@dataclass
class DemoTls:
    """Where the demo's TLS endpoints listen and the CA that makes them trusted."""

    ca_file: Path
    ports: dict[str, int] = field(default_factory=dict)

    @property
    def plain_vars(self) -> dict[str, str]:
        """`--var` values for the demo profile: DEMO_TLS_CA and DEMO_TLS_<NAME>_PORT."""
        ports = {f"DEMO_TLS_{name.upper().replace('-', '_')}_PORT": str(port) for name, port in self.ports.items()}
        return {CA_VARIABLE: str(self.ca_file), **ports}

    @property
    def line(self) -> str:
        shown = ", ".join(f"{name} on 127.0.0.1:{port}" for name, port in self.ports.items())
        return f"TLS endpoints {shown} (auth-proxy's certificate expires in 12 days)"


@contextmanager
def serve_demo_tls(*, any_ports: bool = False) -> Iterator[DemoTls]:
    """Serve the demo TLS endpoints (the demo health app over HTTPS) until the block ends (`any_ports`: not 18443/4)."""
    authority = Authority.create()
    now = datetime.now(UTC)
    with tempfile.TemporaryDirectory(prefix="opsproof-demo-tls-") as folder, ExitStack() as stack:
        demo = DemoTls(ca_file=authority.write_pem(Path(folder) / "demo-ca.pem"))
        for name, (preferred, days_left, lifetime) in DEMO_ENDPOINTS.items():
            end = now + timedelta(days=days_left)
            leaf = authority.issue(not_before=end - timedelta(days=lifetime), not_after=end)
            port = free_port(0 if any_ports else preferred)
            address = stack.enter_context(serving(port, make_app(), ssl_context=leaf.server_context()))
            demo.ports[name] = int(address.rsplit(":", 1)[1])
        yield demo
