"""Generated evidence for the compliance tests: real bundles written by opsproof's own writer.

A period report over a quarter needs ~90 daily runs; running pytest 90 times would take
minutes, so these helpers build the results of a run (the same shape the plugin builds)
and seal them with `write_bundle`, exactly as a run does.
"""

from __future__ import annotations

import uuid
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from opsproof import outcomes
from opsproof.evidence.bundle import write_bundle
from opsproof.model.results import Results
from opsproof.redaction import Redactor
from opsproof.targets import controls_for

KIND_AREAS = {"http": "health", "postgres": "infra", "backups": "backup", "drills": "dr", "attestations": "compliance"}


def stamp(at: datetime) -> str:
    return at.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def record(
    check: str,
    outcome: str = "passed",
    *,
    at: datetime,
    severity: str = "critical",
    cadence: str = "daily",
    message: str | None = None,
    waiver: dict[str, Any] | None = None,
    controls: list[str] | None = None,
    observed: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One check record as the plugin writes it; `check` is `kind.aspect[target]`."""
    kind, rest = check.split(".", 1)
    aspect, _, target = rest.partition("[")
    target = target.rstrip("]")
    found: dict[str, Any] = {
        "id": f"checks/x/test_{kind}.py::test_{aspect}[{target}]",
        "check": check,
        "kind": kind,
        "target": target,
        "markers": sorted({cadence, KIND_AREAS.get(kind, "infra")}),
        "controls": controls if controls is not None else controls_for(kind, aspect),
        "severity": severity,
        "outcome": outcome,
        "message": message or ("as expected" if outcome == "passed" else f"{check} is {outcome}"),
        "observed": observed or {},
        "expected": {},
        "started_at": stamp(at),
        "duration_s": 0.01,
        "phase": "call",
    }
    if waiver is not None:
        found["waiver"] = waiver
    return found


def results(
    environment: str,
    at: datetime,
    checks: list[dict[str, Any]],
    *,
    markers: str = "daily",
    change: dict[str, Any] | None = None,
    fail_on: str = "high",
) -> dict[str, Any]:
    """The results of one run started at `at`, summarised and with an exit code as the plugin would."""
    blocking = [c["check"] for c in checks if outcomes.is_blocking(c["outcome"], c["severity"], fail_on)]
    exit_code = outcomes.EXIT_BLOCKING if blocking else outcomes.EXIT_OK
    by_outcome = Counter(c["outcome"] for c in checks)
    by_severity: dict[str, dict[str, int]] = {}
    for c in checks:
        row = by_severity.setdefault(c["severity"], {})
        row[c["outcome"]] = row.get(c["outcome"], 0) + 1
    waivers = [c["waiver"] for c in checks if "waiver" in c]
    return {
        "schema": "opsproof/results/v1",
        "run": {
            "id": uuid.uuid4().hex,
            "environment": environment,
            "profile": {"path": f"/srv/opsproof/profiles/{environment}.yaml", "sha256": "ab" * 32},
            "started_at": stamp(at),
            "finished_at": stamp(at + timedelta(seconds=2)),
            "selection": {"markers": markers, "keywords": None, "paths": ["checks"]},
            "suite": {"version": "0.1.0", "commit": None},
            "host": "runner-1",
            "user": "cron",
            "command": f"pytest -m {markers} --profile {environment}",
            "status": outcomes.RUN_STATUS[exit_code],
            "exit_code": exit_code,
            "fail_on": fail_on,
            "vars": {},
            "change": change,
        },
        "checks": checks,
        "summary": {
            "total": len(checks),
            "by_outcome": {o: by_outcome.get(o, 0) for o in outcomes.OUTCOMES},
            "by_severity": by_severity,
            "blocking": blocking,
            "waivers": {
                "applied": sorted({w["ticket"] for w in waivers if w["status"] == "applied"}),
                "expired": sorted({w["ticket"] for w in waivers if w["status"] == "expired"}),
                "unmatched": [],
            },
        },
    }


def write(report_dir: Path, run_results: dict[str, Any], signer: Any = None) -> Path:
    """Seal one bundle under `report_dir`, chained to the previous bundle of its environment."""
    return write_bundle(Results.model_validate(run_results), report_dir, Redactor(), signer)


def daily_runs(
    report_dir: Path,
    environment: str,
    first: date,
    last: date,
    *,
    skip: set[date] = frozenset(),  # type: ignore[assignment]
    hour: int = 6,
) -> list[Path]:
    """One passing daily run of one http check per day from `first` to `last`, except the `skip` days."""
    bundles = []
    day = first
    while day <= last:
        if day not in skip:
            at = datetime(day.year, day.month, day.day, hour, tzinfo=UTC)
            run = results(environment, at, [record("http.health[api]", at=at)])
            bundles.append(write(report_dir, run))
        day += timedelta(days=1)
    return bundles
