"""manifest.json: the sha256 of every file of a bundle, chained to the previous bundle.

Each environment has a chain head under `<report-dir>/.chain/`: the name and
manifest hash of its newest bundle. Sealing takes an exclusive lock on the head,
so two runs finishing at once still form one linear chain::

    bundle A  <-previous-  bundle B  <-previous-  bundle C
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any

# The file names live with the signature, which reads them; they are the manifest's to name.
from opsproof.evidence.signing import MANIFEST as MANIFEST
from opsproof.evidence.signing import SIGNATURE as SIGNATURE
from opsproof.evidence.signing import Signer

SCHEMA = "opsproof/manifest/v1"
# A period report's manifest: the same file list and signature, about a report rather than a
# run, and in no chain (a report is derived from the bundles, which are chained).
REPORT_SCHEMA = "opsproof/report-manifest/v1"
SCHEMAS = (SCHEMA, REPORT_SCHEMA)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def bundle_files(bundle: Path) -> list[str]:
    """Every file of a bundle but the manifest, as sorted relative POSIX paths."""
    names = (p.relative_to(bundle).as_posix() for p in bundle.rglob("*") if p.is_file())
    return sorted(name for name in names if name not in (MANIFEST, SIGNATURE))


def _chain_paths(report_dir: Path, environment: str) -> tuple[Path, Path]:
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", environment)
    chain = report_dir / ".chain"
    chain.mkdir(parents=True, exist_ok=True)
    return chain / f"{safe}.json", chain / f"{safe}.lock"


def manifest_sha256(bundle: Path) -> str:
    """The hash the next bundle's `previous` records: sha256 of manifest.json's bytes."""
    return sha256_file(bundle / MANIFEST)


def seal(bundle: Path, run: dict[str, Any], signer: Signer | None = None) -> dict[str, Any]:
    """Write manifest.json (and manifest.sig) for `bundle` and make it the head of its environment's chain."""
    head_file, lock_file = _chain_paths(bundle.parent, run["environment"])
    files = _files(bundle)
    with open(lock_file, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        previous = json.loads(head_file.read_text()) if head_file.exists() else None
        sealed_run: dict[str, Any] = {
            key: run[key] for key in ("id", "environment", "started_at", "finished_at", "status", "exit_code")
        } | {"profile_sha256": run["profile"]["sha256"], "suite": run["suite"]}
        change = {k: v for k, v in (run.get("change") or {}).items() if k in ("ticket", "commit", "image_digest") and v}
        if change:  # the change a post-deploy run validated, readable from the chain alone
            sealed_run["change"] = change
        manifest: dict[str, Any] = {
            "schema": SCHEMA,
            "bundle": bundle.name,
            "run": sealed_run,
            "files": files,
            "previous": previous,
        }
        text = _write(bundle, manifest, signer)
        head = {"bundle": bundle.name, "manifest_sha256": hashlib.sha256(text.encode()).hexdigest()}
        tmp = head_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(head) + "\n")
        os.replace(tmp, head_file)
    return manifest


def seal_report(folder: Path, about: dict[str, Any], signer: Signer | None = None) -> dict[str, Any]:
    """Write manifest.json (and manifest.sig) for a period report's folder: `opsproof verify` proves it."""
    manifest: dict[str, Any] = {"schema": REPORT_SCHEMA, "report": about, "files": _files(folder)}
    _write(folder, manifest, signer)
    return manifest


def _files(folder: Path) -> dict[str, dict[str, Any]]:
    return {
        name: {"sha256": sha256_file(folder / name), "bytes": (folder / name).stat().st_size}
        for name in bundle_files(folder)
    }


def _write(folder: Path, manifest: dict[str, Any], signer: Signer | None) -> str:
    """manifest.json, and its signature over those exact bytes; the text written."""
    if signer is not None:
        manifest["signing"] = {"algorithm": "ed25519", "key_id": signer.key_id, "signature_file": SIGNATURE}
    text = json.dumps(manifest, indent=2) + "\n"
    (folder / MANIFEST).write_text(text)
    if signer is not None:
        (folder / SIGNATURE).write_text(json.dumps(signer.sign(text.encode()), indent=2) + "\n")
    return text
