"""Profile model of `buckets` items: an S3 or MinIO bucket's usage, lifecycle rules and protection.

Runbook 003 checks MinIO with `mc du s3/apex-uploads` (alert at 80%) and `mc ilm ls`; an item
is those questions, answered with LIST and GET requests only (the backups kind's client,
which refuses every write before it is sent)::

    buckets:
      - {name: apex-uploads, s3: {bucket: apex-uploads, endpoint_url: "https://minio:9000"},
         quota: 500GB, size: {warn: 80%, fail: 95%}, lifecycle: true, versioning: true}
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field, StrictBool, StrictInt, WithJsonSchema, model_validator

from opsproof import units
from opsproof.model.fields import Item, PositiveDuration, Rising, Size, Threshold, check_order
from opsproof.model.kind import Kind
from opsproof.model.trends import Trend
from opsproof.targets.backups import Protection, S3Location

ObjectCount = Annotated[StrictInt, Field(ge=0)]
_SIZE_OR_SHARE = WithJsonSchema(
    {
        "type": "object",
        "properties": {
            level: {"type": "string", "description": "a size (400GB) or, with quota, a share of it (80%)"}
            for level in ("warn", "fail")
        },
        "additionalProperties": False,
    }
)


def _trend_limit_of_quota(data: dict[str, Any]) -> dict[str, Any]:
    """`size_trend: {limit: 90%}` as bytes: a share of `quota`, like size's limits."""
    trend = data.get("size_trend")
    if not isinstance(trend, dict):
        return data
    limit = trend.get("limit")
    if not (isinstance(limit, str) and limit.endswith("%")):
        return data
    if data.get("quota") is None:
        raise ValueError(f"size_trend.limit: {limit} is a share of quota: give quota: (the bucket's capacity)")
    try:
        share = round(units.parse_size(data["quota"]) * units.parse_percent(limit) / 100)
    except ValueError as exc:
        raise ValueError(f"size_trend.limit: {exc}") from None
    return {**data, "size_trend": {**trend, "limit": f"{share}B"}}


class BucketsTarget(Item):
    """A bucket (or a prefix of one): its total size and object count, lifecycle rules, protection."""

    s3: S3Location = Field(description="the bucket (and prefix) in S3 or any S3-compatible store")
    size: Annotated[Threshold[int], _SIZE_OR_SHARE] | None = Field(
        None, description="{warn, fail} on the total size of the objects: sizes (400GB), or shares of quota (80%)"
    )
    quota: Size | None = Field(None, description="the bucket's capacity; size limits in % are shares of it")
    objects: Annotated[Threshold[ObjectCount], Rising] | None = Field(None, description="{warn, fail} on the count")
    size_trend: Trend[Size] | None = Field(
        None,
        description="`{limit: 400GB (or 90% of quota), window: 14d, full_in: {warn: 30d, fail: 7d}}`: the total size "
        "fitted over the history; fails when it reaches the limit sooner than full_in (docs/trends.md)",
    )
    lifecycle: StrictBool | None = Field(None, description="true: at least one lifecycle rule is enabled")
    versioning: StrictBool | None = Field(None, description="true: versioning is Enabled")
    object_lock: StrictBool | None = Field(None, description="true: Object Lock is enabled")
    encryption: StrictBool | None = Field(None, description="true: default server-side encryption is configured")
    max_keys: StrictInt = Field(
        1_000_000, ge=1, description="list at most this many keys; past it the size is not judged as the whole"
    )
    list_timeout: PositiveDuration = Field(
        60.0, description="how long the listing may take in all (timeout bounds each request)"
    )

    @model_validator(mode="before")
    @classmethod
    def _size_limits(cls, data: Any) -> Any:
        # A share of the quota is a size once the quota is known: both are read here, as bytes.
        if not isinstance(data, dict):
            return data
        data = _trend_limit_of_quota(data)
        if not isinstance(data.get("size"), dict):
            return data
        limits = dict(data["size"])
        for level in ("warn", "fail"):
            value = limits.get(level)
            if value is None:
                continue
            try:
                if not isinstance(value, str):
                    raise ValueError(f"invalid size {value!r}: expected a size such as 400GB or a share such as 80%")
                if value.endswith("%"):
                    quota = data.get("quota")
                    if quota is None:
                        raise ValueError(f"{value} is a share of quota: give quota: (the bucket's capacity)")
                    limits[level] = round(units.parse_size(quota) * units.parse_percent(value) / 100)
                else:
                    limits[level] = units.parse_size(value)
            except ValueError as exc:
                raise ValueError(f"size.{level}: {exc}") from None
        return {**data, "size": limits}

    @model_validator(mode="after")
    def _coherent(self) -> BucketsTarget:
        if self.size is not None:
            if self.size.warn is None and self.size.fail is None:
                raise ValueError("size needs warn, fail or both")
            check_order(self.size, lower_is_worse=False)
        if self.objects is not None and self.objects.warn is None and self.objects.fail is None:
            raise ValueError("objects needs warn, fail or both")
        if self.quota is not None and self.size is None and self.size_trend is None:
            raise ValueError("quota is what size: {warn: 80%} is a share of: give size too")
        if not (self.judges_usage or self.lifecycle or self.protection):
            raise ValueError("a buckets item needs size, objects, lifecycle, versioning, object_lock or encryption")
        return self

    @property
    def judges_usage(self) -> bool:
        return self.size is not None or self.objects is not None or self.size_trend is not None

    @property
    def protection(self) -> Protection | None:
        """The settings asked for, as the backups kind asks for them; None when none is."""
        if not (self.versioning or self.object_lock or self.encryption):
            return None
        return Protection(versioning=self.versioning, object_lock=self.object_lock, encryption=self.encryption)

    @property
    def location(self) -> str:
        return f"s3://{self.s3.bucket}/{self.s3.prefix}"


KIND = Kind(
    name="buckets",
    target=BucketsTarget,
    probe="opsproof.probes.buckets",
    checks="checks/capacity/test_buckets.py",
    cadence="daily",
    areas=("capacity",),
    controls={
        # Object storage: capacity (size against quota), retention by lifecycle, the protections of the data.
        "buckets": ("SOC2:A1.1", "SOC2:A1.2", "ISO27001:A.8.6", "ISO27001:A.8.13", "SOX-ITGC:OPS"),
        "buckets.usage": ("SOC2:A1.1", "ISO27001:A.8.6", "ISO27001:A.8.16", "SOX-ITGC:OPS"),
    },
)
