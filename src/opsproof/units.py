"""Durations, sizes and percentages as users write them in profiles, and back.

>>> parse_duration("250ms"), parse_size("1KB"), parse_percent("80%")
(0.25, 1024, 80.0)
"""

from __future__ import annotations

import re

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h|d)$")
_DURATION_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_SIZE = re.compile(r"^(\d+(?:\.\d+)?)(B|KB|MB|GB|TB)$", re.IGNORECASE)
_SIZE_BYTES = {"B": 1, "KB": 1024, "MB": 1024**2, "GB": 1024**3, "TB": 1024**4}
_PERCENT = re.compile(r"^(\d+(?:\.\d+)?)%$")

DURATION_HELP = "a duration such as 250ms, 5s, 10m, 26h or 30d"
SIZE_HELP = "a size such as 512B, 1KB, 10MB or 2GB"
PERCENT_HELP = "a percentage such as 80%"
DURATION_PATTERN = _DURATION.pattern
SIZE_PATTERN = _SIZE.pattern
PERCENT_PATTERN = _PERCENT.pattern


def parse_duration(text: object) -> float:
    """Seconds in a duration string; bare numbers are refused because the unit is ambiguous."""
    match = _DURATION.match(text) if isinstance(text, str) else None
    if match is None:
        raise ValueError(f"invalid duration {text!r}: expected {DURATION_HELP}")
    return float(match.group(1)) * _DURATION_SECONDS[match.group(2)]


def parse_size(text: object) -> int:
    """Bytes in a size string (powers of 1024)."""
    match = _SIZE.match(text) if isinstance(text, str) else None
    if match is None:
        raise ValueError(f"invalid size {text!r}: expected {SIZE_HELP}")
    return int(float(match.group(1)) * _SIZE_BYTES[match.group(2).upper()])


def parse_percent(text: object) -> float:
    """The number in a percentage string, 0-100."""
    match = _PERCENT.match(text) if isinstance(text, str) else None
    if match is None:
        raise ValueError(f"invalid percentage {text!r}: expected {PERCENT_HELP}")
    value = float(match.group(1))
    if value > 100:
        raise ValueError(f"invalid percentage {text!r}: must be at most 100%")
    return value


def format_duration(seconds: float) -> str:
    """The shortest readable form: 0.0421 -> '42ms', 93784 -> '1d 2h'."""
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 60:
        return f"{seconds:.2f}s".replace(".00s", "s")
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    if days:
        return f"{days}d {hours}h" if hours else f"{days}d"
    if hours:
        return f"{hours}h {minutes}m" if minutes else f"{hours}h"
    return f"{minutes}m {secs}s" if secs else f"{minutes}m"


def format_size(size: float) -> str:
    """1536 -> '1.5KB'."""
    for unit in ("B", "KB", "MB", "GB"):
        if abs(size) < 1024:
            return f"{size:.0f}{unit}" if unit == "B" else f"{size:.1f}{unit}"
        size /= 1024
    return f"{size:.1f}TB"


def format_percent(value: float) -> str:
    return f"{value:.1f}%"
