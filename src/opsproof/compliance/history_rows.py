"""A history's rows as a sealed bundle makes them: what `History` writes and `history verify` compares.

Made from the bundle's results.json and manifest.json only, never from a run's memory, so
that a history rebuilt from the bundles holds the same rows.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, NamedTuple

from opsproof.model.markers import CADENCE_MARKERS
from opsproof.model.results import CheckRecord, Maintenance, Results, Run, Waiver

# The columns of a run's row and of a record's row that come from its sealed bundle (everything
# but when it was recorded and its upload receipt): `history verify` compares them with the bundle.
RUN_COLUMNS = (
    "run_id",
    "environment",
    "started_at",
    "finished_at",
    "status",
    "exit_code",
    "markers",
    "bundle",
    "manifest_sha256",
    "signed_by",
    "change_ticket",
    "commit_sha",
    "image_digest",
    "host",
)
RECORD_COLUMNS = (
    "node_id",
    "check_id",
    "kind",
    "target",
    "cadence",
    "severity",
    "outcome",
    "message",
    "controls",
    "waiver",
    "started_at",
    "maintenance",
)


@dataclass(frozen=True)
class RunRow:
    """One run as the history holds it: its RUN_COLUMNS, and its upload receipt (when it was uploaded)."""

    run_id: str
    environment: str
    started_at: str
    finished_at: str | None
    status: str
    exit_code: int | None
    markers: str | None
    bundle: str
    manifest_sha256: str
    signed_by: str | None
    change_ticket: str | None
    commit_sha: str | None
    image_digest: str | None
    host: str | None
    upload: dict[str, Any] | None = None

    def columns(self) -> tuple[Any, ...]:
        """Its values in RUN_COLUMNS' order: what `run_row` makes of its bundle."""
        return tuple(getattr(self, column) for column in RUN_COLUMNS)


@dataclass(frozen=True)
class RecordRow:
    """One check record of a run, as a period report reads it: with its run's id and start."""

    run_id: str
    run_started_at: str
    check_id: str
    kind: str | None
    target: str | None
    cadence: str | None
    severity: str | None
    outcome: str
    message: str | None
    controls: tuple[str, ...]
    waiver: Waiver | None
    maintenance: Maintenance | None

    @property
    def failing(self) -> bool:
        """Failed or error: not the state the check expects (a waived record is not failing)."""
        return self.outcome in ("failed", "error")


def run_row(results: Results, bundle: str, manifest_sha256: str, manifest: dict[str, Any]) -> tuple[Any, ...]:
    """A run's row (RUN_COLUMNS) as its sealed results.json and manifest.json make it."""
    run = results.run
    change = run.change or {}
    digest, signed_by = sealed_by(manifest_sha256, manifest)
    return (
        run.id,
        run.environment,
        run.started_at,
        run.finished_at,
        run.status,
        run.exit_code,
        run.selection.markers,
        bundle,
        digest,
        signed_by,
        change.get("ticket"),
        change.get("commit"),
        change.get("image_digest"),
        run.host,
    )


def sealed_by(manifest_sha256: str, manifest: dict[str, Any]) -> tuple[str, str | None]:
    """The run row's columns that only the seal makes: the manifest's digest and the key that signed it."""
    return manifest_sha256, (manifest.get("signing") or {}).get("key_id")


def record_row(check: CheckRecord) -> tuple[Any, ...]:
    """A check record's row (RECORD_COLUMNS) as its sealed results.json makes it."""
    cadence = next((m for m in check.markers if m in CADENCE_MARKERS), None)
    return (
        check.id or check.check,
        check.check,
        check.kind,
        check.target,
        cadence,
        check.severity,
        check.outcome,
        check.message,
        _controls_text(tuple(check.controls)),
        json.dumps(check.waiver.dump()) if check.waiver else None,
        check.started_at,
        json.dumps(check.maintenance.dump()) if check.maintenance else None,
    )


@lru_cache(maxsize=256)
def _controls_text(controls: tuple[str, ...]) -> str:
    # A kind's checks share their controls: one encoding for thousands of rows.
    return json.dumps(list(controls))


def observation_rows_of(run: Run, check: CheckRecord) -> list[tuple[Any, ...]]:
    """One record's `observations` rows: its `measures`, at the time the record measured them."""
    return _observation_rows(run, check.check, check.started_at, _finite_measures(check))


def _finite_measures(check: CheckRecord) -> tuple[tuple[str, float], ...]:
    return tuple(
        (measure, float(value))
        for measure, value in (check.measures or {}).items()
        if math.isfinite(value)  # a results.json written by hand or by another version may hold NaN
    )


def _observation_rows(
    run: Run, check: str, started_at: str | None, measures: tuple[tuple[str, float], ...]
) -> list[tuple[Any, ...]]:
    at = started_at or run.started_at
    return [(run.id, run.environment, check, measure, value, at) for measure, value in measures]


class CheckRows(NamedTuple):
    """What one check record of a results.json puts in the history, less its run's columns.

    Made of the record alone (`check_rows`), so a run can make it of a check's line of
    results.json while it waits for facts, and the history write it at the end with the
    run's id (`History.begin_run`).
    """

    record: tuple[Any, ...]  # its RECORD_COLUMNS (`record_row`)
    check: str
    started_at: str | None
    measures: tuple[tuple[str, float], ...]  # its finite measures, as numbers
    held: int | None = None  # where `History.hold_record` put its record's row ahead, in the store that writes it

    def observations(self, run: Run) -> list[tuple[Any, ...]]:
        """Its `observations` rows in this run: its measures, at the time the record measured them."""
        return _observation_rows(run, self.check, self.started_at, self.measures)


def check_rows(check: CheckRecord) -> CheckRows:
    """A check record's rows in the history (`CheckRows`), as its sealed results.json makes them."""
    return CheckRows(record_row(check), check.check, check.started_at, _finite_measures(check))
