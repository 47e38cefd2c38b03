"""TLS endpoints: one handshake per healthy target, all targets concurrently; no application data.

The first handshake is the one a current client makes: the system trust store plus
`ca_file`, the certificate checked against `server_name`, `min_version` or newer. When
it succeeds (the usual case) it is the only one. When it fails, the probe finds out
why, within the same deadline:

- a *lenient* handshake verifies the chain alone (no name, no dates; any protocol,
  legacy ciphers): does the chain lead to a trusted root with valid signatures?
- a *permissive* one, only when the lenient one found the chain untrusted, verifies
  nothing: it reads the certificate all the same.

So an expired, misnamed or untrusted certificate still reports its dates, and an endpoint
that speaks only old protocols reports the version it does speak. OpenSSL reports only
the first thing wrong (trust, then name, then dates), so the checks judge each aspect from
these facts, not from the first handshake's error alone.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import re
import ssl
import time
import warnings
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from opsproof.errors import OpsproofError
from opsproof.probes import Facts, ProbeContext, ProbeKind, describe_connect_error, each_as_done
from opsproof.redaction import Redactor
from opsproof.targets.tls import TLS_VERSIONS, TlsTarget

# OpenSSL's X509_V_ERR_* codes the checks tell apart (x509_vfy.h).
NOT_YET_VALID = 9
EXPIRED = 10
HOSTNAME_MISMATCH = 62
# X509_V_FLAG_NO_CHECK_TIME: the ssl module has no name for it. The lenient handshake asks
# "is the chain trusted?" apart from "are its dates valid?", which the expiry check answers.
_NO_CHECK_TIME = 0x200000
# OpenSSL 3 refuses TLS 1.0/1.1 (SHA-1 signatures) at security level 1 and up.
LEGACY_CIPHERS = "DEFAULT:@SECLEVEL=0"
# A close_notify is polite; a server that never answers it must not hold the run.
CLOSE_WAIT_S = 1.0
_VERSIONS = {
    "TLSv1": ssl.TLSVersion.TLSv1,
    "TLSv1.1": ssl.TLSVersion.TLSv1_1,
    "TLSv1.2": ssl.TLSVersion.TLSv1_2,
    "TLSv1.3": ssl.TLSVersion.TLSv1_3,
}
_SSL_SOURCE = re.compile(r"\s*\(_ssl\.c:\d+\)$")
_DER = 2  # _ssl.ENCODING_DER, for the private chain accessors of Python < 3.13


class TlsFacts(Facts):
    address: str = Field(description="host:port connected to")
    server_name: str = Field(description="SNI sent and the name the certificate must match")
    handshakes: int = Field(0, description="TLS handshakes made (1 when all is well)")
    version: str | None = Field(
        None, description="negotiated protocol; after a failed first handshake, the newest the endpoint speaks"
    )
    handshake_error: str | None = Field(
        None, description="why the first handshake failed, when it was not verification"
    )
    verified: bool | None = Field(
        None, description="the first handshake verified chain, name and dates (None: not tried)"
    )
    verify_error: str | None = Field(
        None, description="why verification failed, as OpenSSL says it (its first finding only)"
    )
    verify_code: int | None = Field(None, description="OpenSSL's X509_V_ERR code of verify_error")
    chain_trusted: bool | None = Field(None, description="the chain leads to a trusted root (dates and name aside)")
    trust_error: str | None = Field(None, description="why the chain is not trusted")
    chain_problems: list[str] = Field(
        default_factory=list, description="CA certificates of the chain out of their dates"
    )
    chain_length: int | None = Field(None, description="certificates the endpoint sent")
    verified_chain_length: int | None = Field(None, description="certificates from the server's to the trusted root")
    subject: str | None = None
    sans: list[str] = Field(default_factory=list, description="subject alternative names: DNS:... and IP:...")
    issuer: str | None = None
    serial: str | None = Field(None, description="serial number, hex")
    not_before: str | None = None
    not_after: str | None = None
    days_left: float | None = Field(None, description="until not_after; negative once expired")
    lifetime_left_percent: float | None = Field(None, description="share of not_before..not_after still ahead, 0-100")
    hostname_matches: bool | None = Field(None, description="a SAN matches server_name")
    matched_name: str | None = Field(None, description="the SAN that matched")
    certificate_error: str | None = Field(None, description="why the certificate could not be read")

    def observed(self) -> dict[str, Any]:
        shown = super().observed()
        if not self.chain_problems:
            shown.pop("chain_problems", None)
        if not self.sans and self.subject is None:
            shown.pop("sans", None)
        if self.days_left is not None:
            shown["days_left"] = round(self.days_left, 2)
        if self.lifetime_left_percent is not None:
            shown["lifetime_left_percent"] = round(self.lifetime_left_percent, 1)
        return shown


# -- certificates --------------------------------------------------------------------------


@dataclass(frozen=True)
class Certificate:
    """What the checks need of one X.509 certificate."""

    subject: str
    issuer: str
    serial: str
    dns_names: tuple[str, ...]
    ip_addresses: tuple[str, ...]
    not_before: datetime
    not_after: datetime

    @property
    def sans(self) -> list[str]:
        return [f"DNS:{name}" for name in self.dns_names] + [f"IP:{ip}" for ip in self.ip_addresses]

    def matching_name(self, server_name: str) -> str | None:
        """The SAN `server_name` matches (RFC 6125, as OpenSSL checks it for Python), or None.

        No fallback to the subject's CN (browsers and Python dropped it); a wildcard stands for
        exactly one whole left-most label, never a partial one (`f*.example.com`).
        """
        try:
            ip = ipaddress.ip_address(server_name.strip("[]"))
        except ValueError:
            pass
        else:
            return next((f"IP:{a}" for a in self.ip_addresses if ipaddress.ip_address(a) == ip), None)
        try:
            wanted = server_name.encode("idna").decode("ascii").lower().rstrip(".")
        except UnicodeError:
            return None
        first, _, rest = wanted.partition(".")
        for name in self.dns_names:
            pattern = name.lower().rstrip(".")
            if pattern == wanted:
                return f"DNS:{name}"
            # `*.com` is refused like OpenSSL does: a wildcard needs two labels after it.
            if pattern.startswith("*.") and "." in pattern[2:] and first and pattern[2:] == rest:
                return f"DNS:{name}"
        return None


@functools.lru_cache(maxsize=4096)
def read_certificate(der: bytes) -> Certificate:
    """Parse a DER certificate; cached, as a fleet often serves one certificate from many endpoints."""
    from cryptography import x509

    cert = x509.load_der_x509_certificate(der)
    try:
        alt_names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        dns_names = tuple(alt_names.get_values_for_type(x509.DNSName))
        ips = tuple(str(ip) for ip in alt_names.get_values_for_type(x509.IPAddress))
    except x509.ExtensionNotFound:
        dns_names, ips = (), ()
    return Certificate(
        subject=cert.subject.rfc4514_string(),
        issuer=cert.issuer.rfc4514_string(),
        serial=format(cert.serial_number, "x"),
        dns_names=dns_names,
        ip_addresses=ips,
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
    )


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


# -- handshakes ----------------------------------------------------------------------------


def _client_context(
    *, ca_file: Path | None, verify: bool, minimum: str, legacy: bool, check_dates: bool = True
) -> ssl.SSLContext:
    # TLSv1 and TLSv1_1 are deprecated names; naming them is the point of a protocol check.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        if verify:
            context = ssl.create_default_context()  # loads the system store: built once per key, see Contexts
            if ca_file is not None:
                context.load_verify_locations(cafile=str(ca_file))
            if not check_dates:
                context.verify_flags |= _NO_CHECK_TIME
        else:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        context.minimum_version = _VERSIONS[minimum]
        if legacy:
            context.set_ciphers(LEGACY_CIPHERS)
    return context


@dataclass
class Contexts:
    """SSL contexts of one run, made once per setting (each verifying one reads the system store)."""

    made: dict[tuple[Any, ...], ssl.SSLContext] = field(default_factory=dict)

    def first(self, target: TlsTarget) -> ssl.SSLContext:
        """As a current client connects: verifying (unless verify: false), min_version and up."""
        key = ("first", target.ca_file, target.verify, target.min_version)
        if key not in self.made:
            # A profile that accepts TLS 1.0/1.1 accepts the ciphers they need.
            legacy = TLS_VERSIONS.index(target.min_version) < TLS_VERSIONS.index("TLSv1.2")
            self.made[key] = _client_context(
                ca_file=target.ca_file, verify=target.verify, minimum=target.min_version, legacy=legacy
            )
        return self.made[key]

    def lenient(self, target: TlsTarget) -> ssl.SSLContext:
        """The chain alone: no name, no dates, any protocol and cipher."""
        key = ("lenient", target.ca_file)
        if key not in self.made:
            context = _client_context(
                ca_file=target.ca_file, verify=True, minimum="TLSv1", legacy=True, check_dates=False
            )
            context.check_hostname = False
            self.made[key] = context
        return self.made[key]

    def permissive(self) -> ssl.SSLContext:
        """Nothing verified: only to read the certificate and the protocol."""
        key = ("permissive",)
        if key not in self.made:
            self.made[key] = _client_context(ca_file=None, verify=False, minimum="TLSv1", legacy=True)
        return self.made[key]


@dataclass
class Session:
    """What one completed handshake showed."""

    version: str | None
    certificate: bytes | None
    sent_chain: int | None
    verified_chain: int | None
    # The chain's CA certificates, kept only when the handshake did not check their dates.
    undated_cas: list[bytes] = field(default_factory=list)


def _chain(ssl_object: ssl.SSLObject, method: str) -> list[Any] | None:
    # Public on SSLObject from Python 3.13 (DER bytes); private on its _sslobj before (Certificate objects).
    for owner in (ssl_object, getattr(ssl_object, "_sslobj", None)):
        get = getattr(owner, method, None)
        if get is not None:
            return list(get() or [])
    return None


def _der(certificate: Any) -> bytes:
    return certificate if isinstance(certificate, bytes) else bytes(certificate.public_bytes(_DER))


def _count(chain: list[Any] | None) -> int | None:
    return len(chain) if chain is not None else None


class HandshakeFailed(OpsproofError):
    """A handshake that did not complete; `during` says whether TCP connected at all."""

    def __init__(self, error: BaseException, during: Literal["connect", "handshake"]) -> None:
        super().__init__(str(error))
        self.error = error
        self.during = during


class Prober:
    """Probes the targets of one run; holds what its handshakes share."""

    def __init__(self, ctx: ProbeContext) -> None:
        self.ctx = ctx
        self.contexts = Contexts()
        self.closing: set[asyncio.Task[None]] = set()

    async def handshake(self, target: TlsTarget, context: ssl.SSLContext, found: Findings) -> None:
        """Connect, handshake, read the session into `found`, close: no application byte is ever sent."""
        found.phase = "connect"
        try:
            _, writer = await asyncio.open_connection(target.host, target.port)
        except (OSError, ValueError, UnicodeError) as exc:
            raise HandshakeFailed(exc, "connect") from exc
        found.phase = "handshake"
        found.handshakes += 1
        try:
            await writer.start_tls(context, server_hostname=target.sni)
        except (OSError, ValueError, UnicodeError, EOFError) as exc:  # ssl.SSLError is an OSError
            writer.transport.abort()
            raise HandshakeFailed(exc, "handshake") from exc
        except BaseException:  # the deadline: drop the connection now
            writer.transport.abort()
            raise
        ssl_object = writer.get_extra_info("ssl_object")
        verified = _chain(ssl_object, "get_verified_chain") if context.verify_mode != ssl.CERT_NONE else None
        found.session = Session(
            version=ssl_object.version(),
            certificate=ssl_object.getpeercert(binary_form=True),
            sent_chain=_count(_chain(ssl_object, "get_unverified_chain")),
            verified_chain=_count(verified),
            undated_cas=[_der(c) for c in (verified or [])[1:]] if context.verify_flags & _NO_CHECK_TIME else [],
        )
        # Closed in the background: the facts are in, and the target's deadline must not wait on it.
        task = asyncio.create_task(self._close(writer))
        self.closing.add(task)
        task.add_done_callback(self.closing.discard)

    @staticmethod
    async def _close(writer: asyncio.StreamWriter) -> None:
        writer.close()  # sends close_notify, a TLS alert, not application data
        try:
            async with asyncio.timeout(CLOSE_WAIT_S):
                await writer.wait_closed()
        except (TimeoutError, OSError):
            writer.transport.abort()

    async def probe(self, target: TlsTarget) -> TlsFacts:
        timeout = self.ctx.profile.timeout_of(target)
        found = Findings(target, self.ctx.redactor)
        async with self.ctx.limit:
            started = time.perf_counter()
            try:
                async with asyncio.timeout(timeout):
                    await self._handshakes(target, found)
            except TimeoutError:
                elapsed = time.perf_counter() - started
                where = (
                    f"connecting to {target.address}"
                    if found.phase == "connect"
                    else "in the TLS handshake: the endpoint accepted the connection but did not complete it"
                )
                found.failure = f"timed out after {elapsed:.2f}s (timeout {timeout:g}s) {where}"
                found.timed_out = True
            elapsed = time.perf_counter() - started
        return found.facts(elapsed)

    async def _handshakes(self, target: TlsTarget, found: Findings) -> None:
        try:
            await self.handshake(target, self.contexts.first(target), found)
            found.verified = found.chain_trusted = True if target.verify else None
            return
        except HandshakeFailed as first:
            if first.during == "connect":
                found.failure = describe(first, target, self.ctx.redactor)
                return
            if isinstance(first.error, ssl.SSLCertVerificationError):
                found.verified = False
                found.verify_error = describe(first, target, self.ctx.redactor)
                found.verify_code = first.error.verify_code
            else:
                found.handshake_error = describe(first, target, self.ctx.redactor)
        if target.verify:
            try:
                await self.handshake(target, self.contexts.lenient(target), found)
                found.chain_trusted = True
                return
            except HandshakeFailed as second:
                if not isinstance(second.error, ssl.SSLCertVerificationError):
                    # Lenient settings only loosen verification: permissive ones would fail alike.
                    found.failure = describe_unreached(second, target, self.ctx.redactor)
                    return
                found.chain_trusted = False
                found.trust_error = describe(second, target, self.ctx.redactor)
        try:
            await self.handshake(target, self.contexts.permissive(), found)
        except HandshakeFailed as last:
            found.failure = describe_unreached(last, target, self.ctx.redactor)


@dataclass
class Findings:
    """Facts of one target as its handshakes find them."""

    target: TlsTarget
    redactor: Redactor
    session: Session | None = None
    phase: Literal["connect", "handshake"] = "connect"
    handshakes: int = 0
    failure: str | None = None
    timed_out: bool = False
    handshake_error: str | None = None
    verified: bool | None = None
    verify_error: str | None = None
    verify_code: int | None = None
    chain_trusted: bool | None = None
    trust_error: str | None = None

    def facts(self, elapsed: float) -> TlsFacts:
        target = self.target
        base: dict[str, Any] = {
            "target": target.name,
            "address": self.redactor.redact(target.address),
            "server_name": self.redactor.redact(target.sni),
            "elapsed_s": elapsed,
            "timed_out": self.timed_out,
            "handshakes": self.handshakes,
            "failure": self.redactor.redact(self.failure) if self.failure else None,
            "handshake_error": self.handshake_error,
            "verify_error": self.verify_error,
            "verify_code": self.verify_code,
            "trust_error": self.trust_error,
        }
        session = self.session
        if session is None or self.failure is not None:
            return TlsFacts(reached=False, **base)
        return TlsFacts(
            reached=True,
            version=session.version,
            verified=self.verified,
            chain_trusted=self.chain_trusted,
            chain_length=session.sent_chain,
            verified_chain_length=session.verified_chain,
            **base,
            **certificate_facts(session, target.sni),
        )


def certificate_facts(session: Session, server_name: str) -> dict[str, Any]:
    """Subject, names, dates and time left of the server's certificate; CA certificates out of date."""
    if not session.certificate:
        return {"certificate_error": "the endpoint sent no certificate"}
    try:
        cert = read_certificate(session.certificate)
    except Exception as exc:  # malformed in any way: one target's problem, never the run's
        return {"certificate_error": f"cannot parse the certificate: {exc}"}
    now = datetime.now(UTC)
    left = (cert.not_after - now).total_seconds()
    lifetime = (cert.not_after - cert.not_before).total_seconds()
    matched = cert.matching_name(server_name)
    return {
        "subject": cert.subject,
        "sans": cert.sans,
        "issuer": cert.issuer,
        "serial": cert.serial,
        "not_before": iso(cert.not_before),
        "not_after": iso(cert.not_after),
        "days_left": left / 86400,
        "lifetime_left_percent": min(100.0, max(0.0, 100 * left / lifetime)) if lifetime > 0 else 0.0,
        "hostname_matches": matched is not None,
        "matched_name": matched,
        "chain_problems": chain_problems(session.undated_cas, now),
    }


def chain_problems(ca_certificates: list[bytes], now: datetime) -> list[str]:
    """The CA certificates out of their dates (only the lenient handshake lets them by)."""
    problems = []
    for der in ca_certificates:
        try:
            cert = read_certificate(der)
        except Exception:  # OpenSSL verified it; a parser quarrel is no finding
            continue
        if cert.not_after <= now:
            problems.append(f"{cert.subject} expired on {iso(cert.not_after)}")
        elif cert.not_before > now:
            problems.append(f"{cert.subject} is not valid before {iso(cert.not_before)}")
    return problems


# -- words ---------------------------------------------------------------------------------


def describe(failed: HandshakeFailed, target: TlsTarget, redactor: Redactor) -> str:
    """An error in words an operator acts on; redacted, since host and name may hold a secret."""
    return redactor.redact(_describe(failed.error, failed.during, target))


def describe_unreached(failed: HandshakeFailed, target: TlsTarget, redactor: Redactor) -> str:
    """Why no handshake completed at all."""
    text = describe(failed, target, redactor)
    return text if failed.during == "connect" else f"TLS handshake failed: {text}"


def _describe(exc: BaseException, during: str, target: TlsTarget) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError):
        return exc.verify_message or _ssl_text(exc)
    if isinstance(exc, ssl.SSLError):
        return _ssl_text(exc)
    if during == "handshake":
        if isinstance(exc, ValueError | UnicodeError):  # a name the ssl module refuses to send
            return f"cannot use {target.sni!r} as the server name: {exc}"
        return "the endpoint closed the connection during the handshake"
    if isinstance(exc, OSError):
        return describe_connect_error(exc, target.host, target.address)
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _ssl_text(exc: ssl.SSLError) -> str:
    return _SSL_SOURCE.sub("", str(exc))


# -- the kind ------------------------------------------------------------------------------


async def gather_tls(targets: Sequence[TlsTarget], ctx: ProbeContext) -> AsyncIterator[TlsFacts]:
    """Probe every target concurrently; yield each one's facts as it completes."""
    prober = Prober(ctx)
    async for facts in each_as_done(prober.probe(target) for target in targets):
        yield facts
    if prober.closing:
        await asyncio.gather(*prober.closing, return_exceptions=True)


PROBE: ProbeKind[TlsTarget, TlsFacts] = ProbeKind(
    name="tls",
    facts=TlsFacts,
    gather=gather_tls,
    imports=("cryptography.x509",),
)
