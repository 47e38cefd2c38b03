"""HTTP health checks against real servers: every outcome comes from a staged state."""

from __future__ import annotations

import time
from pathlib import Path

from conftest import SECRET, HttpServer, Runner, TlsServer, http_profile


def test_healthy_endpoint_passes_with_observed_facts(runner: Runner, http_server: HttpServer) -> None:
    runner.profile(
        http_profile(
            f"{{name: api, url: '{http_server.base}/health', expect: {{status: 200, json: {{status: healthy}}}}}}"
        )
    )
    run = runner.run("-m", "daily")
    assert run.ret == 0, run.output
    record = run.record("http.health[api]")
    assert record["outcome"] == "passed"
    assert record["observed"]["status"] == 200
    assert record["observed"]["json"] == {"status": "healthy", "version": "1.4.2"}
    assert record["observed"]["latency_ms"] > 0
    assert record["expected"]["status"] == [200]
    assert record["severity"] == "critical"
    assert record["markers"] == ["daily", "health", "post_deploy"]
    assert record["message"].startswith("HTTP 200 in ")


def test_wrong_status_fails_and_says_what_was_seen(runner: Runner, http_server: HttpServer) -> None:
    runner.profile(http_profile(f"{{name: api, url: '{http_server.base}/status/503'}}"))
    run = runner.run("-m", "daily")
    assert run.ret == 1
    record = run.record("http.health[api]")
    assert record["outcome"] == "failed"
    assert record["message"] == "HTTP 503 Service Unavailable, expected 200"


def test_status_list_accepts_any_of_them(runner: Runner, http_server: HttpServer) -> None:
    runner.profile(http_profile(f"{{name: api, url: '{http_server.base}/status/204', expect: {{status: [200, 204]}}}}"))
    run = runner.run("-m", "daily")
    assert run.record("http.health[api]")["outcome"] == "passed", run.output


def test_json_subset_mismatch_names_the_field(runner: Runner, http_server: HttpServer) -> None:
    runner.profile(
        http_profile(
            f"{{name: api, url: '{http_server.base}/state/degraded', expect: {{json: {{status: healthy, checks: {{db: ok}}}}}}}}"
        )
    )
    run = runner.run("-m", "daily")
    record = run.record("http.health[api]")
    assert record["outcome"] == "failed"
    assert record["message"] == "JSON differs: $.status is 'degraded', expected 'healthy'"


def test_non_json_body_fails_a_json_expectation(runner: Runner, http_server: HttpServer) -> None:
    runner.profile(http_profile(f"{{name: api, url: '{http_server.base}/text', expect: {{json: {{status: ok}}}}}}"))
    record = runner.run("-m", "daily").record("http.health[api]")
    assert record["outcome"] == "failed"
    assert "body is not JSON" in record["message"]


def test_body_regex(runner: Runner, http_server: HttpServer) -> None:
    runner.profile(
        http_profile(
            f"{{name: good, url: '{http_server.base}/text', expect: {{body: 'build \\d+\\.\\d+'}}}}",
            f"{{name: bad, url: '{http_server.base}/text', expect: {{body: '^DEGRADED'}}}}",
        )
    )
    run = runner.run("-m", "daily")
    assert run.record("http.health[good]")["outcome"] == "passed"
    bad = run.record("http.health[bad]")
    assert bad["outcome"] == "failed"
    assert bad["message"] == "body does not match /^DEGRADED/"


def test_latency_warns_then_fails(runner: Runner, http_server: HttpServer) -> None:
    runner.profile(
        http_profile(
            f"{{name: quick, url: '{http_server.base}/health', expect: {{latency: {{warn: 1s, fail: 2s}}}}}}",
            f"{{name: sluggish, url: '{http_server.base}/slow/300', expect: {{latency: {{warn: 100ms, fail: 2s}}}}}}",
            f"{{name: too-slow, url: '{http_server.base}/slow/300', expect: {{latency: {{warn: 50ms, fail: 200ms}}}}}}",
        )
    )
    run = runner.run("-m", "daily")
    assert run.record("http.health[quick]")["outcome"] == "passed"
    warned = run.record("http.health[sluggish]")
    assert warned["outcome"] == "warned"
    assert "is over the warn threshold 100ms" in warned["message"]
    assert warned["expected"]["latency"] == {"warn": "100ms", "fail": "2s"}
    failed = run.record("http.health[too-slow]")
    assert failed["outcome"] == "failed"
    assert "is over the fail threshold 200ms" in failed["message"]
    # A latency over a limit is measured twice; both samples are slow here, and both are shown.
    assert len(failed["observed"]["latency_samples_ms"]) == 2
    assert min(failed["observed"]["latency_samples_ms"]) >= 300
    assert "the faster of 2 samples" in failed["message"]
    assert "latency_samples_ms" not in run.record("http.health[quick]")["observed"]
    # pytest's own summary line counts the warning honestly.
    run.result.stdout.fnmatch_lines(["*1 failed, 1 passed, 1 warned*"])


def test_one_slow_answer_is_measured_again_before_it_is_judged(
    runner: Runner, http_server: HttpServer, tmp_path: Path
) -> None:
    key = tmp_path.name  # slow on its first request only
    runner.profile(
        http_profile(
            f"{{name: cold, url: '{http_server.base}/cold/{key}', expect: {{latency: {{warn: 100ms, fail: 200ms}}}}}}"
        )
    )
    record = runner.run("-m", "daily").record("http.health[cold]")
    assert record["outcome"] == "passed", record["message"]
    first, second = record["observed"]["latency_samples_ms"]
    assert first >= 300 > 100 > second
    assert record["observed"]["latency_ms"] == second
    assert sum(1 for _, path, _ in http_server.requests if path == f"/cold/{key}") == 2


def test_black_hole_costs_its_timeout_and_the_run_goes_on(
    runner: Runner, http_server: HttpServer, black_hole: str
) -> None:
    runner.profile(
        http_profile(
            f"{{name: hole, url: '{black_hole}', timeout: 1s}}",
            f"{{name: api, url: '{http_server.base}/health'}}",
        )
    )
    started = time.monotonic()
    run = runner.run("-m", "daily")
    elapsed = time.monotonic() - started
    hole = run.record("http.health[hole]")
    assert hole["outcome"] == "failed"
    assert "timed out after" in hole["message"]
    assert hole["observed"]["timed_out"] is True
    assert run.record("http.health[api]")["outcome"] == "passed"
    assert elapsed < 1 + 2.5, f"a 1s black hole took the run {elapsed:.1f}s"


def test_closed_port_fails_as_connection_refused(runner: Runner, closed_port: str) -> None:
    runner.profile(http_profile(f"{{name: gone, url: '{closed_port}'}}"))
    record = runner.run("-m", "daily").record("http.health[gone]")
    assert record["outcome"] == "failed"
    assert "cannot connect" in record["message"] and "refused" in record["message"]


def test_redirect_is_not_followed_by_default(runner: Runner, http_server: HttpServer) -> None:
    runner.profile(
        http_profile(
            f"{{name: login, url: '{http_server.base}/redirect'}}",
        )
    )
    record = runner.run("-m", "daily").record("http.health[login]")
    assert record["outcome"] == "failed"
    assert record["message"] == "HTTP 302 Found, expected 200 (redirect to /login)"


def test_tls_verified_against_ca_file(runner: Runner, tls_server: TlsServer) -> None:
    runner.profile(
        http_profile(
            f"{{name: trusted, url: '{tls_server.base}/health', ca_file: '{tls_server.ca_file}'}}",
            f"{{name: untrusted, url: '{tls_server.base}/health'}}",
            f"{{name: unverified, url: '{tls_server.base}/health', verify_tls: false}}",
        )
    )
    run = runner.run("-m", "daily")
    assert run.record("http.health[trusted]")["outcome"] == "passed"
    untrusted = run.record("http.health[untrusted]")
    assert untrusted["outcome"] == "failed"
    assert "certificate verification failed" in untrusted["message"]
    assert run.record("http.health[unverified]")["outcome"] == "passed"


def test_secret_header_reaches_the_server(runner: Runner, http_server: HttpServer, monkeypatch: object) -> None:
    import pytest

    assert isinstance(monkeypatch, pytest.MonkeyPatch)
    monkeypatch.setenv("API_TOKEN", SECRET)
    runner.profile(
        http_profile(
            f"{{name: guarded, url: '{http_server.base}/auth', headers: {{Authorization: 'Bearer ${{API_TOKEN}}'}}}}"
        )
    )
    run = runner.run("-m", "daily")
    assert run.record("http.health[guarded]")["outcome"] == "passed", run.output


def test_checks_only_send_read_only_requests(runner: Runner, http_server: HttpServer) -> None:
    before = len(http_server.requests)
    runner.profile(
        http_profile(
            f"{{name: a, url: '{http_server.base}/health'}}",
            f"{{name: b, url: '{http_server.base}/status/500'}}",
            f"{{name: c, url: '{http_server.base}/health', method: HEAD}}",
        )
    )
    runner.run("-m", "daily")
    methods = {method for method, _, _ in http_server.requests[before:]}
    assert methods <= {"GET", "HEAD"}, methods
    # Probes run once per target per run, not once per check or per worker.
    assert len(http_server.requests) - before == 3


def test_targets_are_probed_in_profile_order(runner: Runner, http_server: HttpServer) -> None:
    # The checks run in profile order and each waits for its own target's facts: probes
    # started in any other order (as asyncio.as_completed does with bare coroutines)
    # would keep the first checks waiting for the whole run's probes under a tight limit.
    names = [f"ordered-{n:02d}" for n in range(30)]
    before = len(http_server.requests)
    items = [f"{{name: {name}, url: '{http_server.base}/state/{name}'}}" for name in names]
    runner.profile(http_profile(*items).replace("{timeout: 2s}", "{timeout: 2s, concurrency: 1}"))
    run = runner.run("-m", "daily")
    assert run.ret == 0, run.output
    paths = [path for _, path, _ in http_server.requests[before:]]
    assert paths == [f"/state/{name}" for name in names]


def test_a_cookie_set_by_one_endpoint_is_not_sent_to_another(runner: Runner, http_server: HttpServer) -> None:
    before = len(http_server.requests)
    base = http_server.base.replace("127.0.0.1", "localhost")  # a jar keeps no cookies of bare IP addresses
    items = [f"{{name: sets, url: '{base}/cookie'}}", f"{{name: after, url: '{base}/health'}}"]
    runner.profile(http_profile(*items).replace("{timeout: 2s}", "{timeout: 2s, concurrency: 1}"))
    assert runner.run("-m", "daily").ret == 0
    seen = {path: headers for _, path, headers in http_server.requests[before:]}
    assert "Cookie" not in seen["/health"], seen["/health"]
