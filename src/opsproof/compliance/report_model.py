"""The period report (report.json, schema `opsproof/period-report/v1`) as typed models.

`opsproof.compliance.period.build_report` makes a `PeriodReport`; report.html, report.json
and the CSV files are rendered from it. `dump()` gives the document as report.json holds
it (`from` keys spelled `from`, optional keys only where they were set)::

    report = build_report(history, ReportRequest("prod", date(2026, 7, 1), date(2026, 9, 30)))
    for group in report.exception_groups:
        print(group.check, group.status, group.count, group.first, group.last)
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from opsproof.model.results import Maintenance, Waiver

SCHEMA: Literal["opsproof/period-report/v1"] = "opsproof/period-report/v1"

ExceptionStatus = Literal["open", "resolved", "waived", "maintenance", "missed"]
EXCEPTION_STATUSES: tuple[ExceptionStatus, ...] = ("open", "resolved", "waived", "maintenance", "missed")
# The outcomes a record is an exception of the report for.
EXCEPTION_OUTCOMES = ("failed", "error", "waived")


class _Part(BaseModel):
    # Written by this module only: a misspelt field is a bug, not a newer document.
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class Span(_Part):
    """The days a report covers; `through` is the last day already over (a report of a period in progress)."""

    from_: str = Field(alias="from")
    to: str
    through: str
    days: int


class CadenceRuns(_Part):
    """One cadence of a control: periods expected, periods with a run, the missed ones, counted from `from`."""

    expected: int
    ran: int
    missed: list[str]
    from_: str = Field(alias="from")


class ControlRow(_Part):
    control: str
    framework: str
    title: str | None
    cadences: dict[str, CadenceRuns]
    checks: int
    records: int
    outcomes: dict[str, int]
    pass_rate: float | None
    timing_exceptions: int


class ReportException(_Part):
    """One failed, error or waived record (`type: result`), or one period without a run (`type: timing`)."""

    type: Literal["result", "timing"]
    date: str
    at: str
    check: str | None
    controls: list[str]
    severity: str | None
    outcome: str
    message: str | None
    bundle: str | None
    manifest_sha256: str | None
    waiver: Waiver | None
    resolved_at: str | None
    resolved_by: str | None
    status: ExceptionStatus
    maintenance: Maintenance | None = None
    cadence: str | None = Field(None, description="a timing exception's cadence")
    period: str | None = Field(None, description="a timing exception's period: 2026-07-14, 2026-W29, 2026-07...")
    group: int = Field(0, description="the number of its row in `exception_groups` (1 is the first)")


class ExceptionGroup(_Part):
    """One row of the report's exceptions: a check's consecutive exceptions of one status, or missed periods in a row.

    A check that fails three runs in a row, passes, then fails again is two groups. A
    waived stretch and the failures after its waiver expired are two groups too: their
    statuses differ.
    """

    group: int
    type: Literal["result", "timing"]
    check: str | None
    status: ExceptionStatus
    count: int = Field(description="the exceptions (runs, or missed periods) in the group")
    first: str = Field(description="the day of the first one")
    last: str = Field(description="the day of the last one")
    first_at: str
    last_at: str
    controls: list[str]
    severity: str | None = Field(description="the highest among them")
    outcomes: dict[str, int]
    message: str | None = Field(description="the last one's message")
    messages: int = Field(description="how many different messages the group holds")
    waiver: Waiver | None
    maintenance: Maintenance | None
    resolved_at: str | None
    resolved_by: str | None
    first_bundle: str | None
    first_manifest_sha256: str | None
    last_bundle: str | None
    last_manifest_sha256: str | None


class AttestationEntry(_Part):
    period: str
    attested_by: str
    attested_at: str
    note: str
    evidence_name: str | None
    evidence_sha256: str | None
    entry_sha256: str


class RejectedEntry(AttestationEntry):
    reason: str


class AttestationRow(_Part):
    id: str
    title: str | None
    cadence: str
    controls: list[str]
    attesters: list[str] | None = Field(description="the profile's attesters; null when no profile declared it")
    declared: bool
    expected: int
    attested: int
    coverage: float | None
    missing: list[str]
    entries: list[AttestationEntry]
    rejected: list[RejectedEntry]


class ChangeRun(_Part):
    bundle: str
    started_at: str
    status: str


class ChecklistLine(_Part):
    id: str
    title: str | None
    attested: AttestationEntry | None


class ChangeRow(_Part):
    ticket: str
    runs: list[ChangeRun]
    checklist: list[ChecklistLine]


class DayRow(_Part):
    date: str
    status: str
    runs: int
    outcomes: dict[str, int]
    controls: dict[str, str]


class ExceptionCounts(_Part):
    open: int
    resolved: int
    waived: int
    maintenance: int
    missed: int


class ReportSummary(_Part):
    runs: int
    records: int
    controls: int
    pass_rate: float | None
    exceptions: ExceptionCounts
    attestation_coverage: float | None
    attestations_missing: int
    signed_runs: int
    uploaded_runs: int


class BundleRow(_Part):
    bundle: str
    run_id: str
    started_at: str
    status: str
    exit_code: int | None
    markers: str | None
    manifest_sha256: str
    signed_by: str | None
    change: dict[str, str]
    upload: dict[str, Any] | None


class PeriodReport(_Part):
    schema_: Literal["opsproof/period-report/v1"] = Field(SCHEMA, alias="schema")
    environment: str
    period: Span
    frameworks: list[str]
    controls_requested: list[str]
    generated_at: str
    history: str
    profile: str | None
    summary: ReportSummary
    controls: list[ControlRow]
    exceptions: list[ReportException]
    exception_groups: list[ExceptionGroup]
    attestations: list[AttestationRow]
    changes: list[ChangeRow]
    days: list[DayRow]
    bundles: list[BundleRow]

    def dump(self) -> dict[str, Any]:
        """report.json's document (python values; json.dumps renders it)."""
        return {"schema": self.schema_, **self.model_dump(by_alias=True, exclude_unset=True, exclude={"schema_"})}
