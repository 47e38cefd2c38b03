"""The chain head in the PostgreSQL history: one chain for runners on many machines.

`PostgresHead` keeps each environment's head in the `chain_heads` row of the history and
advances it inside one transaction holding `pg_advisory_xact_lock(key, hashtext(env))`:
read the head, write the manifest naming it, move the head, commit. A runner that dies
releases the lock with its connection. See opsproof.evidence.chain_head for the protocol
and the file head of a single report dir.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from opsproof.compliance.history import WAIT_S, History, HistoryError, Location
from opsproof.evidence.chain_head import ChainHead, FileHead, Step
from opsproof.units import utc_now

# pg_advisory_xact_lock(key1, key2): key1 says "an opsproof chain", key2 is the environment's hash.
_CHAIN_LOCK = 0x6F707363  # "opsc"


class PostgresHead:
    """The `chain_heads` row of each environment in the history's PostgreSQL."""

    def __init__(self, location: Location) -> None:
        self.location = location
        self.shown = f"chain_heads in {location.shown}"

    @contextlib.contextmanager
    def _locked(self, environment: str) -> Iterator[Any]:
        # create=False: on a current schema, no DDL. `CREATE INDEX IF NOT EXISTS` locks its table
        # first, and would wait for the run's own rows, written before the seal in a transaction
        # still open (opsproof.run.early_recording) until this head has moved: a deadlock.
        with History(self.location, create=False) as history, history.transaction():
            history.execute(f"SET LOCAL lock_timeout = '{WAIT_S}s'")
            history.execute("SELECT pg_advisory_xact_lock(?, hashtext(?))", (_CHAIN_LOCK, environment))
            yield history

    def advance(self, environment: str, step: Step) -> dict[str, str]:
        with self._locked(environment) as history:
            rows = history.execute(
                "SELECT bundle, manifest_sha256, links FROM chain_heads WHERE environment = ?", (environment,)
            )
            previous = {"bundle": rows[0][0], "manifest_sha256": rows[0][1]} if rows else None
            head = step(previous)
            history.execute(
                "INSERT INTO chain_heads (environment, bundle, manifest_sha256, links, advanced_at) "
                "VALUES (?, ?, ?, 1, ?) ON CONFLICT (environment) DO UPDATE SET bundle = EXCLUDED.bundle, "
                "manifest_sha256 = EXCLUDED.manifest_sha256, links = chain_heads.links + 1, "
                "advanced_at = EXCLUDED.advanced_at",
                (environment, head["bundle"], head["manifest_sha256"], utc_now()),
            )
        return head

    def read(self, environment: str) -> dict[str, Any] | None:
        with History(self.location) as history:
            rows = history.execute(
                "SELECT bundle, manifest_sha256, links FROM chain_heads WHERE environment = ?", (environment,)
            )
        return {"bundle": rows[0][0], "manifest_sha256": rows[0][1], "links": int(rows[0][2])} if rows else None


class SharedOrLocalHead:
    """The PostgreSQL head, or, when PostgreSQL cannot be reached, the report dir's file head.

    A history outage must never cost the run its evidence: the bundle is then sealed against
    the local head and `fell_back` says why. That bundle does not follow the shared chain's
    head, so `verify --chain` shows the break where it happened: visible, never silent.
    """

    def __init__(self, shared: PostgresHead, local: FileHead) -> None:
        self.shared, self.local = shared, local
        self.shown = shared.shown
        self.fell_back: str | None = None

    def advance(self, environment: str, step: Step) -> dict[str, str]:
        try:
            return self.shared.advance(environment, step)
        except HistoryError as exc:
            self.fell_back = str(exc)
            self.shown = self.local.shown
            return self.local.advance(environment, step)

    def read(self, environment: str) -> dict[str, Any] | None:
        return self.shared.read(environment)


def head_for(report_dir: Path, history: Location | None) -> ChainHead:
    """PostgreSQL when the history is there (many machines, one chain), else the report dir's file."""
    if history is not None and history.kind == "postgres":
        return SharedOrLocalHead(PostgresHead(history), FileHead(report_dir))
    return FileHead(report_dir)


def fallback_note(head: ChainHead) -> str | None:
    """What to tell the user when the bundle could not join the shared chain (None when it did)."""
    if not isinstance(head, SharedOrLocalHead) or head.fell_back is None:
        return None
    return (
        f"opsproof: the bundle is NOT linked to the shared chain head ({head.fell_back}); it was sealed "
        f"against {head.local.shown}, and `verify --chain` will show the break until the history is back"
    )
