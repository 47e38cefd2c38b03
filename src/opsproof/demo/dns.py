"""A DNS server on loopback answering from a small zone (dnslib): the demo's, and the tests'.

Runbook 001 resolves `SERVICE_NAME.scorpius.svc.cluster.local` when services cannot find
each other; the demo serves the Scorpius services' names so the `dns` checks have a real
server to ask. A zone maps a name to its records, or to a failure to stage::

    {"wallet-guard.scorpius-platform.svc.cluster.local": [("A", "10.100.4.12")],
     "broken.test": "SERVFAIL", "slow.test": [("A", "10.0.0.9"), ("delay", "0.3")]}

Names not in the zone answer NXDOMAIN. Every query is recorded (name, type, opcode), so a
test can prove the checks only ask.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

Zone = dict[str, Any]

DEMO_ZONE: Zone = {
    "wallet-guard.scorpius-platform.svc.cluster.local": [("A", "10.100.4.12")],
    "auth-proxy.scorpius-platform.svc.cluster.local": [("A", "10.100.4.13")],
    "api.scorpius-platform.svc.cluster.local": [("CNAME", "wallet-guard.scorpius-platform.svc.cluster.local")],
    "_http._tcp.wallet-guard.scorpius-platform.svc.cluster.local": [
        ("SRV", "0 100 8000 wallet-guard.scorpius-platform.svc.cluster.local")
    ],
}


@dataclass
class DnsServer:
    """A running server: its address, and every query it was asked (name, type, opcode)."""

    address: str
    queries: list[tuple[str, str, str]] = field(default_factory=list)


def _resolver(zone: Zone, seen: list[tuple[str, str, str]]) -> Any:
    from dnslib import AAAA, CNAME, OPCODE, QTYPE, RCODE, RR, SRV, TXT, A
    from dnslib.server import BaseResolver

    def rdata(kind: str, text: str) -> Any:
        if kind == "A":
            return A(text)
        if kind == "AAAA":
            return AAAA(text)
        if kind == "CNAME":
            return CNAME(text)
        if kind == "TXT":
            return TXT(text)
        priority, weight, port, target = text.split()
        return SRV(int(priority), int(weight), int(port), target)

    class ZoneResolver(BaseResolver):  # type: ignore[misc]
        def resolve(self, request: Any, handler: Any) -> Any:
            name = str(request.q.qname).rstrip(".").lower()
            asked = QTYPE[request.q.qtype]
            seen.append((name, asked, OPCODE[request.header.opcode]))
            reply = request.reply()
            entry = zone.get(name)
            if entry is None:
                reply.header.rcode = RCODE.NXDOMAIN
                return reply
            if isinstance(entry, str):  # a failure staged: SERVFAIL, REFUSED
                reply.header.rcode = getattr(RCODE, entry)
                return reply
            owner = name
            for _ in range(8):  # a CNAME is followed inside the zone, as a recursive server would
                follow = None
                for kind, text in entry:
                    if kind == "delay":
                        time.sleep(float(text))
                    elif kind == asked or kind == "CNAME":
                        reply.add_answer(RR(owner, getattr(QTYPE, kind), rdata=rdata(kind, text), ttl=30))
                        follow = text.rstrip(".").lower() if kind == "CNAME" and asked != "CNAME" else None
                if follow is None or not isinstance(zone.get(follow), list):
                    break
                owner, entry = follow, zone[follow]
            return reply

    return ZoneResolver()


class _Silent:
    """dnslib's logger prints every packet: nothing to say here."""

    def __getattr__(self, name: str) -> Any:
        return lambda *args, **kwargs: None


@contextmanager
def serving_dns(zone: Zone, port: int = 0) -> Iterator[DnsServer]:
    """Serve `zone` over UDP and TCP on 127.0.0.1 (a free port unless given), from threads."""
    from dnslib.server import DNSServer

    from opsproof.local.ports import free_port

    port = free_port(port)
    server = DnsServer(f"127.0.0.1:{port}")
    resolver = _resolver(zone, server.queries)
    udp = DNSServer(resolver, address="127.0.0.1", port=port, logger=_Silent())
    tcp = DNSServer(resolver, address="127.0.0.1", port=port, tcp=True, logger=_Silent())
    threads = []
    for each in (udp, tcp):
        # socketserver looks for a shutdown request every poll_interval (0.5 s by default): a stop
        # would wait that long per server.
        serve = each.server.serve_forever
        thread = threading.Thread(target=serve, kwargs={"poll_interval": 0.05}, name="opsproof-dns", daemon=True)
        thread.start()
        threads.append(thread)
    try:
        yield server
    finally:
        for each in (udp, tcp):
            each.server.shutdown()
            each.server.server_close()
        for thread in threads:
            thread.join(5)
