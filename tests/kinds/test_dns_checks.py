"""`dns` checks against a DNS server started here (dnslib, the demo's server with a zone of the tests')."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import Runner, profile_error, wait_for
from opsproof.demo.dns import DnsServer, serving_dns
from opsproof.local.ports import free_port
from opsproof.testing.servers import stop_process

SVC = "wallet-guard.scorpius-platform.svc.cluster.local"
ZONE = {
    SVC: [("A", "10.100.4.12")],
    "dual.test": [("A", "10.0.0.1"), ("A", "10.0.0.2"), ("AAAA", "fd00::1")],
    "alias.test": [("CNAME", SVC)],
    "_http._tcp.api.test": [("SRV", "0 100 8080 api-0.test."), ("SRV", "0 100 8080 api-1.test.")],
    "api.test": [("TXT", "v=spf1 -all"), ("A", "10.0.0.3")],
    "broken.test": "SERVFAIL",
    "refused.test": "REFUSED",
    "slow.test": [("delay", "0.3"), ("A", "10.0.0.9")],
}


@pytest.fixture(scope="module")
def dns_server() -> Iterator[DnsServer]:
    with serving_dns(ZONE) as server:
        yield server


@pytest.fixture
def udp_black_hole() -> Iterator[socket.socket]:
    """A UDP socket that takes queries and never answers (they wait in its buffer, to be counted)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock


def _queued(sock: socket.socket) -> int:
    sock.setblocking(False)
    count = 0
    while True:
        try:
            sock.recv(4096)
        except BlockingIOError:
            return count
        count += 1


@pytest.fixture(scope="module")
def dnsmasq(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Debian's dnsmasq on a loopback port, authoritative for cluster.local as CoreDNS is (no upstream)."""
    binary = shutil.which("dnsmasq") or shutil.which("dnsmasq", path="/usr/sbin:/sbin")
    if binary is None:
        pytest.skip("dnsmasq is not installed: `apt-get install dnsmasq-base`")
    port = free_port(0)
    log = tmp_path_factory.mktemp("dnsmasq") / "queries.log"
    process = subprocess.Popen(
        [
            binary,
            "--no-daemon",
            "--conf-file=/dev/null",
            f"--port={port}",
            "--listen-address=127.0.0.1",
            "--bind-interfaces",
            "--no-resolv",
            "--no-hosts",
            "--user=root",
            "--group=root",
            "--pid-file=",
            "--local=/cluster.local/",
            f"--host-record={SVC},10.100.4.12",
            f"--cname=api.scorpius-platform.svc.cluster.local,{SVC}",
            f"--srv-host=_http._tcp.{SVC},{SVC},8000",
            f"--txt-record={SVC},v=demo",
            "--log-queries",
            f"--log-facility={log}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(lambda: log.exists() and "started" in log.read_text(), "dnsmasq to start")
        yield f"127.0.0.1:{port}"
    finally:
        stop_process(process)


def dns_profile(*items: str) -> str:
    body = "\n".join(f"  - {item}" for item in items)
    return f"environment: test\ndefaults: {{timeout: 2s}}\ndns:\n{body}\n"


def test_answers_as_expected_pass(runner: Runner, dns_server: DnsServer) -> None:
    at = f"server: '{dns_server.address}'"
    runner.profile(
        dns_profile(
            f"{{name: svc, query: {SVC}, {at}, expect: {{addresses: [10.100.4.12]}}, timeout: 5s, latency: {{warn: 3s, fail: 5s}}}}",
            f"{{name: dual, query: dual.test, {at}, expect: {{addresses: [10.0.0.2, 10.0.0.1], only: true}}}}",
            f"{{name: dual6, query: dual.test, type: AAAA, {at}, expect: {{addresses: ['fd00::1']}}}}",
            f"{{name: alias, query: alias.test, type: CNAME, {at}, expect: {{targets: ['{SVC}.']}}}}",
            f"{{name: via-alias, query: alias.test, {at}, expect: {{addresses: [10.100.4.12]}}}}",
            f"{{name: srv, query: _http._tcp.api.test, type: SRV, {at}, expect: {{targets: [API-0.test, api-1.test]}}}}",
            f"{{name: txt, query: api.test, type: TXT, {at}, expect: {{text: '^v=spf1'}}}}",
            f"{{name: over-tcp, query: {SVC}, {at}, tcp: true}}",
        )
    )
    run = runner.run("-m", "daily")
    assert run.ret == 0, run.output
    svc = run.record("dns.resolve[svc]")
    assert svc["outcome"] == "passed"
    assert svc["observed"]["addresses"] == ["10.100.4.12"]
    assert svc["observed"]["rcode"] == "NOERROR"
    assert svc["observed"]["answered_by"] == dns_server.address
    assert svc["markers"] == ["daily", "infra"]
    assert svc["message"].startswith(f"{SVC} A: 10.100.4.12 in ")
    assert run.record("dns.resolve[via-alias]")["observed"]["canonical_name"] == SVC
    assert run.record("dns.resolve[srv]")["observed"]["records"] == [
        "0 100 8080 api-0.test.",
        "0 100 8080 api-1.test.",
    ]


def test_against_dnsmasq(runner: Runner, dnsmasq: str) -> None:
    at = f"server: '{dnsmasq}'"
    runner.profile(
        dns_profile(
            f"{{name: svc, query: {SVC}, {at}, expect: {{addresses: [10.100.4.12], only: true}}}}",
            f"{{name: via-alias, query: api.scorpius-platform.svc.cluster.local, {at}, expect: {{addresses: [10.100.4.12]}}}}",
            f"{{name: srv, query: _http._tcp.{SVC}, type: SRV, {at}, expect: {{targets: [{SVC}]}}}}",
            f"{{name: txt, query: {SVC}, type: TXT, {at}, expect: {{text: '^v=demo$'}}}}",
            f"{{name: gone, query: reporting.scorpius-platform.svc.cluster.local, {at}}}",
            f"{{name: outside, query: example.com, {at}}}",
        )
    )
    run = runner.run("-m", "daily")
    for name in ("svc", "via-alias", "srv", "txt"):
        assert run.record(f"dns.resolve[{name}]")["outcome"] == "passed", run.record(f"dns.resolve[{name}]")["message"]
    assert "NXDOMAIN" in run.record("dns.resolve[gone]")["message"]
    # No upstream to forward to: dnsmasq refuses, and the check says so by name.
    assert "REFUSED" in run.record("dns.resolve[outside]")["message"]


def test_nxdomain_servfail_and_refused_fail_by_name(runner: Runner, dns_server: DnsServer) -> None:
    at = f"server: '{dns_server.address}'"
    runner.profile(
        dns_profile(
            f"{{name: gone, query: reporting.scorpius-platform.svc.cluster.local, {at}}}",
            f"{{name: broken, query: broken.test, {at}}}",
            f"{{name: refused, query: refused.test, {at}}}",
            f"{{name: empty, query: dual.test, type: TXT, {at}}}",
        )
    )
    run = runner.run("-m", "daily")
    assert run.ret == 1
    gone = run.record("dns.resolve[gone]")
    assert gone["outcome"] == "failed"
    assert gone["message"] == (
        f"reporting.scorpius-platform.svc.cluster.local A: NXDOMAIN from {dns_server.address} "
        "(the name does not exist)"
    )
    broken = run.record("dns.resolve[broken]")
    assert broken["message"] == f"broken.test A: SERVFAIL from {dns_server.address} (the server failed to resolve it)"
    assert broken["observed"]["rcode"] == "SERVFAIL"
    assert "REFUSED" in run.record("dns.resolve[refused]")["message"]
    empty = run.record("dns.resolve[empty]")
    assert empty["message"] == f"dual.test TXT: no TXT records (NOERROR, empty answer) from {dns_server.address}"


def test_wrong_answers_and_slow_answers(runner: Runner, dns_server: DnsServer) -> None:
    at = f"server: '{dns_server.address}'"
    runner.profile(
        dns_profile(
            f"{{name: moved, query: {SVC}, {at}, expect: {{addresses: [10.100.4.99]}}}}",
            f"{{name: extra, query: dual.test, {at}, expect: {{addresses: [10.0.0.1], only: true}}}}",
            f"{{name: slow, query: slow.test, {at}, latency: {{warn: 100ms, fail: 2s}}}}",
            f"{{name: too-slow, query: slow.test, {at}, latency: {{warn: 50ms, fail: 200ms}}}}",
        )
    )
    run = runner.run("-m", "daily")
    moved = run.record("dns.resolve[moved]")
    assert moved["outcome"] == "failed"
    assert moved["message"] == f"{SVC} A: address 10.100.4.99 not answered (answered: 10.100.4.12)"
    extra = run.record("dns.resolve[extra]")
    assert extra["message"] == "dual.test A: address 10.0.0.2 answered, not expected (only: true)"
    slow = run.record("dns.resolve[slow]")
    assert slow["outcome"] == "warned" and "is over the warn threshold 100ms" in slow["message"]
    assert slow["observed"]["latency_ms"] >= 300
    assert run.record("dns.resolve[too-slow]")["outcome"] == "failed"


def test_black_hole_costs_its_timeout_and_no_more(
    runner: Runner, dns_server: DnsServer, udp_black_hole: socket.socket
) -> None:
    hole_at = f"127.0.0.1:{udp_black_hole.getsockname()[1]}"
    runner.profile(
        dns_profile(
            f"{{name: hole, query: {SVC}, server: '{hole_at}', timeout: 1s}}",
            f"{{name: hole-2, query: alias.test, server: '{hole_at}', timeout: 1s}}",
            f"{{name: svc, query: {SVC}, server: '{dns_server.address}'}}",
        )
    )
    started = time.monotonic()
    run = runner.run("-m", "daily")
    elapsed = time.monotonic() - started
    hole = run.record("dns.resolve[hole]")
    assert hole["outcome"] == "failed"
    assert "timed out after" in hole["message"] and hole["observed"]["timed_out"] is True
    # The item's own deadline (a margin for a busy machine), and one query each: no retry within it.
    assert 0.9 <= hole["observed"]["elapsed_s"] < 2.5
    assert _queued(udp_black_hole) == 2
    assert run.record("dns.resolve[svc]")["outcome"] == "passed"
    # Both black holes are waited for together: the run pays one timeout, not two.
    assert elapsed < 1 + 6, f"two 1s black holes took the run {elapsed:.1f}s"


def test_a_server_given_as_a_secret_is_never_shown(
    runner: Runner, dns_server: DnsServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DNS_SERVER", dns_server.address)
    runner.profile(dns_profile("{name: gone, query: nothing.test, server: '${DNS_SERVER}'}"))
    run = runner.run("-m", "daily")
    record = run.record("dns.resolve[gone]")
    assert record["message"] == "nothing.test A: NXDOMAIN from ${DNS_SERVER} (the name does not exist)"
    for text in [run.output, *(p.read_text(errors="replace") for p in run.bundle.rglob("*") if p.is_file())]:
        assert dns_server.address not in text


def test_checks_only_ask(runner: Runner, dns_server: DnsServer) -> None:
    before = len(dns_server.queries)
    runner.profile(dns_profile(f"{{name: svc, query: {SVC}, server: '{dns_server.address}'}}"))
    runner.run("-m", "daily")
    # One standard query per item: no update, no notify, no zone transfer.
    assert dns_server.queries[before:] == [(SVC, "A", "QUERY")]


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ("{name: d, query: 'bad name'}", "dns[0].query: 'bad name' is not a DNS name"),
        ("{name: d, query: a.test, type: MX}", "dns[0].type: input should be 'A', 'AAAA', 'CNAME', 'SRV' or 'TXT'"),
        ("{name: d, query: a.test, server: 'dns.example:53'}", "is not IP[:port]"),
        ("{name: d, query: a.test, server: '10.0.0.1:99999'}", "the port must be from 1 to 65535"),
        ("{name: d, query: a.test, server: '300.0.0.1'}", "'300.0.0.1' is not an IP address"),
        ("{name: d, query: a.test, type: CNAME, expect: {addresses: [10.0.0.1]}}", "expect.addresses is for A and AAAA"),
        ("{name: d, query: a.test, expect: {targets: [b.test]}}", "expect.targets is for CNAME and SRV"),
        ("{name: d, query: a.test, expect: {text: x}}", "expect.text is for TXT queries"),
        ("{name: d, query: a.test, type: AAAA, expect: {addresses: [10.0.0.1]}}", "10.0.0.1 is not an address a AAAA"),
        ("{name: d, query: a.test, expect: {addresses: [10.0.0.300]}}", "dns[0].expect.addresses[0]"),
        ("{name: d, query: a.test, expect: {only: true}}", "expect.only needs addresses or targets"),
        ("{name: d, query: a.test, server: '10.0.0.1', search: true}", "search uses the system resolver"),
        ("{name: d, query: a.test, latency: {warn: 2s, fail: 1s}}", "higher is worse here"),
        ("{name: d, query: a.test, latency: {warn: 50}}", "dns[0].latency.warn: invalid duration 50"),
        ("{name: d, query: a.test, expect: {text: '('}}", "invalid regular expression"),
    ],
)
def test_bad_items_are_refused_naming_the_key(tmp_path: Path, item: str, message: str) -> None:
    error = profile_error(tmp_path, dns_profile(item))
    assert message in error, error


def test_bad_profile_exits_4(runner: Runner) -> None:
    runner.profile(dns_profile("{name: d, query: a.test, type: MX}"))
    run = runner.run("-m", "daily")
    assert run.ret == 4
    assert "profiles/test.yaml:4: dns[0].type:" in run.output
