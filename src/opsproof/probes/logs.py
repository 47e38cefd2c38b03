"""Logs: one read of an item's source, every pattern counted in the same pass.

Each `logs` item names one source (see `opsproof.targets.logs`); its reader streams the
lines of the window once and hands them to a `LineCounter` (`probes.log_reading`), which
counts every pattern of the item and keeps a few matching lines as examples. So 10
patterns over 50 pods cost one pod list and 50 log reads, not 500. A reader never writes:
pod logs are GETs (`get` on `pods/log`), Loki is `query_range`, CloudWatch is
`FilterLogEvents`, a host runs `tail`/`journalctl`.

Every reader stops at the item's deadline (a black hole costs its timeout, no more) and
at `limit_bytes` per stream, and says which streams it cut: a count from a cut stream is
a lower bound.

The readers, one module each: `logs_kubernetes`, `logs_loki`, `logs_cloudwatch`, `logs_host`.
"""

from __future__ import annotations

import asyncio
import importlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

from pydantic import Field

from opsproof.probes import Facts, ProbeContext, ProbeKind, each_as_done
from opsproof.probes.log_reading import (
    ConfigUnusable,
    LineCounter,
    ReadDenied,
    ReadFailed,
    Reading,
)
from opsproof.probes.logs_cloudwatch import client_for, read_cloudwatch
from opsproof.probes.logs_host import read_host_log
from opsproof.probes.logs_kubernetes import read_pod_logs
from opsproof.probes.logs_loki import read_loki
from opsproof.targets.logs import LogsTarget


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


# The libraries each source needs, imported before an item's deadline starts: a first import
# (boto3's, testinfra's) would otherwise be counted against the item's timeout.
SOURCE_IMPORTS = {
    "kubernetes": ("kubernetes.aio.client", "kubernetes.aio.config"),
    "loki": ("aiohttp",),
    "cloudwatch": ("boto3", "botocore.config"),
    "host": ("testinfra.host", "testinfra.backend"),
}
# The readers are imported with this module (their libraries are not: see SOURCE_IMPORTS).
READERS: dict[str, Callable[[LogsTarget, float, LineCounter, Reading], Awaitable[None]]] = {
    "kubernetes": read_pod_logs,
    "loki": read_loki,
    "cloudwatch": read_cloudwatch,
    "host": read_host_log,
}


def prepare(target: LogsTarget, timeout: float) -> None:
    """Import what the source's reader needs (once per process); make a CloudWatch item's client."""
    for module in SOURCE_IMPORTS[target.source]:
        importlib.import_module(module)
    if target.cloudwatch is not None:
        client_for(target.cloudwatch, timeout)


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
    reading = Reading(where=describe(target), redactor=ctx.redactor)
    base: dict[str, Any] = {"target": target.name, "source": target.source, "within_s": target.within}
    prepare(target, timeout)
    async with ctx.limit:
        started = time.perf_counter()
        found: dict[str, Any] = {"reached": True}
        try:
            async with asyncio.timeout(timeout):
                await READERS[target.source](target, timeout, counter, reading)
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


async def gather_logs(targets: Sequence[LogsTarget], ctx: ProbeContext) -> AsyncIterator[LogsFacts]:
    async for facts in each_as_done(probe_one(t, ctx) for t in targets):
        yield facts


PROBE: ProbeKind[LogsTarget, LogsFacts] = ProbeKind(
    name="logs",
    facts=LogsFacts,
    gather=gather_logs,
    # Imported in the probe process while pytest collects (pod logs are the common source);
    # the other sources' libraries are imported by `prepare`, also outside any deadline.
    imports=("aiohttp", "kubernetes.aio.client", "kubernetes.aio.config"),
)
