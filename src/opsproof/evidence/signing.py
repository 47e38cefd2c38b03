"""Ed25519 signatures of manifests: `manifest.sig` beside `manifest.json`.

The hash chain proves that no bundle was changed *after a later one was sealed*; a
signature also proves who sealed it, so someone who can write the report folder
cannot rewrite the newest bundles and the chain head together. The signature is
over the exact bytes of manifest.json, whose `signing.key_id` names the key, so
deleting manifest.sig is itself detected::

    opsproof keygen keys/ops-signing           # keys/ops-signing.pem (private), .pub (public)
    pytest -m daily --sign-key keys/ops-signing.pem
    opsproof verify reports/prod-... --public-key keys/ops-signing.pub

Keys: PEM (PKCS#8 `BEGIN PRIVATE KEY`, `BEGIN PUBLIC KEY`) or OpenSSH (`ssh-keygen -t
ed25519`: `BEGIN OPENSSH PRIVATE KEY`, `ssh-ed25519 AAAA...`). An encrypted private
key takes its passphrase from `OPSPROOF_SIGN_KEY_PASSWORD`.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from opsproof.errors import ComplianceError
from opsproof.model.bounded_read import UnreadableFile, read_regular_file

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

# cryptography (with bcrypt and cffi, ~12 ms) is imported by the functions that sign or verify:
# every bundle's manifest imports this module for its file names, and most runs do not sign.

MANIFEST = "manifest.json"
SIGNATURE = "manifest.sig"  # written after manifest.json, over its bytes: not listed in it

SIGNATURE_SCHEMA = "opsproof/signature/v1"
PASSWORD_VARIABLE = "OPSPROOF_SIGN_KEY_PASSWORD"


def key_id(public_key: Ed25519PublicKey) -> str:
    """sha256 of the raw 32-byte public key, hex: the name a manifest gives its signing key."""
    from cryptography.hazmat.primitives import serialization

    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()


@dataclass(frozen=True)
class Signer:
    """A loaded Ed25519 private key and its key id."""

    private_key: Ed25519PrivateKey
    path: str

    @property
    def public_key(self) -> Ed25519PublicKey:
        return self.private_key.public_key()

    @property
    def key_id(self) -> str:
        return key_id(self.public_key)

    def sign(self, data: bytes) -> dict[str, Any]:
        """The content of manifest.sig for `data` (the bytes of manifest.json)."""
        from cryptography.hazmat.primitives import serialization

        raw_public = self.public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return {
            "schema": SIGNATURE_SCHEMA,
            "algorithm": "ed25519",
            "key_id": self.key_id,
            "public_key": base64.b64encode(raw_public).decode(),
            "signed": "manifest.json",
            "signed_sha256": hashlib.sha256(data).hexdigest(),
            "signature": base64.b64encode(self.private_key.sign(data)).decode(),
        }


# An Ed25519 key file, PEM or OpenSSH, is well under 1 KiB; the cap leaves room for comments.
KEY_FILE_LIMIT = 64 * 1024


def _read(path: Path, what: str) -> bytes:
    try:
        return read_regular_file(path, KEY_FILE_LIMIT)
    except UnreadableFile as exc:
        raise ComplianceError(f"{what} {str(path)!r}: {exc}") from None


def load_signer(path: Path, environ: dict[str, str] | None = None) -> Signer:
    """The Ed25519 private key at `path`; ComplianceError (a usage error) naming what is wrong."""
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    data = _read(path, "--sign-key")
    env = os.environ if environ is None else environ
    password = env.get(PASSWORD_VARIABLE)
    secret = password.encode() if password else None
    try:
        if b"OPENSSH PRIVATE KEY" in data:
            key: Any = serialization.load_ssh_private_key(data, password=secret)
        else:
            key = serialization.load_pem_private_key(data, password=secret)
    except TypeError as exc:  # encrypted without a password, or a password for a plain key
        if "encrypted" in str(exc).lower() and secret is None:
            raise ComplianceError(
                f"--sign-key {str(path)!r}: the key is encrypted; set {PASSWORD_VARIABLE} to its passphrase"
            ) from None
        raise ComplianceError(f"--sign-key {str(path)!r}: {exc}") from None
    except (ValueError, UnsupportedAlgorithm) as exc:
        reason = "wrong passphrase or not" if secret is not None else "not"
        raise ComplianceError(
            f"--sign-key {str(path)!r}: {reason} a readable private key (PEM PKCS#8 or OpenSSH): {_short(exc)}"
        ) from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ComplianceError(
            f"--sign-key {str(path)!r}: {_algorithm(key)} key; "
            "manifests are signed with Ed25519 (opsproof keygen PATH makes one)"
        )
    return Signer(private_key=key, path=str(path))


def load_public_key(path: Path) -> Ed25519PublicKey:
    """An Ed25519 public key (PEM, OpenSSH `ssh-ed25519 ...`, or the private key file itself)."""
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    data = _read(path, "--public-key")
    try:
        if data.lstrip().startswith(b"ssh-"):
            key: Any = serialization.load_ssh_public_key(data.strip())
        elif b"PRIVATE KEY" in data:
            return load_signer(path).public_key
        else:
            key = serialization.load_pem_public_key(data)
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise ComplianceError(
            f"--public-key {str(path)!r}: not a readable public key (PEM or ssh-ed25519): {_short(exc)}"
        ) from None
    except ComplianceError as exc:
        raise ComplianceError(str(exc).replace("--sign-key", "--public-key")) from None
    if not isinstance(key, Ed25519PublicKey):
        raise ComplianceError(f"--public-key {str(path)!r}: not an Ed25519 key")
    return key


def _algorithm(key: object) -> str:
    """`an RSA`, `an ECDSA`...: what kind of key was given instead of Ed25519."""
    from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, rsa

    kinds = ((rsa.RSAPrivateKey, "an RSA"), (ec.EllipticCurvePrivateKey, "an ECDSA"), (dsa.DSAPrivateKey, "a DSA"))
    for cls, name in (*kinds, (ed448.Ed448PrivateKey, "an Ed448")):
        if isinstance(key, cls):
            return name
    return f"a {type(key).__name__}"


def _short(exc: Exception) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:200]


def check_signature(bundle: Path, manifest: dict[str, Any], trusted: Ed25519PublicKey | None) -> list[str]:
    """Problems with a bundle's signature, one line each; none when it is sound (or absent and not required)."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    claimed = manifest.get("signing")
    sig_path = bundle / SIGNATURE
    if not sig_path.exists():
        if claimed:
            return [f"removed: {SIGNATURE} (the manifest says it was signed by key {str(claimed.get('key_id'))[:16]})"]
        return ["not signed (a --public-key was given)"] if trusted is not None else []
    try:
        signature = json.loads(sig_path.read_text())
        public = Ed25519PublicKey.from_public_bytes(base64.b64decode(signature["public_key"]))
        raw_signature = base64.b64decode(signature["signature"])
    except (ValueError, KeyError, TypeError):
        return [f"changed: {SIGNATURE} (not a readable signature)"]
    problems = []
    if not claimed or claimed.get("key_id") != key_id(public):
        problems.append(f"changed: {SIGNATURE} (its key is not the one manifest.json names)")
    try:
        public.verify(raw_signature, (bundle / MANIFEST).read_bytes())
    except InvalidSignature:
        problems.append(f"changed: {SIGNATURE} or manifest.json (the signature does not match manifest.json)")
    if trusted is not None and key_id(trusted) != key_id(public):
        problems.append(f"signed by key {key_id(public)[:16]}, not by the trusted key {key_id(trusted)[:16]}")
    return problems


def generate_key(path: Path) -> tuple[Path, Path, str]:
    """Write a new Ed25519 key: PATH.pem (private, mode 0600) and PATH.pub (public). Returns both and the key id."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    private = Ed25519PrivateKey.generate()
    private_path, public_path = path.with_suffix(".pem"), path.with_suffix(".pub")
    for target in (private_path, public_path):
        if target.exists():
            raise ComplianceError(f"{target} exists; not overwriting a key")
    private_path.parent.mkdir(parents=True, exist_ok=True)
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(pem)
    public_path.write_bytes(
        private.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    return private_path, public_path, key_id(private.public_key())
