"""Cadence periods in UTC: a day, an ISO week (Monday to Sunday), a calendar month, quarter or year.

An attestation is valid for the period it was made in; a period report expects one
run per period of each cadence::

    >>> period_of("weekly", date(2026, 7, 15))
    Period(cadence='weekly', start=datetime.date(2026, 7, 13), end=datetime.date(2026, 7, 20), label='2026-W29')
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

# What one period of each cadence is called: "no daily run in the day 2026-07-14".
PERIOD_WORDS = {"daily": "day", "weekly": "week", "monthly": "month", "quarterly": "quarter", "yearly": "year"}


@dataclass(frozen=True)
class Period:
    cadence: str
    start: date  # first day
    end: date  # the day after the last (exclusive)
    label: str

    @property
    def start_iso(self) -> str:
        return f"{self.start.isoformat()}T00:00:00.000Z"

    @property
    def end_iso(self) -> str:
        return f"{self.end.isoformat()}T00:00:00.000Z"

    def contains(self, day: date) -> bool:
        return self.start <= day < self.end


def period_of(cadence: str, day: date) -> Period:
    if cadence == "daily":
        return Period(cadence, day, day + timedelta(days=1), day.isoformat())
    if cadence == "weekly":
        start = day - timedelta(days=day.weekday())
        year, week, _ = start.isocalendar()
        return Period(cadence, start, start + timedelta(days=7), f"{year}-W{week:02d}")
    if cadence == "monthly":
        start = day.replace(day=1)
        end = (start + timedelta(days=32)).replace(day=1)
        return Period(cadence, start, end, f"{start.year}-{start.month:02d}")
    if cadence == "quarterly":
        quarter = (day.month - 1) // 3
        start = date(day.year, quarter * 3 + 1, 1)
        end = date(day.year + 1, 1, 1) if quarter == 3 else date(day.year, quarter * 3 + 4, 1)
        return Period(cadence, start, end, f"{start.year}-Q{quarter + 1}")
    if cadence == "yearly":
        return Period(cadence, date(day.year, 1, 1), date(day.year + 1, 1, 1), str(day.year))
    raise ValueError(f"unknown cadence {cadence!r}")


def period_from_label(cadence: str, label: str) -> Period:
    """The period a label names: `2026-07-14`, `2026-W29`, `2026-07`, `2026-Q3`, `2026`."""
    if cadence == "weekly":
        year, week = label.split("-W")
        return period_of(cadence, date.fromisocalendar(int(year), int(week), 1))
    if cadence == "monthly":
        return period_of(cadence, date.fromisoformat(f"{label}-01"))
    if cadence == "quarterly":
        year, quarter = label.split("-Q")
        return period_of(cadence, date(int(year), (int(quarter) - 1) * 3 + 1, 1))
    if cadence == "yearly":
        return period_of(cadence, date(int(label), 1, 1))
    return period_of(cadence, date.fromisoformat(label))


def periods_between(cadence: str, first: date, last: date) -> Iterator[Period]:
    """Every period of a cadence that overlaps [first, last] (inclusive days)."""
    period = period_of(cadence, first)
    while period.start <= last:
        yield period
        period = period_of(cadence, period.end)


def utc_day(timestamp: str) -> date:
    """The UTC date of an ISO 8601 timestamp ('2026-07-14T06:00:00.000Z')."""
    return parse_utc(timestamp).date()


def parse_utc(timestamp: str) -> datetime:
    found = datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    return found.astimezone(UTC) if found.tzinfo else found.replace(tzinfo=UTC)
