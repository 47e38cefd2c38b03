"""Profile model of `dns` items: one name resolved, through the system resolver or a given server.

Runbook 001 asks `nslookup SERVICE_NAME.scorpius.svc.cluster.local` when services cannot
find each other; an item is that question with its expected answer::

    dns:
      - {name: wallet-guard-svc, query: wallet-guard.scorpius-platform.svc.cluster.local, type: A,
         server: "10.96.0.10:53", expect: {addresses: [10.100.4.12]}, latency: {warn: 50ms, fail: 500ms}}
"""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Literal

from pydantic import Field, StrictBool, field_validator, model_validator

from opsproof.model.fields import Duration, Item, Regex, Rising, Strict, Threshold
from opsproof.model.kind import Kind

RecordType = Literal["A", "AAAA", "CNAME", "SRV", "TXT"]
_LABEL = r"[A-Za-z0-9_][A-Za-z0-9_-]{0,62}"
_HOSTNAME = re.compile(rf"^(?=.{{1,253}}\.?$){_LABEL}(?:\.{_LABEL})*\.?$")


def _hostname(name: str) -> str:
    if not _HOSTNAME.match(name):
        raise ValueError(f"{name!r} is not a DNS name (labels of letters, digits, _ and -, joined by dots)")
    return name


def canonical(name: str) -> str:
    """A DNS name as compared: lower case, no trailing dot."""
    return name.rstrip(".").lower()


class DnsExpect(Strict):
    """What the answer must hold; an answer with at least one record is always expected."""

    addresses: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = Field(
        default_factory=list, description="A/AAAA: each of these addresses is answered"
    )
    targets: list[Annotated[str, Field(min_length=1)]] = Field(
        default_factory=list, description="CNAME, SRV: each of these names is a target (case and trailing dot aside)"
    )
    text: Regex | None = Field(None, description="TXT: a record matches this regular expression")
    only: StrictBool = Field(False, description="nothing but the addresses or targets listed is answered")

    @field_validator("targets")
    @classmethod
    def _names(cls, targets: list[str]) -> list[str]:
        return [_hostname(target) for target in targets]


class DnsTarget(Item):
    """A DNS name that must resolve, as expected and in time."""

    query: str = Field(description="the name to resolve: wallet-guard.scorpius.svc.cluster.local")
    type: RecordType = Field("A", description="the record type asked: A, AAAA, CNAME, SRV or TXT")
    server: str | None = Field(
        None, description="IP[:port] of the server to ask (10.96.0.10:53, [fd00::a]:53); absent: the system resolver"
    )
    tcp: StrictBool = Field(False, description="ask over TCP instead of UDP")
    search: StrictBool = Field(
        False, description="system resolver only: try the search domains of resolv.conf, as nslookup does"
    )
    expect: DnsExpect = Field(default_factory=DnsExpect)
    latency: Annotated[Threshold[Duration], Rising] | None = Field(None, description="{warn, fail} on the answer time")

    @field_validator("query")
    @classmethod
    def _query(cls, query: str) -> str:
        return _hostname(query)

    @field_validator("server")
    @classmethod
    def _server(cls, server: str | None) -> str | None:
        if server is not None:
            server_address(server)
        return server

    @model_validator(mode="after")
    def _fits_the_type(self) -> DnsTarget:
        expect = self.expect
        if expect.addresses and self.type not in ("A", "AAAA"):
            raise ValueError(f"expect.addresses is for A and AAAA queries, not {self.type}")
        if expect.targets and self.type not in ("CNAME", "SRV"):
            raise ValueError(f"expect.targets is for CNAME and SRV queries, not {self.type}")
        if expect.text is not None and self.type != "TXT":
            raise ValueError(f"expect.text is for TXT queries, not {self.type}")
        wrong = [str(a) for a in expect.addresses if (a.version == 4) != (self.type == "A")]
        if wrong:
            raise ValueError(f"expect.addresses: {wrong[0]} is not an address a {self.type} query answers")
        if expect.only and not (expect.addresses or expect.targets):
            raise ValueError("expect.only needs addresses or targets to compare with")
        if self.search and self.server is not None:
            raise ValueError("search uses the system resolver's search domains: not with server")
        return self


def server_address(server: str) -> tuple[str, int]:
    """'10.96.0.10:53' -> ('10.96.0.10', 53); '[fd00::a]:53', 'fd00::a' and '10.96.0.10' (port 53) too."""
    found = re.fullmatch(r"\[([0-9A-Fa-f:.]+)\](?::(\d+))?|([0-9.]+)(?::(\d+))?|([0-9A-Fa-f:]+)", server)
    if found is None:
        raise ValueError(f"server {server!r} is not IP[:port] (10.96.0.10:53, [fd00::a]:53)")
    host = found.group(1) or found.group(3) or found.group(5)
    port = int(found.group(2) or found.group(4) or 53)
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"server {server!r}: {host!r} is not an IP address (a resolver is asked by address)") from None
    if not 1 <= port <= 65535:
        raise ValueError(f"server {server!r}: the port must be from 1 to 65535")
    return host, port


KIND = Kind(
    name="dns",
    target=DnsTarget,
    probe="opsproof.probes.dns",
    checks="checks/infra/test_dns.py",
    cadence="daily",
    areas=("infra",),
    controls={
        # Service discovery answers (names resolve, to the right addresses, in time): availability monitoring.
        "dns": ("SOC2:CC7.1", "SOC2:A1.1", "ISO27001:A.8.16", "SOX-ITGC:OPS"),
    },
)
