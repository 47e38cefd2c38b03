"""Exporter metrics: one GET of each item's /metrics, parsed with prometheus_client's parser.

Per item, inside one deadline (the item's `timeout`): one request, whatever number of
series the item names, through the session the `http` kind uses (aiohttp). The text
exposition is asked for (`Accept: text/plain;version=0.0.4`); an OpenMetrics answer is read
with the OpenMetrics parser. Only the lines of the metrics an item names are parsed: an
exporter of 20,000 lines whose three series are judged costs the parse of those lines, and
a malformed line elsewhere (another team's metric) does not hide the ones asked for.

Per series the facts hold every matching sample's value reduced as the checks need them:
the series sorted worst first (the 100 worst kept), their count, how many are NaN, and the
sum, minimum and maximum of the others. Values stay the strings Prometheus writes ("0.25",
"NaN", "+Inf"), so the facts are plain JSON.
"""

from __future__ import annotations

import asyncio
import math
import re
import time
from collections.abc import AsyncIterator, Iterable, Sequence
from typing import Any

from pydantic import Field

from opsproof.probes import Facts, ProbeContext, ProbeKind, each_as_done
from opsproof.probes.http import describe_http_error, open_session, read_body, ssl_context_for
from opsproof.probes.samples import badness, format_sample
from opsproof.targets.metrics import MetricsTarget, Series
from opsproof.units import format_size

KEPT_SERIES = 100
INLINE_PARSE_BYTES = 256 * 1024
OTHERS_SHOWN = 5
ACCEPT = "text/plain;version=0.0.4;q=1.0, application/openmetrics-text;version=1.0.0;q=0.5, */*;q=0.1"
# A sample line's metric name: what comes before its labels or its value.
_SAMPLE_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
# Suffixes a family's samples add to its name (`# TYPE http_requests counter` -> http_requests_total).
_SUFFIXES = ("", "_total", "_count", "_sum", "_bucket", "_created", "_info", "_gcount", "_gsum")


class MetricsFacts(Facts):
    url: str
    status: int | None = None
    reason: str | None = None
    denied: str | None = Field(None, description="the endpoint refused the credentials (401/403): checks cannot run")
    content_type: str | None = None
    body_bytes: int = 0
    lines_parsed: int = Field(0, description="lines of the metrics asked for, of all the exposition's lines")
    lines_total: int = 0
    found: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="per series name: the matching samples, worst first, and their sums"
    )

    def observed(self) -> dict[str, Any]:
        shown = super().observed()
        shown.pop("found", None)  # each check shows its own series
        return shown


class _Wanted:
    """Which lines of an exposition an item's series need: their metric names, exactly or by regex."""

    def __init__(self, series: Iterable[Series]) -> None:
        self.names = {s.metric for s in series if s.metric is not None}
        self.patterns = [re.compile(s.metric_match) for s in series if s.metric_match is not None]
        self.families = {name.removesuffix(suffix) for name in self.names for suffix in _SUFFIXES if suffix}
        self.families |= self.names

    def sample(self, name: str) -> bool:
        return name in self.names or any(p.fullmatch(name) for p in self.patterns)

    def lines(self, text: str) -> tuple[list[str], int]:
        """The lines to parse (`# TYPE` of the families asked for, their samples, `# EOF`) and the count of all."""
        kept: list[str] = []
        total = 0
        for line in text.splitlines():
            total += 1
            stripped = line.lstrip()
            if stripped.startswith("#"):
                parts = stripped.split(None, 3)
                if parts[1:2] == ["EOF"] or (len(parts) >= 3 and parts[1] == "TYPE" and parts[2] in self.families):
                    kept.append(stripped)
                continue
            found = _SAMPLE_NAME.match(stripped)
            if found and self.sample(found.group(0)):
                kept.append(stripped)
        return kept, total


def _parse(lines: list[str], openmetrics: bool) -> list[tuple[str, str, dict[str, str], float]]:
    """(family type, sample name, labels, value) of every sample, with prometheus_client's parser."""
    text = "\n".join(lines) + "\n"
    if openmetrics:
        from prometheus_client.openmetrics.parser import text_string_to_metric_families as read_openmetrics

        families = read_openmetrics(text)  # type: ignore[no-untyped-call]
    else:
        from prometheus_client.parser import text_string_to_metric_families

        families = text_string_to_metric_families(text)
    return [
        (family.type, sample.name, dict(sample.labels), float(sample.value))
        for family in families
        for sample in family.samples
    ]


def series_facts(series: Series, samples: list[tuple[str, str, dict[str, str], float]]) -> dict[str, Any]:
    """The samples of one series spec, worst first, with what the aggregates need; and the near misses."""
    matched: list[dict[str, Any]] = []
    others: list[dict[str, str]] = []
    types: set[str] = set()
    for family_type, name, labels, value in samples:
        if not (name == series.metric if series.metric is not None else re.fullmatch(series.metric_match or "", name)):
            continue
        if series.accepts(labels):
            types.add(family_type)
            matched.append({"labels": {"__name__": name, **labels}, "value": format_sample(value)})
        else:
            others.append({"__name__": name, **labels})
    numbers = [v for v in (float(s["value"]) for s in matched) if not math.isnan(v)]
    matched.sort(key=lambda s: badness(s["value"], series.lower_is_worse))
    return {
        "series_count": len(matched),
        "nan_series": len(matched) - len(numbers),
        "series": matched[:KEPT_SERIES],
        "sum": format_sample(math.fsum(numbers)) if numbers else None,
        "min": format_sample(min(numbers)) if numbers else None,
        "max": format_sample(max(numbers)) if numbers else None,
        "types": sorted(types),
        # Series of the metric that the label matchers left out: "absent" says what is there instead.
        "others_count": len(others),
        "others": others[:OTHERS_SHOWN],
    }


async def _probe_one(session: Any, target: MetricsTarget, ctx: ProbeContext, contexts: dict[Any, Any]) -> MetricsFacts:
    import aiohttp

    timeout = ctx.profile.timeout_of(target)
    facts = MetricsFacts(target=target.name, reached=False, url=ctx.redactor.redact(target.url))
    started = time.perf_counter()
    async with ctx.limit:
        try:
            # Connect to last body byte inside one deadline: a black hole costs `timeout`, no more.
            async with asyncio.timeout(timeout):
                async with session.get(
                    target.url,
                    headers={"Accept": ACCEPT, **target.headers},
                    ssl=ssl_context_for(target, contexts),
                    allow_redirects=False,
                ) as response:
                    body = await read_body(response, target.max_bytes + 1)
        except TimeoutError:
            elapsed = time.perf_counter() - started
            facts.timed_out = True
            facts.failure = f"timed out after {elapsed:.2f}s (timeout {timeout:g}s)"
            facts.elapsed_s = elapsed
            return facts
        except (aiohttp.ClientError, OSError, ValueError) as exc:
            facts.failure = ctx.redactor.redact(describe_http_error(exc))
            facts.elapsed_s = time.perf_counter() - started
            return facts
    facts.reached = True
    facts.status, facts.reason, facts.content_type = response.status, response.reason, response.content_type
    facts.body_bytes = len(body)
    status = f"HTTP {response.status} {response.reason or ''}".rstrip()
    if response.status in (401, 403):
        facts.denied = f"{status}: the endpoint refused the request (check the credentials in headers)"
    elif response.status != 200:
        facts.failure = f"{status}, expected 200"
    elif len(body) > target.max_bytes:
        facts.failure = f"the exposition is larger than max_bytes {format_size(target.max_bytes)}: raise max_bytes"
    elif "protobuf" in (response.content_type or ""):
        facts.failure = f"the endpoint answered {response.content_type}, not the text exposition"
    elif len(body) > INLINE_PARSE_BYTES:
        # A large exposition is parsed in a thread: the loop keeps timing the other scrapes.
        await asyncio.to_thread(_read_exposition, target, body, response.charset, facts)
    else:
        _read_exposition(target, body, response.charset, facts)
    facts.elapsed_s = time.perf_counter() - started
    return facts


def _read_exposition(target: MetricsTarget, body: bytes, charset: str | None, facts: MetricsFacts) -> None:
    """Parse the lines the item's series need and keep each series' facts (a thread: parsing is CPU)."""
    text = body.decode(charset or "utf-8", errors="replace")
    lines, facts.lines_total = _Wanted(target.series).lines(text)
    facts.lines_parsed = len(lines)
    try:
        samples = _parse(lines, openmetrics="openmetrics" in (facts.content_type or ""))
    except ValueError as exc:
        facts.failure = f"the exposition cannot be parsed: {exc}"
        return
    # An exporter may expose a secret in a label: the gatherer redacts the facts as they leave the probe.
    facts.found = {series.name: series_facts(series, samples) for series in target.series}


async def gather_metrics(targets: Sequence[MetricsTarget], ctx: ProbeContext) -> AsyncIterator[MetricsFacts]:
    """Scrape every endpoint once through one session; yield each one's facts as it completes."""
    contexts: dict[Any, Any] = {}
    async with open_session() as session:
        async for facts in each_as_done(_probe_one(session, t, ctx, contexts) for t in targets):
            yield facts


PROBE: ProbeKind[MetricsTarget, MetricsFacts] = ProbeKind(
    name="metrics",
    facts=MetricsFacts,
    gather=gather_metrics,
    imports=("aiohttp", "prometheus_client.parser"),
)
