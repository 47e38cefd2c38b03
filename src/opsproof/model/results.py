"""The results document (results.json, CONTRACT §4) as typed models: a check record, a run, a summary.

Every writer and reader of a bundle's results takes these: results.json, junit.xml,
report.html, the terminal summary, the history. `opsproof schema --results` prints
their JSON Schema::

    results = Results.model_validate_json((bundle / "results.json").read_text())
    for record in results.checks:
        print(record.check, record.outcome, record.message)

`dump()` gives the document as written: keys in this order, and the optional keys
(`waiver`, `interrupted_by`, `collection_errors`, `shard`, `shards`) only where they were set.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

SCHEMA = "opsproof/results/v1"

Outcome = Literal["passed", "warned", "failed", "error", "skipped", "waived"]
Severity = Literal["critical", "high", "medium", "low"]


class _Model(BaseModel):
    # Readers take documents written by other versions: keys this one does not know are kept.
    model_config = ConfigDict(extra="allow")

    def dump(self) -> dict[str, Any]:
        """The document as written (python values; json.dumps renders it)."""
        return self.model_dump(exclude_unset=True)


class Waiver(_Model):
    """The waiver that matched a failing check: `applied` (the check is waived) or `expired`."""

    check: str = Field(description="the waiver's glob over check ids")
    reason: str
    ticket: str
    approved_by: str
    expires: str = Field(description="the last day the waiver applies (YYYY-MM-DD)")
    status: Literal["applied", "expired"] | None = Field(None, description="absent for an unmatched waiver")


class CheckRecord(_Model):
    """One check's record."""

    id: str = Field(description="the pytest node id")
    check: str = Field(description="the short stable id: kind.aspect[target]")
    kind: str
    target: str | None = Field(description="the profile item's name")
    markers: list[str]
    controls: list[str] = Field(description="FRAMEWORK:CONTROL ids this check gives evidence for")
    severity: Severity
    outcome: Outcome
    message: str
    observed: dict[str, Any] = Field(description="the measured facts")
    expected: dict[str, Any]
    started_at: str = Field(description="UTC ISO 8601")
    duration_s: float
    phase: Literal["setup", "call", "teardown"] = Field(description="the pytest phase the outcome comes from")
    waiver: Waiver | None = None


class ProfileRef(_Model):
    path: str
    sha256: str


class Selection(_Model):
    markers: str | None
    keywords: str | None
    paths: list[str]


class Suite(_Model):
    version: str
    commit: str | None


class Run(_Model):
    """Who ran what, where, when, and how it ended."""

    id: str
    environment: str
    profile: ProfileRef
    started_at: str = Field(description="UTC ISO 8601")
    finished_at: str = Field(description="UTC ISO 8601")
    selection: Selection
    suite: Suite
    host: str
    user: str
    command: str
    status: Literal["passed", "failed", "interrupted", "internal_error", "usage_error", "no_checks"]
    exit_code: int
    fail_on: str
    vars: dict[str, str] = Field(description="the plain `${vars.NAME}` values the profile used")
    change: dict[str, Any] | None = Field(description="the change this run validated, and where each part came from")
    interrupted_by: str | None = None
    collection_errors: int | None = None
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
    applied: list[str] = Field(description="tickets of the waivers applied")
    expired: list[str] = Field(description="tickets of the expired waivers that matched a failing check")
    unmatched: list[Waiver] = Field(description="waivers that matched no check of the run")


class Summary(_Model):
    total: int
    by_outcome: dict[str, int]
    by_severity: dict[str, dict[str, int]]
    blocking: list[str] = Field(description="check ids of the blocking outcomes")
    waivers: WaiverTotals


class Results(_Model):
    """results.json."""

    schema_: Literal["opsproof/results/v1"] = Field("opsproof/results/v1", alias="schema")
    run: Run
    checks: list[CheckRecord]
    summary: Summary

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    def dump(self) -> dict[str, Any]:
        return {"schema": self.schema_, **self.model_dump(exclude_unset=True, exclude={"schema_"})}


def results_json_schema() -> dict[str, Any]:
    """The JSON Schema of results.json."""
    schema = Results.model_json_schema(by_alias=True, mode="serialization")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "opsproof results (results.json)"
    return schema
