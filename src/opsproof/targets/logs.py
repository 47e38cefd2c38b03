"""Profile model of `logs` items: lines matching a pattern within a window, from one log source.

An item names one source and the patterns counted in what it returns; every pattern is
its own check (`logs.count[<item>/<pattern>]`), and the source is read once for all of
them::

    logs:
      - name: auth-proxy
        kubernetes: {kubeconfig: ~/.kube/config, token: "${K8S_TOKEN}",
                     namespace: scorpius-platform, selector: app=auth-proxy}
        within: 24h
        patterns:
          - {name: auth-failures, match: "authentication failed", threshold: {warn: 20, fail: 100}}
          - {name: training-done, match: "Training completed", min: 1}

Sources: `kubernetes` (pod logs), `loki` (LogQL over Loki's HTTP API), `cloudwatch`
(FilterLogEvents) and `host` (a file or the journal on a testinfra URL). Exactly one.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import Field, StrictBool, StrictInt, field_validator, model_validator

from opsproof.model.fields import (
    Duration,
    ExistingFile,
    Item,
    Name,
    OwnCadence,
    OwnSeverity,
    Regex,
    Rising,
    Size,
    Strict,
    Threshold,
    unique_names,
)
from opsproof.model.kind import Kind
from opsproof.targets.hosts import parse_host_url
from opsproof.targets.kubernetes import ClusterAccess, NamespaceName, SelectorText

SOURCES = ("kubernetes", "loki", "cloudwatch", "host")
Count = Annotated[StrictInt, Field(ge=0)]


class LogPattern(Strict):
    """One pattern counted in the item's lines: a regular expression and its limits."""

    name: Name = Field(description="the part's name in the check id: logs.count[<item>/<name>]")
    match: Annotated[Regex, Field(min_length=1)] = Field(
        description="a regular expression (Python syntax) searched in each line: `authentication failed`"
    )
    ignore_case: StrictBool = Field(False, description="match regardless of case (grep -i)")
    threshold: Annotated[Threshold[Count], Rising] | None = Field(
        None, description="matching lines in the window, higher is worse: {warn: 20, fail: 100}"
    )
    min: Count | None = Field(
        None, ge=1, description="the line must appear at least this many times (e.g. 'Training completed': 1)"
    )
    severity: OwnSeverity = None
    cadence: OwnCadence = None

    @model_validator(mode="after")
    def _one_limit(self) -> LogPattern:
        if self.threshold is None and self.min is None:
            raise ValueError(f"pattern {self.name!r}: give `threshold: {{warn, fail}}` or `min:`")
        return self

    @property
    def regex(self) -> re.Pattern[str]:
        return re.compile(self.match, re.IGNORECASE if self.ignore_case else 0)


class KubernetesLogSource(ClusterAccess):
    """Pod logs: the pods of one namespace matching a label selector, one container or all."""

    namespace: NamespaceName = Field(description="the namespace of the pods")
    selector: SelectorText | None = Field(None, description="label selector of the pods; default every pod")
    container: Annotated[str, Field(min_length=1)] | None = Field(
        None, description="read this container of each pod; default every container of each pod"
    )


class LokiSource(Strict):
    """Grafana Loki: one LogQL query over its HTTP API (`/loki/api/v1/query_range`)."""

    url: Annotated[str, Field(pattern=r"^https?://[^\s/]+")] = Field(description="Loki's base URL: http://loki:3100")
    query: Annotated[str, Field(min_length=2)] = Field(description='a LogQL log query: {app="auth-proxy"}')
    headers: dict[str, str] = Field(
        default_factory=dict, description="request headers, e.g. Authorization: Bearer ${LOKI_TOKEN}"
    )
    tenant: Annotated[str, Field(min_length=1)] | None = Field(None, description="X-Scope-OrgID of a multi-tenant Loki")
    ca_file: ExistingFile | None = Field(None, description="extra trust anchors for an https URL")
    max_lines: StrictInt = Field(
        20000, ge=1, le=1_000_000, description="lines read at most (pages of 5,000); more is said cut"
    )

    @field_validator("query")
    @classmethod
    def _stream_selector(cls, query: str) -> str:
        if not query.lstrip().startswith("{"):
            raise ValueError('a LogQL log query starts with a stream selector: {app="auth-proxy"}')
        return query


class CloudWatchSource(Strict):
    """AWS CloudWatch Logs: FilterLogEvents over one log group (credentials from boto3's chain)."""

    log_group: Annotated[str, Field(pattern=r"^[A-Za-z0-9_./#-]+$", max_length=512)] = Field(
        description="the log group name: /aws/lambda/auth"
    )
    region: Annotated[str, Field(pattern=r"^[a-z0-9-]+$")] | None = Field(None, description="AWS region")
    endpoint_url: Annotated[str, Field(pattern=r"^https?://")] | None = Field(
        None, description="another endpoint (a VPC endpoint, LocalStack)"
    )
    stream_prefix: Annotated[str, Field(min_length=1)] | None = Field(None, description="only streams named so")
    filter_pattern: str | None = Field(
        None, description="a CloudWatch filter pattern applied by AWS before the item's regexes ('?ERROR ?WARN')"
    )


class HostLogSource(Strict):
    """A log file, or the journal, on a host reached through a testinfra URL (read commands only)."""

    url: str = Field(description="testinfra backend URL: local://, ssh://ops@web-1, ...")
    path: Annotated[str, Field(pattern=r"^/")] | None = Field(None, description="an absolute path: /var/log/auth.log")
    journal: StrictBool = Field(False, description="read the systemd journal (journalctl) instead of a file")
    unit: Annotated[str, Field(pattern=r"^[\w@.:-]+$")] | None = Field(
        None, description="with journal: only this unit (journalctl -u)"
    )

    @field_validator("url")
    @classmethod
    def _valid_url(cls, url: str) -> str:
        parse_host_url(url)
        return url

    @model_validator(mode="after")
    def _file_or_journal(self) -> HostLogSource:
        if (self.path is None) == (not self.journal):
            raise ValueError("give `path:` (a file) or `journal: true`, not both")
        if self.unit is not None and not self.journal:
            raise ValueError("`unit:` is for the journal (journal: true)")
        return self


class LogsTarget(Item):
    """Lines from one log source within a window, counted against each pattern."""

    kubernetes: KubernetesLogSource | None = Field(None, description="pod logs through the Kubernetes API")
    loki: LokiSource | None = Field(None, description="a LogQL query against Grafana Loki")
    cloudwatch: CloudWatchSource | None = Field(None, description="a CloudWatch Logs log group")
    host: HostLogSource | None = Field(None, description="a file or the journal on a testinfra host")
    within: Annotated[Duration, Field(gt=0)] = Field(
        "24h", validate_default=True, description="how far back lines are counted; default 24h"
    )
    limit_bytes: Size = Field(
        "8MB",
        validate_default=True,
        description="bytes read at most per log stream (a pod's container, a file); more is said cut. Default 8MB",
    )
    examples: StrictInt = Field(3, ge=0, le=20, description="matching lines kept as examples per pattern (redacted)")
    patterns: Annotated[list[LogPattern], Field(min_length=1), unique_names("patterns")] = Field(
        description="what to count; one check each"
    )

    @model_validator(mode="after")
    def _one_source(self) -> LogsTarget:
        given = [name for name in SOURCES if getattr(self, name) is not None]
        if len(given) != 1:
            shown = ", ".join(given) if given else "none"
            raise ValueError(f"give exactly one source of {', '.join(SOURCES)} (given: {shown})")
        return self

    @field_validator("limit_bytes")
    @classmethod
    def _positive(cls, value: int) -> int:
        if value < 1024:
            raise ValueError("limit_bytes below 1KB would cut every log")
        return value

    @property
    def source(self) -> str:
        """Which source the item reads: kubernetes, loki, cloudwatch or host."""
        return next(name for name in SOURCES if getattr(self, name) is not None)

    @property
    def source_settings(self) -> Any:
        return getattr(self, self.source)


KIND = Kind(
    name="logs",
    target=LogsTarget,
    probe="opsproof.probes.logs",
    checks="checks/monitoring/test_logs.py",
    cadence="daily",
    areas=("monitoring",),
    controls={
        # Log patterns: security events (auth failures, threats) and job completion read from the logs.
        "logs": ("SOC2:CC7.2", "SOC2:CC7.3", "ISO27001:A.8.15", "ISO27001:A.8.16", "SOX-ITGC:OPS"),
    },
)
