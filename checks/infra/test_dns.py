"""DNS (runbook 001's service discovery: `nslookup SERVICE_NAME.scorpius.svc.cluster.local`).

Each profile `dns` item is one check `dns.resolve[<name>]`: the name resolves (NOERROR with
at least one record), to the addresses or targets expected, within the latency limits.
NXDOMAIN and SERVFAIL fail by name; a server that does not answer fails as timed out.
"""

from __future__ import annotations

import re

from opsproof import Check, format_duration
from opsproof.probes.dns import DnsFacts
from opsproof.targets.dns import DnsTarget, canonical

RCODE_MEANING = {
    "NXDOMAIN": "the name does not exist",
    "SERVFAIL": "the server failed to resolve it",
    "REFUSED": "the server refused to answer",
    "FORMERR": "the server could not read the query",
    "NOTIMP": "the server does not implement the query",
}


def _compare(kind: str, expected: list[str], answered: list[str], only: bool) -> list[str]:
    missing = [value for value in expected if value not in answered]
    extra = [value for value in answered if value not in expected] if only else []
    problems = []
    if missing:
        problems.append(f"{kind} {', '.join(missing)} not answered (answered: {', '.join(answered)})")
    if extra:
        problems.append(f"{kind} {', '.join(extra)} answered, not expected (only: true)")
    return problems


def test_resolve(item: DnsTarget, facts: DnsFacts, check: Check) -> None:
    expect = item.expect
    asked = f"{item.query} {item.type}"
    check.expect(query=item.query, type=item.type, server=facts.server, rcode="NOERROR")
    addresses = [str(a) for a in expect.addresses]
    targets = [canonical(t) for t in expect.targets]
    if addresses:
        check.expect(addresses=addresses)
    if targets:
        check.expect(targets=targets)
    if expect.text is not None:
        check.expect(text=expect.text)

    assert facts.reached, f"{asked} via {facts.server}: {facts.failure}"
    if facts.rcode != "NOERROR":
        meaning = RCODE_MEANING.get(facts.rcode or "", "the server answered with an error")
        raise AssertionError(f"{asked}: {facts.rcode} from {facts.answered_by or facts.server} ({meaning})")
    assert facts.records, f"{asked}: no {item.type} records (NOERROR, empty answer) from {facts.answered_by}"
    problems = _compare("address", addresses, facts.addresses, expect.only)
    problems += _compare("target", targets, facts.targets, expect.only)
    if expect.text is not None and not any(re.search(expect.text, text) for text in facts.texts):
        problems.append(f"no TXT record matches /{expect.text}/ (answered: {'; '.join(facts.texts)})")
    assert not problems, f"{asked}: " + "; ".join(problems)
    shown = facts.addresses or facts.targets or facts.texts
    check.note(f"{asked}: {', '.join(shown)} in {format_duration(facts.latency_s or 0)} from {facts.answered_by}")
    check.threshold("latency", facts.latency_s, item.latency, show=format_duration)
