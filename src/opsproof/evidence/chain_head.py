"""Where an environment's chain head lives: a file beside the bundles, or a row in PostgreSQL.

The head names the newest bundle of an environment and the sha256 of its manifest; the
next bundle sealed records it as `previous`. Advancing it is one critical section (read
the head, write the new manifest, move the head), so two runs finishing at once still
form one linear chain:

- `FileHead`: `<report-dir>/.chain/<env>.json`, under an exclusive `flock` of
  `.chain/<env>.lock` (one machine, one report dir);
- `PostgresHead` (opsproof.compliance.shared_chain, with `--history-dsn postgresql://...`):
  the `chain_heads` row of the environment, read and moved inside one transaction holding a transaction-level advisory
  lock keyed by the environment, so runners on many machines (each with its own report
  dir, or shipping to S3) append to one chain. The lock is released by COMMIT or ROLLBACK,
  never left behind by a runner that died.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

# The previous head (None for an environment's first bundle) -> the new head (bundle, manifest sha256).
Step = Callable[[dict[str, Any] | None], dict[str, str]]


class ChainHead(Protocol):
    shown: str

    def advance(self, environment: str, step: Step) -> dict[str, str]:
        """Run `step` with the current head under the lock and make what it returns the head."""

    def read(self, environment: str) -> dict[str, Any] | None:
        """The head as it is now, or None when the environment has none here."""


def safe_name(environment: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", environment)


class FileHead:
    """`.chain/<env>.json` under a report dir, advanced under a local exclusive lock."""

    def __init__(self, report_dir: Path) -> None:
        self.folder = report_dir / ".chain"
        self.shown = str(self.folder)

    def path(self, environment: str) -> Path:
        return self.folder / f"{safe_name(environment)}.json"

    def advance(self, environment: str, step: Step) -> dict[str, str]:
        self.folder.mkdir(parents=True, exist_ok=True)
        head_file = self.path(environment)
        with open(self.folder / f"{safe_name(environment)}.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            previous = json.loads(head_file.read_text()) if head_file.exists() else None
            head = step(previous)
            tmp = head_file.with_suffix(".tmp")
            tmp.write_text(json.dumps(head) + "\n")
            os.replace(tmp, head_file)
        return head

    def read(self, environment: str) -> dict[str, Any] | None:
        path = self.path(environment)
        if not path.exists():
            return None
        found = json.loads(path.read_text())  # ValueError for a damaged file: the caller reports it
        if not isinstance(found, dict):
            raise ValueError("not a JSON object")
        return found
