"""JSONPath-style paths to one value of a JSON document: `$.error_budget.remaining`, `$.items[0].name`.

A small, safe subset, read by a regular expression and walked by hand (no `eval`, no
filter expressions, no wildcards: a path names one value)::

    $                    the whole document
    .name                a key (letters, digits, _ and -)
    ['any key'] ["k"]    a key with other characters (dots, spaces)
    [0] [-1]             an element of a list, from the end when negative

>>> value_at(parse_path("$.slos[0]['error budget']"), {"slos": [{"error budget": 0.2}]})
0.2
"""

from __future__ import annotations

import re
from typing import Any

from opsproof.errors import OpsproofError

Path = tuple[str | int, ...]

_SEGMENT = re.compile(r"\.([A-Za-z_][A-Za-z0-9_-]*)|\[(-?\d+)\]|\['([^']*)'\]|\[\"([^\"]*)\"\]")


class PathAbsent(OpsproofError, LookupError):
    """The document has no value at the path; the message names where the walk stopped and what was there."""


def parse_path(text: str) -> Path:
    """The segments of a path; ValueError naming the first character that is not a segment."""
    if not text.startswith("$"):
        raise ValueError(f"path {text!r} must start with $ (the document), e.g. $.status")
    segments: list[str | int] = []
    position = 1
    while position < len(text):
        found = _SEGMENT.match(text, position)
        if found is None:
            raise ValueError(
                f"path {text!r}: cannot read {text[position:]!r} (use .key, ['key'] or [index]; "
                "wildcards and filters are not supported)"
            )
        key, index, single, double = found.groups()
        segments.append(int(index) if index is not None else next(s for s in (key, single, double) if s is not None))
        position = found.end()
    return tuple(segments)


def format_path(path: Path) -> str:
    """$.a.b[0]['c d'], as a user writes it."""
    text = "$"
    for segment in path:
        if isinstance(segment, int):
            text += f"[{segment}]"
        elif re.fullmatch(r"[A-Za-z_][A-Za-z0-9_-]*", segment):
            text += f".{segment}"
        else:
            text += f"['{segment}']"
    return text


def _kind(value: Any) -> str:
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "a list"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    return "a number" if isinstance(value, int | float) else "a string"


def value_at(path: Path, document: Any) -> Any:
    """The value at `path`; PathAbsent saying where the walk stopped and what the document has there."""
    value = document
    for depth, segment in enumerate(path):
        here = format_path(path[:depth])
        if isinstance(segment, int):
            if not isinstance(value, list):
                raise PathAbsent(f"{here} is {_kind(value)}, not a list")
            if not -len(value) <= segment < len(value):
                raise PathAbsent(f"{here} has {len(value)} element(s), no [{segment}]")
            value = value[segment]
            continue
        if not isinstance(value, dict):
            raise PathAbsent(f"{here} is {_kind(value)}, not an object")
        if segment not in value:
            keys = ", ".join(sorted(map(str, value))[:10]) or "no keys"
            more = f" and {len(value) - 10} more" if len(value) > 10 else ""
            raise PathAbsent(f"{here} has no key {segment!r} (it has {keys}{more})")
        value = value[segment]
    return value
