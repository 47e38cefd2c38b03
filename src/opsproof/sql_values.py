"""A query's values as evidence: JSON-friendly, how PostgreSQL spells them, cut to a sane length."""

from __future__ import annotations

import datetime as dt
import json
import math
import uuid
from decimal import Decimal
from typing import Any

VALUE_CHARS = 10_000  # longer values are cut (and flagged) before they reach the evidence


def json_value(value: Any) -> Any:
    """A result value as JSON: numbers stay numbers, intervals become seconds, the rest text."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, Decimal):
        if not value.is_finite():
            return str(value)
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, (bytes, bytearray, memoryview)):
        return "\\x" + bytes(value).hex()
    if isinstance(value, (list, tuple)):
        return [json_value(v) for v in value]
    if isinstance(value, dict):
        return {str(k): json_value(v) for k, v in value.items()}
    if isinstance(value, uuid.UUID):
        return str(value)
    return str(value)


def value_text(value: Any) -> str | None:
    """How the value reads as text: PostgreSQL's spelling for booleans, ISO for times."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, (list, dict, tuple)):
        return json.dumps(json_value(value))
    shown = json_value(value)
    return shown if isinstance(shown, str) else str(value)


def cut(value: Any) -> tuple[Any, bool]:
    if isinstance(value, str) and len(value) > VALUE_CHARS:
        return value[:VALUE_CHARS], True
    return value, False
