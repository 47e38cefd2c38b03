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
from opsproof.compliance.exception_groups import group_exceptions
from opsproof.compliance.periods import PERIOD_WORDS, Period, period_of, periods_between, utc_day
from opsproof.compliance.report_model import (
    EXCEPTION_OUTCOMES,
    EXCEPTION_STATUSES,
    SCHEMA,
    AttestationEntry,
    AttestationRow,
    BundleRow,
    CadenceRuns,
    ChangeRow,
    ChangeRun,
    ChecklistLine,
    ControlRow,
    DayRow,
    ExceptionCounts,
    ExceptionStatus,
    PeriodReport,
    RejectedEntry,
    ReportException,
    ReportSummary,
    Span,
)
from opsproof.model.controls import control_sort_key, control_title, framework_of, resolve_framework
from opsproof.outcomes import SEVERITY_RANK
from opsproof.units import format_utc

if TYPE_CHECKING:
    from opsproof.compliance.declared import Declared
    from opsproof.compliance.history import History
    from opsproof.compliance.history_rows import RecordRow, RunRow

__all__ = ["SCHEMA", "ReportRequest", "build_report", "check_period", "last_complete", "parse_day"]
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


def build_report(history: History, request: ReportRequest, declared: Declared | None = None) -> PeriodReport:
    """The whole report; ComplianceError for an unknown environment, framework or control."""
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
    later = history.records(request.environment, end_iso, format_utc(request.now + timedelta(days=1)))
    seen_before = _seen_before(history, request.environment, start_iso)

    selected, frameworks = _select_controls(request, records, declared)
    runs_by_id = {run.run_id: run for run in runs}
    results = _result_exceptions(records, later, runs_by_id, selected)
    controls, timing = _controls(request, records, selected, seen_before, through, today)
    exceptions = sorted([*(e for _, e in results), *timing], key=lambda e: (e.at, e.check or "", e.type))
    groups = group_exceptions(records, results, timing)
    changes = sorted({run.change_ticket for run in runs if run.change_ticket})
    attestations = _attestations(history, request, declared, through, today, selected, changes)
    return PeriodReport(
        environment=request.environment,
        period=Span(
            from_=request.first.isoformat(),
            to=request.last.isoformat(),
            through=through.isoformat(),
            days=(request.last - request.first).days + 1,
        ),
        frameworks=frameworks,
        controls_requested=list(request.controls),
        generated_at=format_utc(request.now),
        history=history.location.shown,
        profile=declared.path if declared else None,
        summary=_summary(runs, records, selected, controls, exceptions, attestations),
        controls=controls,
        exceptions=exceptions,
        exception_groups=groups,
        attestations=attestations,
        changes=_changes(changes, runs, attestations),
        days=_days(request, records, runs, today),
        bundles=[_bundle(run) for run in runs],
    )


def _seen_before(history: History, environment: str, start_iso: str) -> set[tuple[str, str]]:
    """(control, cadence) pairs that ran before the report's period: those are expected from its first day."""
    rows = history.execute(
        "SELECT DISTINCT r.controls, r.cadence FROM records r JOIN runs u ON u.run_id = r.run_id "
        "WHERE u.environment = ? AND u.started_at < ?",
        (environment, start_iso),
    )
    return {(control, str(cadence)) for controls, cadence in rows for control in json.loads(controls)}


def _select_controls(
    request: ReportRequest, records: list[RecordRow], declared: Declared | None
) -> tuple[set[str] | None, list[str]]:
    """The controls the report covers (None: all) and the frameworks asked for, by their catalogue names.

    An unknown framework or control is a usage error.
    """
    from opsproof.model.controls import CONTROLS
    from opsproof.targets import catalogue

    known = {c for r in records for c in r.controls} | set(CONTROLS)
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
    records: list[RecordRow],
    later: list[RecordRow],
    runs: dict[str, RunRow],
    selected: set[str] | None,
) -> list[tuple[RecordRow, ReportException]]:
    """Every failed, error or waived record, with its exception: waived, resolved (by which run) or open."""
    next_pass: dict[str, RecordRow] = {}
    resolution: dict[int, RecordRow | None] = {}
    timeline = [*records, *later]
    # Walk backwards: each failure's resolution is the nearest later passing record of its check.
    for index in range(len(timeline) - 1, -1, -1):
        found = timeline[index]
        if found.outcome in ("passed", "warned"):
            next_pass[found.check_id] = found
        elif index < len(records):
            resolution[index] = next_pass.get(found.check_id)
    exceptions = []
    for index, found in enumerate(records):
        if found.outcome not in EXCEPTION_OUTCOMES:
            continue
        controls = _keep(found.controls, selected)
        if not controls:
            continue
        run = runs.get(found.run_id)
        fix = resolution.get(index)
        status: ExceptionStatus
        if found.outcome == "waived":
            status = "waived"
        elif found.maintenance is not None:
            status = "maintenance"
        else:
            status = "resolved" if fix else "open"
        exception = ReportException(
            type="result",
            date=utc_day(found.run_started_at).isoformat(),
            at=found.run_started_at,
            check=found.check_id,
            controls=controls,
            severity=found.severity,
            outcome=found.outcome,
            message=found.message,
            bundle=run.bundle if run else None,
            manifest_sha256=run.manifest_sha256 if run else None,
            waiver=found.waiver,
            resolved_at=fix.run_started_at if status == "resolved" and fix else None,
            resolved_by=_resolved_by(fix, runs) if status == "resolved" and fix else None,
            status=status,
        )
        if status == "maintenance":
            exception.maintenance = found.maintenance
        exceptions.append((found, exception))
    return exceptions


def _resolved_by(fix: RecordRow, runs: dict[str, RunRow]) -> str:
    """The bundle of the passing run that resolved a failure (its run id when the run is outside the report)."""
    run = runs.get(fix.run_id)
    return run.bundle if run else fix.run_id


# -- controls -------------------------------------------------------------------------------


def _controls(
    request: ReportRequest,
    records: list[RecordRow],
    selected: set[str] | None,
    seen_before: set[tuple[str, str]],
    through: date,
    today: date,
) -> tuple[list[ControlRow], list[ReportException]]:
    """Per control: expected against actual runs per cadence, outcomes, pass rate; and the timing exceptions."""
    outcomes: dict[str, Counter[str]] = defaultdict(Counter)
    checks: dict[str, set[str]] = defaultdict(set)
    ran: dict[tuple[str, str], set[str]] = defaultdict(set)  # (control, cadence) -> period labels with a run
    first_day: dict[tuple[str, str], date] = {}
    worst: dict[str, str] = {}
    for found in records:
        day = utc_day(found.run_started_at)
        cadence = found.cadence or "daily"
        for control in _keep(found.controls, selected):
            outcomes[control][found.outcome] += 1
            checks[control].add(found.check_id)
            if cadence == "change":
                continue  # checked per change, not per calendar period: the report's changes list them
            ran[(control, cadence)].add(period_of(cadence, day).label)
            first_day.setdefault((control, cadence), day)
            if SEVERITY_RANK.get(found.severity or "", 0) > SEVERITY_RANK.get(worst.get(control, ""), 0):
                worst[control] = found.severity or ""
    for control in request.controls:  # asked for explicitly: shown even when nothing ran
        outcomes.setdefault(control, Counter())
    timing: dict[tuple[str, str], ReportException] = {}
    rows = []
    for control in sorted(outcomes, key=control_sort_key):
        cadences: dict[str, CadenceRuns] = {}
        missed_count = 0
        for (name, cadence), labels in sorted(ran.items()):
            if name != control:
                continue
            start = request.first if (control, cadence) in seen_before else first_day[(control, cadence)]
            expected = _expected_periods(cadence, start, through, today, labels)
            missed = [p for p in expected if p.label not in labels]
            cadences[cadence] = CadenceRuns(
                expected=len(expected),
                ran=len(expected) - len(missed),
                missed=[p.label for p in missed],
                from_=start.isoformat(),
            )
            missed_count += len(missed)
            for period in missed:
                entry = timing.setdefault((cadence, period.label), _timing_exception(cadence, period))
                entry.controls.append(control)
                if SEVERITY_RANK.get(worst.get(control, "low"), 0) > SEVERITY_RANK.get(entry.severity or "", 0):
                    entry.severity = worst.get(control, "low")
        counts = outcomes[control]
        judged = sum(n for o, n in counts.items() if o != "skipped")
        passing = counts.get("passed", 0) + counts.get("warned", 0)
        rows.append(
            ControlRow(
                control=control,
                framework=framework_of(control),
                title=control_title(control),
                cadences=cadences,
                checks=len(checks[control]),
                records=sum(counts.values()),
                outcomes=dict(sorted(counts.items())),
                pass_rate=round(passing / judged, 4) if judged else None,
                timing_exceptions=missed_count,
            )
        )
    return rows, list(timing.values())


def _expected_periods(cadence: str, start: date, through: date, today: date, ran: set[str]) -> list[Period]:
    """The periods of a cadence the control should have run in: complete ones, and the current one if it ran."""
    return [p for p in periods_between(cadence, start, through) if p.end <= today or p.label in ran]


def _timing_exception(cadence: str, period: Period) -> ReportException:
    return ReportException(
        type="timing",
        date=period.start.isoformat(),
        at=period.start_iso,
        check=None,
        controls=[],
        severity="low",
        outcome="missed",
        message=f"no {cadence} run in the {PERIOD_WORDS[cadence]} {period.label}",
        bundle=None,
        manifest_sha256=None,
        waiver=None,
        resolved_at=None,
        resolved_by=None,
        status="missed",
        cadence=cadence,
        period=period.label,
    )


# -- attestations ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Attestable:
    """An attestation the report covers, as declared in the profile or (without one) when it was attested."""

    title: str | None
    cadence: str
    controls: list[str]
    attesters: list[str] | None  # None: no profile says who may attest
    declared: bool


def _attestations(
    history: History,
    request: ReportRequest,
    declared: Declared | None,
    through: date,
    today: date,
    selected: set[str] | None,
    changes: list[str],
) -> list[AttestationRow]:
    """Per attestation: the periods of its cadence (or the changes validated in the period) and who attested."""
    stored = attestation_entries(history, request.environment)
    items: dict[str, _Attestable] = {}
    for entry in stored:  # attestations the store knows, as they were declared when attested
        controls = entry["controls"] or ["SOX-ITGC:OPS"]
        items[entry["attestation_id"]] = _Attestable(entry["title"], entry["cadence"], controls, None, False)
    if declared is not None:
        for target in declared.attestations.values():
            controls = list(target.controls) or ["SOX-ITGC:OPS"]
            items[target.name] = _Attestable(target.title, target.cadence, controls, list(target.attesters), True)
    found = []
    for attestation_id, item in sorted(items.items()):
        if selected is not None and not _keep(item.controls, selected):
            continue
        valid: dict[str, list[AttestationEntry]] = defaultdict(list)
        rejected = []
        for entry in (e for e in stored if e["attestation_id"] == attestation_id):
            day = utc_day(entry["attested_at"])
            if not request.first <= day <= request.last:
                continue
            shown = AttestationEntry(
                period=_label(item.cadence, day, entry),
                attested_by=entry["attested_by"],
                attested_at=entry["attested_at"],
                note=entry["note"],
                evidence_name=entry["evidence_name"],
                evidence_sha256=entry["evidence_sha256"],
                entry_sha256=entry["entry_sha256"],
            )
            reason = _entry_problem(history, entry, item)
            if reason is None:
                valid[shown.period].append(shown)
            else:
                rejected.append(RejectedEntry(**shown.model_dump(), reason=reason))
        expected = _expected(item.cadence, request.first, through, today, valid, changes)
        covered = [p for p in expected if p.label in valid]
        found.append(
            AttestationRow(
                id=attestation_id,
                title=item.title,
                cadence=item.cadence,
                controls=item.controls,
                attesters=item.attesters,
                declared=item.declared,
                expected=len(expected),
                attested=len(covered),
                coverage=round(len(covered) / len(expected), 4) if expected else None,
                missing=[p.label for p in expected if p.label not in valid],
                entries=[e for p in expected for e in valid.get(p.label, [])],
                rejected=rejected,
            )
        )
    return found


def _changes(changes: list[str], runs: list[RunRow], attestations: list[AttestationRow]) -> list[ChangeRow]:
    """Each change validated in the period: its runs, and each line of the change checklist, attested or missing."""
    lines = [a for a in attestations if a.cadence == "change"]
    return [
        ChangeRow(
            ticket=ticket,
            runs=[
                ChangeRun(bundle=r.bundle, started_at=r.started_at, status=r.status)
                for r in runs
                if r.change_ticket == ticket
            ],
            checklist=[
                ChecklistLine(
                    id=line.id,
                    title=line.title,
                    attested=next((e for e in line.entries if e.period == f"change {ticket}"), None),
                )
                for line in lines
            ],
        )
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


def _entry_problem(history: History, entry: dict[str, Any], item: _Attestable) -> str | None:
    if entry_sha256(entry) != entry["entry_sha256"]:
        return "its fields no longer match its hash (edited in the store)"
    attesters = item.attesters
    if attesters is not None and "*" not in attesters and entry["attested_by"] not in attesters:
        return f"{entry['attested_by']} is not among the profile's attesters"
    return back_dated(history, entry) or evidence_problem(history, entry)


# -- the daily chart and the summary --------------------------------------------------------


def _days(request: ReportRequest, records: list[RecordRow], runs: list[RunRow], today: date) -> list[DayRow]:
    """One entry per day: overall status, and each control's status, for the chart."""
    by_day: dict[date, list[RecordRow]] = defaultdict(list)
    for found in records:
        by_day[utc_day(found.run_started_at)].append(found)
    run_days = Counter(utc_day(run.started_at) for run in runs)
    days = []
    day = request.first
    while day <= request.last:
        todays = by_day.get(day, [])
        per_control: dict[str, list[str]] = defaultdict(list)
        for found in todays:
            for control in found.controls:
                per_control[control].append(_day_outcome(found))
        status = _status(map(_day_outcome, todays)) if todays else ("future" if day >= today else "missed")
        days.append(
            DayRow(
                date=day.isoformat(),
                status=status,
                runs=run_days.get(day, 0),
                outcomes=dict(Counter(r.outcome for r in todays)),
                controls={c: _status(o) for c, o in per_control.items()},
            )
        )
        day += timedelta(days=1)
    return days


def _day_outcome(record: RecordRow) -> str:
    """A failure inside a maintenance window colours its day `maintenance`, not `failed`."""
    return "maintenance" if record.maintenance is not None and record.failing else record.outcome


def _status(outcomes: Iterable[str]) -> str:
    found = set(outcomes)
    if found & set(FAILING):
        return "failed"
    for status in ("maintenance", "waived", "warned", "passed"):
        if status in found:
            return status
    return "none"


def _summary(
    runs: list[RunRow],
    records: list[RecordRow],
    selected: set[str] | None,
    controls: list[ControlRow],
    exceptions: list[ReportException],
    attestations: list[AttestationRow],
) -> ReportSummary:
    counted = [r for r in records if _keep(r.controls, selected)]
    judged = [r for r in counted if r.outcome != "skipped"]
    passing = sum(1 for r in judged if r.outcome in ("passed", "warned"))
    by_status = Counter(e.status for e in exceptions)
    expected = sum(a.expected for a in attestations)
    attested = sum(a.attested for a in attestations)
    return ReportSummary(
        runs=len(runs),
        records=len(counted),
        controls=len(controls),
        pass_rate=round(passing / len(judged), 4) if judged else None,
        exceptions=ExceptionCounts(**{s: by_status.get(s, 0) for s in EXCEPTION_STATUSES}),
        attestation_coverage=round(attested / expected, 4) if expected else None,
        attestations_missing=expected - attested,
        signed_runs=sum(1 for r in runs if r.signed_by),
        uploaded_runs=sum(1 for r in runs if r.upload),
    )


def _bundle(run: RunRow) -> BundleRow:
    change = (("ticket", run.change_ticket), ("commit", run.commit_sha), ("image_digest", run.image_digest))
    return BundleRow(
        bundle=run.bundle,
        run_id=run.run_id,
        started_at=run.started_at,
        status=run.status,
        exit_code=run.exit_code,
        markers=run.markers,
        manifest_sha256=run.manifest_sha256,
        signed_by=run.signed_by,
        change={k: v for k, v in change if v},
        upload=run.upload,
    )
