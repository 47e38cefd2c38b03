"""`http` `expect.values`: values of a JSON body at JSONPath-style paths, against a real HTTP server."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import HttpServer, Runner, http_profile, profile_error
from opsproof.model.json_path import PathAbsent, format_path, parse_path, value_at


def _item(name: str, url: str, values: str) -> str:
    return f"{{name: {name}, url: '{url}', expect: {{values: [{values}]}}}}"


def test_slo_values_pass_warn_and_fail(runner: Runner, http_server: HttpServer) -> None:
    budget = f"{http_server.base}/slos/error-budget"
    runner.profile(
        http_profile(
            _item(
                "budget-ok",
                budget,
                "{path: $.error_budget.remaining_percent, threshold: {warn: 20%, fail: 10%}, lower_is_worse: true}, "
                "{path: $.slo, equals: api_availability}, {path: $.frozen, equals: false}, {path: $.owner, equals: null}, "
                "{path: $.window.days, min: 7, max: 90}",
            ),
            _item(
                "budget-low",
                budget,
                "{path: $.error_budget.remaining_percent, threshold: {warn: 25%, fail: 10%}, lower_is_worse: true}, "
                "{path: $.error_budget.burn_rate, threshold: {warn: 1, fail: 2}}",
            ),
            _item(
                "budget-gone",
                budget,
                "{path: $.error_budget.consumed, threshold: {fail: 75%}}, {path: \"$.slos[0]['latency_p95']\", max: 300ms}, "
                "{path: $.window.elapsed, max: 30d}",
            ),
        )
    )
    run = runner.run("-m", "daily")
    ok = run.record("http.health[budget-ok]")
    assert ok["outcome"] == "passed", ok["message"]
    assert ok["observed"]["values"]["$.error_budget.remaining_percent"] == 23.5
    assert ok["expected"]["values"][0] == {
        "path": "$.error_budget.remaining_percent",
        "threshold": {"warn": "20%", "fail": "10%"},
        "lower_is_worse": True,
    }
    low = run.record("http.health[budget-low]")
    assert low["outcome"] == "warned"
    assert "$.error_budget.remaining_percent 23.5% is under the warn threshold 25%" in low["message"]
    assert "$.error_budget.burn_rate 1.8 is over the warn threshold 1" in low["message"]
    gone = run.record("http.health[budget-gone]")
    assert gone["outcome"] == "failed"
    # Both failures are named, in profile order; a string with a unit reads in that unit.
    assert gone["message"] == (
        "$.error_budget.consumed 76.5% is over the fail threshold 75%; "
        "$.slos[0]['latency_p95'] is 420ms, over the maximum 300ms"
    )


def test_in_a_set_of_values(runner: Runner, http_server: HttpServer) -> None:
    # Runbook 003: OpenSearch _cluster/health green or yellow.
    health = f"{http_server.base}/_cluster/health"
    runner.profile(
        http_profile(
            _item("search", health, "{path: $.status, in: [green, yellow]}, {path: $.number_of_nodes, min: 3}"),
            _item("search-strict", health, "{path: $.status, in: [green]}"),
        )
    )
    run = runner.run("-m", "daily")
    assert run.record("http.health[search]")["outcome"] == "passed"
    strict = run.record("http.health[search-strict]")
    assert strict["outcome"] == "failed"
    assert strict["message"] == "$.status is 'yellow', expected one of ['green']"


def test_an_absent_path_fails_and_names_it(runner: Runner, http_server: HttpServer) -> None:
    budget = f"{http_server.base}/slos/error-budget"
    runner.profile(
        http_profile(
            _item("typo", budget, "{path: $.error_budget.remaining, min: 10}"),
            _item("index", budget, "{path: '$.slos[3].status', equals: ok}"),
            _item("not-a-number", budget, "{path: '$.slos[0].status', min: 1}"),
            _item("text", f"{http_server.base}/text", "{path: $.status, equals: ok}"),
        )
    )
    run = runner.run("-m", "daily")
    typo = run.record("http.health[typo]")
    assert typo["outcome"] == "failed"
    assert typo["message"] == (
        "$.error_budget.remaining is absent: $.error_budget has no key 'remaining' "
        "(it has burn_rate, consumed, remaining_percent)"
    )
    assert run.record("http.health[index]")["message"] == (
        "$.slos[3].status is absent: $.slos has 1 element(s), no [3]"
    )
    assert run.record("http.health[not-a-number]")["message"] == "$.slos[0].status is 'at_risk', not a number"
    text = run.record("http.health[text]")
    assert text["outcome"] == "failed" and text["message"].startswith("body is not JSON")


def test_a_body_sent_in_many_chunks_is_read_whole(runner: Runner, http_server: HttpServer) -> None:
    runner.profile(
        http_profile(_item("big", f"{http_server.base}/big", "{path: $.status, equals: complete}, {path: '$.items[-1].id', equals: 1999}"))
    )
    record = runner.run("-m", "daily").record("http.health[big]")
    assert record["outcome"] == "passed", record["message"]
    assert record["observed"]["body_bytes"] > 100_000


def test_equals_keeps_json_types_apart(runner: Runner, http_server: HttpServer) -> None:
    budget = f"{http_server.base}/slos/error-budget"
    runner.profile(
        http_profile(
            _item("bool-is-not-0", budget, "{path: $.frozen, equals: 0}"),
            _item("number-is-not-text", budget, "{path: $.window.days, equals: '30'}"),
            _item("int-is-float", budget, "{path: $.window.days, equals: 30.0}"),
        )
    )
    run = runner.run("-m", "daily")
    assert run.record("http.health[bool-is-not-0]")["outcome"] == "failed"
    assert run.record("http.health[number-is-not-text]")["outcome"] == "failed"
    assert run.record("http.health[int-is-float]")["outcome"] == "passed"


def test_paths_are_read_safely() -> None:
    assert parse_path("$") == ()
    assert parse_path("$.a.b-c[0]['x.y'][\"z w\"][-1]") == ("a", "b-c", 0, "x.y", "z w", -1)
    assert format_path(parse_path("$.a[0]['x.y']")) == "$.a[0]['x.y']"
    assert value_at(parse_path("$.a[-1]"), {"a": [1, 2]}) == 2
    with pytest.raises(PathAbsent, match=r"\$.a is a number, not an object"):
        value_at(parse_path("$.a.b"), {"a": 1})
    for bad in ("a.b", "$.a[*]", "$..a", "$.a[?(@.x)]", "$.a.__class__()", "$[1:2]"):
        with pytest.raises(ValueError, match="path"):
            parse_path(bad)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ("{path: a.b, equals: 1}", "http[0].expect.values[0].path: path 'a.b' must start with $"),
        ("{path: '$.a[*]', equals: 1}", "wildcards and filters are not supported"),
        ("{path: $.a}", "give one of equals, in, min/max or threshold"),
        ("{path: $.a, equals: 1, min: 0}", "give one of equals, in, min/max or threshold"),
        ("{path: $.a, in: []}", "http[0].expect.values[0].in: list should have at least 1 item"),
        ("{path: $.a, min: 5, max: 1}", "min is above max"),
        ("{path: $.a, threshold: {warn: 10%, fail: 5%}}", "higher is worse here"),
        ("{path: $.a, threshold: {warn: 80%, fail: 2s}}", "the limits are written in different units"),
        ("{path: $.a, max: '5 s'}", "max: invalid threshold '5 s'"),
        ("{path: $.a, equals: 1, lower_is_worse: true}", "lower_is_worse goes with threshold"),
        ("{path: $.a, unit: kelvin, max: 1}", "http[0].expect.values[0].unit: input should be 'number'"),
        ("{path: $.a, threshold: {}}", "an empty threshold {} judges nothing: give warn, fail or both"),
        ("{path: $.a, equals: 1, extra: 2}", "http[0].expect.values[0].extra: unknown key"),
    ],
)
def test_bad_values_are_refused_naming_the_key(tmp_path: Path, values: str, message: str) -> None:
    error = profile_error(tmp_path, http_profile(_item("api", "http://x/health", values)))
    assert message in error, error


def test_bad_values_exit_4(runner: Runner) -> None:
    runner.profile(http_profile(_item("api", "http://x/health", "{path: $.a}")))
    run = runner.run("-m", "daily")
    assert run.ret == 4
    assert "profiles/test.yaml:4: http[0].expect.values[0]: give one of equals, in, min/max or threshold" in run.output
