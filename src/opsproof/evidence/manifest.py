"""manifest.json: the sha256 of every file of a bundle, chained to the previous bundle.

Each environment has a chain head (evidence/chain_head.py: a file under
`<report-dir>/.chain/`, or a row in the PostgreSQL history): the name and manifest
hash of its newest bundle. Sealing holds a lock on the head, so two runs finishing
at once still form one linear chain::

    bundle A  <-previous-  bundle B  <-previous-  bundle C
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from opsproof.evidence.chain_head import FileHead

# The file names live with the signature, which reads them; they are the manifest's to name.
from opsproof.evidence.signing import MANIFEST as MANIFEST
from opsproof.evidence.signing import SIGNATURE as SIGNATURE
from opsproof.evidence.signing import Signer

if TYPE_CHECKING:
    from opsproof.evidence.chain_head import ChainHead

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


def manifest_sha256(bundle: Path) -> str:
    """The hash the next bundle's `previous` records: sha256 of manifest.json's bytes."""
    return sha256_file(bundle / MANIFEST)


def seal(
    bundle: Path,
    run: dict[str, Any],
    signer: Signer | None = None,
    head: ChainHead | None = None,
    shards: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Write manifest.json (and manifest.sig) for `bundle` and make it the head of its environment's chain.

    The chain head is `head` (default: the file under the bundle's report dir). A shard's
    bundle (`run["shard"]`) joins no chain: it is sealed alone and `opsproof seal-run`
    makes the run's one link; that run bundle's manifest names each shard's manifest
    sha256 (`shards`).
    """
    files = _files(bundle)
    sealed_run: dict[str, Any] = {
        key: run[key] for key in ("id", "environment", "started_at", "finished_at", "status", "exit_code")
    } | {"profile_sha256": run["profile"]["sha256"], "suite": run["suite"]}
    change = {k: v for k, v in (run.get("change") or {}).items() if k in ("ticket", "commit", "image_digest") and v}
    if change:  # the change a post-deploy run validated, readable from the chain alone
        sealed_run["change"] = change
    manifest: dict[str, Any] = {"schema": SCHEMA, "bundle": bundle.name, "run": sealed_run, "files": files}
    if shards is not None:
        manifest["shards"] = shards
    shard = run.get("shard")
    if shard is not None:
        manifest["shard"] = {key: shard[key] for key in ("run", "index", "count", "zone")}
        manifest["previous"] = None
        _write(bundle, manifest, signer)
        return manifest

    def step(previous: dict[str, Any] | None) -> dict[str, str]:
        manifest["previous"] = previous
        text = _write(bundle, manifest, signer)
        return {"bundle": bundle.name, "manifest_sha256": hashlib.sha256(text.encode()).hexdigest()}

    (head or FileHead(bundle.parent)).advance(run["environment"], step)
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
