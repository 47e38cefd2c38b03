"""Durations, sizes and percentages as users write them in profiles, and back.

>>> parse_duration("250ms"), parse_size("1KB"), parse_percent("80%")
(0.25, 1024, 80.0)
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

# ASCII digits only, and `fullmatch` below: a trailing newline or an Arabic-Indic digit is no duration.
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)", re.ASCII)
_DURATION_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_SIZE = re.compile(r"(\d+(?:\.\d+)?)(B|KB|MB|GB|TB)", re.IGNORECASE | re.ASCII)
_SIZE_BYTES = {"B": 1, "KB": 1024, "MB": 1024**2, "GB": 1024**3, "TB": 1024**4}
_PERCENT = re.compile(r"(\d+(?:\.\d+)?)%", re.ASCII)

DURATION_HELP = "a duration such as 250ms, 5s, 10m, 26h or 30d"
SIZE_HELP = "a size such as 512B, 1KB, 10MB or 2GB"
PERCENT_HELP = "a percentage such as 80%"
DURATION_PATTERN = f"^{_DURATION.pattern}$"
# JSON Schema patterns take no flags: spell out the case-insensitive units.
SIZE_PATTERN = r"^(\d+(?:\.\d+)?)([Bb]|[KkMmGgTt][Bb])$"
PERCENT_PATTERN = f"^{_PERCENT.pattern}$"


def parse_duration(text: object) -> float:
    """Seconds in a duration string; bare numbers are refused because the unit is ambiguous."""
    match = _DURATION.fullmatch(text) if isinstance(text, str) else None
    if match is None:
        raise ValueError(f"invalid duration {text!r}: expected {DURATION_HELP}")
    return float(match.group(1)) * _DURATION_SECONDS[match.group(2)]


def parse_size(text: object) -> int:
    """Bytes in a size string (powers of 1024)."""
    match = _SIZE.fullmatch(text) if isinstance(text, str) else None
    if match is None:
        raise ValueError(f"invalid size {text!r}: expected {SIZE_HELP}")
    size = float(match.group(1)) * _SIZE_BYTES[match.group(2).upper()]
    if size != int(size):
        raise ValueError(f"invalid size {text!r}: not a whole number of bytes")
    return int(size)


def parse_percent(text: object) -> float:
    """The number in a percentage string, 0-100."""
    match = _PERCENT.fullmatch(text) if isinstance(text, str) else None
    if match is None:
        raise ValueError(f"invalid percentage {text!r}: expected {PERCENT_HELP}")
    value = float(match.group(1))
    if value > 100:
        raise ValueError(f"invalid percentage {text!r}: must be at most 100%")
    return value


def format_duration(seconds: float) -> str:
    """The shortest readable form: 0.0421 -> '42ms', 5.5 -> '5.5s', 93784 -> '1d 2h'."""
    # Round first, then choose the unit, so 0.9996 is '1s' and not '1000ms'.
    if round(seconds * 1000) < 1000:
        return f"{round(seconds * 1000)}ms"
    if round(seconds, 2) < 60:
        return f"{round(seconds, 2):g}s"
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
    if round(size) < 1024:
        return f"{round(size)}B"
    for unit in ("KB", "MB", "GB"):
        size /= 1024
        if round(size, 1) < 1024:
            return f"{size:.1f}{unit}"
    return f"{size / 1024:.1f}TB"


def format_percent(value: float) -> str:
    return f"{value:.1f}%"


def format_utc(moment: datetime) -> str:
    """A moment as UTC ISO 8601 with milliseconds, as opsproof records every time: '2026-11-24T10:45:00.123Z'."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def utc_now() -> str:
    """Now, as `format_utc` writes it."""
    return format_utc(datetime.now(UTC))
