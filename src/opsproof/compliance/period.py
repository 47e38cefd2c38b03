"""The period report's model: did each control operate every period, what did it see, who handled exceptions.

Built from the history store only (the bundles are referenced by name and manifest
hash, so an auditor can fetch and verify any of them). For each control:

- **expected runs**: one per period of each cadence its checks run in (every UTC day,
  ISO week, month) from the start of the report, or from the control's first run when
  it began operating inside the report's period; a period still in progress counts
  only once it has a run. A period without a run of that control and cadence is a
  **timing exception**;
- **pass rate**: passed and warned records over all records but skipped ones;
- **exceptions**: every failed, error or waived record, with its date, severity and
  message, and its resolution: `waived` (the waiver that covered it), `maintenance` (it
  failed inside a planned maintenance window, named), `resolved` (the same check's next
  passing run, named) or `open`.

Attestations: for each (declared or recorded) attestation, the periods of its cadence
that have a valid attestation, and those that do not.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from opsproof.compliance import ComplianceError
from opsproof.compliance.attestations import back_dated, entry_sha256, evidence_problem
from opsproof.compliance.attestations import entries as attestation_entries
from opsproof.compliance.periods import Period, period_of, periods_between, utc_day
from opsproof.model.controls import control_sort_key, control_title, framework_of, resolve_framework

if TYPE_CHECKING:
    from opsproof.compliance.declared import Declared
    from opsproof.compliance.history import History

SCHEMA = "opsproof/period-report/v1"
SEVERITY_RANK = {"critical": 4, "high": 3, "medium": 2, "low": 1}
FAILING = ("failed", "error")
# Day status, worst first: what a cell of the daily chart shows.
DAY_STATUSES = ("failed", "missed", "maintenance", "waived", "warned", "passed", "none", "future")


@dataclass(frozen=True)
class ReportRequest:
    environment: str
    first: date
    last: date  # inclusive
    frameworks: tuple[str, ...] = ()
    controls: tuple[str, ...] = ()
    now: datetime = field(default_factory=lambda: datetime.now(UTC))


# Runs are recorded with today's clock: days outside these years can hold no evidence, and the day
# after 9999-12-31 cannot even be computed (OverflowError).
FIRST_DAY, LAST_DAY = date(1970, 1, 1), date(2999, 12, 31)
MAX_PERIOD_DAYS = 3660  # ten years: a report lists every day of its period


def parse_day(text: str, option: str) -> date:
    try:
        if len(text) != 10:
            raise ValueError
        day = date.fromisoformat(text)
    except ValueError:
        raise ComplianceError(f"{option} {text!r}: expected a date YYYY-MM-DD") from None
    if not FIRST_DAY <= day <= LAST_DAY:
        raise ComplianceError(f"{option} {text}: expected a date from {FIRST_DAY} to {LAST_DAY}")
    return day


def check_period(first: date, last: date) -> None:
    """ComplianceError unless `first`..`last` is a period a report can cover (in order, at most ten years)."""
    if last < first:
        raise ComplianceError(f"--from {first} is after --to {last}: the dates are out of order")
    span = (last - first).days + 1
    if span > MAX_PERIOD_DAYS:
        raise ComplianceError(
            f"--from {first} --to {last}: {span:,} days; a report covers at most {MAX_PERIOD_DAYS:,} days (ten years)"
        )


def last_complete(period: str, today: date) -> tuple[date, date]:
    """`--period monthly|quarterly|yearly|weekly`: the last complete one before `today`."""
    if period == "weekly":
        end = today - timedelta(days=today.weekday())
        return end - timedelta(days=7), end - timedelta(days=1)
    if period == "monthly":
        end = today.replace(day=1)
        return (end - timedelta(days=1)).replace(day=1), end - timedelta(days=1)
    if period == "quarterly":
        quarter_start = today.replace(month=(today.month - 1) // 3 * 3 + 1, day=1)
        last = quarter_start - timedelta(days=1)
        return last.replace(month=(last.month - 1) // 3 * 3 + 1, day=1), last
    if period == "yearly":
        return date(today.year - 1, 1, 1), date(today.year - 1, 12, 31)
    raise ComplianceError(f"--period {period!r}: expected weekly, monthly, quarterly or yearly")


def build_report(history: History, request: ReportRequest, declared: Declared | None = None) -> dict[str, Any]:
    """The whole report as JSON-ready data; ComplianceError for an unknown environment, framework or control."""
    check_period(request.first, request.last)
    known = history.environments()
    if request.environment not in known:
        raise ComplianceError(
            f"--environment {request.environment!r}: no runs or attestations of it in the history "
            f"{history.location.shown} (environments: {', '.join(known) or 'none recorded'})"
        )
    today = request.now.astimezone(UTC).date()
    through = min(request.last, today)
    start_iso = f"{request.first.isoformat()}T00:00:00.000Z"
    end_iso = f"{(request.last + timedelta(days=1)).isoformat()}T00:00:00.000Z"
    runs = history.runs(request.environment, start_iso, end_iso)
    records = history.records(request.environment, start_iso, end_iso)
    later = history.records(request.environment, end_iso, _iso(request.now + timedelta(days=1)))
    seen_before = _seen_before(history, request.environment, start_iso)

    selected, frameworks = _select_controls(request, records, declared)
    runs_by_id = {run["run_id"]: run for run in runs}
    exceptions = _result_exceptions(records, later, runs_by_id, selected)
    controls, timing = _controls(request, records, selected, seen_before, through, today)
    exceptions.extend(timing)
    exceptions.sort(key=lambda e: (e["at"], e["check"] or "", e["type"]))
    changes = sorted({run["change_ticket"] for run in runs if run.get("change_ticket")})
    attestations = _attestations(history, request, declared, through, today, selected, changes)
    days = _days(request, records, runs, today)
    summary = _summary(runs, records, selected, controls, exceptions, attestations)
    return {
        "schema": SCHEMA,
        "environment": request.environment,
        "period": {
            "from": request.first.isoformat(),
            "to": request.last.isoformat(),
            "through": through.isoformat(),
            "days": (request.last - request.first).days + 1,
        },
        "frameworks": frameworks,
        "controls_requested": list(request.controls),
        "generated_at": _iso(request.now),
        "history": history.location.shown,
        "profile": declared.path if declared else None,
        "summary": summary,
        "controls": controls,
        "exceptions": exceptions,
        "attestations": attestations,
        "changes": _changes(changes, runs, attestations),
        "days": days,
        "bundles": [_bundle(run) for run in runs],
    }


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _seen_before(history: History, environment: str, start_iso: str) -> set[tuple[str, str]]:
    """(control, cadence) pairs that ran before the report's period: those are expected from its first day."""
    rows = history.execute(
        "SELECT DISTINCT r.controls, r.cadence FROM records r JOIN runs u ON u.run_id = r.run_id "
        "WHERE u.environment = ? AND u.started_at < ?",
        (environment, start_iso),
    )
    return {(control, str(cadence)) for controls, cadence in rows for control in json.loads(controls)}


def _select_controls(
    request: ReportRequest, records: list[dict[str, Any]], declared: Declared | None
) -> tuple[set[str] | None, list[str]]:
    """The controls the report covers (None: all) and the frameworks asked for, by their catalogue names.

    An unknown framework or control is a usage error.
    """
    from opsproof.model.controls import CONTROLS
    from opsproof.targets import catalogue

    known = {c for r in records for c in r["controls"]} | set(CONTROLS)
    known |= {c for controls in catalogue().values() for c in controls}
    if declared is not None:
        known |= {c for a in declared.attestations.values() for c in a.controls}
        known |= {c for controls in declared.controls.values() for c in controls}
    frameworks = []
    for name in request.frameworks:
        framework = resolve_framework(name, sorted(known))
        if framework is None:
            names = sorted({framework_of(c) for c in known})
            raise ComplianceError(f"--framework {name!r}: unknown framework (frameworks: {', '.join(names)})")
        frameworks.append(framework)
    for control in request.controls:
        if control not in known:
            close = sorted(c for c in known if c.split(":")[-1].lower() == control.split(":")[-1].lower())
            hint = f"; did you mean {', '.join(close)}?" if close else " (write it FRAMEWORK:ID, e.g. SOC2:CC7.1)"
            raise ComplianceError(f"--control {control!r}: unknown control{hint}")
    if not frameworks and not request.controls:
        return None, frameworks
    chosen = {c for c in known if framework_of(c) in frameworks} | set(request.controls)
    return chosen, frameworks


def _keep(controls: Iterable[str], selected: set[str] | None) -> list[str]:
    return [c for c in controls if selected is None or c in selected]


# -- exceptions -----------------------------------------------------------------------------


def _result_exceptions(
    records: list[dict[str, Any]],
    later: list[dict[str, Any]],
    runs: dict[str, dict[str, Any]],
    selected: set[str] | None,
) -> list[dict[str, Any]]:
    """Every failed, error or waived record, with how it ended: waived, resolved (by which run) or open."""
    next_pass: dict[str, dict[str, Any]] = {}
    resolution: dict[int, dict[str, Any] | None] = {}
    timeline = [*records, *later]
    # Walk backwards: each failure's resolution is the nearest later passing record of its check.
    for index in range(len(timeline) - 1, -1, -1):
        found = timeline[index]
        if found["outcome"] in ("passed", "warned"):
            next_pass[found["check_id"]] = found
        elif index < len(records):
            resolution[index] = next_pass.get(found["check_id"])
    exceptions = []
    for index, found in enumerate(records):
        if found["outcome"] not in (*FAILING, "waived"):
            continue
        controls = _keep(found["controls"], selected)
        if not controls:
            continue
        run = runs.get(found["run_id"], {})
        waiver = found["waiver"] or None
        exception: dict[str, Any] = {
            "type": "result",
            "date": utc_day(found["run_started_at"]).isoformat(),
            "at": found["run_started_at"],
            "check": found["check_id"],
            "controls": controls,
            "severity": found["severity"],
            "outcome": found["outcome"],
            "message": found["message"],
            "bundle": run.get("bundle"),
            "manifest_sha256": run.get("manifest_sha256"),
            "waiver": waiver,
            "resolved_at": None,
            "resolved_by": None,
        }
        if found["outcome"] == "waived":
            exception["status"] = "waived"
        elif found.get("maintenance"):
            exception["status"] = "maintenance"
            exception["maintenance"] = found["maintenance"]
        else:
            fix = resolution.get(index)
            exception["status"] = "resolved" if fix else "open"
            if fix:
                exception["resolved_at"] = fix["run_started_at"]
                exception["resolved_by"] = (runs.get(fix["run_id"]) or {}).get("bundle") or fix["run_id"]
        exceptions.append(exception)
    return exceptions


# -- controls -------------------------------------------------------------------------------


def _controls(
    request: ReportRequest,
    records: list[dict[str, Any]],
    selected: set[str] | None,
    seen_before: set[tuple[str, str]],
    through: date,
    today: date,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Per control: expected against actual runs per cadence, outcomes, pass rate; and the timing exceptions."""
    outcomes: dict[str, Counter[str]] = defaultdict(Counter)
    checks: dict[str, set[str]] = defaultdict(set)
    ran: dict[tuple[str, str], set[str]] = defaultdict(set)  # (control, cadence) -> period labels with a run
    first_day: dict[tuple[str, str], date] = {}
    worst: dict[str, str] = {}
    for found in records:
        day = utc_day(found["run_started_at"])
        cadence = found["cadence"] or "daily"
        for control in _keep(found["controls"], selected):
            outcomes[control][found["outcome"]] += 1
            checks[control].add(found["check_id"])
            if cadence == "change":
                continue  # checked per change, not per calendar period: the report's changes list them
            ran[(control, cadence)].add(period_of(cadence, day).label)
            first_day.setdefault((control, cadence), day)
            if SEVERITY_RANK.get(found["severity"], 0) > SEVERITY_RANK.get(worst.get(control, ""), 0):
                worst[control] = found["severity"]
    for control in request.controls:  # asked for explicitly: shown even when nothing ran
        outcomes.setdefault(control, Counter())
    timing: dict[tuple[str, str], dict[str, Any]] = {}
    rows = []
    for control in sorted(outcomes, key=control_sort_key):
        cadences: dict[str, dict[str, Any]] = {}
        missed_count = 0
        for (name, cadence), labels in sorted(ran.items()):
            if name != control:
                continue
            start = request.first if (control, cadence) in seen_before else first_day[(control, cadence)]
            expected = _expected_periods(cadence, start, through, today, labels)
            missed = [p for p in expected if p.label not in labels]
            cadences[cadence] = {
                "expected": len(expected),
                "ran": len(expected) - len(missed),
                "missed": [p.label for p in missed],
                "from": start.isoformat(),
            }
            missed_count += len(missed)
            for period in missed:
                key = (cadence, period.label)
                entry = timing.setdefault(key, _timing_exception(cadence, period))
                entry["controls"].append(control)
                if SEVERITY_RANK.get(worst.get(control, "low"), 0) > SEVERITY_RANK.get(entry["severity"], 0):
                    entry["severity"] = worst.get(control, "low")
        counts = outcomes[control]
        judged = sum(n for o, n in counts.items() if o != "skipped")
        passing = counts.get("passed", 0) + counts.get("warned", 0)
        rows.append(
            {
                "control": control,
                "framework": framework_of(control),
                "title": control_title(control),
                "cadences": cadences,
                "checks": len(checks[control]),
                "records": sum(counts.values()),
                "outcomes": dict(sorted(counts.items())),
                "pass_rate": round(passing / judged, 4) if judged else None,
                "timing_exceptions": missed_count,
            }
        )
    return rows, list(timing.values())


def _expected_periods(cadence: str, start: date, through: date, today: date, ran: set[str]) -> list[Period]:
    """The periods of a cadence the control should have run in: complete ones, and the current one if it ran."""
    return [p for p in periods_between(cadence, start, through) if p.end <= today or p.label in ran]


def _timing_exception(cadence: str, period: Period) -> dict[str, Any]:
    what = {"daily": "day", "weekly": "week", "monthly": "month", "quarterly": "quarter", "yearly": "year"}[cadence]
    return {
        "type": "timing",
        "date": period.start.isoformat(),
        "at": period.start_iso,
        "check": None,
        "controls": [],
        "severity": "low",
        "outcome": "missed",
        "message": f"no {cadence} run in the {what} {period.label}",
        "bundle": None,
        "manifest_sha256": None,
        "waiver": None,
        "status": "missed",
        "resolved_at": None,
        "resolved_by": None,
    }


# -- attestations ---------------------------------------------------------------------------


def _attestations(
    history: History,
    request: ReportRequest,
    declared: Declared | None,
    through: date,
    today: date,
    selected: set[str] | None,
    changes: list[str],
) -> list[dict[str, Any]]:
    """Per attestation: the periods of its cadence (or the changes validated in the period) and who attested."""
    stored = attestation_entries(history, request.environment)
    items: dict[str, dict[str, Any]] = {}
    for entry in stored:  # attestations the store knows, as they were declared when attested
        items[entry["attestation_id"]] = {
            "title": entry["title"],
            "cadence": entry["cadence"],
            "controls": entry["controls"] or ["SOX-ITGC:OPS"],
            "attesters": None,
            "declared": False,
        }
    if declared is not None:
        for target in declared.attestations.values():
            items[target.name] = {
                "title": target.title,
                "cadence": target.cadence,
                "controls": list(target.controls) or ["SOX-ITGC:OPS"],
                "attesters": list(target.attesters),
                "declared": True,
            }
    found = []
    for attestation_id, item in sorted(items.items()):
        if selected is not None and not _keep(item["controls"], selected):
            continue
        mine = [e for e in stored if e["attestation_id"] == attestation_id]
        valid: dict[str, list[dict[str, Any]]] = defaultdict(list)
        rejected = []
        for entry in mine:
            day = utc_day(entry["attested_at"])
            if not request.first <= day <= request.last:
                continue
            reason = _entry_problem(history, entry, item)
            shown = {
                "period": _label(item["cadence"], day, entry),
                "attested_by": entry["attested_by"],
                "attested_at": entry["attested_at"],
                "note": entry["note"],
                "evidence_name": entry["evidence_name"],
                "evidence_sha256": entry["evidence_sha256"],
                "entry_sha256": entry["entry_sha256"],
            }
            if reason is None:
                valid[shown["period"]].append(shown)
            else:
                rejected.append({**shown, "reason": reason})
        expected = _expected(item["cadence"], request.first, through, today, valid, changes)
        covered = [p for p in expected if p.label in valid]
        found.append(
            {
                "id": attestation_id,
                **item,
                "expected": len(expected),
                "attested": len(covered),
                "coverage": round(len(covered) / len(expected), 4) if expected else None,
                "missing": [p.label for p in expected if p.label not in valid],
                "entries": [e for p in expected for e in valid.get(p.label, [])],
                "rejected": rejected,
            }
        )
    return found


def _changes(
    changes: list[str], runs: list[dict[str, Any]], attestations: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Each change validated in the period: its runs, and each line of the change checklist, attested or missing."""
    lines = [a for a in attestations if a["cadence"] == "change"]
    return [
        {
            "ticket": ticket,
            "runs": [
                {"bundle": r["bundle"], "started_at": r["started_at"], "status": r["status"]}
                for r in runs
                if r.get("change_ticket") == ticket
            ],
            "checklist": [
                {
                    "id": line["id"],
                    "title": line["title"],
                    "attested": next((e for e in line["entries"] if e["period"] == f"change {ticket}"), None),
                }
                for line in lines
            ],
        }
        for ticket in changes
    ]


def _label(cadence: str, day: date, entry: dict[str, Any]) -> str:
    return f"change {entry.get('change')}" if cadence == "change" else period_of(cadence, day).label


def _expected(
    cadence: str, first: date, through: date, today: date, valid: dict[str, Any], changes: list[str]
) -> list[Period]:
    """The periods an attestation was due in; for a change checklist line, the changes validated in the report."""
    if cadence == "change":
        tickets = sorted({*changes, *(label.removeprefix("change ") for label in valid)})
        return [Period("change", first, through, f"change {ticket}") for ticket in tickets]
    return [p for p in periods_between(cadence, first, through) if p.end <= today or p.label in valid]


def _entry_problem(history: History, entry: dict[str, Any], item: dict[str, Any]) -> str | None:
    if entry_sha256(entry) != entry["entry_sha256"]:
        return "its fields no longer match its hash (edited in the store)"
    attesters = item["attesters"]
    if attesters is not None and "*" not in attesters and entry["attested_by"] not in attesters:
        return f"{entry['attested_by']} is not among the profile's attesters"
    return back_dated(history, entry) or evidence_problem(history, entry)


# -- the daily chart and the summary --------------------------------------------------------


def _days(
    request: ReportRequest,
    records: list[dict[str, Any]],
    runs: list[dict[str, Any]],
    today: date,
) -> list[dict[str, Any]]:
    """One entry per day: overall status, and each control's status, for the chart."""
    by_day: dict[date, list[dict[str, Any]]] = defaultdict(list)
    for found in records:
        by_day[utc_day(found["run_started_at"])].append(found)
    run_days = Counter(utc_day(run["started_at"]) for run in runs)
    days = []
    day = request.first
    while day <= request.last:
        todays = by_day.get(day, [])
        per_control: dict[str, list[str]] = defaultdict(list)
        for found in todays:
            for control in found["controls"]:
                per_control[control].append(_day_outcome(found))
        status = _status(map(_day_outcome, todays)) if todays else ("future" if day >= today else "missed")
        days.append(
            {
                "date": day.isoformat(),
                "status": status,
                "runs": run_days.get(day, 0),
                "outcomes": dict(Counter(r["outcome"] for r in todays)),
                "controls": {c: _status(o) for c, o in per_control.items()},
            }
        )
        day += timedelta(days=1)
    return days


def _day_outcome(record: dict[str, Any]) -> str:
    """A failure inside a maintenance window colours its day `maintenance`, not `failed`."""
    return "maintenance" if record.get("maintenance") and record["outcome"] in FAILING else str(record["outcome"])


def _status(outcomes: Iterable[str]) -> str:
    found = set(outcomes)
    if found & set(FAILING):
        return "failed"
    for status in ("maintenance", "waived", "warned", "passed"):
        if status in found:
            return status
    return "none"


def _summary(
    runs: list[dict[str, Any]],
    records: list[dict[str, Any]],
    selected: set[str] | None,
    controls: list[dict[str, Any]],
    exceptions: list[dict[str, Any]],
    attestations: list[dict[str, Any]],
) -> dict[str, Any]:
    counted = [r for r in records if _keep(r["controls"], selected)]
    judged = [r for r in counted if r["outcome"] != "skipped"]
    passing = sum(1 for r in judged if r["outcome"] in ("passed", "warned"))
    by_status = Counter(e["status"] for e in exceptions)
    expected = sum(a["expected"] for a in attestations)
    attested = sum(a["attested"] for a in attestations)
    return {
        "runs": len(runs),
        "records": len(counted),
        "controls": len(controls),
        "pass_rate": round(passing / len(judged), 4) if judged else None,
        "exceptions": {s: by_status.get(s, 0) for s in ("open", "resolved", "waived", "maintenance", "missed")},
        "attestation_coverage": round(attested / expected, 4) if expected else None,
        "attestations_missing": expected - attested,
        "signed_runs": sum(1 for r in runs if r.get("signed_by")),
        "uploaded_runs": sum(1 for r in runs if r.get("upload")),
    }


def _bundle(run: dict[str, Any]) -> dict[str, Any]:
    return {
        "bundle": run["bundle"],
        "run_id": run["run_id"],
        "started_at": run["started_at"],
        "status": run["status"],
        "exit_code": run["exit_code"],
        "markers": run["markers"],
        "manifest_sha256": run["manifest_sha256"],
        "signed_by": run["signed_by"],
        "change": {
            k: v
            for k, v in (
                ("ticket", run["change_ticket"]),
                ("commit", run["commit_sha"]),
                ("image_digest", run["image_digest"]),
            )
            if v
        },
        "upload": run["upload"],
    }
