"""Profile model of `backups` items: the backups of one thing, in an S3 bucket or a directory.

Every check reads only: S3 sees LIST, HEAD and GET (and the bucket's configuration
reads), a directory is listed and read. Names are matched against `pattern`
relative to the prefix or path, so `db/2026/scorpius_*.sql.gz` patterns work::

    backups:
      - name: postgres-daily
        s3: {bucket: scorpius-backups, prefix: db/, region: us-west-2}
        pattern: "scorpius_*.sql.gz"
        max_age: 26h
        verify: [gzip, pg_dump]
        retention: {min_count: 7, max_gap: 26h}
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, StrictBool, StrictInt, WithJsonSchema, model_validator

from opsproof.model.fields import Item, Percent, PositiveDuration, Rising, Size, Strict, Threshold
from opsproof.model.kind import Kind

VerifyMethod = Literal["gzip", "pg_dump", "sha256"]


class S3Location(Strict):
    """A bucket and a prefix in S3 or any S3-compatible store; credentials come from boto3's chain."""

    bucket: Annotated[str, Field(min_length=3, max_length=63, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")] = Field(
        description="the bucket's name"
    )
    prefix: str = Field("", description="only keys under this prefix (e.g. db/); patterns match after it")
    endpoint_url: Annotated[str, Field(pattern=r"^https?://[^\s/]+")] | None = Field(
        None, description="an S3-compatible endpoint (MinIO, Ceph, R2...); absent: AWS"
    )
    region: str | None = Field(None, description="the bucket's region; absent: boto3's configured region")


def _fail_only(value: Any) -> Any:
    # `max_age: 26h` is the contract's form: a plain value is the fail limit.
    return {"fail": value} if isinstance(value, str | int | float) and not isinstance(value, bool) else value


_DURATION_OR_THRESHOLD = WithJsonSchema(
    {
        "anyOf": [
            {"type": "string", "description": "a duration: 26h, 90m, 7d"},
            {
                "type": "object",
                "properties": {"warn": {"type": "string"}, "fail": {"type": "string"}},
                "additionalProperties": False,
            },
        ]
    }
)
AgeLimit = Annotated[Threshold[PositiveDuration], BeforeValidator(_fail_only), Rising, _DURATION_OR_THRESHOLD]


class OldestBound(Strict):
    """Bounds on the oldest backup kept: the retention window is covered, and pruning works."""

    min_age: PositiveDuration | None = Field(
        None, description="the oldest backup is at least this old: the history reaches back this far (30d)"
    )
    max_age: PositiveDuration | None = Field(
        None, description="nothing older than this is kept: lifecycle pruning works (e.g. 35d)"
    )


class Retention(Strict):
    """How many backups are kept, with no hole in the series."""

    min_count: StrictInt | None = Field(None, ge=1, description="at least this many matching backups")
    max_gap: PositiveDuration | None = Field(
        None, description="longest allowed time between consecutive backups (26h: a missed day is a finding)"
    )
    gap_window: PositiveDuration | None = Field(
        None, description="look for gaps only among backups this recent (default: all of them)"
    )
    oldest: OldestBound | None = None

    @model_validator(mode="after")
    def _something(self) -> Retention:
        if self.min_count is None and self.max_gap is None and self.oldest is None:
            raise ValueError("retention needs min_count, max_gap or oldest")
        return self


class Protection(Strict):
    """What the bucket must enforce; each true key is checked against the bucket's configuration."""

    versioning: StrictBool | None = Field(None, description="versioning Enabled (overwrites and deletes recoverable)")
    encryption: StrictBool | None = Field(None, description="default server-side encryption configured")
    object_lock: StrictBool | None = Field(None, description="Object Lock enabled (WORM backups)")

    @model_validator(mode="after")
    def _something(self) -> Protection:
        if not any((self.versioning, self.encryption, self.object_lock)):
            raise ValueError("protection needs at least one of versioning, encryption, object_lock set to true")
        return self

    def unmet(self, seen: dict[str, Any]) -> list[str]:
        """What the bucket's settings (`S3Store.protection()`) lack of what is asked, in words."""
        missing = []
        if self.versioning and seen.get("versioning") != "Enabled":
            missing.append(f"versioning is {seen.get('versioning')}, expected Enabled")
        if self.encryption and not seen.get("encryption"):
            missing.append("no default server-side encryption")
        if self.object_lock and seen.get("object_lock") != "Enabled":
            missing.append("Object Lock is not enabled")
        return missing

    @staticmethod
    def describe(seen: dict[str, Any]) -> str:
        """'versioning Enabled; encryption AES256; Object Lock Disabled'."""
        encryption = ", ".join(seen.get("encryption") or []) or "none"
        return f"versioning {seen.get('versioning')}; encryption {encryption}; Object Lock {seen.get('object_lock')}"


class BackupsTarget(Item):
    """The backups of one database or dataset: fresh, large enough, kept, whole, protected."""

    s3: S3Location | None = Field(None, description="an S3 bucket and prefix (or give path:)")
    path: Path | None = Field(None, description="a local or mounted directory (or give s3:)")
    pattern: Annotated[str, Field(min_length=1)] = Field(
        "*", description="glob over names relative to prefix/path; * and ? also match '/'"
    )
    max_age: AgeLimit = Field(
        description="age of the newest backup (S3 LastModified, file mtime): the RPO; 26h or {warn: 25h, fail: 26h}"
    )
    min_size: Size | None = Field(None, description="the newest backup is at least this large (1KB, 20MB)")
    size_drop: Percent | None = Field(
        50.0,
        description="warn when the newest is under this share of the median of the previous seven; null: never",
    )
    verify: list[VerifyMethod] = Field(
        default_factory=list,
        description="integrity checks of the newest backup: gzip (streamed through decompression), "
        "pg_dump (plain: completion marker; custom: pg_restore --list), sha256 (<name>.sha256 or metadata)",
    )
    verify_timeout: PositiveDuration = Field(
        3600.0, description="how long reading the newest backup for `verify` may take (timeout: bounds each request)"
    )
    retention: Retention | None = None
    protection: Protection | None = Field(None, description="bucket settings that must be on (S3 only)")
    max_listed: StrictInt = Field(
        100_000, ge=1, description="refuse to judge a listing longer than this (a prefix that is too wide)"
    )

    @model_validator(mode="after")
    def _one_store(self) -> BackupsTarget:
        if (self.s3 is None) == (self.path is None):
            raise ValueError("give exactly one of s3: or path:")
        if self.protection is not None and self.s3 is None:
            raise ValueError("protection: applies to S3 buckets only")
        if len(set(self.verify)) != len(self.verify):
            raise ValueError("verify lists a method twice")
        return self

    @property
    def location(self) -> str:
        """Where the backups are, as reports show it: s3://bucket/prefix or the directory."""
        if self.s3 is not None:
            return f"s3://{self.s3.bucket}/{self.s3.prefix}"
        return str(self.path)


KIND = Kind(
    name="backups",
    target=BackupsTarget,
    probe="opsproof.probes.backups",
    checks="checks/backup/test_backups.py",
    cadence="daily",
    areas=("backup",),
    controls={
        # Backups exist, are fresh, whole and retained: the backup process (A1.2), the
        # recoverability it gives (A1.3), ISO's information backup.
        "backups": ("SOC2:A1.2", "SOC2:A1.3", "ISO27001:A.8.13", "SOX-ITGC:OPS"),
    },
)
