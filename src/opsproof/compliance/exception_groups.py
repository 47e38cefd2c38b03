"""The period report's exceptions as rows a reader can take in: a check's consecutive failures are one row.

A check that fails on 30 runs in a row is one finding, not 30: the row says how many runs
and from when to when (`first..last`). A group ends when the check's next record is not an
exception (it passed, warned or was skipped) or when the status changes (a waived stretch,
then the failures after the waiver expired, are two rows). Missed periods of one cadence
that follow one another, with the same controls, are one row too. Every exception keeps
its own entry in report.json and exceptions.csv, numbered with its group.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING

from opsproof.compliance.periods import PERIOD_WORDS, period_of, utc_day
from opsproof.compliance.report_model import EXCEPTION_OUTCOMES, ExceptionGroup, ReportException
from opsproof.outcomes import SEVERITY_RANK

if TYPE_CHECKING:
    from opsproof.compliance.history_rows import RecordRow


def group_exceptions(
    records: Sequence[RecordRow],
    results: Sequence[tuple[RecordRow, ReportException]],
    timing: Sequence[ReportException],
) -> list[ExceptionGroup]:
    """The groups of the exceptions, numbered in time order; each exception gets its group's number.

    `records` are the period's records in run order: they say which failures of a check
    were consecutive (no passing record of it between them). `results` pairs each result
    exception with its record.
    """
    by_record = {id(found): exception for found, exception in results}
    members: list[list[ReportException]] = []
    open_group: dict[str, list[ReportException]] = {}
    for found in records:
        exception = by_record.get(id(found))
        if exception is None:
            if found.outcome not in EXCEPTION_OUTCOMES:
                open_group.pop(found.check_id, None)  # it passed (or was skipped): the stretch ended
            continue  # an exception outside the selected controls neither joins nor ends a stretch
        current = open_group.get(found.check_id)
        if current is not None and current[-1].status == exception.status:
            current.append(exception)
        else:
            open_group[found.check_id] = [exception]
            members.append(open_group[found.check_id])
    members.extend(_timing_stretches(timing))
    members.sort(key=lambda m: (m[0].at, m[0].check or "", m[0].type))
    groups = []
    for number, stretch in enumerate(members, start=1):
        for exception in stretch:
            exception.group = number
        groups.append(_group(number, stretch))
    return groups


def _timing_stretches(timing: Sequence[ReportException]) -> list[list[ReportException]]:
    """Missed periods of one cadence, one after another, missed by the same controls."""
    stretches: list[list[ReportException]] = []
    last: dict[tuple[str, tuple[str, ...]], list[ReportException]] = {}
    for exception in sorted(timing, key=lambda e: e.at):
        cadence = exception.cadence or "daily"
        key = (cadence, tuple(exception.controls))
        current = last.get(key)
        if current is not None and period_of(cadence, utc_day(current[-1].at)).end == utc_day(exception.at):
            current.append(exception)
        else:
            last[key] = [exception]
            stretches.append(last[key])
    return stretches


def _group(number: int, stretch: list[ReportException]) -> ExceptionGroup:
    first, last = stretch[0], stretch[-1]
    controls = list(dict.fromkeys(c for e in stretch for c in e.controls))
    severity = max((e.severity for e in stretch), key=lambda s: SEVERITY_RANK.get(s or "", 0))
    return ExceptionGroup(
        group=number,
        type=first.type,
        check=first.check,
        status=first.status,
        count=len(stretch),
        first=first.date,
        last=last.date,
        first_at=first.at,
        last_at=last.at,
        controls=controls,
        severity=severity,
        outcomes=dict(Counter(e.outcome for e in stretch)),
        message=_missed_message(stretch) if first.type == "timing" and len(stretch) > 1 else last.message,
        messages=len({e.message for e in stretch}),
        waiver=last.waiver,
        maintenance=last.maintenance,
        resolved_at=last.resolved_at,
        resolved_by=last.resolved_by,
        first_bundle=first.bundle,
        first_manifest_sha256=first.manifest_sha256,
        last_bundle=last.bundle,
        last_manifest_sha256=last.manifest_sha256,
    )


def _missed_message(stretch: list[ReportException]) -> str:
    """`no daily run in 3 days, 2026-07-14 to 2026-07-16`: one line for a stretch of missed periods."""
    cadence = stretch[0].cadence or "daily"
    return f"no {cadence} run in {len(stretch)} {PERIOD_WORDS[cadence]}s, {stretch[0].period} to {stretch[-1].period}"
