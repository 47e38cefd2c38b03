"""Prometheus checks against a real prometheus scraping a real exporter: every outcome comes from its state."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from helpers.prometheus_servers import (
    Prometheus,
    Scraping,
    bearer_gateway,
    exporter,
    prom,
    prom_profile,
    prom_secured,
    wait_alert_cycle,
)

import opsproof
from conftest import SECRET, Runner, listening_black_hole, profile_error
from opsproof.testing.servers import free_port

__all__ = ["bearer_gateway", "exporter", "prom", "prom_secured"]  # session fixtures, imported so pytest finds them

ASPECTS = ("alerts", "targets")  # the checks every item gets


def item(name: str, url: str, more: str = "") -> str:
    return f"{{name: {name}, url: '{url}'{', ' + more if more else ''}}}"


# -- alerts ------------------------------------------------------------------------------


def test_firing_alerts_by_severity(runner: Runner, prom: Scraping) -> None:
    runner.profile(
        prom_profile(
            item("default", prom.url, "targets: false"),
            item("warned", prom.url, "targets: false, alerts: {ignore: [HighLatency]}"),
            item("quiet", prom.url, "targets: false, alerts: {ignore: [High*, QueueBacklog]}"),
            item("strict", prom.url, "targets: false, alerts: {ignore: [High*, QueueBacklog], other: fail}"),
            item("paged", prom.url, "targets: false, alerts: {fail: [critical, warning], warn: [], ignore: [High*]}"),
        )
    )
    run = runner.run("-m", "daily")
    app = f'instance="{prom.exporter.address}", job="app"'
    default = run.record("prometheus.alerts[default]")
    assert default["outcome"] == "failed", default
    assert re.fullmatch(
        re.escape(f'1 critical alert(s) firing: HighLatency{{{app}, service="reporting"}} for ')
        + r"[^;]+"
        + re.escape(f'; also 1 warning alert(s) firing: QueueBacklog{{{app}, queue="background_jobs"}} for ')
        + r".+",
        default["message"],
    ), default["message"]
    assert default["markers"] == ["daily", "monitoring"]
    assert default["expected"] == {"fail_on": ["critical"], "warn_on": ["warning"], "other": "pass"}
    observed = default["observed"]
    assert observed["firing_count"] == 4  # HighLatency, QueueBacklog, DiskInfo, Watchdog; SlowBurn is pending
    assert observed["pending_count"] == 1
    assert {a["alert"] for a in observed["firing"]} == {"DiskInfo", "HighLatency", "QueueBacklog", "Watchdog"}
    warned = run.record("prometheus.alerts[warned]")
    assert warned["outcome"] == "warned"
    assert warned["message"].startswith("1 warning alert(s) firing: QueueBacklog{")
    quiet = run.record("prometheus.alerts[quiet]")
    assert quiet["outcome"] == "passed"
    assert quiet["message"] == (
        "no critical or warning alerts firing; 1 info alert(s) firing: DiskInfo for "
        + quiet["message"].split("DiskInfo for ")[1].split(";")[0]
        + "; 1 none alert(s) firing: Watchdog for "
        + quiet["message"].split("Watchdog for ")[1].split(" (")[0]
        + " (not judged: other: pass); 2 ignored (HighLatency, QueueBacklog); 1 pending (SlowBurn)"
    )
    strict = run.record("prometheus.alerts[strict]")
    assert strict["outcome"] == "failed"
    assert "1 info alert(s) firing: DiskInfo" in strict["message"]
    paged = run.record("prometheus.alerts[paged]")
    assert paged["outcome"] == "failed"
    assert paged["message"].startswith("1 warning alert(s) firing: QueueBacklog")


def test_alerts_scoped_by_labels(runner: Runner, prom: Scraping) -> None:
    runner.profile(
        prom_profile(
            item("reporting", prom.url, "targets: false, alerts: {match: {service: reporting}}"),
            item("wallet", prom.url, "targets: false, alerts: {match: {service: wallet-guard}}"),
        )
    )
    run = runner.run("-m", "daily")
    reporting = run.record("prometheus.alerts[reporting]")
    assert reporting["outcome"] == "failed"
    assert reporting["message"].startswith("1 critical alert(s) firing: HighLatency{")
    assert "QueueBacklog" not in reporting["message"]
    wallet = run.record("prometheus.alerts[wallet]")
    assert (wallet["outcome"], wallet["message"]) == ("passed", "no critical or warning alerts firing")
    assert wallet["expected"]["match"] == {"service": "wallet-guard"}


def test_alert_resolved_overnight_warns(runner: Runner, prom: Scraping) -> None:
    wait_alert_cycle(prom, "demo_flap", "Flapping")
    runner.profile(
        prom_profile(
            item("overnight", prom.url, "targets: false, alerts: {match: {team: flaps}, over: 10m}"),
            item("now-only", prom.url, "targets: false, alerts: {match: {team: flaps}}"),
        )
    )
    run = runner.run("-m", "daily")
    overnight = run.record("prometheus.alerts[overnight]")
    assert overnight["outcome"] == "warned", overnight
    assert overnight["message"] == (
        f'1 critical alert(s) fired in the last 10m, resolved: Flapping{{instance="{prom.exporter.address}", '
        'job="app", team="flaps"}'
    )
    assert overnight["observed"]["resolved"] == [
        {"alert": "Flapping", "instance": prom.exporter.address, "job": "app", "severity": "critical", "team": "flaps"}
    ]
    assert overnight["expected"]["over"] == "10m"
    assert run.record("prometheus.alerts[now-only]")["outcome"] == "passed"


# -- scrape targets ----------------------------------------------------------------------


def test_targets_down_are_named(runner: Runner, prom: Scraping) -> None:
    runner.profile(
        prom_profile(
            item("default", prom.url, "alerts: false"),
            item("tolerant", prom.url, "alerts: false, targets: {down: {warn: 0, fail: 2}}"),
            item("scoped", prom.url, "alerts: false, targets: {ignore_jobs: [gone]}"),
        )
    )
    run = runner.run("-m", "daily")
    default = run.record("prometheus.targets[default]")
    assert default["outcome"] == "failed"
    assert default["message"] == (
        f"targets not up 1 is over the fail threshold 0; gone/{prom.gone} (down: Get "
        f'"http://{prom.gone}/metrics": dial tcp {prom.gone}: connect: connection refused)'
    )
    assert default["observed"]["jobs"] == {
        "app": {"up": 1, "down": 0, "unknown": 0},
        "gone": {"up": 0, "down": 1, "unknown": 0},
    }
    assert default["observed"]["not_up"][0]["scrape_url"] == f"http://{prom.gone}/metrics"
    assert default["expected"] == {"targets not up": {"fail": "0"}}
    tolerant = run.record("prometheus.targets[tolerant]")
    assert tolerant["outcome"] == "warned"
    assert tolerant["message"].startswith("targets not up 1 is over the warn threshold 0; gone/")
    scoped = run.record("prometheus.targets[scoped]")
    assert (scoped["outcome"], scoped["message"]) == ("passed", "1 of 1 active targets up (1 jobs)")
    assert scoped["observed"]["ignored_jobs"] == ["gone"]


def test_targets_from_the_up_series_name_the_ones_at_0(runner: Runner, prom: Scraping) -> None:
    runner.profile(
        prom_profile(
            item("by-up", prom.url, "alerts: false, targets: {source: up}"),
            item("by-up-scoped", prom.url, "alerts: false, targets: {source: up, ignore_jobs: [gone]}"),
        )
    )
    run = runner.run("-m", "daily")
    by_up = run.record("prometheus.targets[by-up]")
    # The same count as from /api/v1/targets, read from what the scrapes wrote; no error text there.
    assert (by_up["outcome"], by_up["message"]) == (
        "failed",
        f"targets not up 1 is over the fail threshold 0; gone/{prom.gone} (down: up is 0)",
    )
    assert by_up["observed"]["jobs"] == {
        "app": {"up": 1, "down": 0, "unknown": 0},
        "gone": {"up": 0, "down": 1, "unknown": 0},
    }
    assert by_up["observed"]["source"] == "the up series"
    scoped = run.record("prometheus.targets[by-up-scoped]")
    assert (scoped["outcome"], scoped["message"]) == ("passed", "1 of 1 active targets up (1 jobs)")


# -- KPIs --------------------------------------------------------------------------------

KPIS = """
      - {name: p95-latency, query: demo_latency_p95_seconds, unit: seconds, threshold: {warn: 100ms, fail: 500ms}}
      - {name: queue-depth, query: sum(demo_queue_depth), threshold: {warn: 1000, fail: 5000}}
      - {name: hit-ratio, query: demo_cache_hit_ratio, unit: ratio, lower_is_worse: true, threshold: {warn: 95%, fail: 80%}}
      - {name: error-rate, query: 'sum(demo_errors_total) / sum(demo_requests_total) * 100', unit: percent, threshold: {warn: 0.1%, fail: 1%}}
      - {name: wallet-latency, query: 'demo_latency_p95_seconds{service="wallet-guard"}', unit: seconds, threshold: {fail: 500ms}}
      - {name: depth-scalar, query: scalar(sum(demo_queue_depth)), threshold: {fail: 2000}}
      - {name: missing, query: demo_no_such_metric, threshold: {fail: 1}}
      - {name: missing-ok, query: demo_no_such_metric, threshold: {fail: 1}, empty: pass}
      - {name: not-a-number, query: vector(0) / vector(0), threshold: {fail: 1}}
      - {name: broken, query: 'sum(rate(demo_requests_total[5m])', threshold: {fail: 1}}
      - {name: range-vector, query: 'demo_queue_depth[1m]', threshold: {fail: 1}}
"""


def test_kpis_judge_the_worst_series(runner: Runner, prom: Scraping) -> None:
    runner.profile(
        f"environment: test\nprometheus:\n  - name: prod\n    url: '{prom.url}'\n    alerts: false\n"
        f"    targets: false\n    kpis:{KPIS}"
    )
    run = runner.run("-m", "daily")
    outcomes = {c["check"]: (c["outcome"], c["message"]) for c in run.results["checks"]}
    latency = run.record("prometheus.kpi[prod/p95-latency]")
    assert latency["outcome"] == "failed"
    assert latency["message"] == (
        "p95-latency 700ms is over the fail threshold 500ms; worst series demo_latency_p95_seconds"
        f'{{instance="{prom.exporter.address}", job="app", service="reporting"}}; 1 of 2 series past the fail threshold'
    )
    assert latency["observed"]["worst_series"]["service"] == "reporting"
    assert latency["observed"]["series_count"] == 2
    assert latency["observed"]["value"] == 0.7
    assert latency["expected"]["p95-latency"] == {"warn": "100ms", "fail": "500ms"}
    assert latency["expected"]["query"] == "demo_latency_p95_seconds"
    assert outcomes["prometheus.kpi[prod/queue-depth]"] == (
        "warned",
        "queue-depth 1240 is over the warn threshold 1000",
    )
    assert outcomes["prometheus.kpi[prod/hit-ratio]"][0] == "warned"
    assert outcomes["prometheus.kpi[prod/hit-ratio]"][1].startswith("hit-ratio 93% is under the warn threshold 95%")
    assert outcomes["prometheus.kpi[prod/error-rate]"] == ("warned", "error-rate 0.2% is over the warn threshold 0.1%")
    wallet = run.record("prometheus.kpi[prod/wallet-latency]")
    assert wallet["outcome"] == "passed"
    assert wallet["message"] == (
        f'wallet-latency 50ms: demo_latency_p95_seconds{{instance="{prom.exporter.address}", job="app", '
        'service="wallet-guard"}'
    )
    assert outcomes["prometheus.kpi[prod/depth-scalar]"] == ("passed", "depth-scalar 1240: the result (no labels)")
    assert outcomes["prometheus.kpi[prod/missing]"] == (
        "failed",
        "the query returned no series: empty: fail (the metric may be missing or renamed, or the selector matches "
        "nothing; set empty: pass where no series means all is well)",
    )
    assert outcomes["prometheus.kpi[prod/missing-ok]"] == (
        "passed",
        "the query returned no series: passes, as empty: pass says",
    )
    nan = outcomes["prometheus.kpi[prod/not-a-number]"]
    assert nan[0] == "failed" and nan[1].startswith("all 1 series are NaN (a ratio of zero rates? no requests?)")
    broken = outcomes["prometheus.kpi[prod/broken]"]
    assert broken[0] == "error"
    assert broken[1].startswith("the query failed: ") and broken[1].endswith("(bad_data, HTTP 400)")
    assert "parse error" in broken[1]
    ranged = outcomes["prometheus.kpi[prod/range-vector]"]
    assert ranged[0] == "error" and "returns a range vector" in ranged[1]
    assert run.ret == 1


def test_kpi_over_a_window_finds_a_past_spike(runner: Runner, prom: Scraping) -> None:
    prom.exporter.set("demo_spike", 50)
    prom.wait_value("demo_spike", 50)
    time.sleep(1.5)  # a couple more scrapes at 50
    prom.exporter.set("demo_spike", 1)
    prom.wait_value("demo_spike", 1)
    kpis = (
        "[{name: now, query: demo_spike, threshold: {fail: 10}}, "
        "{name: window, query: demo_spike, threshold: {fail: 10}, over: 2m, step: 1s}, "
        "{name: coarse, query: demo_spike, threshold: {fail: 10}, over: 2m}]"
    )
    runner.profile(prom_profile(item("prod", prom.url, f"alerts: false, targets: false, kpis: {kpis}")))
    run = runner.run("-m", "daily")
    now = run.record("prometheus.kpi[prod/now]")
    assert now["outcome"] == "passed" and now["observed"]["value"] == 1
    window = run.record("prometheus.kpi[prod/window]")
    assert window["outcome"] == "failed", window
    assert window["message"].startswith(
        f'window 50 is over the fail threshold 10; worst series demo_spike{{instance="{prom.exporter.address}", '
        'job="app"} at 20'
    )
    assert " at 20" in window["message"] and window["message"].endswith(" UTC")
    assert window["observed"]["current"] == "1"
    assert window["observed"]["worst_at"].endswith("Z")
    assert window["expected"]["over"] == "2m" and window["expected"]["step"] == "1s"
    # The default step (15s for 2m) samples the window: a spike of a few seconds may fall between steps.
    assert run.record("prometheus.kpi[prod/coarse]")["expected"]["step"] == "15s"


# -- unreachable, refused, misconfigured -------------------------------------------------


def test_black_hole_times_out_and_the_run_goes_on(runner: Runner, prom: Scraping) -> None:
    with listening_black_hole() as port:
        runner.profile(
            prom_profile(
                item(
                    "hole",
                    f"http://127.0.0.1:{port}",
                    "timeout: 1s, kpis: [{name: q, query: up, threshold: {fail: 1}}]",
                ),
                item("fine", prom.url, "alerts: {ignore: ['*']}, targets: {ignore_jobs: [gone]}"),
            )
        )
        started = time.monotonic()
        run = runner.run("-m", "daily")
        elapsed = time.monotonic() - started
    for check in ("alerts[hole]", "targets[hole]", "kpi[hole/q]"):
        record = run.record(f"prometheus.{check}")
        assert record["outcome"] == "failed"
        assert record["message"].startswith("timed out after 1.0") and record["message"].endswith("(timeout 1s)")
        assert record["observed"]["timed_out"] is True
    for aspect in ASPECTS:
        assert run.record(f"prometheus.{aspect}[fine]")["outcome"] == "passed"
    assert elapsed < 1 + 2.5, f"a 1s black hole took the run {elapsed:.1f}s"


def test_closed_port_and_unknown_host_fail(runner: Runner) -> None:
    port = free_port(0)
    runner.profile(
        prom_profile(item("gone", f"http://127.0.0.1:{port}"), item("nowhere", "http://no-such-host.invalid:9090"))
    )
    run = runner.run("-m", "daily")
    for aspect in ASPECTS:
        gone = run.record(f"prometheus.{aspect}[gone]")
        assert (gone["outcome"], gone["message"]) == (
            "failed",
            f"cannot connect to 127.0.0.1:{port}: connection refused",
        )
        nowhere = run.record(f"prometheus.{aspect}[nowhere]")
        assert nowhere["outcome"] == "failed"
        assert nowhere["message"].startswith("cannot resolve no-such-host.invalid: ")


def test_not_a_prometheus_is_an_error(runner: Runner, prom: Scraping) -> None:
    # The exporter answers /metrics only: /api/v1/... is a 404.
    runner.profile(prom_profile(item("exporter", f"http://{prom.exporter.address}")))
    run = runner.run("-m", "daily")
    record = run.record("prometheus.alerts[exporter]")
    assert record["outcome"] == "error"
    assert record["message"] == (
        "alerts: HTTP 404 for /api/v1/alerts: not a Prometheus API at this URL (is `url` the server's base URL?)"
    )


def test_tls_and_basic_auth(runner: Runner, prom_secured: Prometheus, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROM_PASSWORD", SECRET)
    monkeypatch.setenv("WRONG_PASSWORD", "not-" + SECRET)
    ca = prom_secured.ca_file
    kpi = "kpis: [{name: up, query: 'up{job=\"none\"} or vector(1)', threshold: {fail: 0.5}, lower_is_worse: true}]"
    runner.profile(
        prom_profile(
            item(
                "secured",
                prom_secured.url,
                f"ca_file: '{ca}', basic_auth: {{username: ops, password: '${{PROM_PASSWORD}}'}}, {kpi}",
            ),
            item(
                "wrong",
                prom_secured.url,
                f"ca_file: '{ca}', basic_auth: {{username: ops, password: '${{WRONG_PASSWORD}}'}}",
            ),
            item("anonymous", prom_secured.url, f"ca_file: '{ca}'"),
            item("untrusted", prom_secured.url, "basic_auth: {username: ops, password: '${PROM_PASSWORD}'}"),
        )
    )
    run = runner.run("-m", "daily")
    secured = run.record("prometheus.alerts[secured]")
    assert (secured["outcome"], secured["message"]) == ("passed", "no critical or warning alerts firing")
    assert secured["observed"]["version"].startswith("2.")
    targets = run.record("prometheus.targets[secured]")
    assert (targets["outcome"], targets["message"]) == (
        "warned",
        "no active scrape targets: this server scrapes nothing",
    )
    assert run.record("prometheus.kpi[secured/up]")["outcome"] == "passed"
    for aspect in ASPECTS:
        wrong = run.record(f"prometheus.{aspect}[wrong]")
        assert wrong["outcome"] == "error"
        assert wrong["message"].startswith("the server refused the credentials: HTTP 401 from /api/v1/")
        anonymous = run.record(f"prometheus.{aspect}[anonymous]")
        assert anonymous["outcome"] == "error"
        assert anonymous["message"].startswith("authentication required (no credentials configured): HTTP 401")
        untrusted = run.record(f"prometheus.{aspect}[untrusted]")
        assert untrusted["outcome"] == "failed"
        assert untrusted["message"].startswith("TLS certificate verification failed: ")
    assert run.ret == 1


def test_bearer_token_and_secrets_never_shown(
    runner: Runner, bearer_gateway: str, prom_secured: Prometheus, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PROM_TOKEN", SECRET)
    monkeypatch.setenv("PROM_PASSWORD", SECRET)
    monkeypatch.setenv("WRONG_TOKEN", "wrong-" + SECRET)
    runner.profile(
        prom_profile(
            item(
                "gateway",
                bearer_gateway,
                "bearer_token: '${PROM_TOKEN}', alerts: {ignore: ['*']}, targets: {ignore_jobs: [gone]}",
            ),
            item("wrong-token", bearer_gateway, "bearer_token: '${WRONG_TOKEN}'"),
            item("header", bearer_gateway, "headers: {Authorization: 'Bearer ${WRONG_TOKEN}'}, alerts: false"),
            item(
                "secured",
                prom_secured.url,
                f"ca_file: '{prom_secured.ca_file}', basic_auth: {{username: ops, password: '${{PROM_PASSWORD}}'}}",
            ),
        )
    )
    run = runner.run("-m", "daily", "-v")
    assert run.record("prometheus.alerts[gateway]")["outcome"] == "passed"
    assert run.record("prometheus.targets[gateway]")["outcome"] == "passed"
    wrong = run.record("prometheus.alerts[wrong-token]")
    assert wrong["outcome"] == "error"
    # The gateway echoed the token it was sent: the record shows the reference, never the value.
    assert "Bearer ${WRONG_TOKEN}" in wrong["message"]
    assert run.record("prometheus.targets[header]")["outcome"] == "error"
    for text in [run.output, *(p.read_text(errors="replace") for p in run.bundle.rglob("*") if p.is_file())]:
        assert SECRET not in text


# -- profile mistakes --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        (
            "{name: p, url: 'prom:9090'}",
            "prometheus[0].url: URL 'prom:9090' needs an http:// or https:// scheme and a host",
        ),
        ("{name: p, url: 'http://prom:9090/api/v1'}", "URL is the server's base URL, without /api/v1"),
        (
            "{name: p, url: 'http://ops:pw@prom:9090'}",
            "URL has user:password@; put credentials in basic_auth or bearer_token",
        ),
        (
            "{name: p, url: 'http://prom:9090', alerts: {fail: [critical], warn: [Critical]}}",
            "severity 'critical' is listed in both fail and warn",
        ),
        ("{name: p, url: 'http://prom:9090', alerts: {severities: x}}", "prometheus[0].alerts.severities: unknown key"),
        ("{name: p, url: 'http://prom:9090', targets: {down: {warn: 3, fail: 1}}}", "warn must be at or below fail"),
        (
            "{name: p, url: 'http://prom:9090', kpis: [{name: k, query: up, threshold: {}}]}",
            "an empty threshold {} judges nothing: give warn, fail or both",
        ),
        (
            "{name: p, url: 'http://prom:9090', kpis: [{name: k, query: up, threshold: {fail: 500ms}}]}",
            "threshold.fail: invalid threshold '500ms': a number is expected",
        ),
        (
            "{name: p, url: 'http://prom:9090', kpis: [{name: k, query: up, unit: seconds, threshold: {fail: 5 s}}]}",
            "threshold.fail: invalid duration '5 s'",
        ),
        (
            "{name: p, url: 'http://prom:9090', kpis: [{name: k, query: up, threshold: {warn: 5, fail: 1}}]}",
            "higher is worse here: warn must be at or below fail",
        ),
        (
            "{name: p, url: 'http://prom:9090', kpis: [{name: k, query: up, lower_is_worse: true, threshold: {warn: 1, fail: 5}}]}",
            "lower is worse here: warn must be at or above fail",
        ),
        (
            "{name: p, url: 'http://prom:9090', kpis: [{name: k, query: up, threshold: {fail: 1}, step: 1m}]}",
            "step is the resolution of `over`: set over too",
        ),
        (
            "{name: p, url: 'http://prom:9090', kpis: [{name: k, query: up, threshold: {fail: 1}, over: 30d, step: 1s}]}",
            "more than Prometheus's 11,000 points per series",
        ),
        (
            "{name: p, url: 'http://prom:9090', kpis: [{name: k, query: up, threshold: {fail: 1}, empty: maybe}]}",
            "prometheus[0].kpis[0].empty: input should be 'fail' or 'pass' (got 'maybe')",
        ),
        (
            "{name: p, url: 'http://prom:9090', kpis: [{name: k, query: up, threshold: {fail: 1}}, {name: k, query: up, threshold: {fail: 2}}]}",
            "duplicate KPI name 'k'",
        ),
        (
            "{name: p, url: 'http://prom:9090', bearer_token: x, basic_auth: {username: a, password: b}}",
            "bearer_token and basic_auth both set the Authorization header",
        ),
    ],
)
def test_profile_mistakes_are_usage_errors(tmp_path: Path, entry: str, message: str) -> None:
    error = profile_error(tmp_path, f"environment: test\nprometheus:\n  - {entry}\n")
    assert "bad.yaml:3: " in error
    assert message in error


def test_bad_profile_exits_4_without_the_secret(runner: Runner, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROM_TOKEN", SECRET)
    runner.profile(
        prom_profile(
            "{name: p, url: 'http://prom:9090', bearer_token: '${PROM_TOKEN}', alerts: {fail: critical, warn: critical}}"
        )
    )
    run = runner.run("-m", "daily")
    assert run.ret == 4
    assert (
        "profiles/test.yaml:4: prometheus[0].alerts: severity 'critical' is listed in both fail and warn" in run.output
    )
    assert SECRET not in run.output


def test_defaults_of_a_minimal_item(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(
        "environment: t\nprometheus:\n  - {name: p, url: 'https://prom.example.com/prometheus/', "
        "kpis: [{name: k, query: up, unit: ratio, threshold: {warn: 95%, fail: 0.8}, lower_is_worse: true, over: 12h}]}\n"
    )
    target = opsproof.load_profile(path).profile.prometheus[0]
    assert target.url == "https://prom.example.com/prometheus"
    assert target.api("alerts") == "https://prom.example.com/prometheus/api/v1/alerts"
    assert target.alerts is not None and (target.alerts.fail, target.alerts.warn, target.alerts.other) == (
        ["critical"],
        ["warning"],
        "pass",
    )
    assert target.targets is not None and (target.targets.down.warn, target.targets.down.fail) == (None, 0)
    kpi = target.kpis[0]
    assert (kpi.threshold.warn, kpi.threshold.fail, kpi.empty, kpi.range_step) == (0.95, 0.8, "fail", 60)


def test_a_wrong_targets_source_names_the_key(runner: Runner) -> None:
    runner.profile(prom_profile("{name: p, url: 'http://prom:9090', targets: {source: scrape}}"))
    run = runner.run("-m", "daily")
    assert run.ret == 4
    assert "profiles/test.yaml:4: prometheus[0].targets.source: " in run.output, run.output
    assert "'api' or 'up'" in run.output
