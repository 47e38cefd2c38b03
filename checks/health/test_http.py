"""HTTP health endpoints (runbook 000's health-endpoint table; 003's /health and /ready;
004's /slos/status and /slos/error-budget, 003's OpenSearch _cluster/health through `values`).

Each profile `http` item is one check `http.health[<name>]`: reachable in time,
expected status, JSON subset, body pattern, values at JSONPath-style paths, latency thresholds.
"""

from __future__ import annotations

import math
import re
from typing import Any

from opsproof import Check, CheckFailed, Part, each, format_duration, format_size
from opsproof.judging.compare import json_subset_mismatches
from opsproof.judging.series import show_value
from opsproof.model.json_path import PathAbsent, parse_path, value_at
from opsproof.outcomes import evaluate
from opsproof.probes.http import HttpFacts
from opsproof.targets.http import HttpTarget, ValueExpect
from opsproof.targets.valued import measured_in_unit


def _answered(item: HttpTarget, facts: HttpFacts) -> None:
    """Stop here unless the target answered with an expected status."""
    expect = item.expect
    assert facts.reached, facts.failure
    assert facts.status in expect.status, (
        f"HTTP {facts.status} {facts.reason or ''}".rstrip()
        + f", expected {' or '.join(map(str, expect.status))}"
        + (f" (redirect to {facts.location})" if facts.location else "")
    )


def _whole(facts: HttpFacts) -> None:
    if facts.body_truncated:
        # Never judge a part as the whole: a healthy prefix can hide the error that follows it.
        raise CheckFailed(
            f"the body is larger than max_body {format_size(facts.max_body)}: it was not judged "
            "(raise max_body on the item if the endpoint really answers that much)"
        )


def test_health(item: HttpTarget, facts: HttpFacts, check: Check) -> None:
    expect = item.expect
    check.expect(status=expect.status)
    if expect.json_body is not None:
        check.expect(json=expect.json_body)
    if expect.body is not None:
        check.expect(body=expect.body)

    _answered(item, facts)
    if expect.json_body is not None or expect.body is not None:
        _whole(facts)
    if expect.json_body is not None:
        assert facts.json_body is not None, (
            f"body is not JSON ({facts.json_error or 'empty'}); expected {expect.json_body}"
        )
        mismatches = json_subset_mismatches(expect.json_body, facts.json_body)
        assert not mismatches, "JSON differs: " + "; ".join(mismatches)
    if expect.body is not None:
        assert re.search(expect.body, facts.body_text), f"body does not match /{expect.body}/"
    unnamed = [value for value in expect.values if value.name is None]
    if unnamed:
        _judge_values(unnamed, facts, check)
    check.note(f"HTTP {facts.status} in {format_duration(facts.latency_s or 0)}")
    samples = facts.latency_samples_ms
    detail = f"the faster of {len(samples)} samples ({', '.join(f'{s:g}ms' for s in samples)})" if samples else None
    check.threshold("latency", facts.latency_s, expect.latency, show=format_duration, detail=detail)


@each("named_values")
def test_value(item: HttpTarget, part: Part, facts: HttpFacts, check: Check) -> None:
    """A JSON value with a `name:`: its own check (and severity, cadence), on the item's one answer."""
    _answered(item, facts)
    _whole(facts)
    _judge_values([part.spec], facts, check)
    check.note(f"{part.spec.path} is {check.observed['values'][part.spec.path]!r}")


def _expected(spec: ValueExpect) -> dict[str, Any]:
    show = show_value(spec.unit)
    if spec.assertion == "equals":
        return {"path": spec.path, "equals": spec.equals}
    if spec.assertion == "in":
        return {"path": spec.path, "in": spec.in_}
    shown: dict[str, Any] = {"path": spec.path}
    if spec.threshold is not None:
        shown["threshold"] = {k: show(v) for k, v in spec.threshold.model_dump().items() if v is not None}
        if spec.lower_is_worse:
            shown["lower_is_worse"] = True
    for key in ("min", "max"):
        if getattr(spec, key) is not None:
            shown[key] = show(getattr(spec, key))
    return shown


def _same(found: Any, wanted: Any) -> bool:
    """JSON equality: 1 and 1.0 are the same number, but true is not 1 and "1" is not 1."""
    if isinstance(found, bool) or isinstance(wanted, bool):
        return isinstance(found, bool) and isinstance(wanted, bool) and found == wanted
    if isinstance(found, list) and isinstance(wanted, list):
        return len(found) == len(wanted) and all(_same(a, b) for a, b in zip(found, wanted, strict=True))
    if isinstance(found, dict) and isinstance(wanted, dict):
        return found.keys() == wanted.keys() and all(_same(found[k], wanted[k]) for k in found)
    if isinstance(found, int | float) and isinstance(wanted, int | float):
        return found == wanted
    return type(found) is type(wanted) and bool(found == wanted)


def _judge_value(spec: ValueExpect, found: Any) -> tuple[str, str | None]:
    """("fail" | "warn" | "ok", why) for one value found at its path."""
    if spec.assertion == "equals":
        ok = _same(found, spec.equals)
        return ("ok", None) if ok else ("fail", f"{spec.path} is {found!r}, expected {spec.equals!r}")
    if spec.assertion == "in":
        ok = any(_same(found, wanted) for wanted in spec.in_ or [])
        return ("ok", None) if ok else ("fail", f"{spec.path} is {found!r}, expected one of {spec.in_!r}")
    number = measured_in_unit(found, spec.unit)
    if number is None or math.isnan(number):
        return "fail", f"{spec.path} is {found!r}, not a number"
    show = show_value(spec.unit)
    if spec.assertion == "range":
        if spec.min is not None and number < spec.min:
            return "fail", f"{spec.path} is {show(number)}, under the minimum {show(spec.min)}"
        if spec.max is not None and number > spec.max:
            return "fail", f"{spec.path} is {show(number)}, over the maximum {show(spec.max)}"
        return "ok", None
    assert spec.threshold is not None
    verdict = evaluate(
        spec.path, number, spec.threshold.warn, spec.threshold.fail, lower_is_worse=spec.lower_is_worse, show=show
    )
    return verdict.level, verdict.message


def _judge_values(values: list[ValueExpect], facts: HttpFacts, check: Check) -> None:
    """Every value judged (a failure does not hide the next); all failures in one message."""
    check.expect(values=[_expected(spec) for spec in values])
    assert facts.json_body is not None, (
        f"body is not JSON ({facts.json_error or 'empty'}); expected values at {', '.join(v.path for v in values)}"
    )
    seen: dict[str, Any] = {}
    failures: list[str] = []
    for spec in values:
        try:
            found = value_at(parse_path(spec.path), facts.json_body)
        except PathAbsent as exc:
            failures.append(f"{spec.path} is absent: {exc}")
            continue
        seen[spec.path] = found
        level, why = _judge_value(spec, found)
        if level == "fail" and why:
            failures.append(why)
        elif level == "warn" and why:
            check.warn(why)
    check.observe(values=seen)
    assert not failures, "; ".join(failures)
