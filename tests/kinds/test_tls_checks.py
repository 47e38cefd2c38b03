"""TLS checks against real TLS endpoints: every outcome comes from a certificate or server made here.

Most cases share one opsproof run over a profile that points at every endpoint (a
subprocess, as cron runs it), so the file stays fast; the rest use the pytester runner
or the probe directly.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from helpers.tls_servers import Fleet, Run, run_in_subprocess, tls_black_hole, tls_fleet, tls_profile

from conftest import SECRET, Runner
from opsproof import ProfileError, load_profile
from opsproof.demo.certs import DemoTls, serve_demo_tls
from opsproof.probes import ProbeContext
from opsproof.probes.tls import Certificate, TlsFacts, gather_tls
from opsproof.profile import Profile
from opsproof.testing.servers import free_port

__all__ = ["tls_black_hole", "tls_fleet"]  # session fixtures, imported to be found

ASPECTS = ("expiry", "trust", "hostname", "protocol")


def item(name: str, port: int, **keys: Any) -> str:
    """A tls item on 127.0.0.1 as a YAML flow mapping; server_name localhost unless given."""
    fields = {"name": name, "host": "127.0.0.1", "port": port, "server_name": "localhost", **keys}
    return "{" + ", ".join(f"{k}: {_yaml(v)}" for k, v in fields.items() if v is not None) + "}"


def _yaml(value: Any) -> str:
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {v}" for k, v in value.items()) + "}"
    return f"'{value}'" if isinstance(value, Path) else str(value)


# -- one run over every kind of endpoint ---------------------------------------------------


@pytest.fixture(scope="module")
def fleet_run(
    tls_fleet: Fleet, tls_black_hole: int, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Run, dict[str, dict[str, int]]]:
    f = tls_fleet
    ca = f.ca_file
    profile = tls_profile(
        item("good", f.port("good"), ca_file=ca),
        item("system-store-only", f.port("good")),
        item("soon", f.port("soon"), ca_file=ca),
        item("critical", f.port("critical"), ca_file=ca),
        item("expired", f.port("expired"), ca_file=ca),
        item("future", f.port("future"), ca_file=ca),
        item("wrong-name", f.port("wrong-name"), ca_file=ca),
        item("wildcard", f.port("wildcard"), ca_file=ca, server_name="api.wild.example"),
        item("wildcard-deep", f.port("wildcard"), ca_file=ca, server_name="a.b.wild.example"),
        item("untrusted", f.port("untrusted"), ca_file=ca),
        item("untrusted-with-its-ca", f.port("untrusted"), ca_file=f.other_ca_file),
        item("unverified", f.port("untrusted"), verify="false", critical="false"),
        item("tls11", f.port("tls11"), ca_file=ca),
        item("tls11-accepted", f.port("tls11"), ca_file=ca, min_version="TLSv1.1"),
        item("share-warn", f.port("lifetime"), ca_file=ca, expires={"warn": "33%"}),
        item("share-fail", f.port("lifetime"), ca_file=ca, expires={"warn": "50%", "fail": "25%"}),
        item("mixed", f.port("lifetime"), ca_file=ca, expires={"warn": "30d", "fail": "10%"}),
        item("intermediate-expired", f.port("intermediate-expired"), ca_file=f.root_file),
        item("plain", f.port("plain"), ca_file=ca),
        item("hole", tls_black_hole, timeout="1s"),
        item("refused", free_port(0)),
        "{name: nowhere, host: no-such-host.invalid}",
    )
    before = _counters(f)
    run = run_in_subprocess(tmp_path_factory.mktemp("tls-run"), profile)
    f.servers.settle()
    after = _counters(f)
    seen = {name: {k: after[name][k] - before[name].get(k, 0) for k in after[name]} for name in after}
    return run, seen


def _counters(fleet: Fleet) -> dict[str, dict[str, int]]:
    return {
        name: {"hellos": e.hellos, "sessions": e.sessions, "application_bytes": e.application_bytes}
        for name, e in fleet.servers.endpoints.items()
    }


def outcomes(run: Run, target: str) -> dict[str, str]:
    return {
        aspect: run.record(f"tls.{aspect}[{target}]")["outcome"]
        for aspect in ASPECTS
        if f"tls.{aspect}[{target}]" in run.checks_of(target)
    }


def test_healthy_endpoint_passes_every_aspect_in_one_handshake(fleet_run: tuple[Run, Any]) -> None:
    run, seen = fleet_run
    assert outcomes(run, "good") == dict.fromkeys(ASPECTS, "passed")
    expiry = run.record("tls.expiry[good]")
    # The certificates were made a moment ago: 80 days are 79d 23h by now.
    assert re.fullmatch(
        r"expires in 79d 23h \(\d{4}-\d\d-\d\d \d\d:\d\d UTC\), 88.9% of its lifetime left", expiry["message"]
    )
    assert expiry["expected"] == {"expires": {"warn": "30d", "fail": "7d"}}
    assert expiry["markers"] == ["certs", "daily"]
    assert expiry["severity"] == "critical"
    assert "ISO27001:A.8.24" in expiry["controls"]
    observed = expiry["observed"]
    for fact in ("subject", "issuer", "serial", "not_before", "not_after", "version", "chain_length"):
        assert observed[fact], fact
    assert observed["sans"] == ["DNS:localhost", "IP:127.0.0.1"]
    assert 79.9 < observed["days_left"] <= 80
    assert observed["lifetime_left_percent"] == 88.9
    assert observed["version"] == "TLSv1.3"
    assert observed["verified"] is True and observed["chain_trusted"] is True
    assert observed["handshakes"] == 1
    assert run.record("tls.trust[good]")["message"].startswith("chain verified (2 certificates), issued by ")
    assert run.record("tls.hostname[good]")["message"] == "localhost matches DNS:localhost"
    assert run.record("tls.protocol[good]")["message"] == "negotiated TLSv1.3"
    assert run.record("tls.protocol[good]")["expected"] == {"min_version": "TLSv1.2"}
    # Four checks, one handshake; system-store-only, on the same endpoint, needs three (below).
    assert seen["good"]["hellos"] == 1 + 3


def test_system_store_alone_does_not_trust_a_private_ca(fleet_run: tuple[Run, Any]) -> None:
    run, _ = fleet_run
    assert outcomes(run, "system-store-only") == {
        "expiry": "passed",
        "trust": "failed",
        "hostname": "passed",
        "protocol": "passed",
    }
    # Verifying, then the chain alone (untrusted too), then nothing to read the certificate.
    assert run.record("tls.trust[system-store-only]")["observed"]["handshakes"] == 3
    message = run.record("tls.trust[system-store-only]")["message"]
    assert message.startswith("certificate chain is not trusted: unable to get local issuer certificate; issuer ")
    assert message.endswith("(a private CA? add it to ca_file)")


def test_expiring_within_the_runbooks_30_days_warns(fleet_run: tuple[Run, Any]) -> None:
    run, _ = fleet_run
    assert outcomes(run, "soon") == {**dict.fromkeys(ASPECTS, "passed"), "expiry": "warned"}
    message = run.record("tls.expiry[soon]")["message"]
    assert message.startswith("certificate expires in 19d 23h (")
    assert message.endswith("): under the warn threshold 30d")


def test_expiring_within_the_fail_threshold_fails(fleet_run: tuple[Run, Any]) -> None:
    run, _ = fleet_run
    record = run.record("tls.expiry[critical]")
    assert record["outcome"] == "failed"
    assert record["message"].startswith("certificate expires in 2d 23h (")
    assert record["message"].endswith("): under the fail threshold 7d")


def test_expired_certificate_fails_and_still_reports_its_dates(fleet_run: tuple[Run, Any]) -> None:
    run, _ = fleet_run
    # The chain and the name are fine: only the expiry check fails, so a waiver can be that precise.
    assert outcomes(run, "expired") == {**dict.fromkeys(ASPECTS, "passed"), "expiry": "failed"}
    record = run.record("tls.expiry[expired]")
    assert record["message"].startswith("certificate expired 2d ago, on ")
    observed = record["observed"]
    assert -2.01 < observed["days_left"] < -1.99
    assert observed["lifetime_left_percent"] == 0
    assert observed["verify_error"] == "certificate has expired"
    assert observed["not_after"].endswith("Z") and observed["subject"]


def test_not_yet_valid_certificate_fails(fleet_run: tuple[Run, Any]) -> None:
    run, _ = fleet_run
    assert outcomes(run, "future") == {**dict.fromkeys(ASPECTS, "passed"), "expiry": "failed"}
    message = run.record("tls.expiry[future]")["message"]
    assert message.startswith("certificate is not valid yet: valid from ")
    assert message.endswith(", in 1d 23h")
    assert run.record("tls.expiry[future]")["observed"]["verify_error"] == "certificate is not yet valid"


def test_wrong_name_fails_the_hostname_check_only(fleet_run: tuple[Run, Any]) -> None:
    run, _ = fleet_run
    assert outcomes(run, "wrong-name") == {**dict.fromkeys(ASPECTS, "passed"), "hostname": "failed"}
    record = run.record("tls.hostname[wrong-name]")
    assert record["message"] == "certificate is not valid for localhost: it names DNS:other.example"
    assert record["expected"] == {"server_name": "localhost"}
    assert record["observed"]["hostname_matches"] is False


def test_wildcard_matches_one_label_only(fleet_run: tuple[Run, Any]) -> None:
    run, _ = fleet_run
    assert run.record("tls.hostname[wildcard]")["message"] == "api.wild.example matches DNS:*.wild.example"
    deep = run.record("tls.hostname[wildcard-deep]")
    assert deep["outcome"] == "failed"
    assert deep["message"] == "certificate is not valid for a.b.wild.example: it names DNS:*.wild.example"


def test_certificate_of_another_ca_is_untrusted_and_still_read(fleet_run: tuple[Run, Any]) -> None:
    run, _ = fleet_run
    assert outcomes(run, "untrusted") == {**dict.fromkeys(ASPECTS, "passed"), "trust": "failed"}
    trust = run.record("tls.trust[untrusted]")
    assert trust["message"].startswith("certificate chain is not trusted: unable to get local issuer certificate")
    assert trust["observed"]["chain_trusted"] is False
    assert 79.9 < trust["observed"]["days_left"] <= 80  # dates read through a permissive handshake
    assert trust["expected"]["trust"].startswith("system store + ")


def test_ca_file_makes_it_trusted(fleet_run: tuple[Run, Any]) -> None:
    run, _ = fleet_run
    assert outcomes(run, "untrusted-with-its-ca") == dict.fromkeys(ASPECTS, "passed")


def test_verify_false_runs_no_trust_or_hostname_check(fleet_run: tuple[Run, Any]) -> None:
    run, _ = fleet_run
    assert run.checks_of("unverified") == {"tls.expiry[unverified]", "tls.protocol[unverified]"}
    assert outcomes(run, "unverified") == {"expiry": "passed", "protocol": "passed"}
    assert run.record("tls.expiry[unverified]")["severity"] == "medium"
    assert "verified" not in run.record("tls.expiry[unverified]")["observed"]


def test_endpoint_speaking_only_tls_1_1_fails_the_protocol_check(fleet_run: tuple[Run, Any]) -> None:
    run, _ = fleet_run
    assert outcomes(run, "tls11") == {**dict.fromkeys(ASPECTS, "passed"), "protocol": "failed"}
    record = run.record("tls.protocol[tls11]")
    assert record["message"].startswith("the endpoint speaks TLSv1.1 at best, below min_version TLSv1.2 (")
    assert record["observed"]["version"] == "TLSv1.1"
    accepted = run.record("tls.protocol[tls11-accepted]")
    assert (accepted["outcome"], accepted["message"]) == ("passed", "negotiated TLSv1.1")


def test_share_of_lifetime_thresholds(fleet_run: tuple[Run, Any]) -> None:
    run, _ = fleet_run
    warned = run.record("tls.expiry[share-warn]")
    assert warned["outcome"] == "warned"
    assert warned["message"].endswith("20.0% of its lifetime left: under the warn threshold 33.0%")
    assert warned["expected"] == {"expires": {"warn": "33.0%"}}
    failed = run.record("tls.expiry[share-fail]")
    assert failed["outcome"] == "failed"
    assert failed["message"].endswith("20.0% of its lifetime left: under the fail threshold 25.0%")
    # Units mix: 20 days left is under warn 30d, 20% is over fail 10%.
    mixed = run.record("tls.expiry[mixed]")
    assert mixed["outcome"] == "warned"
    assert mixed["message"].endswith(": under the warn threshold 30d")


def test_expired_intermediate_fails_the_trust_check(fleet_run: tuple[Run, Any]) -> None:
    run, _ = fleet_run
    assert outcomes(run, "intermediate-expired") == {**dict.fromkeys(ASPECTS, "passed"), "trust": "failed"}
    message = run.record("tls.trust[intermediate-expired]")["message"]
    assert message.startswith("a CA certificate of the chain is out of its dates: CN=Stale Intermediate")
    assert " expired on " in message


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("hole", "timed out after 1.0"),
        ("refused", "cannot connect to 127.0.0.1:"),
        ("nowhere", "cannot resolve no-such-host.invalid: "),
        ("plain", "TLS handshake failed: [SSL: WRONG_VERSION_NUMBER] wrong version number"),
    ],
)
def test_unreachable_endpoint_fails_every_aspect_saying_why(
    fleet_run: tuple[Run, Any], target: str, expected: str
) -> None:
    run, _ = fleet_run
    records = [run.record(f"tls.{aspect}[{target}]") for aspect in ASPECTS]
    assert {r["outcome"] for r in records} == {"failed"}
    assert len({r["message"] for r in records}) == 1
    assert records[0]["message"].startswith(expected), records[0]["message"]
    assert records[0]["observed"]["reached"] is False
    if target == "hole":
        assert "in the TLS handshake" in records[0]["message"]
        assert records[0]["observed"]["timed_out"] is True
        assert records[0]["observed"]["elapsed_s"] < 1.5
    if target == "refused":
        assert records[0]["message"].endswith("connection refused")


def test_checks_send_nothing_but_handshakes(fleet_run: tuple[Run, Any]) -> None:
    run, seen = fleet_run
    assert run.ret == 1, run.output
    probed = {name: counts for name, counts in seen.items() if name != "plain"}  # plain is no TLS server
    assert all(counts["sessions"] >= 1 for counts in probed.values()), probed
    assert {name: counts["application_bytes"] for name, counts in probed.items()} == dict.fromkeys(probed, 0)


# -- runs of their own ---------------------------------------------------------------------


def test_black_hole_costs_its_timeout_and_the_run_goes_on(
    runner: Runner, tls_fleet: Fleet, tls_black_hole: int
) -> None:
    runner.profile(
        tls_profile(
            item("hole", tls_black_hole, timeout="1s"), item("good", tls_fleet.port("good"), ca_file=tls_fleet.ca_file)
        )
    )
    started = time.monotonic()
    run = runner.run("-m", "daily")
    elapsed = time.monotonic() - started
    assert run.record("tls.expiry[hole]")["outcome"] == "failed"
    assert run.record("tls.expiry[good]")["outcome"] == "passed"
    assert elapsed < 1 + 2.5, f"a 1s black hole took the run {elapsed:.1f}s"


def test_secrets_in_host_or_server_name_never_appear(
    runner: Runner, tls_fleet: Fleet, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TLS_HOST", SECRET)
    monkeypatch.setenv("TLS_SNI", f"sni-{SECRET}")
    runner.profile(
        tls_profile(
            "{name: hidden-host, host: '${TLS_HOST}'}",
            item("hidden-name", tls_fleet.port("good"), ca_file=tls_fleet.ca_file, server_name="'${TLS_SNI}'"),
        )
    )
    run = runner.run("-m", "daily", "-v")
    host = run.record("tls.expiry[hidden-host]")
    assert host["outcome"] == "failed"
    assert host["message"].startswith("cannot resolve ${TLS_HOST}: ")
    name = run.record("tls.hostname[hidden-name]")
    assert name["outcome"] == "failed"
    assert name["message"].startswith("certificate is not valid for ${TLS_SNI}: ")
    assert "${TLS_SNI}" in name["observed"]["verify_error"]
    assert SECRET not in run.output
    for path in run.bundle.rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path


def test_bad_profile_is_a_usage_error(runner: Runner) -> None:
    runner.profile(tls_profile("{name: api, host: api.example.com, min_version: TLSv1.4}"))
    run = runner.run("-m", "daily")
    assert run.ret == 4
    assert "test.yaml:4: tls[0].min_version" in run.output and "TLSv1.4" in run.output


# -- the profile model ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("keys", "expected"),
    [
        ("min_version: SSLv3", "tls[0].min_version: "),
        ("expires: {warn: 7d, fail: 30d}", "tls[0].expires: warn 7d is less than fail 30d"),
        ("expires: {warn: 120%}", "tls[0].expires.warn: invalid percentage '120%'"),
        ("expires: {warn: 30}", "tls[0].expires.warn: invalid duration 30"),
        ("port: 70000", "tls[0].port: "),
        ("port: eighty", "tls[0].port: invalid port 'eighty'"),
        ("ca_file: missing.pem", "tls[0].ca_file: ca_file "),
        ("verify: 'no'", "tls[0].verify: "),
        ("sni: api.example.com", "tls[0].sni: "),
        ("host: 'https://api.example.com'", "tls[0].host: host 'https://api.example.com' is an address, not a URL"),
        ("host: 'api.example.com:443'", "tls[0].host: host 'api.example.com:443' holds a port: write it as `port:`"),
        ("host: '::1:zz'", "tls[0].host: host '::1:zz' is neither a name nor an IP address"),
        ("server_name: .example.com", "tls[0].server_name: server_name '.example.com' is not a host name"),
        ("server_name: 'a b'", "tls[0].server_name: server_name 'a b' is not a host name"),
        (f"server_name: {'x' * 64}.example", "tls[0].server_name: server_name 'xxx"),
    ],
)
def test_profile_errors_name_the_key(tmp_path: Path, keys: str, expected: str) -> None:
    path = tmp_path / "p.yaml"
    keys = keys if keys.startswith("host:") else f"host: api.example.com, {keys}"
    path.write_text(f"environment: t\ntls:\n  - {{name: api, {keys}}}\n")
    with pytest.raises(ProfileError) as raised:
        load_profile(path)
    assert f"p.yaml:3: {expected}" in str(raised.value)


def test_defaults_and_a_port_from_a_variable(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text("environment: t\ntls:\n  - {name: api, host: api.example.com, port: '${vars.TLS_PORT}'}\n")
    target = load_profile(path, cli_vars={"TLS_PORT": "8443"}).profile.tls[0]
    assert target.port == 8443
    assert target.sni == "api.example.com"
    assert target.min_version == "TLSv1.2" and target.verify is True
    assert target.expires.shown() == {"warn": "30d", "fail": "7d"}
    assert target.expires.warn == ("duration", 30 * 86400.0)
    path.write_text("environment: t\ntls:\n  - {name: v6, host: '[::1]', port: 8443}\n")
    target = load_profile(path).profile.tls[0]
    assert (target.host, target.address, target.sni) == ("::1", "[::1]:8443", "::1")


# -- the probe and its parts ---------------------------------------------------------------


def _certificate(*names: str, ips: Sequence[str] = ()) -> Certificate:
    moment = datetime.now(UTC)
    return Certificate("CN=x", "CN=ca", "1", tuple(names), tuple(ips), moment, moment)


@pytest.mark.parametrize(
    ("names", "server_name", "matched"),
    [
        (("api.example.com",), "API.Example.com.", "DNS:api.example.com"),
        (("*.example.com",), "api.example.com", "DNS:*.example.com"),
        (("*.example.com",), "a.b.example.com", None),
        (("*.example.com",), "example.com", None),
        (("*.com",), "example.com", None),
        (("f*.example.com",), "foo.example.com", None),
        (("xn--bcher-kva.example",), "bücher.example", "DNS:xn--bcher-kva.example"),
        ((), "api.example.com", None),
    ],
)
def test_subject_alternative_name_matching(names: tuple[str, ...], server_name: str, matched: str | None) -> None:
    assert _certificate(*names).matching_name(server_name) == matched


def test_ip_addresses_match_ip_sans_only() -> None:
    cert = _certificate("127.0.0.1", ips=["127.0.0.1", "::1"])
    assert cert.matching_name("127.0.0.1") == "IP:127.0.0.1"
    assert cert.matching_name("0:0:0:0:0:0:0:1") == "IP:::1"
    assert cert.matching_name("10.0.0.1") is None


def probe(profile: Profile) -> dict[str, TlsFacts]:
    async def collect() -> dict[str, TlsFacts]:
        ctx = ProbeContext(profile=profile, limit=asyncio.Semaphore(16))
        return {facts.target: facts async for facts in gather_tls(profile.tls, ctx)}

    return asyncio.run(collect())


# The snippet proposed for profiles/demo.yaml, checked here against the demo's own endpoints.
DEMO_TLS_PROFILE = """\
environment: demo
defaults: {timeout: 2s}
tls:
  # Runbook 003, scenario 8: certificates alert at 30 days. The demo CA is trusted through ca_file.
  - name: api
    host: 127.0.0.1
    port: ${vars.DEMO_TLS_API_PORT:-18443}
    server_name: localhost
    ca_file: ${vars.DEMO_TLS_CA}
    expires: {warn: 30d, fail: 7d}
  - name: auth-proxy
    host: 127.0.0.1
    port: ${vars.DEMO_TLS_AUTH_PROXY_PORT:-18444}
    server_name: localhost
    ca_file: ${vars.DEMO_TLS_CA}
    expires: {warn: 30d, fail: 7d}
"""


@pytest.fixture(scope="session")
def demo_tls() -> Iterator[DemoTls]:
    # Session-scoped like conftest's servers: serving() leaves its loop to the final garbage collection.
    with serve_demo_tls() as demo:
        yield demo


def test_demo_endpoints_with_the_proposed_demo_profile(runner: Runner, demo_tls: DemoTls) -> None:
    runner.profile(DEMO_TLS_PROFILE)
    run = runner.run("-m", "daily", *(f"--var={name}={value}" for name, value in demo_tls.plain_vars.items()))
    assert run.ret == 0, run.output
    for aspect in ASPECTS:
        assert run.record(f"tls.{aspect}[api]")["outcome"] == "passed"
    assert run.record("tls.expiry[api]")["message"].endswith("66.7% of its lifetime left")
    warned = run.record("tls.expiry[auth-proxy]")
    assert warned["outcome"] == "warned"
    # 12 days less the seconds since the fixture made it: shown as "11d 23h" or, rounded, "12d".
    assert re.match(r"certificate expires in (11d 23h|12d) \(", warned["message"]), warned["message"]
    assert warned["message"].endswith("under the warn threshold 30d")


def test_demo_certificates_verify_only_with_their_ca(demo_tls: DemoTls) -> None:
    port = demo_tls.ports["auth-proxy"]
    profile = Profile.model_validate(
        {
            "environment": "demo",
            "tls": [
                {"name": "with-ca", "host": "127.0.0.1", "port": port, "ca_file": str(demo_tls.ca_file)},
                {"name": "without", "host": "127.0.0.1", "port": port, "server_name": "localhost"},
            ],
        }
    )
    facts = probe(profile)
    demo = facts["with-ca"]
    assert (demo.verified, demo.hostname_matches, demo.matched_name) == (True, True, "IP:127.0.0.1")
    assert demo.days_left is not None and 11.9 < demo.days_left <= 12
    assert demo.subject == "CN=localhost,O=opsproof demo"
    assert demo.verified_chain_length == 2 and demo.chain_length == 1
    # Without the demo CA, the same endpoint is untrusted yet fully read.
    assert facts["without"].chain_trusted is False and facts["without"].days_left == pytest.approx(12, abs=0.1)
