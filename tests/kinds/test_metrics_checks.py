"""`metrics` checks against a real exporter (prometheus_client's exposition app, Debian's pushgateway)."""

from __future__ import annotations

import base64
import socket
from pathlib import Path
from urllib.parse import quote

import pytest
from helpers.metrics_servers import Exporter, exporter, metrics_profile, pushgateway

from conftest import SECRET, Runner, profile_error

__all__ = ["exporter", "pushgateway"]  # fixtures


def _item(name: str, url: str, *series: str, extra: str = "") -> str:
    return f"{{name: {name}, url: '{url}', {extra}series: [{', '.join(series)}]}}"


def test_series_judged_per_series_and_aggregated(runner: Runner, exporter: Exporter) -> None:
    runner.profile(
        metrics_profile(
            _item(
                "mempool",
                exporter.url,
                "{name: celery-depth, metric: queue_depth, labels: {queue: celery}, aggregate: max, threshold: {warn: 100, fail: 10000}}",
                "{name: every-queue, metric: queue_depth, threshold: {warn: 50, fail: 1000}}",
                "{name: quiet-queues, metric: queue_depth, labels: {queue: {not: celery}}, aggregate: sum, threshold: {warn: 100}}",
                "{name: server-errors, metric: http_requests_total, labels: {status: {match: '5..'}}, aggregate: sum, threshold: {fail: 5}}",
                "{name: pool, metric: apex_pg_pool_used, threshold: {warn: 16, fail: 20}}",
                "{name: queues, metric: queue_depth, aggregate: count, threshold: {fail: 2}, lower_is_worse: true}",
                "{name: mean-depth, metric: queue_depth, aggregate: avg, threshold: {fail: 1000}}",
                "{name: least-depth, metric: queue_depth, aggregate: min, threshold: {warn: 1}, lower_is_worse: true}",
                "{name: p95, metric: request_latency_p95_seconds, unit: seconds, threshold: {warn: 300ms, fail: 1s}}",
                "{name: fallback, metric: search_fallback}",
            ),
        )
    )
    run = runner.run("-m", "daily")
    assert run.ret == 1, run.output
    celery = run.record("metrics.series[mempool/celery-depth]")
    assert celery["outcome"] == "warned"
    assert celery["message"] == "celery-depth 1240 is over the warn threshold 100; max of 1 series"
    assert celery["observed"]["value"] == 1240
    assert celery["expected"]["series"] == 'queue_depth{queue="celery"}'
    assert celery["markers"] == ["daily", "monitoring"]
    every = run.record("metrics.series[mempool/every-queue]")
    assert every["outcome"] == "failed"
    assert 'worst series queue_depth{queue="celery"}' in every["message"]
    assert "1 of 3 series past the fail threshold, 1 more past the warn threshold" in every["message"]
    assert run.record("metrics.series[mempool/quiet-queues]")["outcome"] == "passed"
    errors = run.record("metrics.series[mempool/server-errors]")
    assert errors["outcome"] == "failed"
    assert errors["observed"]["value"] == 10
    assert errors["expected"]["series"] == 'http_requests_total{status=~"5.."}'
    pool = run.record("metrics.series[mempool/pool]")
    assert pool["outcome"] == "warned" and pool["observed"]["types"] == ["gauge"]
    assert run.record("metrics.series[mempool/queues]")["outcome"] == "passed"
    assert run.record("metrics.series[mempool/queues]")["observed"]["value"] == 3
    assert run.record("metrics.series[mempool/mean-depth]")["observed"]["value"] == pytest.approx(435)
    assert run.record("metrics.series[mempool/least-depth]")["outcome"] == "passed"
    p95 = run.record("metrics.series[mempool/p95]")
    assert p95["outcome"] == "warned"
    assert "420ms is over the warn threshold 300ms" in p95["message"]
    fallback = run.record("metrics.series[mempool/fallback]")
    assert fallback["outcome"] == "passed" and fallback["message"] == "fallback 0: search_fallback"


def test_one_scrape_per_endpoint_however_many_series(runner: Runner, exporter: Exporter) -> None:
    before = len(exporter.requests)
    series = [f"{{name: s{n}, metric: queue_depth, labels: {{queue: mail}}}}" for n in range(12)]
    runner.profile(metrics_profile(_item("one", exporter.url, *series), _item("two", exporter.url, *series[:3])))
    run = runner.run("-m", "daily")
    assert run.ret == 0, run.output
    assert len([c for c in run.results["checks"] if c["check"].startswith("metrics.series")]) == 15
    scrapes = exporter.scrapes(before)
    assert [(method, path) for method, path, _ in scrapes] == [("GET", "/metrics")] * 2
    # The text exposition is asked for, so the reference parser reads what the exporter wrote.
    assert all(headers["Accept"].startswith("text/plain;version=0.0.4") for _, _, headers in scrapes)


def test_absent_series_fails_and_says_what_is_there(runner: Runner, exporter: Exporter) -> None:
    runner.profile(
        metrics_profile(
            _item(
                "mempool",
                exporter.url,
                "{name: wrong-label, metric: queue_depth, labels: {queue: priority}}",
                "{name: no-such-metric, metric: pg_pool_waiting}",
                "{name: unused-status, metric: http_requests_total, labels: {status: '504'}, absent: pass, threshold: {fail: 1}}",
                "{name: all-nan, metric: nan_gauge, threshold: {fail: 1}}",
            )
        )
    )
    run = runner.run("-m", "daily")
    wrong = run.record("metrics.series[mempool/wrong-label]")
    assert wrong["outcome"] == "failed"
    assert wrong["message"].startswith(f'series queue_depth{{queue="priority"}} is absent from {exporter.url}: ')
    assert 'the metric has 3 other series: queue_depth{queue="celery"}' in wrong["message"]
    missing = run.record("metrics.series[mempool/no-such-metric]")
    assert missing["outcome"] == "failed"
    assert "series pg_pool_waiting is absent" in missing["message"] and "no metric pg_pool_waiting at all" in (
        missing["message"]
    )
    unused = run.record("metrics.series[mempool/unused-status]")
    assert unused["outcome"] == "passed"
    assert "passes, as absent: pass says" in unused["message"]
    nan = run.record("metrics.series[mempool/all-nan]")
    assert nan["outcome"] == "failed" and "all 1 series of nan_gauge are NaN" in nan["message"]


def test_metric_match_sums_error_and_exception_counters(runner: Runner, exporter: Exporter) -> None:
    # Runbook 004: curl .../metrics | grep -E "(error|exception)"
    runner.profile(
        metrics_profile(
            _item(
                "backend",
                exporter.url,
                "{name: errors, metric_match: 'app_(errors|exceptions)_total', aggregate: sum, threshold: {warn: 5, fail: 50}}",
            )
        )
    )
    record = runner.run("-m", "daily").record("metrics.series[backend/errors]")
    assert record["outcome"] == "warned", record["message"]
    assert record["observed"]["value"] == 6
    assert record["observed"]["series_count"] == 2


def _accepted(hole: socket.socket) -> int:
    """How many connections wait in a listening socket's backlog (each accepted and closed)."""
    hole.setblocking(False)
    count = 0
    while True:
        try:
            connection, _ = hole.accept()
        except BlockingIOError:
            return count
        connection.close()
        count += 1


def test_endpoint_failures_fail_every_series(runner: Runner, exporter: Exporter) -> None:
    hole_socket = socket.socket()
    hole_socket.bind(("127.0.0.1", 0))
    hole_socket.listen(16)  # connections complete in the kernel and are never answered
    black_hole = f"http://127.0.0.1:{hole_socket.getsockname()[1]}/metrics"
    runner.profile(
        metrics_profile(
            _item("down", f"{exporter.base}/status/503", "{name: depth, metric: queue_depth}"),
            _item("denied", f"{exporter.base}/status/401", "{name: depth, metric: queue_depth}"),
            _item("garbage", f"{exporter.base}/garbage", "{name: depth, metric: queue_depth}"),
            _item("hole", black_hole, "{name: a, metric: up}", "{name: b, metric: up}", extra="timeout: 1s, "),
        )
    )
    with hole_socket:
        run = runner.run("-m", "daily")
        connections = _accepted(hole_socket)
    down = run.record("metrics.series[down/depth]")
    assert down["outcome"] == "failed"
    assert down["message"] == f"{exporter.base}/status/503: HTTP 503 Whatever, expected 200"
    denied = run.record("metrics.series[denied/depth]")
    assert denied["outcome"] == "error" and "HTTP 401" in denied["message"]
    garbage = run.record("metrics.series[garbage/depth]")
    assert garbage["outcome"] == "failed"
    assert "the exposition cannot be parsed" in garbage["message"]
    for name in ("a", "b"):
        hole = run.record(f"metrics.series[hole/{name}]")
        assert hole["outcome"] == "failed" and "timed out after" in hole["message"]
        # The item's 1s deadline (a margin for a busy machine), once for the item: one connection, no retry.
        assert 1 <= hole["observed"]["elapsed_s"] < 2.5
    assert connections == 1


def test_a_real_go_exporter(runner: Runner, pushgateway: str) -> None:
    runner.profile(
        metrics_profile(
            _item(
                "pushgateway",
                pushgateway,
                "{name: goroutines, metric: go_goroutines, threshold: {fail: 10000}}",
                "{name: build, metric: pushgateway_build_info}",
                "{name: gc, metric: go_gc_duration_seconds, labels: {quantile: '1'}, unit: seconds, threshold: {fail: 5s}}",
                "{name: absent, metric: queue_depth}",
            )
        )
    )
    run = runner.run("-m", "daily")
    goroutines = run.record("metrics.series[pushgateway/goroutines]")
    assert goroutines["outcome"] == "passed", goroutines["message"]
    assert goroutines["observed"]["value"] > 0
    assert run.record("metrics.series[pushgateway/build]")["outcome"] == "passed"
    assert run.record("metrics.series[pushgateway/gc]")["outcome"] == "passed"
    assert run.record("metrics.series[pushgateway/absent]")["outcome"] == "failed"


def test_secrets_reach_the_exporter_and_never_an_output(
    runner: Runner, exporter: Exporter, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("METRICS_TOKEN", SECRET)
    before = len(exporter.requests)
    runner.profile(
        metrics_profile(
            _item(
                "leaky",
                f"{exporter.base}/secret",
                "{name: info, metric: leaky_info, threshold: {fail: 0}}",
                extra="headers: {Authorization: 'Bearer ${METRICS_TOKEN}'}, ",
            )
        )
    )
    run = runner.run("-m", "daily")
    record = run.record("metrics.series[leaky/info]")
    assert record["outcome"] == "failed"
    assert "${METRICS_TOKEN}" in str(record["observed"]["series"])
    assert exporter.scrapes(before)[0][2]["Authorization"] == f"Bearer {SECRET}"
    forms = (SECRET, quote(SECRET, safe=""), base64.b64encode(SECRET.encode()).decode())
    for text in [run.output, *(p.read_text(errors="replace") for p in run.bundle.rglob("*") if p.is_file())]:
        assert not any(form in text for form in forms)


@pytest.mark.parametrize(
    ("series", "message"),
    [
        ("{name: s, metric: a, metric_match: 'a.*'}", "metrics[0].series[0]: give exactly one of metric: or metric_match:"),
        ("{name: s}", "metrics[0].series[0]: give exactly one of metric: or metric_match:"),
        ("{name: s, metric: 'bad-name'}", "metrics[0].series[0].metric: string should match pattern"),
        ("{name: s, metric: a, aggregate: median}", "metrics[0].series[0].aggregate: input should be 'each', 'max'"),
        ("{name: s, metric: a, labels: {q: {match: a, not: b}}}", "a label matcher is one of"),
        ("{name: s, metric: a, labels: {q: {match: '('}}}", "invalid regular expression '('"),
        ("{name: s, metric: a, threshold: {warn: 10, fail: 5}}", "higher is worse here: warn must be at or below fail"),
        ("{name: s, metric: a, threshold: {}}", "an empty threshold {} judges nothing: give warn, fail or both"),
        ("{name: s, metric: a, threshold: {fail: 5s}}", "threshold.fail: invalid threshold '5s': a number is expected"),
        ("{name: s, metric: a, unit: seconds, threshold: {fail: 5 s}}", "threshold.fail: invalid duration '5 s'"),
        ("{name: s, metric: a, aggregate: count, unit: seconds}", "aggregate: count counts series"),
        ("{name: s, metric: a}, {name: s, metric: b}", "metrics[0].series: two series are named 's': the names are check ids"),
        ("{name: s, metric: a, absent: maybe}", "metrics[0].series[0].absent: input should be 'fail' or 'pass'"),
    ],
)
def test_bad_series_are_refused_naming_the_key(tmp_path: Path, series: str, message: str) -> None:
    error = profile_error(tmp_path, metrics_profile(f"{{name: m, url: 'http://x:9100/metrics', series: [{series}]}}"))
    assert message in error, error
    assert error.startswith("bad.yaml:")


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ("{name: m, url: 'x:9100/metrics', series: [{name: s, metric: a}]}", "needs an http:// or https:// scheme"),
        ("{name: m, url: 'http://u:p@x/metrics', series: [{name: s, metric: a}]}", "URL has user:password@"),
        ("{name: m, url: 'http://x/metrics', series: []}", "metrics[0].series: list should have at least 1 item"),
        ("{name: m, url: 'http://x/metrics'}", "metrics[0].series: required key is missing"),
        ("{name: m, url: 'http://x/metrics', max_bytes: 10, series: [{name: s, metric: a}]}", "invalid size 10"),
        ("{name: m, url: 'http://x/metrics', ca_file: bad.yaml, series: [{name: s, metric: a}]}", "ca_file is only used with https://"),
    ],
)
def test_bad_items_are_refused_naming_the_key(tmp_path: Path, item: str, message: str) -> None:
    error = profile_error(tmp_path, metrics_profile(item))
    assert message in error, error


def test_bad_profile_exits_4_without_the_secret(runner: Runner, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("METRICS_TOKEN", SECRET)
    runner.profile(
        metrics_profile(
            "{name: m, url: 'http://x/metrics', headers: {Authorization: 'Bearer ${METRICS_TOKEN}'}, "
            "series: [{name: s, metric: a, aggregate: median}]}"
        )
    )
    run = runner.run("-m", "daily")
    assert run.ret == 4
    assert "profiles/test.yaml:4: metrics[0].series[0].aggregate:" in run.output
    assert SECRET not in run.output
