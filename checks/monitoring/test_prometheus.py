"""Prometheus (runbook 000: "review overnight alerts", the KPI table; 001 and 002: alert thresholds).

Each profile `prometheus` item is checked through its HTTP API with GET requests only
(see opsproof.probes.prometheus):

- `prometheus.alerts[<name>]`  firing alerts by severity: critical fails, warning warns (configurable),
  alertnames in `ignore` never judged; with `over:`, alerts resolved within the window warn
- `prometheus.targets[<name>]`  active scrape targets whose health is not up, named with their last error
  (or, with `source: up`, the `up` series that are 0)
- `prometheus.kpi[<name>/<kpi>]`  a PromQL query's worst series against {warn, fail}, now or over a window

A server that cannot be reached fails every check with the reason; one that refuses the
credentials, or a query it cannot parse, is an `error`: the profile must be fixed.
"""

from __future__ import annotations

import math
from datetime import datetime
from fnmatch import fnmatchcase
from typing import Any

from opsproof import Check, CheckError, Part, applies, each, format_duration
from opsproof.judging.over_time import judge_increase, judge_trend
from opsproof.judging.series import labels_text, show_value
from opsproof.judging.series import offenders as series_offenders
from opsproof.probes.prometheus import PrometheusFacts, parse_time
from opsproof.targets.prometheus import AlertReview, Kpi, PrometheusTarget

NAMED = 5  # alerts or targets named in a message, per group
SHOWN_SERIES = 5


def _answered(facts: PrometheusFacts) -> None:
    """Every check starts here: refused credentials are an error, an unreachable server a failure."""
    if facts.denied:
        raise CheckError(facts.denied)
    assert facts.reached, facts.failure


def _answer(found: dict[str, Any] | None, what: str) -> dict[str, Any]:
    """One API answer of this check; its failure raised as `failed` or `error`, as the probe classified it."""
    if found is None:
        raise CheckError(f"the probe did not ask for {what}")
    if not found.get("ok"):
        message = f"{what}: {found.get('error')}"
        if found.get("outcome") == "error":
            raise CheckError(message)
        raise AssertionError(message)
    return found


def _api_warnings(found: dict[str, Any], check: Check) -> None:
    # Thanos and Mimir answer partial data with warnings: the result may be incomplete, say so.
    for warning in found.get("warnings") or []:
        check.warn(f"the server warned: {warning}")


# -- alerts ------------------------------------------------------------------------------


def _severity(alert: dict[str, Any], spec: AlertReview) -> str:
    return str(alert["labels"].get(spec.severity_label, "")).lower()


def _level(alert: dict[str, Any], spec: AlertReview) -> str:
    severity = _severity(alert, spec)
    if severity in spec.fail:
        return "fail"
    if severity in spec.warn:
        return "warn"
    return spec.other if spec.other != "pass" else "other"


def _in_scope(alert: dict[str, Any], spec: AlertReview) -> bool:
    return all(alert["labels"].get(k) == v for k, v in spec.match.items())


def _ignored(alert: dict[str, Any], spec: AlertReview) -> bool:
    return any(fnmatchcase(alert["name"], pattern) for pattern in spec.ignore)


def _alert_text(alert: dict[str, Any], spec: AlertReview, now: datetime | None) -> str:
    labels = {k: v for k, v in alert["labels"].items() if k != spec.severity_label}
    since = parse_time(alert.get("since"))
    active = f" for {format_duration((now - since).total_seconds())}" if since and now and now > since else ""
    return f"{alert['name']}{labels_text(labels) if labels else ''}{active}"


def _alert_group(alerts: list[dict[str, Any]], spec: AlertReview, now: datetime | None, state: str) -> str:
    by_severity: dict[str, list[dict[str, Any]]] = {}
    for alert in alerts:
        by_severity.setdefault(_severity(alert, spec) or f"no {spec.severity_label}", []).append(alert)
    parts = []
    for severity, group in by_severity.items():
        named = ", ".join(_alert_text(a, spec, now) for a in group[:NAMED])
        more = f" and {len(group) - NAMED} more" if len(group) > NAMED else ""
        parts.append(f"{len(group)} {severity} alert(s) {state}: {named}{more}")
    return "; ".join(parts)


@applies(lambda item: item.alerts is not None)
def test_alerts(item: PrometheusTarget, facts: PrometheusFacts, check: Check) -> None:
    spec = item.alerts
    assert spec is not None
    check.expect(fail_on=spec.fail, warn_on=spec.warn, other=spec.other)
    if spec.ignore:
        check.expect(ignore=spec.ignore)
    if spec.match:
        check.expect(match=spec.match)
    _answered(facts)
    found = _answer(facts.alerts, "alerts")
    _api_warnings(found, check)
    now = parse_time(facts.evaluated_at or facts.probed_at)
    firing = [a for a in found["firing"] if _in_scope(a, spec)]
    ignored = [a for a in firing if _ignored(a, spec)]
    judged = [a for a in firing if not _ignored(a, spec)]
    levels: dict[str, list[dict[str, Any]]] = {"fail": [], "warn": [], "other": []}
    for alert in judged:
        levels[_level(alert, spec)].append(alert)
    pending = [a for a in found["pending"] if _in_scope(a, spec) and not _ignored(a, spec)]
    check.observe(
        firing_count=len(judged),
        pending_count=len(pending),
        ignored=sorted({a["name"] for a in ignored}),
        firing=[{"alert": a["name"], **a["labels"], "since": a["since"]} for a in judged[:50]],
    )
    resolved = _resolved(facts, spec, firing, check)
    failing = levels["fail"]
    assert not failing, _alert_group(failing, spec, now, "firing") + (
        f"; also {_alert_group(levels['warn'], spec, now, 'firing')}" if levels["warn"] else ""
    )
    if levels["warn"]:
        check.warn(_alert_group(levels["warn"], spec, now, "firing"))
    if resolved:
        check.warn(_alert_group(resolved, spec, None, f"fired in the last {format_duration(spec.over or 0)}, resolved"))
    summary = [f"no {' or '.join(spec.fail + spec.warn) or 'judged'} alerts firing"]
    if levels["other"]:
        summary.append(f"{_alert_group(levels['other'], spec, now, 'firing')} (not judged: other: pass)")
    if ignored:
        summary.append(f"{len(ignored)} ignored ({', '.join(sorted({a['name'] for a in ignored}))})")
    if pending:
        summary.append(f"{len(pending)} pending ({', '.join(sorted({a['name'] for a in pending}))})")
    check.note("; ".join(summary))


def _resolved(
    facts: PrometheusFacts, spec: AlertReview, firing: list[dict[str, Any]], check: Check
) -> list[dict[str, Any]]:
    """Alerts of a fail or warn severity that fired within `over` and fire no more."""
    if spec.over is None:
        return []
    check.expect(over=format_duration(spec.over))
    history = _answer(facts.alert_history, f"alerts fired in the last {format_duration(spec.over)}")
    _api_warnings(history, check)
    now_firing = {(a["name"], tuple(sorted(a["labels"].items()))) for a in firing}
    resolved = [
        a
        for a in history["fired"]
        if _in_scope(a, spec)
        and not _ignored(a, spec)
        and _level(a, spec) in ("fail", "warn")
        and (a["name"], tuple(sorted(a["labels"].items()))) not in now_firing
    ]
    check.observe(resolved=[{"alert": a["name"], **a["labels"]} for a in resolved[:50]])
    return resolved


# -- scrape targets ----------------------------------------------------------------------


def _target_text(target: dict[str, Any]) -> str:
    # Read from the `up` series (`source: up`) a target has no error text: its value says it all.
    why = target["last_error"] or {"unknown": "not scraped yet", "down": "up is 0"}.get(target["health"], "")
    return f"{target['job']}/{target['instance']} ({target['health']}: {why})"


@applies(lambda item: item.targets is not None)
def test_targets(item: PrometheusTarget, facts: PrometheusFacts, check: Check) -> None:
    spec = item.targets
    assert spec is not None
    if spec.ignore_jobs:
        check.expect(ignore_jobs=spec.ignore_jobs)
    _answered(facts)
    found = _answer(facts.targets, "targets")
    if spec.source == "up":
        check.observe(source="the up series")
    _api_warnings(found, check)

    def ignored(job: str) -> bool:
        return any(fnmatchcase(job, pattern) for pattern in spec.ignore_jobs)

    jobs = {job: counts for job, counts in found["jobs"].items() if not ignored(job)}
    not_up = [t for t in found["not_up"] if not ignored(t["job"])]
    # The probe names at most 200; the counts per job are complete.
    count = sum(counts["down"] + counts["unknown"] for counts in jobs.values())
    total = sum(sum(counts.values()) for counts in jobs.values())
    check.observe(
        active_targets=total,
        targets_not_up=count,
        jobs=jobs,
        not_up=not_up[:50],
        ignored_jobs=sorted(job for job in found["jobs"] if ignored(job)),
    )
    named = "; ".join(_target_text(t) for t in not_up[:NAMED])
    more = f" and {count - NAMED} more" if count > NAMED else ""
    check.note(f"{total - count} of {total} active targets up ({len(jobs)} jobs)")
    if found["active_count"] == 0:
        check.warn(
            "no `up` series: this server scrapes nothing"
            if spec.source == "up"
            else "no active scrape targets: this server scrapes nothing"
        )
    check.threshold("targets not up", count, spec.down, show=lambda v: f"{v:g}", detail=f"{named}{more}" or None)


# -- KPIs --------------------------------------------------------------------------------


@each("kpis")
def test_kpi(item: PrometheusTarget, part: Part, facts: PrometheusFacts, check: Check) -> None:
    kpi: Kpi = part.spec
    show = show_value(kpi.unit)
    check.expect(query=kpi.query, empty=kpi.empty)
    if kpi.over is not None:
        check.expect(over=format_duration(kpi.over), step=format_duration(kpi.range_step))
    check.expect_threshold(kpi.name, kpi.threshold, show=show)
    _answered(facts)
    found = _answer(facts.kpis.get(kpi.name), "the query failed")
    _api_warnings(found, check)
    numbers = [s for s in found["series"] if not math.isnan(float(s["value"]))]
    window = f" over the last {format_duration(kpi.over)}" if kpi.over is not None else ""
    check.observe(series_count=found["series_count"], nan_series=found["nan_series"])
    if not numbers:
        _empty(kpi, found, check, window)
        return
    worst = numbers[0]
    value = float(worst["value"])
    many = found["series_count"] > 1
    where = f"{labels_text(worst['labels'])}" if worst["labels"] else "the result (no labels)"
    when = f" at {_moment(worst['at'])}" if kpi.over is not None and worst.get("at") else ""
    check.observe(
        value=value if math.isfinite(value) else str(worst["value"]),
        worst_series=worst["labels"],
        worst_at=worst.get("at"),
        series=[{"labels": s["labels"], "value": s["value"], "at": s["at"]} for s in found["series"][:SHOWN_SERIES]],
    )
    if kpi.over is not None:
        check.observe(current=worst.get("last"))
    worst_word = "worst " if kpi.over is not None or many else ""
    of = f" of {found['series_count']} series" if many else ""
    check.note(f"{kpi.name} {worst_word}{show(value)}{window}{when}{of}: {where}")
    offenders = series_offenders(numbers, kpi, found["series_count"]) if many and kpi.threshold is not None else ""
    which = f"{worst_word}series {where}{when}" if worst["labels"] or when else ""
    detail = "; ".join(part for part in (which, offenders) if part) or None
    if math.isfinite(value):
        check.measure("value", value)  # kept whatever the verdict: the history has no gap where it matters
    check.threshold(kpi.name, value, kpi.threshold, lower_is_worse=kpi.lower_is_worse, show=show, detail=detail)
    if math.isfinite(value):  # against earlier runs' values of the worst series (docs/trends.md)
        judge_increase(check, "value", value, kpi.increase, what=kpi.name, show=show)
        judge_trend(check, "value", value, kpi.trend, what=kpi.name, show=show)


def _empty(kpi: Kpi, found: dict[str, Any], check: Check, window: str) -> None:
    nothing = (
        f"all {found['series_count']} series are NaN{window} (a ratio of zero rates? no requests?)"
        if found["series_count"]
        else f"the query returned no series{window}"
    )
    if kpi.empty == "fail":
        raise AssertionError(
            f"{nothing}: empty: fail (the metric may be missing or renamed, or the selector matches nothing; "
            "set empty: pass where no series means all is well)"
        )
    check.note(f"{nothing}: passes, as empty: pass says")


def _moment(text: str) -> str:
    moment = parse_time(text)
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC") if moment else text
