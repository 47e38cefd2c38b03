"""Comparisons checks share: JSON subset matching (more to come for SQL expectations)."""

from __future__ import annotations

import json
from typing import Any


def json_subset_mismatches(expected: Any, actual: Any, path: str = "$") -> list[str]:
    """Where `actual` fails to contain `expected` (dict keys subset, lists element-wise), one line each.

    >>> json_subset_mismatches({"status": "healthy"}, {"status": "degraded", "db": "ok"})
    ["$.status is 'degraded', expected 'healthy'"]
    """
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            return [f"{path} is {_short(actual)}, expected an object"]
        problems: list[str] = []
        for key, value in expected.items():
            if key not in actual:
                problems.append(f"{path}.{key} is missing")
            else:
                problems.extend(json_subset_mismatches(value, actual[key], f"{path}.{key}"))
        return problems
    if isinstance(expected, list):
        if not isinstance(actual, list) or len(actual) < len(expected):
            return [f"{path} is {_short(actual)}, expected a list like {_short(expected)}"]
        problems = []
        for index, value in enumerate(expected):
            problems.extend(json_subset_mismatches(value, actual[index], f"{path}[{index}]"))
        return problems
    if expected != actual or (type(expected) is not type(actual) and not _both_numbers(expected, actual)):
        return [f"{path} is {_short(actual)}, expected {_short(expected)}"]
    return []


def _both_numbers(a: Any, b: Any) -> bool:
    return all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in (a, b))


def _short(value: Any) -> str:
    text = repr(value) if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= 80 else text[:77] + "..."
