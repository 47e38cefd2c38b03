"""Unit tests of opsproof.units: the duration, size and percentage parsers and formatters."""

from __future__ import annotations

import re

import pytest

from opsproof import units
from opsproof.units import (
    format_duration,
    format_percent,
    format_size,
    parse_duration,
    parse_percent,
    parse_size,
)

# --- parse_duration -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("250ms", 0.25),
        ("1ms", 0.001),
        ("5s", 5.0),
        ("1.5s", 1.5),
        ("10m", 600.0),
        ("0.5h", 1800.0),
        ("26h", 93600.0),
        ("30d", 2592000.0),
        ("0s", 0.0),
    ],
)
def test_parse_duration_accepts_documented_units(text: str, seconds: float) -> None:
    result = parse_duration(text)
    assert isinstance(result, float)
    assert result == pytest.approx(seconds)


@pytest.mark.parametrize(
    "bad",
    [
        "5",  # a bare number: the unit is ambiguous
        "5 sec",
        "5sec",
        "5 seconds",
        "",
        "   ",
        None,
        -1,
        5,
        5.0,
        True,
        b"5s",
        "1.5.2s",
        "-5s",
        "fast",
        "s",
        "ms",
        "5s5",
        "5s 3m",
        "1e3s",
        "5w",
        "5y",
        "5 s s",
        "5s\n",  # fullmatch: `$` would allow a trailing newline
        "\n5s",
        "5s ",
        "\u0665s",  # an Arabic-Indic five: `\d` without re.ASCII would take it
        "1\u0660s",
        "\uff15s",  # a fullwidth five
    ],
)
def test_parse_duration_refuses(bad: object) -> None:
    with pytest.raises(ValueError, match=r"^invalid duration ") as info:
        parse_duration(bad)
    message = str(info.value)
    assert repr(bad) in message
    assert units.DURATION_HELP in message


@pytest.mark.parametrize("bad", ["100 ms", "5 s", "10\tm", "250 ms"])
def test_parse_duration_refuses_space_between_number_and_unit(bad: str) -> None:
    # profile.py's docstring shows "100 ms" as an invalid duration.
    with pytest.raises(ValueError, match=re.escape(f"invalid duration {bad!r}")):
        parse_duration(bad)


# --- parse_size -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("0B", 0),
        ("512B", 512),
        ("1KB", 1024),
        ("1.5KB", 1536),
        ("10MB", 10 * 1024 * 1024),
        ("2GB", 2 * 1024 * 1024 * 1024),
        ("1TB", 1024**4),
        ("1kb", 1024),
    ],
)
def test_parse_size_uses_powers_of_1024(text: str, size: int) -> None:
    result = parse_size(text)
    assert type(result) is int
    assert result == size


@pytest.mark.parametrize(
    "bad",
    [
        "1",
        "1024",
        "",
        None,
        1024,
        1.5,
        "1K",
        "1KiB",
        "1 kilobyte",
        "10 megabytes",
        "1PB",
        "-1KB",
        "1.2.3KB",
        "1 KB",
        "KB",
        "1KB2",
        "big",
        "1KB\n",
        "\u0661KB",  # an Arabic-Indic one
    ],
)
def test_parse_size_refuses(bad: object) -> None:
    with pytest.raises(ValueError, match=r"^invalid size ") as info:
        parse_size(bad)
    message = str(info.value)
    assert repr(bad) in message
    assert units.SIZE_HELP in message


@pytest.mark.parametrize("bad", ["1.5B", "0.5B", "0.1KB", "1.0000001MB"])
def test_parse_size_refuses_a_fraction_of_a_byte(bad: str) -> None:
    with pytest.raises(ValueError, match=re.escape(f"invalid size {bad!r}: not a whole number of bytes")):
        parse_size(bad)


@pytest.mark.parametrize(("text", "size"), [("1.5KB", 1536), ("0.5KB", 512), ("1.0B", 1), ("0.25MB", 262144)])
def test_parse_size_accepts_a_fraction_that_is_whole_bytes(text: str, size: int) -> None:
    result = parse_size(text)
    assert type(result) is int
    assert result == size


# --- parse_percent --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "value"),
    [("80%", 80.0), ("0%", 0.0), ("100%", 100.0), ("99.5%", 99.5)],
)
def test_parse_percent(text: str, value: float) -> None:
    result = parse_percent(text)
    assert isinstance(result, float)
    assert result == value


@pytest.mark.parametrize(
    "bad",
    ["80", "", None, 80, 0.8, "-5%", "80%%", "%", "eighty%", "1.2.3%", "80 percent", "80 %", "80%\n", "\u0668\u0660%"],
)
def test_parse_percent_refuses_malformed(bad: object) -> None:
    with pytest.raises(ValueError, match=r"^invalid percentage ") as info:
        parse_percent(bad)
    message = str(info.value)
    assert repr(bad) in message
    assert units.PERCENT_HELP in message


@pytest.mark.parametrize("bad", ["100.1%", "101%", "150%", "1000%"])
def test_parse_percent_refuses_over_100(bad: str) -> None:
    with pytest.raises(ValueError, match=re.escape(f"invalid percentage {bad!r}: must be at most 100%")):
        parse_percent(bad)


# --- the patterns exported for the JSON schema agree with the parsers -----------------------


@pytest.mark.parametrize(
    ("pattern", "parse", "good", "bad"),
    [
        (units.DURATION_PATTERN, parse_duration, ["250ms", "30d"], ["5", "5 sec", "fast"]),
        (units.SIZE_PATTERN, parse_size, ["512B", "2GB"], ["1", "1KiB"]),
        (units.PERCENT_PATTERN, parse_percent, ["80%"], ["80", "-5%"]),
    ],
)
def test_exported_patterns_agree_with_parsers(pattern: str, parse, good: list[str], bad: list[str]) -> None:
    flags = re.IGNORECASE if parse is parse_size else 0
    for text in good:
        assert re.match(pattern, text, flags), text
        parse(text)
    for text in bad:
        assert not re.match(pattern, text, flags), text
        with pytest.raises(ValueError):
            parse(text)


# --- formatting -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.0421, "42ms"),
        (0.25, "250ms"),
        (0, "0ms"),
        (1, "1s"),
        (5, "5s"),
        (1.25, "1.25s"),
        (5.5, "5.5s"),
        (0.9994, "999ms"),
        (60, "1m"),
        (90, "1m 30s"),
        (600, "10m"),
        (3600, "1h"),
        (3660, "1h 1m"),
        (86400, "1d"),
        (93600, "1d 2h"),
        (93784, "1d 2h"),
        (2592000, "30d"),
    ],
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0.9996, "1s"), (59.999, "1m"), (59.996, "1m"), (59.994, "59.99s"), (3599.6, "1h"), (86399.7, "1d")],
)
def test_format_duration_rounding_at_unit_boundaries(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


@pytest.mark.parametrize(
    ("size", "text"),
    [
        (0, "0B"),
        (512, "512B"),
        (1023, "1023B"),
        (1024, "1.0KB"),
        (1536, "1.5KB"),
        (10 * 1024**2, "10.0MB"),
        (2 * 1024**3, "2.0GB"),
        (1024**4, "1.0TB"),
        (5 * 1024**5, "5120.0TB"),
    ],
)
def test_format_size(size: int, text: str) -> None:
    assert format_size(size) == text


@pytest.mark.parametrize(
    ("size", "text"),
    [(1024**2 - 1, "1.0MB"), (1023.6, "1.0KB"), (1023.4, "1023B"), (1024**3 - 1, "1.0GB"), (1024**4 - 1, "1.0TB")],
)
def test_format_size_rounding_at_unit_boundary(size: float, text: str) -> None:
    # Round first, then choose the unit: never '1024.0KB' or '1024B'.
    assert format_size(size) == text


@pytest.mark.parametrize(("value", "text"), [(80, "80.0%"), (99.95, "100.0%"), (0, "0.0%"), (12.34, "12.3%")])
def test_format_percent(value: float, text: str) -> None:
    assert format_percent(value) == text


@pytest.mark.parametrize("text", ["250ms", "5s", "10m", "26h", "30d"])
def test_format_of_parsed_duration_is_readable(text: str) -> None:
    # Exact round trip for the contract's examples (26h is shown as 1d 2h).
    expected = {"26h": "1d 2h"}.get(text, text)
    assert format_duration(parse_duration(text)) == expected


@pytest.mark.parametrize(("text", "shown"), [("512B", "512B"), ("1KB", "1.0KB"), ("10MB", "10.0MB"), ("2GB", "2.0GB")])
def test_format_of_parsed_size(text: str, shown: str) -> None:
    assert format_size(parse_size(text)) == shown
