"""The results document (results.json, CONTRACT §4) as typed models: a check record, a run, a summary.

Every writer and reader of a bundle's results takes these: results.json, junit.xml,
report.html, the terminal summary, the history. `opsproof schema --results` prints
their JSON Schema::

    results = Results.model_validate_json((bundle / "results.json").read_text())
    for record in results.checks:
        print(record.check, record.outcome, record.message)

`dump()` gives the document as written: keys in this order, and the optional keys
(`waiver`, `maintenance`, `interrupted_by`, `collection_errors`, `shard`, `shards`) only where they were set.
"""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:
    from opsproof.redaction import Redactor

SCHEMA = "opsproof/results/v1"

Outcome = Literal["passed", "warned", "failed", "error", "skipped", "waived"]
Severity = Literal["critical", "high", "medium", "low"]


def free_text(description: str | None = None) -> Any:
    """A field of free text (a message, observed values, the command): the only kind the redactor rewrites.

    Every other field is structure (outcomes, ids, names, severities, markers, keys) and is
    never rewritten: a secret `pass` must not turn the outcome `passed` into `${PW}ed`.
    """
    return Field(description=description, json_schema_extra={"free_text": True})


@cache  # asked for every record a run makes
def free_text_fields(model: type[BaseModel]) -> tuple[str, ...]:
    """The names of `model`'s free-text fields."""
    return tuple(
        name
        for name, field in model.model_fields.items()
        if isinstance(field.json_schema_extra, dict) and field.json_schema_extra.get("free_text")
    )


class _Model(BaseModel):
    # Readers take documents written by other versions: keys this one does not know are kept.
    model_config = ConfigDict(extra="allow")

    def dump(self) -> dict[str, Any]:
        """The document as written (python values; json.dumps renders it)."""
        return self.model_dump(exclude_unset=True)


class Waiver(_Model):
    """The waiver that matched a failing check: `applied` (the check is waived) or `expired`."""

    check: str = Field(description="the waiver's glob over check ids")
    reason: str = Field(description="why the failure is accepted")
    ticket: str = Field(description="the ticket that tracks it")
    approved_by: str = Field(description="who approved the waiver")
    expires: str = Field(description="the last day the waiver applies (YYYY-MM-DD)")
    status: Literal["applied", "expired"] | None = Field(None, description="absent for an unmatched waiver")


class Maintenance(_Model):
    """The maintenance window a failing check fell in: it keeps its outcome, neither pages nor blocks."""

    name: str
    checks: str = Field(description="the window's glob over check ids")
    schedule: str = Field(description="`tue 02:00-04:00 America/Los_Angeles` or `<from> to <to>` (UTC)")
    ticket: str | None = None


class AppliedWindow(Maintenance):
    records: int = Field(description="records of the run the window covered")


class MaintenanceTotals(_Model):
    applied: list[AppliedWindow] = Field(description="windows that covered a failing check")
    unmatched: list[Maintenance] = Field(description="windows that matched no check of the run")


class CheckRecord(_Model):
    """One check's record."""

    id: str = Field(description="the pytest node id")
    check: str = Field(description="the short stable id: kind.aspect[target]")
    kind: str = Field(description="the profile section: http, tls, postgres...")
    target: str | None = Field(description="the profile item's name")
    markers: list[str] = Field(description="the check's cadence, area and stage markers")
    controls: list[str] = Field(description="FRAMEWORK:CONTROL ids this check gives evidence for")
    severity: Severity = Field(description="from the item's critical: or severity:")
    outcome: Outcome = Field(description="passed, warned, failed, error, skipped or waived")
    message: str = free_text("what was seen, or why it is not as expected")
    observed: dict[str, Any] = free_text("the measured facts")
    expected: dict[str, Any] = free_text("the thresholds and expectations it was judged against")
    started_at: str = Field(description="UTC ISO 8601")
    duration_s: float = Field(description="how long the check took, in seconds")
    phase: Literal["setup", "call", "teardown"] = Field(description="the pytest phase the outcome comes from")
    measures: dict[str, float] | None = Field(
        None, description="numbers kept in the history for later runs' `increase:` and `trend:` (absent: none)"
    )
    waiver: Waiver | None = None
    maintenance: Maintenance | None = Field(None, description="set on a failed/error record inside a window")


class ProfileRef(_Model):
    """The profile the run read."""

    path: str = Field(description="the profile file read")
    sha256: str = Field(description="of the file's bytes")


class Selection(_Model):
    """What the run selected."""

    markers: str | None = Field(description="the -m expression")
    keywords: str | None = Field(description="the -k expression")
    paths: list[str] = Field(description="test paths given on the command line")


class Suite(_Model):
    """The opsproof that ran."""

    version: str = Field(description="opsproof's version")
    commit: str | None = Field(description="the git commit of the checkout the run started in, where it is one")


class Run(_Model):
    """Who ran what, where, when, and how it ended."""

    id: str = Field(description="the run's id (the last part of the bundle's name)")
    environment: str = Field(description="the profile's environment")
    profile: ProfileRef = free_text("the profile's path and sha256")
    started_at: str = Field(description="UTC ISO 8601")
    finished_at: str = Field(description="UTC ISO 8601")
    selection: Selection = free_text()
    suite: Suite
    host: str = free_text("the machine that ran it")
    user: str = free_text("the OS user that ran it")
    command: str = free_text("the command line, secrets redacted")
    status: Literal["passed", "failed", "interrupted", "internal_error", "usage_error", "no_checks"] = Field(
        description="how the run ended"
    )
    exit_code: int = Field(description="the exit status")
    fail_on: str = Field(description="the --fail-on level")
    vars: dict[str, str] = Field(description="the plain `${vars.NAME}` values the profile used")
    change: dict[str, Any] | None = free_text("the change this run validated, and where each part came from")
    interrupted_by: str | None = Field(None, description="the signal that interrupted it")
    collection_errors: int | None = Field(None, description="collection errors (checks modules that did not import)")
    shard: ShardRef | None = Field(None, description="a shard's bundle: which shard of which run (--shard, --zone)")
    shards: list[ShardReport] | None = Field(None, description="a sealed run (opsproof seal-run): each shard's part")


class ShardRef(_Model):
    """Shard `index` of `count` (within `zone`, if any) of run `run`, and the items it owned."""

    run: str
    index: int
    count: int
    zone: str | None
    items: dict[str, list[str]] = Field(description="item names by kind")


class ShardReport(_Model):
    """One shard of a sealed run: its bundle (when one verified) or why it did not report."""

    index: int
    count: int
    zone: str | None
    reported: bool = Field(description="false: its checks are `error` records saying why")
    bundle: str | None = None
    manifest_sha256: str | None = None
    status: str | None = None
    host: str | None = None
    started_at: str | None = None
    finished_at: str | None = None
    checks: int | None = None
    problem: str | None = None
    other_bundles: list[dict[str, Any]] | None = Field(None, description="earlier or unverifiable attempts")


class WaiverTotals(_Model):
    """The waivers of the run."""

    applied: list[str] = Field(description="tickets of the waivers applied")
    expired: list[str] = Field(description="tickets of the expired waivers that matched a failing check")
    unmatched: list[Waiver] = Field(description="waivers that matched no check of the run")


class Summary(_Model):
    """Totals of the run."""

    total: int = Field(description="checks recorded")
    by_outcome: dict[str, int] = Field(description="checks per outcome")
    by_severity: dict[str, dict[str, int]] = Field(description="checks per severity, then per outcome")
    blocking: list[str] = Field(description="check ids of the blocking outcomes")
    waivers: WaiverTotals
    maintenance: MaintenanceTotals | None = Field(None, description="absent in results written before windows")


class Results(_Model):
    """results.json."""

    schema_: Literal["opsproof/results/v1"] = Field(
        "opsproof/results/v1", alias="schema", description="the document's format and version"
    )
    run: Run
    checks: list[CheckRecord] = Field(description="one record per check")
    summary: Summary

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    def dump(self) -> dict[str, Any]:
        return {"schema": self.schema_, **self.model_dump(exclude_unset=True, exclude={"schema_"})}

    def redacted(self, redactor: Redactor) -> Results:
        """A copy with the free text of the run and of every record redacted; structure untouched."""
        if not redactor:
            return self
        data = self.dump()
        data["run"] = redactor.redact_fields(data["run"], free_text_fields(Run))
        data["checks"] = [redactor.redact_fields(check, free_text_fields(CheckRecord)) for check in data["checks"]]
        return Results.model_validate(data)


def results_json_schema() -> dict[str, Any]:
    """The JSON Schema of results.json."""
    schema = Results.model_json_schema(by_alias=True, mode="serialization")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "opsproof results (results.json)"
    return schema
