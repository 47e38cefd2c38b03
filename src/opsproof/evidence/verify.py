"""`opsproof verify BUNDLE`: does every file still match its manifest (and its signature)?"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from opsproof.errors import OpsproofError
from opsproof.evidence.manifest import MANIFEST, SCHEMAS, SIGNATURE, bundle_files, sha256_file

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey


class BundleError(OpsproofError):
    """Not a bundle at all (no folder, no readable manifest): a usage error."""


def read_manifest(bundle: Path) -> dict[str, Any]:
    """manifest.json of a bundle; BundleError when the folder or the file is missing."""
    if not bundle.is_dir():
        raise BundleError(f"{bundle}: not a folder")
    manifest_path = bundle / MANIFEST
    if not manifest_path.is_file():
        raise BundleError(f"{bundle}: no {MANIFEST}; not an opsproof evidence bundle")
    try:
        manifest: dict[str, Any] = json.loads(manifest_path.read_text())
    except ValueError:
        return {}
    return manifest if isinstance(manifest, dict) else {}


def verify_bundle(bundle: Path, public_key: Ed25519PublicKey | None = None) -> list[str]:
    """The problems found, one line each: 'changed: results.json', 'added: x', 'removed: y'.

    A signed bundle's signature is checked too (against `public_key` when given); with a
    `public_key`, an unsigned bundle is a problem.
    """
    manifest = read_manifest(bundle)
    try:
        files: dict[str, dict[str, object]] = manifest["files"]
        if manifest.get("schema") not in SCHEMAS:
            return [f"changed: {MANIFEST} (unknown schema {manifest.get('schema')!r})"]
        listed = sorted(files)
    except (KeyError, TypeError):
        return [f"changed: {MANIFEST} (not a readable manifest)"]
    problems = []
    present = set(bundle_files(bundle))
    for name in listed:
        if name not in present:
            problems.append(f"removed: {name}")
        elif sha256_file(bundle / name) != _sha(files[name]):
            problems.append(f"changed: {name}")
    problems.extend(f"added: {name}" for name in sorted(present - set(files)))
    if public_key is not None or manifest.get("signing") or (bundle / SIGNATURE).exists():
        from opsproof.evidence.signing import check_signature

        problems.extend(check_signature(bundle, manifest, public_key))
    return problems


def _sha(entry: object) -> object:
    return entry.get("sha256") if isinstance(entry, dict) else None


def signed_by(bundle: Path) -> str | None:
    """The key id a bundle's manifest says it was signed with."""
    signing = read_manifest(bundle).get("signing")
    return str(signing.get("key_id")) if isinstance(signing, dict) else None
