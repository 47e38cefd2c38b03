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

SCHEMA = "opsproof/manifest/v1"
MANIFEST = "manifest.json"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def bundle_files(bundle: Path) -> list[str]:
    """Every file of a bundle but the manifest, as sorted relative POSIX paths."""
    names = (p.relative_to(bundle).as_posix() for p in bundle.rglob("*") if p.is_file())
    return sorted(name for name in names if name != MANIFEST)


def _chain_paths(report_dir: Path, environment: str) -> tuple[Path, Path]:
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", environment)
    chain = report_dir / ".chain"
    chain.mkdir(parents=True, exist_ok=True)
    return chain / f"{safe}.json", chain / f"{safe}.lock"


def seal(bundle: Path, run: dict[str, Any]) -> dict[str, Any]:
    """Write manifest.json for `bundle` and make it the head of its environment's chain."""
    head_file, lock_file = _chain_paths(bundle.parent, run["environment"])
    files = {
        name: {"sha256": sha256_file(bundle / name), "bytes": (bundle / name).stat().st_size}
        for name in bundle_files(bundle)
    }
    with open(lock_file, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        previous = json.loads(head_file.read_text()) if head_file.exists() else None
        manifest = {
            "schema": SCHEMA,
            "bundle": bundle.name,
            "run": {key: run[key] for key in ("id", "environment", "started_at", "finished_at", "status", "exit_code")}
            | {"profile_sha256": run["profile"]["sha256"], "suite": run["suite"]},
            "files": files,
            "previous": previous,
        }
        text = json.dumps(manifest, indent=2) + "\n"
        (bundle / MANIFEST).write_text(text)
        head = {"bundle": bundle.name, "manifest_sha256": hashlib.sha256(text.encode()).hexdigest()}
        tmp = head_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(head) + "\n")
        os.replace(tmp, head_file)
    return manifest
