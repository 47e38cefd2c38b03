"""A small certificate factory for TLS servers in tests and the demo: a CA, and leaves with chosen dates.

Made with `cryptography`, so the demo needs no test-only package::

    authority = Authority.create()
    leaf = authority.issue(not_after=datetime.now(UTC) + timedelta(days=12))   # 127.0.0.1 and localhost
    authority.write_pem(folder / "demo-ca.pem")                                # the profile's ca_file
    with serving(port, app, ssl_context=leaf.server_context()): ...

The certificates follow what strict verifiers ask (RFC 5280: key identifiers, key usage,
basic constraints), so they verify under Python 3.13's VERIFY_X509_STRICT default too.
"""

from __future__ import annotations

import ipaddress
import ssl
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

DEMO_NAMES = ("localhost", "127.0.0.1")
LEAF_DAYS = 90  # a typical ACME lifetime; shrinking to 47 days by 2029
CA_DAYS = 3650


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "opsproof demo"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _window(not_before: datetime | None, not_after: datetime | None, days: int) -> tuple[datetime, datetime]:
    start = not_before or datetime.now(UTC) - timedelta(days=1)
    return start, not_after or start + timedelta(days=days)


def _alt_name(name: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


def _pem(*certificates: x509.Certificate) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certificates)


@dataclass(frozen=True)
class _Certified:
    """A certificate, its key, and the CA certificates above it that a server sends (nearest first, no root)."""

    certificate: x509.Certificate
    key: ec.EllipticCurvePrivateKey
    chain: tuple[x509.Certificate, ...] = ()

    @property
    def key_pem(self) -> bytes:
        return self.key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )


@dataclass(frozen=True)
class Authority(_Certified):
    """A certificate authority: a root, or an intermediate under `chain`."""

    @classmethod
    def create(
        cls, name: str = "opsproof demo CA", *, not_before: datetime | None = None, not_after: datetime | None = None
    ) -> Authority:
        """A self-signed root CA."""
        key = ec.generate_private_key(ec.SECP256R1())
        start, end = _window(not_before, not_after, CA_DAYS)
        builder = _ca_builder(_name(name), _name(name), key.public_key(), start, end)
        return cls(builder.sign(key, hashes.SHA256()), key)

    def child(self, name: str, *, not_before: datetime | None = None, not_after: datetime | None = None) -> Authority:
        """An intermediate CA signed by this one."""
        key = ec.generate_private_key(ec.SECP256R1())
        start, end = _window(not_before, not_after, CA_DAYS)
        builder = _ca_builder(_name(name), self.certificate.subject, key.public_key(), start, end)
        builder = builder.add_extension(self._authority_key_id(), critical=False)
        return Authority(builder.sign(self.key, hashes.SHA256()), key, self._with_own_chain())

    def issue(
        self, *names: str, not_before: datetime | None = None, not_after: datetime | None = None
    ) -> LeafCertificate:
        """A server certificate for `names` (default 127.0.0.1 and localhost), valid from/until the dates given."""
        names = names or DEMO_NAMES
        key = ec.generate_private_key(ec.SECP256R1())
        start, end = _window(not_before, not_after, LEAF_DAYS)
        certificate = (
            x509.CertificateBuilder()
            .subject_name(_name(names[0]))
            .issuer_name(self.certificate.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(end)
            .add_extension(x509.SubjectAlternativeName([_alt_name(n) for n in names]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_key_usage(certificate_signing=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(self._authority_key_id(), critical=False)
            .sign(self.key, hashes.SHA256())
        )
        return LeafCertificate(certificate, key, self._with_own_chain())

    @property
    def pem(self) -> bytes:
        return _pem(self.certificate)

    def write_pem(self, path: Path) -> Path:
        """Write this CA's certificate (PEM): the `ca_file` that makes its leaves trusted."""
        path.write_bytes(self.pem)
        return path

    def _authority_key_id(self) -> x509.AuthorityKeyIdentifier:
        return x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key())

    def _with_own_chain(self) -> tuple[x509.Certificate, ...]:
        # A root is never sent by servers; an intermediate is, with those above it.
        is_root = self.certificate.issuer == self.certificate.subject
        return self.chain if is_root else (self.certificate, *self.chain)


@dataclass(frozen=True)
class LeafCertificate(_Certified):
    """A server certificate, its key and the intermediates a server sends with it."""

    @property
    def chain_pem(self) -> bytes:
        return _pem(self.certificate, *self.chain)

    def server_context(self) -> ssl.SSLContext:
        """An SSLContext serving this certificate (and its intermediates)."""
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        # load_cert_chain reads files only; the key lives on disk for the blink of this call.
        with tempfile.TemporaryDirectory(prefix="opsproof-cert-") as folder:
            cert_file, key_file = Path(folder) / "cert.pem", Path(folder) / "key.pem"
            cert_file.write_bytes(self.chain_pem)
            key_file.touch(mode=0o600)
            key_file.write_bytes(self.key_pem)
            context.load_cert_chain(cert_file, key_file)
        return context


def _key_usage(*, certificate_signing: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=not certificate_signing,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=certificate_signing,
        crl_sign=certificate_signing,
        encipher_only=False,
        decipher_only=False,
    )


def _ca_builder(
    subject: x509.Name, issuer: x509.Name, public_key: ec.EllipticCurvePublicKey, start: datetime, end: datetime
) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(_key_usage(certificate_signing=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    )
