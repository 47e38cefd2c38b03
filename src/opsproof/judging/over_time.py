"""Judging a value against the check's own earlier values: `increase:` of a counter, `trend:` of a measure.

Both keep the value in the record's `measures` (so the next run has it) before judging, and
neither fails for want of history: the first observation, too few points, or a counter that
went down (reset, restarted server) pass with a message that says so — a record that judged
nothing must never read like one that judged::

    judge_increase(check, "deadlocks", facts.deadlocks, item.deadlocks.increase, what="deadlocks")
    # passed  "17 deadlocks: first observation; nothing to compare"
    # failed  "increase of deadlocks 3 is over the fail threshold 1; 17 at 2026-12-05 06:00:01 UTC, 20 now"

A history that cannot be read (or a run without one) is an `error`: the check could not run.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from opsproof.model.check import Check, CheckError
from opsproof.model.trends import Increase, Past, Trend
from opsproof.units import format_duration

FIRST = "first observation; nothing to compare"


def _past(check: Check) -> Past:
    past = check.history
    if past is None:
        raise CheckError("this run has no history store to read earlier values from (increase:, trend:)")
    if past.problem is not None:
        raise CheckError(past.problem)
    return past


def _when(iso: str) -> str:
    """'2026-12-05T06:00:01.123Z' -> '2026-12-05 06:00:01 UTC'."""
    return iso[:19].replace("T", " ") + " UTC"


def _moment(iso: str) -> datetime:
    return datetime.fromisoformat(iso.replace("Z", "+00:00"))


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


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
    check.expect_threshold(f"increase of {what}", increase, show=show)
    before = _past(check).previous(check.check_id, measure)
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
    limit = float(trend.limit)
    window = format_duration(trend.window)
    check.expect(
        trend={
            "limit": show(limit),
            "window": window,
            "min_points": trend.min_points,
            "full_in": {
                k: format_duration(v)
                for k, v in (("warn", trend.full_in.warn), ("fail", trend.full_in.fail))
                if v is not None
            },
        }
    )
    measured_at = now or check.started_at or _iso(datetime.now(UTC))
    current = _moment(measured_at)
    since = _iso(current - timedelta(seconds=trend.window))
    stored = [p for p in _past(check).series(check.check_id, measure, since) if p[0] < measured_at]
    points = [((_moment(at) - current).total_seconds(), v) for at, v in stored] + [(0.0, float(value))]
    check.observe(points=len(points), window=window)
    fitted = fit_line(points) if len(points) >= trend.min_points else None
    if fitted is None:
        why = FIRST if len(points) == 1 else f"{len(points)} points in the last {window}, {trend.min_points} needed"
        check.note(f"{what} {show(value)}: {why}; not judged yet")
        return
    slope, at_now = fitted
    per_day = slope * 86400
    check.observe(growth_per_day=per_day)
    growth = f"{'+' if per_day >= 0 else '-'}{show(abs(per_day))}/day over {len(points)} points in {window}"
    if value >= limit or at_now >= limit:
        left = 0.0
    elif slope <= 0:
        check.note(f"{what} {show(value)}, not growing ({growth}); limit {show(limit)}")
        return
    else:
        left = (limit - at_now) / slope
    reaches = _iso(current + timedelta(seconds=left))
    check.observe(projected_full_s=round(left), projected_full_at=reaches)
    check.note(f"{what} {show(value)}, {growth}: projected to reach {show(limit)} in {format_duration(left)}")
    check.threshold(
        f"projected time until {what} reaches {show(limit)}",
        left,
        trend.full_in,
        lower_is_worse=True,
        show=format_duration,
        detail=f"{what} {show(value)}, {growth}; projected {_when(reaches)}",
    )
