"""Logs: one read of an item's source, every pattern counted in the same pass.

Each `logs` item names one source (see `opsproof.targets.logs`); its reader streams the
lines of the window once and hands them to a `LineCounter`, which counts every pattern
of the item and keeps a few matching lines as examples. So 10 patterns over 50 pods
cost one pod list and 50 log reads, not 500. A reader never writes: pod logs are GETs
(`get` on `pods/log`), Loki is `query_range`, CloudWatch is `FilterLogEvents`, a host
runs `tail`/`journalctl`.

Every reader stops at the item's deadline (a black hole costs its timeout, no more) and
at `limit_bytes` per stream, and says which streams it cut: a count from a cut stream is
a lower bound.

The readers, one module each: `logs_kubernetes`, `logs_loki`, `logs_cloudwatch`, `logs_host`.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import Field

from opsproof.probes import Facts, ProbeContext, ProbeKind, each_as_done
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


class ReadDenied(Exception):
    """The source refused the credentials or the permission: the checks cannot run (an `error`)."""


class ReadFailed(Exception):
    """The source answered that the thing read is not there or not usable (a `failed` check)."""


class LogsFacts(Facts):
    source: str = Field(description="kubernetes, loki, cloudwatch or host")
    where: str = Field(description="what was read, in words: pods app=x in namespace y, a Loki query, a log group")
    within_s: float = Field(description="the window, in seconds")
    config_error: str | None = Field(None, description="the source's settings cannot be used (kubeconfig, LogQL)")
    denied: str | None = Field(None, description="the source refused the credentials or a permission")
    streams: int = Field(0, description="log streams read: pod containers, Loki streams, CloudWatch streams, a file")
    empty_reason: str | None = Field(None, description="why there was nothing to read (no pod matches)")
    lines: int = Field(0, description="lines read in the window")
    bytes: int = Field(0, description="bytes of those lines")
    cut: list[str] = Field(default_factory=list, description="streams cut at limit_bytes (or max_lines)")
    stream_errors: dict[str, str] = Field(default_factory=dict, description="stream -> why it could not be read")
    counts: dict[str, int] = Field(default_factory=dict, description="pattern -> matching lines")
    examples: dict[str, list[str]] = Field(default_factory=dict, description="pattern -> a few matching lines")
    calls: int = Field(0, description="requests or commands the read took (every one a read)")

    def observed(self) -> dict[str, Any]:
        # What every logs record carries; the check adds its pattern's count and examples.
        shown: dict[str, Any] = {"source": self.source, "where": self.where, "reached": self.reached}
        for name in ("timed_out", "failure", "config_error", "denied", "empty_reason"):
            value = getattr(self, name)
            if value:
                shown[name] = value
        shown |= {"within_s": self.within_s, "streams": self.streams, "lines": self.lines, "bytes": self.bytes}
        if self.cut:
            shown["cut"] = self.cut[:20]
        if self.stream_errors:
            shown["stream_errors"] = dict(list(self.stream_errors.items())[:20])
        shown["calls"] = self.calls
        shown["elapsed_s"] = round(self.elapsed_s, 4)
        return shown


@dataclass
class Reading:
    """What a reader gives back besides the counter: the streams and what went wrong."""

    where: str
    streams: int = 0
    cut: list[str] = field(default_factory=list)
    stream_errors: dict[str, str] = field(default_factory=dict)
    empty_reason: str | None = None
    calls: int = 0


async def read_source(target: LogsTarget, timeout: float, counter: LineCounter, reading: Reading) -> None:
    """Run the item's reader; it fills `counter` and `reading` as it goes."""
    if target.source == "kubernetes":
        from opsproof.probes.logs_kubernetes import read_pod_logs

        await read_pod_logs(target, timeout, counter, reading)
    elif target.source == "loki":
        from opsproof.probes.logs_loki import read_loki

        await read_loki(target, timeout, counter, reading)
    elif target.source == "cloudwatch":
        from opsproof.probes.logs_cloudwatch import read_cloudwatch

        await read_cloudwatch(target, timeout, counter, reading)
    else:
        from opsproof.probes.logs_host import read_host_log

        await read_host_log(target, timeout, counter, reading)


def describe(target: LogsTarget) -> str:
    """The source in words, for the record: no credentials, no headers."""
    settings = target.source_settings
    if target.source == "kubernetes":
        selected = f"pods {settings.selector}" if settings.selector else "every pod"
        container = f", container {settings.container}" if settings.container else ""
        return f"{selected} in namespace {settings.namespace}{container}"
    if target.source == "loki":
        return f"Loki {settings.url} {settings.query}"
    if target.source == "cloudwatch":
        prefix = f" streams {settings.stream_prefix}*" if settings.stream_prefix else ""
        return f"CloudWatch Logs {settings.log_group}{prefix}"
    from opsproof.targets.hosts import parse_host_url

    what = settings.path or ("journal" + (f" of {settings.unit}" if settings.unit else ""))
    return f"{what} on {parse_host_url(settings.url).shown}"


async def probe_one(target: LogsTarget, ctx: ProbeContext) -> LogsFacts:
    timeout = ctx.profile.timeout_of(target)
    counter = LineCounter.of(target)
    reading = Reading(where=describe(target))
    base: dict[str, Any] = {"target": target.name, "source": target.source, "within_s": target.within}
    async with ctx.limit:
        started = time.perf_counter()
        found: dict[str, Any] = {"reached": True}
        try:
            async with asyncio.timeout(timeout):
                await read_source(target, timeout, counter, reading)
        except TimeoutError:
            elapsed = time.perf_counter() - started
            # Reached only if some stream was read before the deadline; the count is then partial.
            found = {
                "reached": counter.lines > 0 or reading.streams > 0,
                "timed_out": True,
                "failure": f"timed out after {elapsed:.2f}s (timeout {timeout:g}s)",
            }
        except ReadDenied as denied:
            found["denied"] = str(denied)
        except ReadFailed as failed:
            found = {"reached": False, "failure": str(failed)}
        except ConfigUnusable as problem:
            found = {"reached": False, "config_error": str(problem)}
        elapsed = time.perf_counter() - started
    return LogsFacts(
        **base,
        **found,
        where=reading.where,
        streams=reading.streams,
        empty_reason=reading.empty_reason,
        lines=counter.lines,
        bytes=counter.bytes,
        cut=reading.cut,
        stream_errors=reading.stream_errors,
        counts=counter.counts,
        examples=counter.examples,
        calls=reading.calls,
        elapsed_s=elapsed,
    )


class ConfigUnusable(Exception):
    """The item's source settings cannot be used (a kubeconfig, a LogQL the server refuses): an `error`."""


async def gather_logs(targets: Sequence[LogsTarget], ctx: ProbeContext) -> AsyncIterator[LogsFacts]:
    async for facts in each_as_done(probe_one(t, ctx) for t in targets):
        yield facts


KIND: ProbeKind[LogsTarget, LogsFacts] = ProbeKind(
    name="logs",
    section="logs",
    cadence="daily",
    facts=LogsFacts,
    gather=gather_logs,
    imports=("aiohttp", "kubernetes.aio.client"),
)
