"""The profile keys of signals: `notify:`, `maintenance:` and `metrics:`.

```yaml
notify:
  - pagerduty: {routing_key: "${PD_ROUTING_KEY}"}       # Events API v2; `url:` for EU accounts
    when: {severity: [critical, high]}
    reminder: 24h
  - slack: {webhook_url: "${SLACK_WEBHOOK}"}
    when: {outcome: [failed, error], severity: [critical, high, medium]}
  - webhook: {url: "https://ops.example/hooks/opsproof", headers: {Authorization: "Bearer ${HOOK_TOKEN}"}}
maintenance:
  - {name: tuesday-minor, checks: "*", every: "tue 02:00-04:00", timezone: America/Los_Angeles}
  - {name: db-major, checks: "postgres.*", from: 2026-12-20T00:00Z, to: 2026-12-20T06:00Z, ticket: CHG-42}
metrics:
  pushgateway: {url: "https://push.example", username: ops, password: "${PUSH_PASSWORD}"}
```
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta
from functools import cached_property
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, field_validator, model_validator

from opsproof.model.fields import Duration, Name, PositiveDuration, Severity, Strict

NOTIFIED_OUTCOMES = ("failed", "error", "warned")
NotifiedOutcome = Literal["failed", "error", "warned"]
HttpUrl = Annotated[str, Field(pattern=r"^https?://", description="an http:// or https:// URL")]

PAGERDUTY_EVENTS_URL = "https://events.pagerduty.com/v2/enqueue"


class PagerDuty(Strict):
    """PagerDuty Events API v2: one trigger per check that turns bad, one resolve when it recovers."""

    routing_key: Annotated[str, Field(min_length=1, description='the integration key, as "${PD_ROUTING_KEY}"')]
    url: HttpUrl = Field(PAGERDUTY_EVENTS_URL, description="the Events API (EU: https://events.eu.pagerduty.com/...)")


class Slack(Strict):
    """A Slack incoming webhook: one Block Kit message per run that changed something."""

    webhook_url: Annotated[str, Field(pattern=r"^https?://", description='the webhook URL, as "${SLACK_WEBHOOK}"')]


class Webhook(Strict):
    """Any HTTP endpoint: the run's summary and the changed records as JSON."""

    url: HttpUrl
    headers: dict[str, str] = Field(default_factory=dict, description="extra headers (secrets as ${VAR})")


def _all_severities() -> list[Severity]:
    return ["critical", "high", "medium", "low"]


def _failing() -> list[NotifiedOutcome]:
    return ["failed", "error"]


class When(Strict):
    """Which records a destination hears about; a record must match every filter given."""

    severity: list[Severity] = Field(default_factory=_all_severities, min_length=1, description="severities notified")
    outcome: list[NotifiedOutcome] = Field(
        default_factory=_failing, min_length=1, description="outcomes that count as a problem"
    )

    def covers(self, outcome: str, severity: str) -> bool:
        return outcome in self.outcome and severity in self.severity


class Notify(Strict):
    """One destination of notifications: exactly one of `pagerduty`, `slack`, `webhook`."""

    name: Name | None = Field(None, description="shown in notifications.json (default: the channel and position)")
    pagerduty: PagerDuty | None = None
    slack: Slack | None = None
    webhook: Webhook | None = None
    when: When = Field(default_factory=When)
    reminder: Annotated[Duration, Field(gt=0)] | None = Field(
        None, description="re-notify what is still failing this long after the last notice (24h)"
    )
    bundle_url: Annotated[str, Field(pattern=r"^https?://.*\{bundle\}")] | None = Field(
        None,
        description="where people open a bundle, {bundle} standing for its folder's name "
        "(https://evidence.example/{bundle}/report.html); default: a file:// link on the runner",
    )
    timeout: PositiveDuration = Field(5.0, description="one delivery attempt's limit")
    deadline: PositiveDuration = Field(20.0, description="all attempts (retries with backoff) end by then")

    @model_validator(mode="after")
    def _one_channel(self) -> Notify:
        given = [key for key in ("pagerduty", "slack", "webhook") if getattr(self, key) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of pagerduty, slack, webhook (got {', '.join(given) or 'none'})")
        if self.timeout > self.deadline:
            raise ValueError("timeout is longer than deadline: no attempt could use it")
        return self

    @property
    def channel(self) -> Literal["pagerduty", "slack", "webhook"]:
        if self.pagerduty is not None:
            return "pagerduty"
        return "slack" if self.slack is not None else "webhook"


# -- maintenance windows ------------------------------------------------------------------------

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_EVERY = re.compile(
    r"(?P<days>[a-z]+(?:#\d)?(?:[-,][a-z]+(?:#\d)?)*)\s+"
    r"(?P<start>\d{2}:\d{2})-(?P<end>\d{2}:\d{2})"
)
EVERY_HELP = (
    'days and a time range: "tue 02:00-04:00", "mon-fri 22:00-23:30", "sat,sun 00:00-24:00", "daily 03:00-03:15", '
    '"sun#1 01:00-06:00" (the first Sunday of each month)'
)


def _clock(text: str) -> time | None:
    hours, minutes = int(text[:2]), int(text[3:])
    if (hours, minutes) == (24, 0):
        return None  # the end of the day
    if hours > 23 or minutes > 59:
        raise ValueError(f"invalid time {text!r}")
    return time(hours, minutes)


Day = tuple[int, int | None]  # (weekday, its occurrence in the month, 1-5, or None for every week)


def _days(text: str) -> frozenset[Day]:
    if text == "daily":
        return frozenset((day, None) for day in range(7))
    found: set[Day] = set()
    for part in text.split(","):
        first, _, last = part.partition("-")
        name, _, nth = first.partition("#")
        if nth and (last or not 1 <= int(nth) <= 5):
            raise ValueError(f"invalid day {part!r}: #N is a single day's occurrence in the month, 1-5 (sun#1)")
        for day in (name, last or name):
            if day not in DAYS:
                raise ValueError(f"unknown day {day!r} (days: {', '.join(DAYS)}, or daily)")
        start, end = DAYS.index(name), DAYS.index(last or name)
        span = range(start, end + 1) if start <= end else [*range(start, 7), *range(0, end + 1)]
        found.update((day, int(nth) if nth else None) for day in span)
    return frozenset(found)


def _on(day: date, days: frozenset[Day]) -> bool:
    """Whether `day` is one of `days` (sun#3: the third Sunday of its month)."""
    weekday, occurrence = day.weekday(), (day.day - 1) // 7 + 1
    return (weekday, None) in days or (weekday, occurrence) in days


def _parse_every(text: str) -> tuple[frozenset[Day], time, time | None]:
    match = _EVERY.fullmatch(text.strip().lower())
    if match is None:
        raise ValueError(f"invalid every {text!r}: expected {EVERY_HELP}")
    start, end = _clock(match["start"]), _clock(match["end"])
    if start is None:
        raise ValueError(f"invalid every {text!r}: a window cannot start at 24:00")
    if start == end:
        raise ValueError(f"invalid every {text!r}: the window is empty")
    return _days(match["days"]), start, end


class MaintenanceWindow(Strict):
    """A planned window: a check failing inside it is recorded with the window's name, and neither pages nor blocks."""

    name: Name
    checks: Annotated[str, Field(min_length=1, description="glob over check ids; * and ? are wildcards")] = "*"
    every: str | None = Field(None, description=EVERY_HELP)
    timezone: str = Field("UTC", description="IANA zone of `every` (and of from/to written without one)")
    from_: datetime | None = Field(None, alias="from", description="start, ISO 8601 (2026-12-20T00:00Z)")
    to: datetime | None = Field(None, description="end, ISO 8601")
    ticket: str | None = Field(None, description="the change ticket, shown beside the window")

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown timezone {value!r} (an IANA name such as Europe/Paris)") from None
        return value

    @field_validator("every")
    @classmethod
    def _valid_every(cls, value: str | None) -> str | None:
        if value is not None:
            _parse_every(value)
        return value

    @model_validator(mode="after")
    def _one_schedule(self) -> MaintenanceWindow:
        fixed = self.from_ is not None or self.to is not None
        if self.every is not None and fixed:
            raise ValueError("give either every: or from:/to:, not both")
        if self.every is None and not (self.from_ is not None and self.to is not None):
            raise ValueError("give every: (a recurring window) or both from: and to:")
        if self.from_ is not None and self.to is not None and self.bounds[1] <= self.bounds[0]:
            raise ValueError("to: must be after from:")
        return self

    @cached_property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @cached_property
    def bounds(self) -> tuple[datetime, datetime]:
        """from/to as aware datetimes (a naive one is in `timezone`)."""
        assert self.from_ is not None and self.to is not None
        return tuple(t if t.tzinfo else t.replace(tzinfo=self.zone) for t in (self.from_, self.to))  # type: ignore[return-value]

    def is_open(self, moment: datetime) -> bool:
        """True when `moment` (aware) falls inside the window."""
        if self.every is None:
            start, end = self.bounds
            return start <= moment < end
        days, start_at, end_at = _parse_every(self.every)
        local = moment.astimezone(self.zone)
        # A window crossing midnight (22:00-02:00) began the day before for the early hours.
        for back in (0, 1):
            day = (local - timedelta(days=back)).date()
            if not _on(day, days):
                continue
            opens = datetime.combine(day, start_at, tzinfo=self.zone)
            closes_day = day if end_at is not None and end_at > start_at else day + timedelta(days=1)
            closes = datetime.combine(closes_day, end_at or time(0), tzinfo=self.zone)
            if opens <= local < closes:
                return True
        return False

    def describe(self) -> str:
        """`tue 02:00-04:00 America/Los_Angeles` or `2026-12-20T00:00Z to 2026-12-20T06:00Z`."""
        if self.every is not None:
            return f"{self.every} {self.timezone}"
        start, end = (t.astimezone(UTC).strftime("%Y-%m-%dT%H:%MZ") for t in self.bounds)
        return f"{start} to {end}"


# -- metrics --------------------------------------------------------------------------------------


class Pushgateway(Strict):
    """Where `--pushgateway` pushes (the option's URL wins), with basic auth or a bearer token."""

    url: HttpUrl | None = None
    username: str | None = None
    password: str | None = Field(None, description='basic auth password, as "${PUSH_PASSWORD}"')
    bearer_token: str | None = Field(None, description='as "${PUSH_TOKEN}"')
    timeout: PositiveDuration = Field(10.0, description="the push's limit")

    @model_validator(mode="after")
    def _one_auth(self) -> Pushgateway:
        if self.bearer_token is not None and (self.username is not None or self.password is not None):
            raise ValueError("give basic auth (username/password) or bearer_token, not both")
        if (self.username is None) != (self.password is None):
            raise ValueError("basic auth needs both username and password")
        return self


__all__ = [
    "NOTIFIED_OUTCOMES",
    "MaintenanceWindow",
    "Notify",
    "PagerDuty",
    "Pushgateway",
    "Slack",
    "Webhook",
    "When",
]
