"""Exporter metrics (runbook 001: `curl .../metrics | grep queue_depth`; 003: pg_pool, 5xx counters,
search_fallback; 004: error and exception counters), read straight from the exporter's /metrics.

Each profile `metrics` item is scraped once (see opsproof.probes.metrics); each of its series is
one check `metrics.series[<item>/<series>]`: the series a metric name and label matchers pick,
judged per series (`each`: the worst one named) or aggregated (max, min, sum, avg, count)
against {warn, fail}. A series that is absent fails and says what the metric has instead.

An endpoint that cannot be scraped fails every series with the reason; one that refuses the
credentials (401, 403) is an `error`: the profile must be fixed.
"""

from __future__ import annotations

import math
from typing import Any

from opsproof import Check, CheckError, Part, each
from opsproof.judging.series import labels_text, offenders, show_value
from opsproof.probes.metrics import MetricsFacts
from opsproof.targets.metrics import MetricsTarget, Series

SHOWN_SERIES = 5


def _scraped(facts: MetricsFacts) -> None:
    """Every check starts here: refused credentials are an error, an endpoint not scraped a failure."""
    if facts.denied:
        raise CheckError(f"{facts.url}: {facts.denied}")
    assert facts.reached, f"cannot scrape {facts.url}: {facts.failure}"
    assert facts.failure is None, f"{facts.url}: {facts.failure}"


def _absent(spec: Series, found: dict[str, Any], facts: MetricsFacts, check: Check) -> None:
    if found["others_count"]:
        others = ", ".join(labels_text(labels) for labels in found["others"])
        more = f" and {found['others_count'] - len(found['others'])} more" if found["others_count"] > 5 else ""
        instead = f"the metric has {found['others_count']} other series: {others}{more}"
        check.observe(other_series=found["others"])
    else:
        what = spec.metric if spec.metric is not None else f"matching /{spec.metric_match}/"
        instead = f"no metric {what} at all in its {facts.lines_total} lines"
    message = f"series {spec.selector()} is absent from {facts.url}: {instead}"
    if spec.absent == "fail":
        raise AssertionError(message)
    check.note(f"{message}: passes, as absent: pass says")


def _aggregated(spec: Series, found: dict[str, Any]) -> tuple[float, str]:
    """The value judged and what it is: the worst series, or the series' max, min, sum, average or count."""
    count = found["series_count"]
    numbers = count - found["nan_series"]
    if spec.aggregate == "count":
        return float(count), f"{count} series"
    assert numbers, f"all {count} series of {spec.selector()} are NaN"
    if spec.aggregate == "each":
        worst = found["series"][0]
        return float(worst["value"]), labels_text(worst["labels"])
    if spec.aggregate == "avg":
        return float(found["sum"]) / numbers, f"avg of {numbers} series"
    return float(found[spec.aggregate]), f"{spec.aggregate} of {numbers} series"


@each("series")
def test_series(item: MetricsTarget, part: Part, facts: MetricsFacts, check: Check) -> None:
    spec: Series = part.spec
    show = show_value(spec.unit)
    check.expect(series=spec.selector(), aggregate=spec.aggregate, absent=spec.absent)
    check.expect_threshold(spec.name, spec.threshold, show=show)
    _scraped(facts)
    found = facts.found.get(spec.name)
    if found is None:
        raise CheckError(f"the probe did not read series {spec.name}")
    check.observe(series_count=found["series_count"], nan_series=found["nan_series"], types=found["types"])
    if found["series_count"] == 0:
        _absent(spec, found, facts, check)
        return
    value, what = _aggregated(spec, found)
    check.observe(
        value=value if math.isfinite(value) else str(value),
        series=[{"labels": s["labels"], "value": s["value"]} for s in found["series"][:SHOWN_SERIES]],
    )
    check.note(f"{spec.name} {show(value)}: {what}")
    detail = None
    if spec.aggregate == "each" and found["series_count"] > 1 and spec.threshold is not None:
        numbers = [s for s in found["series"] if not math.isnan(float(s["value"]))]
        detail = "; ".join(p for p in (f"worst series {what}", offenders(numbers, spec, found["series_count"])) if p)
    elif spec.aggregate == "each":
        detail = f"series {what}"
    elif spec.aggregate != "count":
        detail = what
    check.threshold(spec.name, value, spec.threshold, lower_is_worse=spec.lower_is_worse, show=show, detail=detail)
