"""DNS: one query per item (dnspython's asyncio resolver), every item concurrently.

The system resolver is read from /etc/resolv.conf; `server:` replaces its nameservers with
that one address. The whole resolution lives inside the item's `timeout` (dnspython's
`lifetime`, and an asyncio deadline behind it): a server that never answers costs the
timeout and no more, and is never asked again in the same run. No cache: each run asks.

An answer's rcode is a fact, not an error: NXDOMAIN (the name does not exist) and SERVFAIL
(the server could not resolve it) are what the check fails with, by name.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

from pydantic import Field

from opsproof.probes import Facts, ProbeContext, ProbeKind, each_as_done
from opsproof.targets.dns import DnsTarget, canonical, server_address


class DnsFacts(Facts):
    query: str
    type: str
    server: str = Field(description="the server asked (IP:port), or 'system resolver'")
    rcode: str | None = Field(None, description="the answer's response code: NOERROR, NXDOMAIN, SERVFAIL, REFUSED...")
    answered_by: str | None = None
    latency_s: float | None = Field(None, description="query sent to answer read")
    canonical_name: str | None = Field(None, description="the name the answer is for, after CNAMEs")
    records: list[str] = Field(default_factory=list, description="the answer's records as dig shows them")
    addresses: list[str] = Field(default_factory=list)
    targets: list[str] = Field(default_factory=list, description="CNAME and SRV targets")
    texts: list[str] = Field(default_factory=list, description="TXT strings, one per record")
    ttl: int | None = None

    def observed(self) -> dict[str, Any]:
        shown = super().observed()
        if self.latency_s is not None:
            shown["latency_ms"] = round(self.latency_s * 1000, 1)
            del shown["latency_s"]
        for empty in ("addresses", "targets", "texts"):
            if not shown.get(empty):
                shown.pop(empty, None)
        return shown


def _resolver(target: DnsTarget, timeout: float) -> Any:
    import dns.asyncresolver
    import dns.nameserver

    resolver = dns.asyncresolver.Resolver(configure=target.server is None)
    if target.server is not None:
        host, port = server_address(target.server)
        resolver.nameservers = [dns.nameserver.Do53Nameserver(host, port)]
    resolver.timeout = timeout
    resolver.lifetime = timeout
    resolver.cache = None
    resolver.retry_servfail = False
    return resolver


def _at(server: Any, port: int) -> str:
    """'10.96.0.10:53', '[fd00::a]:53': where an answer came from (dnspython names a server `Do53:IP@PORT`)."""
    host = str(server).removeprefix("Do53:").split("@", 1)[0]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _record(facts: DnsFacts, answer: Any) -> None:
    import dns.rdatatype

    facts.rcode = "NOERROR"
    facts.answered_by = _at(answer.nameserver, answer.port)
    facts.canonical_name = canonical(answer.canonical_name.to_text())
    rrset = answer.rrset
    if rrset is None:
        return
    facts.ttl = rrset.ttl
    for rdata in rrset:
        facts.records.append(rdata.to_text())
        if rdata.rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA):
            facts.addresses.append(rdata.address)
        elif rdata.rdtype in (dns.rdatatype.CNAME, dns.rdatatype.SRV):
            facts.targets.append(canonical(rdata.target.to_text()))
        elif rdata.rdtype == dns.rdatatype.TXT:
            facts.texts.append(b"".join(rdata.strings).decode("utf-8", "replace"))


def _refused(facts: DnsFacts, errors: list[Any]) -> None:
    """What every server said when none answered: an rcode (SERVFAIL, REFUSED) or why it could not be asked."""
    for server, _tcp, port, error, _response in errors:
        if isinstance(error, str):  # dnspython gives an rcode as its name
            facts.reached = True
            facts.rcode = error
            facts.answered_by = _at(server, port)
            return
    reasons = "; ".join(f"{_at(server, port)}: {error}" for server, _tcp, port, error, _response in errors)
    facts.failure = f"no server answered ({reasons or 'none to ask'})"


async def _probe_one(target: DnsTarget, ctx: ProbeContext) -> DnsFacts:
    import dns.asyncresolver
    import dns.exception
    import dns.resolver

    timeout = ctx.profile.timeout_of(target)
    facts = DnsFacts(
        target=target.name,
        reached=False,
        query=target.query,
        type=target.type,
        server=target.server or "system resolver",
    )
    async with ctx.limit:
        started = time.perf_counter()
        try:
            resolver = _resolver(target, timeout)
            async with asyncio.timeout(timeout):
                answer = await resolver.resolve(
                    target.query, target.type, tcp=target.tcp, search=target.search, raise_on_no_answer=False
                )
            facts.latency_s = time.perf_counter() - started
            facts.reached = True
            _record(facts, answer)
        except (TimeoutError, dns.exception.Timeout):
            facts.timed_out = True
            facts.failure = f"timed out after {time.perf_counter() - started:.2f}s (timeout {timeout:g}s)"
        except dns.resolver.NXDOMAIN:
            facts.latency_s = time.perf_counter() - started
            facts.reached = True
            facts.rcode = "NXDOMAIN"
        except dns.resolver.NoNameservers as exc:
            facts.latency_s = time.perf_counter() - started
            _refused(facts, exc.kwargs.get("errors") or [])
        except dns.resolver.NoResolverConfiguration:
            facts.failure = "no system resolver is configured (/etc/resolv.conf has no nameserver): give server:"
        except (dns.exception.DNSException, OSError, ValueError) as exc:
            facts.failure = ctx.redactor.redact(f"{type(exc).__name__}: {exc}")
        facts.elapsed_s = time.perf_counter() - started
    return facts


async def gather_dns(targets: Sequence[DnsTarget], ctx: ProbeContext) -> AsyncIterator[DnsFacts]:
    """Resolve every item's name concurrently; yield each one's facts as it completes."""
    async for facts in each_as_done(_probe_one(t, ctx) for t in targets):
        yield facts


PROBE: ProbeKind[DnsTarget, DnsFacts] = ProbeKind(
    name="dns",
    facts=DnsFacts,
    gather=gather_dns,
    imports=("dns.asyncresolver", "dns.nameserver", "dns.rdatatype"),
    times_targets=True,  # latency thresholds
)
