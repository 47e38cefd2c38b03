"""The period report as CSV: one file per table, for spreadsheets and GRC tools.

- controls.csv      one row per control: expected and actual runs per cadence, outcomes, pass rate
- exceptions.csv    one row per exception: date, control(s), check, severity, message, status, and its
                    group (a check's consecutive failures: how many, first and last day)
- attestations.csv  one row per attestation period: attested (by whom, when) or missing
- bundles.csv       one row per run: bundle, manifest sha256, signature key, upload versions
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Sequence
from typing import Any

from opsproof.compliance.report_model import ControlRow, PeriodReport, ReportException

OUTCOME_COLUMNS = ("passed", "warned", "failed", "error", "waived", "skipped")
CSV_FILES = ("controls.csv", "exceptions.csv", "attestations.csv", "bundles.csv")  # what render_csv returns


def render_csv(report: PeriodReport) -> dict[str, str]:
    """File name -> CSV text."""
    groups = {g.group: g for g in report.exception_groups}
    return {
        "controls.csv": _table(_control_header(), _control_rows(report.controls)),
        "exceptions.csv": _table(
            (
                "date",
                "at",
                "type",
                "controls",
                "check",
                "severity",
                "outcome",
                "message",
                "status",
                "waiver_ticket",
                "waiver_approved_by",
                "waiver_expires",
                "resolved_at",
                "resolved_by",
                "bundle",
                "manifest_sha256",
                "maintenance_window",
                "group",
                "group_count",
                "group_first",
                "group_last",
            ),
            (
                (*_exception_row(e), e.group, groups[e.group].count, groups[e.group].first, groups[e.group].last)
                for e in report.exceptions
            ),
        ),
        "attestations.csv": _table(
            (
                "attestation",
                "title",
                "cadence",
                "controls",
                "period",
                "status",
                "attested_by",
                "attested_at",
                "note",
                "evidence_name",
                "evidence_sha256",
                "entry_sha256",
            ),
            _attestation_rows(report),
        ),
        "bundles.csv": _table(
            (
                "bundle",
                "run_id",
                "started_at",
                "status",
                "exit_code",
                "markers",
                "manifest_sha256",
                "signed_by",
                "change",
                "upload",
            ),
            (
                (
                    b.bundle,
                    b.run_id,
                    b.started_at,
                    b.status,
                    b.exit_code,
                    b.markers,
                    b.manifest_sha256,
                    b.signed_by,
                    " ".join(f"{k}={v}" for k, v in b.change.items()),
                    json.dumps(b.upload) if b.upload else "",
                )
                for b in report.bundles
            ),
        ),
    }


def _table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow(["" if value is None else _safe(value) for value in row])
    return out.getvalue()


def _safe(value: Any) -> Any:
    # A cell starting with = + - @ runs as a formula in spreadsheets; messages come from remote servers.
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def _control_header() -> tuple[str, ...]:
    return (
        "control",
        "framework",
        "title",
        "cadences",
        "expected_runs",
        "runs",
        "missed",
        "checks",
        "records",
        *OUTCOME_COLUMNS,
        "pass_rate",
    )


def _control_rows(controls: list[ControlRow]) -> Iterable[Sequence[Any]]:
    for control in controls:
        cadences = control.cadences
        yield (
            control.control,
            control.framework,
            control.title,
            " ".join(sorted(cadences)),
            sum(c.expected for c in cadences.values()),
            sum(c.ran for c in cadences.values()),
            " ".join(label for c in cadences.values() for label in c.missed),
            control.checks,
            control.records,
            *(control.outcomes.get(o, 0) for o in OUTCOME_COLUMNS),
            control.pass_rate,
        )


def _exception_row(exception: ReportException) -> tuple[Any, ...]:
    waiver = exception.waiver
    return (
        exception.date,
        exception.at,
        exception.type,
        " ".join(exception.controls),
        exception.check,
        exception.severity,
        exception.outcome,
        exception.message,
        exception.status,
        waiver.ticket if waiver else None,
        waiver.approved_by if waiver else None,
        waiver.expires if waiver else None,
        exception.resolved_at,
        exception.resolved_by,
        exception.bundle,
        exception.manifest_sha256,
        exception.maintenance.name if exception.maintenance else None,
    )


def _attestation_rows(report: PeriodReport) -> Iterable[Sequence[Any]]:
    for item in report.attestations:
        common = (item.id, item.title, item.cadence, " ".join(item.controls))
        for entry in item.entries:
            yield (
                *common,
                entry.period,
                "attested",
                entry.attested_by,
                entry.attested_at,
                entry.note,
                entry.evidence_name,
                entry.evidence_sha256,
                entry.entry_sha256,
            )
        for label in item.missing:
            yield (*common, label, "missing", None, None, None, None, None, None)
