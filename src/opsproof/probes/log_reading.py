"""What every `logs` reader shares: the line counter, the byte splitter, the reading's account, the refusals.

A reader (`logs_kubernetes`, `logs_loki`, `logs_cloudwatch`, `logs_host`) feeds the lines it
reads to a `LineCounter`, notes its streams in a `Reading`, and raises `ReadDenied`,
`ReadFailed` or `ConfigUnusable` for what its source answered; `probes.logs` turns all of it
into facts.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from opsproof.errors import OpsproofError
from opsproof.redaction import Redactor
from opsproof.targets.logs import LogsTarget

EXAMPLE_CHARS = 240
# Credentials that applications write into their own logs ("password=...", "Bearer ..."):
# masked in the examples, since a log line is not a profile value the redactor knows.
_CREDENTIAL = re.compile(
    r"(?i)(\b(?:password|passwd|pwd|secret|token|api[_-]?key|access[_-]?key|authorization)\b[\"']?\s*[=:]\s*)"
    r"(?:bearer\s+|basic\s+)?(\"[^\"]*\"|'[^']*'|[^\s,;&\"']+)"
    r"|(\bbearer\s+)[A-Za-z0-9._~+/=-]{8,}"
)


def mask_credentials(line: str) -> str:
    """A log line with credential-looking values masked: `password=hunter2` -> `password=***`."""
    return _CREDENTIAL.sub(lambda m: f"{m.group(1) or m.group(3)}***", line)


@dataclass
class LineCounter:
    """Counts every pattern of an item in the lines fed to it, keeping a few examples of each."""

    patterns: list[tuple[str, re.Pattern[str]]]
    keep: int
    counts: dict[str, int] = field(default_factory=dict)
    examples: dict[str, list[str]] = field(default_factory=dict)
    lines: int = 0
    bytes: int = 0

    # One search of every pattern at once: most lines match none, and they then cost one
    # C-level search instead of one Python-level call per pattern (5x on 100 patterns, measured).
    any_pattern: re.Pattern[str] | None = None

    @classmethod
    def of(cls, target: LogsTarget) -> LineCounter:
        counter = cls([(p.name, p.regex) for p in target.patterns], target.examples)
        counter.counts = {p.name: 0 for p in target.patterns}
        counter.examples = {p.name: [] for p in target.patterns}
        counter.any_pattern = combined([p.regex for p in target.patterns])
        return counter

    def feed(self, lines: Iterable[str], where: str = "") -> None:
        for line in lines:
            self.lines += 1
            self.bytes += len(line) + 1
            if self.any_pattern is not None and self.any_pattern.search(line) is None:
                continue
            for name, regex in self.patterns:
                if regex.search(line) is None:
                    continue
                self.counts[name] += 1
                kept = self.examples[name]
                if len(kept) < self.keep:
                    kept.append(_example(line, where))


def combined(patterns: list[re.Pattern[str]]) -> re.Pattern[str] | None:
    """One regex matching wherever any of `patterns` does; None where joining them could change a match.

    A backreference (`\\1`, `(?P=name)`) would point at another pattern's group once joined, and
    global inline flags (`(?i)` mid-expression) are refused: those items search pattern by pattern.
    """
    if len(patterns) < 2 or any(_REFERENCE.search(p.pattern) for p in patterns):
        return None
    parts = [f"(?i:{p.pattern})" if p.flags & re.IGNORECASE else f"(?:{p.pattern})" for p in patterns]
    try:
        return re.compile("|".join(parts))
    except re.error:
        return None


_REFERENCE = re.compile(r"\\[1-9]|\(\?P=|\(\?[aiLmsux-]*\)")


def _example(line: str, where: str) -> str:
    text = mask_credentials(line.rstrip("\r\n"))
    text = text[:EXAMPLE_CHARS] + ("..." if len(text) > EXAMPLE_CHARS else "")
    return f"{where}: {text}" if where else text


class LineSplitter:
    """Bytes in chunks -> whole lines; `finish(cut=True)` drops a last line the byte cap split."""

    def __init__(self) -> None:
        self._rest = b""

    def add(self, chunk: bytes) -> list[str]:
        data = self._rest + chunk
        *whole, self._rest = data.split(b"\n")
        return [line.decode("utf-8", "replace") for line in whole]

    def finish(self, *, cut: bool) -> list[str]:
        rest, self._rest = self._rest, b""
        return [] if cut or not rest else [rest.decode("utf-8", "replace")]


class ReadDenied(OpsproofError):
    """The source refused the credentials or the permission: the checks cannot run (an `error`)."""


class ReadFailed(OpsproofError):
    """The source answered that the thing read is not there or not usable (a `failed` check)."""


@dataclass
class Reading:
    """What a reader gives back besides the counter: the streams and what went wrong."""

    where: str
    streams: int = 0
    cut: list[str] = field(default_factory=list)
    stream_errors: dict[str, str] = field(default_factory=dict)
    empty_reason: str | None = None
    calls: int = 0
    # The run's secrets: what a reader says of a failure (an error, a server's answer) goes through it.
    redactor: Redactor = field(default_factory=Redactor)


class ConfigUnusable(OpsproofError):
    """The item's source settings cannot be used (a kubeconfig, a LogQL the server refuses): an `error`."""
