"""Measures in a unit, and thresholds written in it: `{warn: 100ms, fail: 500ms}` of a measure in seconds.

Prometheus KPIs, exporter series (`metrics`) and JSON values (`http` `expect.values`) are
plain numbers whose meaning the profile gives with `unit:`; their limits may be written in
that unit (500ms, 1%, 2GB) and are converted here, at load, to the number the measure is in.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from typing import Annotated, Any, Literal

from pydantic import StrictFloat, WithJsonSchema

from opsproof import units

Unit = Literal["number", "seconds", "percent", "ratio", "bytes"]
UNITS: tuple[str, ...] = ("number", "seconds", "percent", "ratio", "bytes")

UnitLimit = Annotated[
    StrictFloat,
    WithJsonSchema(
        {
            "anyOf": [{"type": "number"}, {"type": "string"}],
            "description": "a number, or a value in the measure's unit: 500ms (seconds), 1% (percent, ratio), "
            "2GB (bytes)",
        }
    ),
]


def limit_in_unit(value: Any, unit: str) -> float:
    """A limit: a number as is, or a string in the measure's unit (100ms, 1%, 2GB)."""
    if isinstance(value, bool):
        raise ValueError(f"invalid threshold {value!r}: expected a number")
    if isinstance(value, int | float):
        if not math.isfinite(value):
            raise ValueError(f"invalid threshold {value!r}: expected a finite number")
        return float(value)
    if not isinstance(value, str):
        raise ValueError(f"invalid threshold {value!r}: expected a number")
    if unit == "seconds":
        return units.parse_duration(value)
    if unit == "bytes":
        return float(units.parse_size(value))
    if unit in ("percent", "ratio"):
        percent = float(value[:-1]) if re.fullmatch(r"\d+(\.\d+)?%", value) else None
        if percent is None:
            raise ValueError(f"invalid threshold {value!r}: expected a number or a percentage such as 1%")
        return percent if unit == "percent" else percent / 100
    raise ValueError(
        f"invalid threshold {value!r}: a number is expected (a value with a unit needs `unit:` seconds, percent, "
        "ratio or bytes)"
    )


def unit_of_text(value: str) -> str | None:
    """The unit a limit string is written in, when it says so: 80% percent, 2GB bytes, 500ms seconds."""
    if re.fullmatch(r"\d+(\.\d+)?%", value):
        return "percent"
    if re.fullmatch(units.SIZE_PATTERN, value):
        return "bytes"
    if re.fullmatch(units.DURATION_PATTERN, value):
        return "seconds"
    return None


def limits_in_unit(data: Any, keys: Iterable[str], *, default_unit: str = "number") -> Any:
    """A model's raw `data` with the limits under `keys` (a threshold mapping or one value) in its `unit`.

    For a `model_validator(mode="before")`: the limits are read in the unit, a sibling key.
    """
    if not isinstance(data, dict):
        return data
    unit = data.get("unit", default_unit)
    if unit not in UNITS:
        return data  # the unit's own error is clearer
    converted = dict(data)
    for key in keys:
        given = data.get(key)
        if isinstance(given, dict):
            limits = dict(given)
            for level in ("warn", "fail"):
                if limits.get(level) is not None:
                    try:
                        limits[level] = limit_in_unit(limits[level], unit)
                    except ValueError as exc:
                        raise ValueError(f"{key}.{level}: {exc}") from None
            converted[key] = limits
        elif given is not None and not isinstance(given, list):
            try:
                converted[key] = limit_in_unit(given, unit)
            except ValueError as exc:
                raise ValueError(f"{key}: {exc}") from None
    return converted


def with_trend_in_unit(data: Any) -> Any:
    """A model's raw `data` with `trend.limit` read in its `unit` (`trend: {limit: 10GB}` of a measure in bytes)."""
    trend = data.get("trend") if isinstance(data, dict) else None
    if not isinstance(trend, dict) or "limit" not in trend or data.get("unit", "number") not in UNITS:
        return data
    try:
        return {**data, "trend": {**trend, "limit": limit_in_unit(trend["limit"], data.get("unit", "number"))}}
    except ValueError as exc:
        raise ValueError(f"trend.limit: {exc}") from None


def measured_in_unit(value: Any, unit: str) -> float | None:
    """A measured value (a JSON number, or a string such as "85%", "1.2s", "2GB") in `unit`; None if not a number."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return float(value)
    if not isinstance(value, str):
        return None
    text = value.strip()
    try:
        return float(text)
    except ValueError:
        pass
    try:
        if unit in ("percent", "ratio") and text.endswith("%"):
            return float(text[:-1]) / (100 if unit == "ratio" else 1)
        if unit == "seconds":
            return units.parse_duration(text)
        if unit == "bytes":
            return float(units.parse_size(text))
    except ValueError:
        return None
    return None
