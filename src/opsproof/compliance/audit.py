"""The history held against its bundles: every recorded row must say what its sealed bundle says.

The history is an index of the bundles, so anyone who can write to it could make a period
report say anything: `UPDATE records SET outcome = 'passed'`, or deleting a run's rows,
turns "4 open" into "0 open". The bundles are sealed (and chained, signed, uploaded under
Object Lock), so they are the reference. A finding is any of:

- a recorded run whose bundle is not in the folder (deleted, or kept on another runner:
  verify there, or pass the folder that holds it);
- a bundle that fails verification, or whose manifest hash is not the one recorded;
- a run row or a record row that differs from what the bundle's results.json makes of it
  (a changed value, a record missing from the history or one the bundle does not hold);
- an `observations` row (the numbers `increase:` and `trend:` judge later runs against) that
  differs from its record's `measures`, or one no record of the run holds;
- a bundle in the folder whose run is not in the history (its rows were deleted).

`opsproof history verify` reports them all; `opsproof report` refuses to build a report
over a period that has any, since it would seal figures no evidence supports.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from opsproof.compliance.history_rows import RECORD_COLUMNS, RUN_COLUMNS, observation_rows_of, record_row, run_row
from opsproof.model.results import Results

if TYPE_CHECKING:
    from opsproof.compliance.history import History
    from opsproof.compliance.history_rows import RunRow


@dataclass
class Audit:
    runs: int = 0
    checked: int = 0
    problems: list[str] = field(default_factory=list)


def audit_history(
    history: History,
    bundles_dir: Path,
    *,
    environment: str | None = None,
    start: str | None = None,
    end: str | None = None,
) -> Audit:
    """Hold every run recorded in [start, end) (of one environment, or all) against its bundle in `bundles_dir`."""
    from opsproof.evidence.chain import find_environments
    from opsproof.evidence.manifest import MANIFEST, sha256_file
    from opsproof.evidence.verify import verify_bundle

    audit = Audit()
    rows = history.runs(environment, start, end)
    audit.runs = len(rows)
    recorded = {row.bundle for row in rows}
    for row in rows:
        name = f"run {row.bundle}"
        bundle = bundles_dir / row.bundle
        if not (bundle / MANIFEST).is_file():
            audit.problems.append(
                f"{name}: recorded in the history, but its bundle is not in {bundles_dir}{_where(row)}"
            )
            continue
        audit.checked += 1
        problems = verify_bundle(bundle)
        if problems:
            audit.problems.append(f"{name}: its bundle fails verification: {problems[0]}")
            continue
        if sha256_file(bundle / MANIFEST) != row.manifest_sha256:
            audit.problems.append(f"{name}: its manifest.json no longer has the sha256 the history recorded")
            continue
        audit.problems.extend(f"{name}: {p}" for p in _row_problems(history, row, bundle))
    if start is None and end is None:
        audit.problems.extend(_unrecorded_observations(history, environment))
    for found_environment, bundles in find_environments(bundles_dir).items():
        if environment is not None and found_environment != environment:
            continue
        for bundle in bundles:
            started = _started_at(bundle)
            in_window = started is not None and (start is None or started >= start) and (end is None or started < end)
            if in_window and bundle.name not in recorded:
                audit.problems.append(f"bundle {bundle.name}: {_unlisted(history, bundle.name, found_environment)}")
    return audit


def _row_problems(history: History, row: RunRow, bundle: Path) -> list[str]:
    results = Results.model_validate_json((bundle / "results.json").read_text(encoding="utf-8"))
    manifest = json.loads((bundle / "manifest.json").read_text(encoding="utf-8"))
    expected_run = run_row(results, bundle.name, row.manifest_sha256, manifest)
    problems = [
        f"the history says {column} = {kept!r}, its bundle says {sealed!r}"
        for column, kept, sealed in zip(RUN_COLUMNS, row.columns(), expected_run, strict=True)
        if column != "run_id" and kept != sealed
    ]
    stored = {
        found[0]: dict(zip(RECORD_COLUMNS, found, strict=True))
        for found in history.execute(f"SELECT {', '.join(RECORD_COLUMNS)} FROM records WHERE run_id = ?", (row.run_id,))
    }
    sealed = {values[0]: dict(zip(RECORD_COLUMNS, values, strict=True)) for values in map(record_row, results.checks)}
    for node_id, record in sealed.items():
        kept = stored.get(node_id)
        if kept is None:
            problems.append(f"record {record['check_id']} is in its bundle but not in the history")
            continue
        problems.extend(
            f"record {record['check_id']}: the history says {column} = {kept[column]!r}, "
            f"its bundle says {record[column]!r}"
            for column in RECORD_COLUMNS
            if kept[column] != record[column]
        )
    problems.extend(
        f"record {stored[node_id]['check_id']} is in the history but not in its bundle"
        for node_id in stored.keys() - sealed.keys()
    )
    problems.extend(_observation_problems(history, row.run_id, results))
    return problems


def _unrecorded_observations(history: History, environment: str | None) -> list[str]:
    """`observations` rows of no recorded run (written with foreign keys off): no bundle backs them."""
    found = history.execute(
        "SELECT run_id, environment, COUNT(*) FROM observations WHERE run_id NOT IN (SELECT run_id FROM runs) "
        "GROUP BY run_id, environment ORDER BY run_id"
    )
    return [
        f"observations of run {run_id} ({env}): {count} row(s) in the history, but no such run is recorded"
        for run_id, env, count in found
        if environment is None or env == environment
    ]


def _observation_problems(history: History, run_id: str, results: Results) -> list[str]:
    """The run's `observations` rows against its records' `measures`: later runs judge `increase:`/`trend:` on them."""
    # The environment is part of the key: a row moved to another environment would feed its trends.
    kept = {
        (environment, check, measure, at): float(value)
        for environment, check, measure, value, at in history.execute(
            "SELECT environment, check_id, measure, value, observed_at FROM observations WHERE run_id = ?", (run_id,)
        )
    }
    sealed = {
        (env, check, measure, at): value
        for record in results.checks
        for _, env, check, measure, value, at in observation_rows_of(results.run, record)
    }
    problems = []
    for key in sorted(kept.keys() | sealed.keys()):
        environment, check, measure, at = key
        name = f"observation {measure} of {check} ({environment}) at {at}"
        if key not in kept:
            problems.append(f"{name} is in its bundle but not in the history")
        elif key not in sealed:
            problems.append(f"{name} is in the history but not in its bundle")
        elif kept[key] != sealed[key]:
            problems.append(f"{name}: the history says {kept[key]!r}, its bundle says {sealed[key]!r}")
    return problems


def _where(row: RunRow) -> str:
    upload = row.upload
    host = f" (recorded on {row.host})" if row.host else ""
    if upload and upload.get("location"):
        return f"{host}; it was uploaded to {upload['location']}: `opsproof verify {upload['location']}`"
    return host


def _started_at(bundle: Path) -> str | None:
    try:
        run = json.loads((bundle / "results.json").read_text(encoding="utf-8"))["run"]
        return str(run["started_at"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _unlisted(history: History, bundle: str, environment: str) -> str:
    """Why a sealed bundle of the window is not among the window's runs: rows deleted, or moved out of it."""
    rows = history.execute("SELECT run_id, environment, started_at FROM runs WHERE bundle = ?", (bundle,))
    if not rows:
        return (
            "sealed, but its run is not in the history (its rows were deleted, "
            "or it was never recorded: `opsproof history rebuild` puts it back)"
        )
    run_id, recorded_environment, started_at = rows[0]
    return (
        f"its run {run_id} is recorded as environment {recorded_environment!r} started at {started_at}, "
        f"not as its bundle says (environment {environment!r}, started in this period)"
    )
