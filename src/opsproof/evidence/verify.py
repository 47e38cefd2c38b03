"""`opsproof verify BUNDLE`: does every file still match its manifest?"""

from __future__ import annotations

import json
from pathlib import Path

from opsproof.evidence.manifest import MANIFEST, SCHEMA, bundle_files, sha256_file


class BundleError(Exception):
    """Not a bundle at all (no folder, no readable manifest): a usage error."""


def verify_bundle(bundle: Path) -> list[str]:
    """The problems found, one line each: 'changed: results.json', 'added: x', 'removed: y'."""
    if not bundle.is_dir():
        raise BundleError(f"{bundle}: not a folder")
    manifest_path = bundle / MANIFEST
    if not manifest_path.is_file():
        raise BundleError(f"{bundle}: no {MANIFEST}; not an opsproof evidence bundle")
    try:
        manifest = json.loads(manifest_path.read_text())
        files: dict[str, dict[str, object]] = manifest["files"]
        if manifest.get("schema") != SCHEMA:
            return [f"changed: {MANIFEST} (unknown schema {manifest.get('schema')!r})"]
    except (ValueError, KeyError, TypeError):
        return [f"changed: {MANIFEST} (not a readable manifest)"]
    problems = []
    present = set(bundle_files(bundle))
    for name in sorted(files):
        if name not in present:
            problems.append(f"removed: {name}")
        elif sha256_file(bundle / name) != files[name]["sha256"]:
            problems.append(f"changed: {name}")
    problems.extend(f"added: {name}" for name in sorted(present - set(files)))
    return problems
