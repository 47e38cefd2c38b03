"""Judging a value against the check's own earlier values: `increase:` of a counter, `trend:` of a measure.

Both keep the value in the record's `measures` (so the next run has it) before judging, and
neither fails for want of history: the first observation, too few points, or a counter that
went down (reset, restarted server) pass with a message that says so — a record that judged
nothing must never read like one that judged::

    judge_increase(check, "deadlocks", facts.deadlocks, item.deadlocks.increase, what="deadlocks")
    # passed  "deadlocks 17: first observation; nothing to compare"
    # failed  "increase of deadlocks 3 is over the fail threshold 1; 17 at 2026-12-05 06:00:01 UTC
    #          (previous run), 20 now"

A history that cannot be read (or a run without one) is an `error`: the check could not run.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from opsproof.model.check import Check, CheckError
from opsproof.model.trends import Increase, Past, Trend
from opsproof.units import format_duration, format_utc

FIRST = "first observation; nothing to compare"


def past_of(check: Check) -> Past:
    """The earlier runs' values the run handed the check; CheckError when there are none to read."""
    past = check.history
    if past is None:
        raise CheckError("this run has no history store to read earlier values from (increase:, trend:)")
    if past.problem is not None:
        raise CheckError(past.problem)
    return past


def _finite(what: str, value: float) -> None:
    """NaN or an infinity is the target's answer (0/0, a division by zero), and no number to compare."""
    assert math.isfinite(value), f"{what} is {value}: no number to compare with earlier runs"


def _when(iso: str) -> str:
    """'2026-12-05T06:00:01.123Z' -> '2026-12-05 06:00:01 UTC'."""
    return iso[:19].replace("T", " ") + " UTC"


def _moment(iso: str) -> datetime:
    return datetime.fromisoformat(iso.replace("Z", "+00:00"))


def judge_increase(
    check: Check,
    measure: str,
    value: float,
    increase: Increase[Any] | None,
    *,
    what: str,
    show: Callable[[float], str] = lambda v: f"{v:g}",
) -> None:
    """Keep `value` as `measure`; with `increase`, judge its growth since the previous run of this check."""
    check.measure(measure, value)
    if increase is None:
        return
    _finite(what, value)
    check.expect_threshold(f"increase of {what}", increase, show=show)
    before = past_of(check).previous(check.check_id, measure)
    if before is None:
        check.observe(increase=None)
        check.note(f"{what} {show(value)}: {FIRST}")
        return
    at, previous = before
    check.observe(previous=previous, previous_at=at)
    if value < previous:
        check.observe(increase=None, counter_reset=True)
        check.note(
            f"{what} {show(value)}, down from {show(previous)} at {_when(at)}: the counter was reset "
            f"(statistics reset or restart); {FIRST} since the reset"
        )
        return
    growth = value - previous
    check.observe(increase=growth)
    check.note(f"{what} {show(value)}, up {show(growth)} since the previous run ({_when(at)})")
    check.threshold(
        f"increase of {what}",
        growth,
        increase,
        show=show,
        detail=f"{show(previous)} at {_when(at)} (previous run), {show(value)} now",
    )


def fit_line(points: Sequence[tuple[float, float]]) -> tuple[float, float] | None:
    """(slope, intercept) of the least-squares line through (x, y) points; None when all x are equal."""
    n = len(points)
    mean_x = sum(x for x, _ in points) / n
    mean_y = sum(y for _, y in points) / n
    spread = sum((x - mean_x) ** 2 for x, _ in points)
    if spread == 0:
        return None
    slope = sum((x - mean_x) * (y - mean_y) for x, y in points) / spread
    return slope, mean_y - slope * mean_x


@dataclass(frozen=True)
class Projection:
    """Where a measure's fitted line goes: `left_s` until it reaches the limit (None: not judged, or not growing)."""

    points: int
    summary: str  # what the record says when nothing is judged, or the projection in words
    per_day: float | None = None
    left_s: float | None = None
    reaches_at: str | None = None
    growth: str | None = None


def project(
    past: Past,
    check_id: str,
    measure: str,
    value: float,
    trend: Trend[Any],
    *,
    measured_at: str,
    what: str,
    show: Callable[[float], str],
) -> Projection:
    """Fit the window's stored values of `measure` and this one; project when the line reaches `trend.limit`."""
    limit = float(trend.limit)
    window = format_duration(trend.window)
    current = _moment(measured_at)
    since = format_utc(current - timedelta(seconds=trend.window))
    stored = [p for p in past.series(check_id, measure, since) if p[0] < measured_at]
    points = [((_moment(at) - current).total_seconds(), v) for at, v in stored] + [(0.0, float(value))]
    fitted = fit_line(points) if len(points) >= trend.min_points else None
    if fitted is None:
        why = FIRST if len(points) == 1 else f"{len(points)} points in the last {window}, {trend.min_points} needed"
        return Projection(len(points), f"{what} {show(value)}: {why}; not judged yet")
    slope, at_now = fitted
    per_day = slope * 86400
    growth = f"{'+' if per_day >= 0 else '-'}{show(abs(per_day))}/day over {len(points)} points in {window}"
    if value >= limit or at_now >= limit:
        left = 0.0
    elif slope <= 0:
        return Projection(
            len(points), f"{what} {show(value)}, not growing ({growth}); limit {show(limit)}", per_day, growth=growth
        )
    else:
        left = (limit - at_now) / slope
    return Projection(
        len(points),
        f"{what} {show(value)}, {growth}: projected to reach {show(limit)} in {format_duration(left)}",
        per_day,
        left,
        format_utc(current + timedelta(seconds=left)),
        growth,
    )


def expect_trend(check: Check, trend: Trend[Any], show: Callable[[float], str]) -> None:
    """Record a trend as expected: limit, window, min_points, full_in."""
    limits = (("warn", trend.full_in.warn), ("fail", trend.full_in.fail))
    full_in = {key: format_duration(limit) for key, limit in limits if limit is not None}
    check.expect(
        trend={
            "limit": show(float(trend.limit)),
            "window": format_duration(trend.window),
            "min_points": trend.min_points,
            "full_in": full_in,
        }
    )


def judge_trend(
    check: Check,
    measure: str,
    value: float,
    trend: Trend[Any] | None,
    *,
    what: str,
    show: Callable[[float], str] = lambda v: f"{v:g}",
    now: str | None = None,
) -> None:
    """Keep `value` as `measure`; with `trend`, fit the window's values and judge the time until `trend.limit`.

    `now` is when `value` was measured (default: the check's `started_at`, else the clock).
    """
    check.measure(measure, value)
    if trend is None:
        return
    _finite(what, value)
    expect_trend(check, trend, show)
    measured_at = now or check.started_at or format_utc(datetime.now(UTC))
    found = project(
        past_of(check), check.check_id, measure, value, trend, measured_at=measured_at, what=what, show=show
    )
    check.observe(points=found.points, window=format_duration(trend.window))
    check.note(found.summary)
    if found.per_day is not None:
        check.observe(growth_per_day=found.per_day)
    if found.left_s is None:
        return
    check.observe(projected_full_s=round(found.left_s), projected_full_at=found.reaches_at)
    judge_projection(check, what, value, float(trend.limit), found, trend, show)


def judge_projection(
    check: Check,
    what: str,
    value: float,
    limit: float,
    found: Projection,
    trend: Trend[Any],
    show: Callable[[float], str],
    *,
    also: str | None = None,
) -> None:
    """Warn or fail on the time left of a projection (`found.left_s`) against `trend.full_in`."""
    assert found.left_s is not None and found.reaches_at is not None
    detail = f"{what} {show(value)}, {found.growth}; projected {_when(found.reaches_at)}"
    check.threshold(
        f"projected time until {what} reaches {show(limit)}",
        found.left_s,
        trend.full_in,
        lower_is_worse=True,
        show=format_duration,
        detail=f"{detail}; {also}" if also else detail,
    )
