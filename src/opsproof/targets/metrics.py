"""Profile model of `metrics` items: an exporter's /metrics (Prometheus text exposition), scraped directly.

One item is one endpoint, scraped once per run however many series it names; each series
is one check `metrics.series[<item>/<series>]`, a metric name and label matchers judged
per series or aggregated::

    metrics:
      - name: mempool
        url: http://mempool-service:9100/metrics
        series:
          - {name: celery-depth, metric: queue_depth, labels: {queue: celery}, aggregate: max,
             threshold: {warn: 100, fail: 1000}}
          - {name: server-errors, metric: http_requests_total, labels: {status: {match: "5.."}},
             aggregate: sum, threshold: {fail: 1}, absent: pass}
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import Field, StrictBool, field_validator, model_validator

from opsproof.model.fields import (
    ExistingFile,
    Item,
    Name,
    OwnCadence,
    OwnSeverity,
    Regex,
    Size,
    Strict,
    Threshold,
    check_order,
    unique_names,
)
from opsproof.model.kind import Kind
from opsproof.targets.valued import Unit, UnitLimit, limits_in_unit

# Enough for a large exporter (kube-state-metrics of a big cluster is tens of MiB); more
# would let one endpoint blow up a run's memory.
DEFAULT_MAX_BYTES = 32 * 1024 * 1024

MetricName = Annotated[str, Field(pattern=r"^[a-zA-Z_:][a-zA-Z0-9_:]*$", description="a Prometheus metric name")]
LabelName = Annotated[str, Field(pattern=r"^[a-zA-Z_][a-zA-Z0-9_]*$", description="a Prometheus label name")]
Aggregate = Literal["each", "max", "min", "sum", "avg", "count"]


class LabelMatcher(Strict):
    """A label matched other than by equality, as PromQL's `=~`, `!=` and `!~` do (regexes match whole values)."""

    match: Regex | None = Field(None, description="the value matches this regular expression (PromQL =~)")
    not_: str | None = Field(None, alias="not", description="the value is not this (PromQL !=)")
    not_match: Regex | None = Field(None, description="the value does not match this regular expression (PromQL !~)")

    @model_validator(mode="after")
    def _one(self) -> LabelMatcher:
        given = [key for key in ("match", "not_", "not_match") if getattr(self, key) is not None]
        if len(given) != 1:
            raise ValueError("a label matcher is one of {match: REGEX}, {not: VALUE}, {not_match: REGEX}")
        return self

    def accepts(self, value: str) -> bool:
        """Whether a label value (absent: "") passes, as PromQL would judge it."""
        if self.match is not None:
            return re.fullmatch(self.match, value) is not None
        if self.not_ is not None:
            return value != self.not_
        assert self.not_match is not None
        return re.fullmatch(self.not_match, value) is None

    def promql(self, name: str) -> str:
        """`status=~"5.."`, as PromQL writes the matcher."""
        if self.match is not None:
            return f'{name}=~"{self.match}"'
        if self.not_ is not None:
            return f'{name}!="{self.not_}"'
        return f'{name}!~"{self.not_match}"'


class Series(Strict):
    """Series of one metric picked by labels, judged per series (`each`) or aggregated against {warn, fail}."""

    name: Name
    metric: MetricName | None = Field(
        None, description="the metric name as the exposition writes its samples (http_requests_total)"
    )
    metric_match: Regex | None = Field(
        None, description="instead of metric: every metric whose name matches this regular expression (whole name)"
    )
    labels: dict[LabelName, str | LabelMatcher] = Field(
        default_factory=dict,
        description="label: value (equal), or label: {match: REGEX} / {not: VALUE} / {not_match: REGEX}",
    )
    aggregate: Aggregate = Field(
        "each",
        description="each: every series is judged and the worst named; max, min, sum, avg of the values; "
        "count: how many series match",
    )
    threshold: Threshold[UnitLimit] | None = Field(
        None, description="{warn, fail} in the series' unit; absent: the series need only be present"
    )
    lower_is_worse: StrictBool = Field(False, description="true where less is worse (workers up, hit ratio)")
    unit: Unit = Field("number", description="how values and limits read: number, seconds, percent, ratio, bytes")
    absent: Literal["fail", "pass"] = Field(
        "fail",
        description="what no matching series means: fail (the default), or pass (a counter with labels that "
        "is only exposed once it counts something)",
    )
    severity: OwnSeverity = None
    cadence: OwnCadence = None

    @model_validator(mode="before")
    @classmethod
    def _limits_in_unit(cls, data: Any) -> Any:
        return limits_in_unit(data, ("threshold",))

    @model_validator(mode="after")
    def _coherent(self) -> Series:
        if (self.metric is None) == (self.metric_match is None):
            raise ValueError("give exactly one of metric: or metric_match:")
        if self.threshold is not None:
            check_order(self.threshold, lower_is_worse=self.lower_is_worse)
        if self.aggregate == "count" and self.unit != "number":
            raise ValueError("aggregate: count counts series: its unit is number")
        return self

    def selector(self) -> str:
        """The series as PromQL would select them: queue_depth{queue="celery"}."""
        name = self.metric or ""
        matchers = [] if self.metric is not None else [f'__name__=~"{self.metric_match}"']
        for label, wanted in self.labels.items():
            matchers.append(f'{label}="{wanted}"' if isinstance(wanted, str) else wanted.promql(label))
        return name + ("{" + ", ".join(matchers) + "}" if matchers else "")

    def accepts(self, labels: dict[str, str]) -> bool:
        """Whether a sample with these labels is one of this series' (the name already matched)."""
        for label, wanted in self.labels.items():
            value = labels.get(label, "")
            if not (value == wanted if isinstance(wanted, str) else wanted.accepts(value)):
                return False
        return True


class MetricsTarget(Item):
    """An exporter's metrics endpoint, scraped once with a GET: series judged against thresholds."""

    url: str = Field(description="the exposition's URL: http(s)://host:port/metrics")
    headers: dict[str, str] = Field(
        default_factory=dict, description='request headers (Authorization: "Bearer ${TOKEN}")'
    )
    ca_file: ExistingFile | None = Field(None, description="extra trust anchors (PEM) for https://")
    verify_tls: StrictBool = Field(True, description="verify the server certificate (on by default)")
    max_bytes: Size = Field(DEFAULT_MAX_BYTES, description="refuse an exposition larger than this (default 32MB)")
    series: Annotated[list[Series], Field(min_length=1), unique_names("series")] = Field(
        description="the series judged, each one check"
    )

    @field_validator("url")
    @classmethod
    def _url(cls, url: str) -> str:
        if not re.match(r"^https?://[^/\s]+", url):
            raise ValueError(f"URL {url!r} needs an http:// or https:// scheme and a host")
        if re.match(r"^https?://[^/\s]*@", url):
            # The URL is shown in every record: credentials go in headers, where they are redacted.
            raise ValueError('URL has user:password@; put credentials in headers (Authorization: "Bearer ${TOKEN}")')
        return url

    @model_validator(mode="after")
    def _tls(self) -> MetricsTarget:
        if self.ca_file is not None and not self.url.startswith("https://"):
            raise ValueError("ca_file is only used with https:// URLs")
        return self


KIND = Kind(
    name="metrics",
    target=MetricsTarget,
    probe="opsproof.probes.metrics",
    checks="checks/monitoring/test_metrics.py",
    cadence="daily",
    areas=("monitoring",),
    controls={
        # An exporter's own series (queue depth, pool use, error counters): monitoring and capacity.
        "metrics": ("SOC2:CC7.1", "SOC2:CC7.2", "SOC2:A1.1", "ISO27001:A.8.16", "ISO27001:A.8.6", "SOX-ITGC:OPS"),
    },
)
