"""Prometheus series as the checks show and judge them: PromQL's way of writing one, values in a unit, offenders.

Shared by the `prometheus` KPIs (series a query returned) and `metrics` (series an exporter
exposes): a series is `{"labels": {...}, "value": "0.25"}`, its value the string Prometheus
writes ("0.25", "NaN", "+Inf") so facts stay plain JSON.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Protocol

from opsproof.outcomes import reaches
from opsproof.units import format_duration, format_size


class _Judged(Protocol):
    @property
    def threshold(self) -> Any: ...
    @property
    def lower_is_worse(self) -> bool: ...


def labels_text(labels: dict[str, str]) -> str:
    """up{instance="10.0.0.5:9100", job="node"}, as PromQL writes a series (a bare name without braces)."""
    inner = ", ".join(f'{k}="{v}"' for k, v in labels.items() if k != "__name__")
    name = labels.get("__name__", "")
    return name if name and not inner else name + "{" + inner + "}"


def show_value(unit: str) -> Callable[[float], str]:
    """How a measure's values and thresholds read: 0.42 seconds -> 420ms, a ratio 0.012 -> 1.2%."""

    def show(value: float) -> str:
        if math.isinf(value):
            return "+Inf" if value > 0 else "-Inf"
        if unit == "seconds":
            return f"{value * 1000:.3g}ms" if abs(value) < 1 else format_duration(value)
        if unit == "percent":
            return f"{value:.4g}%"
        if unit == "ratio":
            return f"{value * 100:.4g}%"
        if unit == "bytes":
            return format_size(value) if value >= 0 else f"{value:g}B"
        return f"{value:.6g}"

    return show


def offenders(series: list[dict[str, Any]], spec: _Judged, total: int) -> str:
    """'2 of 4 series past the fail threshold, 1 more past warn' (of the worst kept when there were more)."""
    levels = {"fail": 0, "warn": 0}
    for entry in series:
        value = float(entry["value"])
        for level in ("fail", "warn"):
            limit = getattr(spec.threshold, level)
            if limit is not None and reaches(value, limit, lower_is_worse=spec.lower_is_worse):
                levels[level] += 1
                break
    # The probe keeps the worst series: when all of them are past, more may be.
    at_least = "at least " if total > len(series) and sum(levels.values()) == len(series) else ""
    parts = []
    if levels["fail"]:
        parts.append(f"{at_least}{levels['fail']} of {total} series past the fail threshold")
    if levels["warn"]:
        more = " more" if levels["fail"] else f" of {total} series"
        parts.append(f"{at_least}{levels['warn']}{more} past the warn threshold")
    return ", ".join(parts)
