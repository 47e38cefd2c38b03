"""Profile model of `prometheus` items: the Prometheus HTTP API, read with GET requests only.

One item is one server (or an API-compatible one: Thanos Query, Mimir, VictoriaMetrics).
Three kinds of check come from it: firing alerts by severity, scrape targets down, and
named PromQL KPIs with thresholds. A KPI's thresholds may be written in its unit::

    kpis:
      - name: p95-latency
        query: histogram_quantile(0.95, sum by (le) (rate(http_request_duration_seconds_bucket[5m])))
        unit: seconds
        threshold: {warn: 100ms, fail: 500ms}     # = {warn: 0.1, fail: 0.5}
        over: 12h                                  # the worst value of the last 12 hours
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    BeforeValidator,
    Field,
    StrictBool,
    StrictInt,
    field_validator,
    model_validator,
)

from opsproof import units
from opsproof.model.fields import (
    ExistingFile,
    Item,
    Name,
    OwnCadence,
    OwnSeverity,
    PositiveDuration,
    Strict,
    Threshold,
    check_order,
    default_threshold,
)
from opsproof.model.kind import Kind
from opsproof.model.trends import Increase, Trend
from opsproof.targets.hosts import also_accepts  # a schema helper for any kind; hosts defines it first
from opsproof.targets.valued import Unit, UnitLimit, limits_in_unit, with_trend_in_unit

# Prometheus refuses a range query of more than 11,000 points per series.
MAX_POINTS = 11_000
# The default step of `over:` aims at this many points: 12h -> 1m, 1h -> 15s (the floor).
TARGET_POINTS = 720
MIN_STEP_S = 15.0


def _on_off(value: Any) -> Any:
    # `alerts: false` turns a default-on check off; `alerts: true` keeps its defaults.
    if value is True:
        return {}
    if value is False:
        return None
    return value


def _lower_names(value: Any) -> Any:
    if isinstance(value, str):
        value = [value]
    if isinstance(value, list):
        return [v.lower() if isinstance(v, str) else v for v in value]
    return value


def _glob_list(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


Severities = Annotated[list[Annotated[str, Field(min_length=1)]], BeforeValidator(_lower_names)]
Globs = Annotated[list[Annotated[str, Field(min_length=1)]], BeforeValidator(_glob_list)]
LabelName = Annotated[str, Field(pattern=r"^[a-zA-Z_][a-zA-Z0-9_]*$", description="a Prometheus label name")]
DownCount = Annotated[StrictInt, Field(ge=0)]


class AlertReview(Strict):
    """The daily review of firing alerts: which severities fail, which warn, which alerts to ignore."""

    fail: Severities = Field(
        default_factory=lambda: ["critical"], description="severity values that fail while firing (case-insensitive)"
    )
    warn: Severities = Field(
        default_factory=lambda: ["warning"], description="severity values that warn while firing (case-insensitive)"
    )
    other: Literal["pass", "warn", "fail"] = Field(
        "pass",
        description="firing alerts of any other severity (info, none, no severity label): "
        "listed in the record either way; pass, warn or fail",
    )
    ignore: Globs = Field(
        default_factory=list, description="alertnames never judged (shell-style globs: Watchdog, Info*)"
    )
    match: dict[LabelName, str] = Field(
        default_factory=dict, description="only alerts carrying all these labels (exact values), e.g. {namespace: app}"
    )
    severity_label: LabelName = Field("severity", description="the label holding an alert's severity")
    over: PositiveDuration | None = Field(
        None,
        description="also review alerts that fired within this window and are resolved now (from the ALERTS "
        "series): those of a fail or warn severity warn",
    )
    severity: OwnSeverity = None
    cadence: OwnCadence = None

    @model_validator(mode="after")
    def _disjoint(self) -> AlertReview:
        both = sorted(set(self.fail) & set(self.warn))
        if both:
            raise ValueError(f"severity {both[0]!r} is listed in both fail and warn")
        return self


class TargetHealth(Strict):
    """Scrape targets that are not up: a count against {warn, fail}."""

    down: Threshold[DownCount] = Field(
        default_factory=default_threshold(fail=0),
        validate_default=True,
        description="active targets whose health is not up (down or not scraped yet); default {fail: 0}",
    )
    ignore_jobs: Globs = Field(default_factory=list, description="jobs never judged (shell-style globs)")
    source: Literal["api", "up"] = Field(
        "api",
        description=(
            "where target health is read: api (/api/v1/targets: every active target and its last scrape "
            "error) or up (the `up` series at the check's instant: for query front-ends without the "
            "targets API, or a server whose history was back-filled; names no scrape error)"
        ),
    )

    severity: OwnSeverity = None
    cadence: OwnCadence = None

    @field_validator("down")
    @classmethod
    def _ordered(cls, value: Threshold[int]) -> Threshold[int]:
        check_order(value, lower_is_worse=False)
        return value


class Kpi(Strict):
    """One PromQL query whose value (the worst series) is judged against {warn, fail}."""

    name: Name
    query: Annotated[str, Field(min_length=1, description="a PromQL expression; its worst series is judged")]
    threshold: Threshold[UnitLimit] | None = Field(
        None,
        description="{warn, fail} in the query's own unit (numbers; or 500ms, 1%, 2GB with `unit:`); needed unless "
        "increase or trend is given",
    )
    increase: Increase[UnitLimit] | None = Field(
        None, description="{warn, fail} on the value's growth since the previous run (a counter; docs/trends.md)"
    )
    trend: Trend[UnitLimit] | None = Field(
        None,
        description="{limit, window, min_points, full_in}: the value's fitted line over the history must not reach "
        "`limit` sooner than full_in (docs/trends.md)",
    )
    lower_is_worse: StrictBool = Field(False, description="true for measures where less is worse (hit ratio, uptime)")
    post_deploy: StrictBool | None = Field(
        None, description="true puts this KPI's check in `pytest -m post_deploy` (an error rate after a deploy)"
    )
    severity: OwnSeverity = None
    cadence: OwnCadence = None
    unit: Unit = Field(
        "number",
        description="how values and thresholds read: number, seconds, percent (0-100), ratio (0-1, shown as %), bytes",
    )
    over: PositiveDuration | None = Field(
        None, description="judge the worst value over this window (a range query), not only the current one"
    )
    step: PositiveDuration | None = Field(
        None, description="resolution of `over` (default: over/720, at least 15s); only with over"
    )
    empty: Literal["fail", "pass"] = Field(
        "fail", description="what a result with no series means: fail (the default) or pass"
    )

    @model_validator(mode="before")
    @classmethod
    def _limits_in_unit(cls, data: Any) -> Any:
        # Threshold strings are read in the KPI's unit, which is a sibling key: convert here.
        return with_trend_in_unit(limits_in_unit(data, ("threshold", "increase")))

    @model_validator(mode="after")
    def _coherent(self) -> Kpi:
        if self.threshold is None and self.increase is None and self.trend is None:
            raise ValueError("a kpi needs threshold, increase or trend: it would judge nothing")
        check_order(self.threshold, lower_is_worse=self.lower_is_worse)
        if self.step is not None and self.over is None:
            raise ValueError("step is the resolution of `over`: set over too")
        if self.over is not None and self.over / self.range_step > MAX_POINTS:
            raise ValueError(
                f"over {units.format_duration(self.over)} at step {units.format_duration(self.range_step)} is more "
                f"than Prometheus's {MAX_POINTS:,} points per series: use a larger step"
            )
        return self

    @property
    def range_step(self) -> float:
        """Seconds between the points of `over` (the given step, else over/720, at least 15s)."""
        if self.step is not None:
            return self.step
        return max(MIN_STEP_S, math.ceil((self.over or 0) / TARGET_POINTS))


class BasicAuth(Strict):
    username: Annotated[str, Field(min_length=1)]
    password: str = Field(description="use a ${SECRET}")


class PrometheusTarget(Item):
    """A Prometheus server: firing alerts, scrape targets, KPI queries."""

    url: str = Field(description="the server's base URL: http(s)://host:port[/path-prefix] (no /api/v1)")
    bearer_token: str | None = Field(None, description="sent as Authorization: Bearer; use a ${SECRET}")
    basic_auth: BasicAuth | None = Field(None, description="{username, password}; use a ${SECRET} for the password")
    headers: dict[str, str] = Field(default_factory=dict, description="extra request headers (X-Scope-OrgID: ...)")
    ca_file: ExistingFile | None = Field(None, description="extra trust anchors (PEM) for https://")
    verify_tls: StrictBool = Field(True, description="verify the server certificate (on by default)")
    alerts: Annotated[AlertReview | None, BeforeValidator(_on_off)] = Field(
        default_factory=AlertReview,
        description="review of firing alerts (prometheus.alerts); false: not checked",
        json_schema_extra=also_accepts({"type": "boolean"}),
    )
    targets: Annotated[TargetHealth | None, BeforeValidator(_on_off)] = Field(
        default_factory=TargetHealth,
        description="scrape targets not up (prometheus.targets); false: not checked",
        json_schema_extra=also_accepts({"type": "boolean"}),
    )
    kpis: list[Kpi] = Field(default_factory=list, description="named PromQL queries with thresholds")

    @field_validator("url")
    @classmethod
    def _base_url(cls, url: str) -> str:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"URL {url!r} needs an http:// or https:// scheme and a host")
        if parts.username is not None or parts.password is not None:
            # The URL is shown in every record: credentials go where they are redacted and never shown.
            raise ValueError("URL has user:password@; put credentials in basic_auth or bearer_token")
        if parts.query or parts.fragment:
            raise ValueError("URL has a ?query or #fragment; give the base URL only")
        try:
            parts.port  # noqa: B018 -- raises on a port that is not a number
        except ValueError:
            raise ValueError("URL port must be a number from 1 to 65535") from None
        if re.search(r"/api/v1/?$", parts.path) or "/api/v1/" in parts.path:
            raise ValueError("URL is the server's base URL, without /api/v1 (the checks add it)")
        return url.rstrip("/")

    @field_validator("kpis")
    @classmethod
    def _unique_kpis(cls, kpis: list[Kpi]) -> list[Kpi]:
        seen: set[str] = set()
        for kpi in kpis:
            if kpi.name in seen:
                raise ValueError(f"duplicate KPI name {kpi.name!r}")
            seen.add(kpi.name)
        return kpis

    @model_validator(mode="after")
    def _one_authorization(self) -> PrometheusTarget:
        given = [
            name
            for name, present in (
                ("bearer_token", self.bearer_token is not None),
                ("basic_auth", self.basic_auth is not None),
                ("headers.Authorization", any(k.lower() == "authorization" for k in self.headers)),
            )
            if present
        ]
        if len(given) > 1:
            raise ValueError(f"{' and '.join(given)} both set the Authorization header: choose one")
        if self.ca_file is not None and not self.url.startswith("https://"):
            raise ValueError("ca_file is only used with https:// URLs")
        return self

    def api(self, path: str) -> str:
        """The URL of an API path: api('query') -> https://prom:9090/api/v1/query."""
        return f"{self.url}/api/v1/{path}"


KIND = Kind(
    name="prometheus",
    target=PrometheusTarget,
    probe="opsproof.probes.prometheus",
    checks="checks/monitoring/test_prometheus.py",
    cadence="daily",
    areas=("monitoring",),
    controls={
        "prometheus": ("SOC2:CC7.1", "SOC2:CC7.2", "ISO27001:A.8.16", "ISO27001:A.8.15", "SOX-ITGC:OPS"),
        "prometheus.alerts": ("SOC2:CC7.2", "SOC2:CC7.3", "ISO27001:A.8.16", "SOX-ITGC:OPS"),
        "prometheus.kpi": ("SOC2:CC7.1", "SOC2:A1.1", "ISO27001:A.8.6", "ISO27001:A.8.16", "SOX-ITGC:OPS"),
    },
)
