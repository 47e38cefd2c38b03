"""Sample values as Prometheus writes them ("0.25", "NaN", "+Inf"): read, ordered worst first, written.

The `prometheus` probe (query results) and the `metrics` probe (an exporter's exposition)
keep series worst first with their values as strings, so facts stay plain JSON.
"""

from __future__ import annotations

import math


def number(value: str) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def badness(value: str, lower_is_worse: bool) -> float:
    """A sort key: smaller is worse. NaN sorts last (it is no value at all)."""
    found = number(value)
    if math.isnan(found):
        return math.inf
    return found if lower_is_worse else -found


def format_sample(value: float) -> str:
    """A sample's value as Prometheus writes it: 1240, 0.25, NaN, +Inf."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return str(int(value)) if value.is_integer() and abs(value) < 1e15 else repr(value)
