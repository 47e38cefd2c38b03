"""TLS certificates (runbook 003, scenario 8 "Certificate Expiration": alert at 30 days).

Each profile `tls` item is four checks, one per aspect, so a waiver covers exactly one:

- `tls.expiry[<name>]`: the certificate is valid now, and what is left of it (time, or share
  of its lifetime) is above `expires`;
- `tls.trust[<name>]`: the chain verifies against the system store plus `ca_file`;
- `tls.hostname[<name>]`: a subject alternative name matches `server_name`;
- `tls.protocol[<name>]`: the negotiated protocol is `min_version` or newer.

trust and hostname are not run for items with `verify: false`. An endpoint that cannot be
reached fails all four, saying why.
"""

from __future__ import annotations

from datetime import datetime

from opsproof import Check, applies, format_duration, format_percent
from opsproof.probes.tls import EXPIRED, HOSTNAME_MISMATCH, NOT_YET_VALID, TlsFacts
from opsproof.targets.tls import TLS_VERSIONS, TlsTarget, show_remaining

# OpenSSL's errors meaning "no trusted root for this chain": a private CA missing from ca_file.
_NO_TRUSTED_ROOT = (2, 18, 19, 20)


def test_expiry(item: TlsTarget, facts: TlsFacts, check: Check) -> None:
    check.expect(expires=item.expires.shown())
    _certificate_read(facts)
    assert facts.days_left is not None and facts.not_after is not None and facts.not_before is not None
    starts_in = (_moment(facts.not_before) - _moment(facts.probed_at)).total_seconds()
    assert starts_in <= 0, (
        f"certificate is not valid yet: valid from {_shown(facts.not_before)}, in {format_duration(starts_in)}"
    )
    seconds_left = facts.days_left * 86400
    assert seconds_left > 0, f"certificate expired {format_duration(-seconds_left)} ago, on {_shown(facts.not_after)}"
    share = facts.lifetime_left_percent or 0.0
    left = f"expires in {format_duration(seconds_left)} ({_shown(facts.not_after)})"
    for level in ("fail", "warn"):
        limit = getattr(item.expires, level)
        if limit is None:
            continue
        unit, value = limit
        measured = seconds_left if unit == "duration" else share
        said = left if unit == "duration" else f"{left}, {format_percent(share)} of its lifetime left"
        verdict = f"certificate {said}: under the {level} threshold {show_remaining(limit)}"
        if level == "fail":
            assert measured >= value, verdict
        elif measured < value:
            check.warn(verdict)
    check.note(f"{left}, {format_percent(share)} of its lifetime left")


@applies(lambda item: item.verify)
def test_trust(item: TlsTarget, facts: TlsFacts, check: Check) -> None:
    check.expect(trust="system store" + (f" + {item.ca_file}" if item.ca_file else ""))
    _certificate_read(facts)
    if not facts.chain_trusted:
        hint = " (a private CA? add it to ca_file)" if facts.verify_code in _NO_TRUSTED_ROOT else ""
        raise AssertionError(f"certificate chain is not trusted: {facts.trust_error}; issuer {facts.issuer}{hint}")
    assert not facts.chain_problems, "a CA certificate of the chain is out of its dates: " + "; ".join(
        facts.chain_problems
    )
    # OpenSSL says only its first finding; a name or a date of the server's own certificate
    # is the hostname or expiry check's to report. Anything else is the chain's.
    assert _explained_elsewhere(facts), f"certificate verification failed: {facts.verify_error}"
    length = facts.verified_chain_length
    check.note(f"chain verified{f' ({length} certificates)' if length else ''}, issued by {facts.issuer}")


@applies(lambda item: item.verify)
def test_hostname(item: TlsTarget, facts: TlsFacts, check: Check) -> None:
    check.expect(server_name=facts.server_name)
    _certificate_read(facts)
    assert facts.hostname_matches, f"certificate is not valid for {facts.server_name}: it names " + (
        ", ".join(facts.sans) or "no subject alternative name"
    )
    check.note(f"{facts.server_name} matches {facts.matched_name}")


def test_protocol(item: TlsTarget, facts: TlsFacts, check: Check) -> None:
    wanted = item.min_version
    check.expect(min_version=wanted)
    assert facts.reached, facts.failure
    version = facts.version or "an unknown protocol"
    rank = TLS_VERSIONS.index(version) if version in TLS_VERSIONS else -1
    assert rank >= TLS_VERSIONS.index(wanted), f"the endpoint speaks {version} at best, below min_version {wanted}" + (
        f" (a {wanted}+ handshake failed: {facts.handshake_error})" if facts.handshake_error else ""
    )
    assert facts.handshake_error is None, (
        f"a handshake at {wanted} or newer with current ciphers failed: {facts.handshake_error}; "
        f"it completes only with legacy ciphers (negotiated {version})"
    )
    check.note(f"negotiated {version}")


def _certificate_read(facts: TlsFacts) -> None:
    assert facts.reached, facts.failure
    assert facts.certificate_error is None, f"cannot read the certificate: {facts.certificate_error}"


def _explained_elsewhere(facts: TlsFacts) -> bool:
    if facts.verify_error is None or facts.verify_code == HOSTNAME_MISMATCH:
        return True
    if facts.verify_code == EXPIRED:
        return facts.days_left is not None and facts.days_left <= 0
    if facts.verify_code == NOT_YET_VALID and facts.not_before is not None:
        return _moment(facts.not_before) > _moment(facts.probed_at)
    return False


def _moment(iso: str) -> datetime:
    return datetime.fromisoformat(iso.replace("Z", "+00:00"))


def _shown(iso: str) -> str:
    """'2026-12-01T10:00:00Z' -> '2026-12-01 10:00 UTC'."""
    return iso[:16].replace("T", " ") + " UTC"
