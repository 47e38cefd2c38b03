"""`logs` checks against real or emulated sources: pod logs from the Kubernetes emulator, a
Loki-compatible fake (no real Loki can be installed here; see tests/log_servers.py), CloudWatch
Logs on moto's server, and files on this machine through testinfra's local:// backend.

One run holds most items (every record asserted below comes from it); the black holes each
get a run of their own, timed.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers.kubernetes_servers import KubeCluster, kube_black_hole
from helpers.log_servers import (
    AUTH_FAILED,
    LEAKED,
    LOCKED_NS,
    LOG_NS,
    CloudWatchServer,
    LokiFake,
    api_lines,
    cloudwatch,
    log_cluster,
    logs_profile,
    loki,
    write_log,
)

from conftest import SECRET, Run, Runner, listening_black_hole, module_runner, profile_error
from opsproof.probes.log_reading import LineCounter, combined, mask_credentials
from opsproof.probes.logs_host import command
from opsproof.targets.logs import HostLogSource, LogsTarget

__all__ = ["cloudwatch", "kube_black_hole", "log_cluster", "loki"]  # fixtures, for pytest

AUTH = "{name: auth-failures, match: 'authentication failed', threshold: {warn: 2, fail: 5}}"
TRAINING = "{name: training-done, match: 'Training completed', min: 1}"
NEVER = "{name: backup-done, match: 'backup finished', min: 1}"


def k8s(cluster: KubeCluster, name: str, source: str, *patterns: str, extra: str = "") -> str:
    kube = f"kubeconfig: '{cluster.tokenless}', context: main, token: '${{K8S_TOKEN}}', {source}"
    more = f", {extra}" if extra else ""
    return f"{{name: {name}, kubernetes: {{{kube}}}, patterns: [{', '.join(patterns)}]{more}}}"


@pytest.fixture(scope="module")
def main_run(
    log_cluster: KubeCluster, loki: LokiFake, cloudwatch: CloudWatchServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Run, dict[str, Any]]]:
    folder = tmp_path_factory.mktemp("logs")
    fresh = write_log(folder / "auth.log", [AUTH_FAILED] * 4 + ["INFO ok"] * 10)
    stale = write_log(folder / "old.log", [AUTH_FAILED] * 50, age=3 * 86400)
    big = write_log(folder / "big.log", [f"line {i:05d} {AUTH_FAILED}" for i in range(200)])
    group = cloudwatch.group(
        "/aws/lambda/auth",
        {
            "a": [(900.0, AUTH_FAILED), (600.0, AUTH_FAILED), (300.0, "INFO ok")],
            "b": [(60.0, AUTH_FAILED), (2 * 86400.0, AUTH_FAILED)],
        },
    )
    loki_source = f"url: '{loki.url}', headers: {{Authorization: 'Bearer ${{K8S_TOKEN}}'}}"
    items = [
        k8s(log_cluster, "api", f"namespace: {LOG_NS}, selector: app=api", AUTH, NEVER),
        k8s(log_cluster, "trainer", f"namespace: {LOG_NS}, selector: app=trainer", TRAINING, AUTH),
        k8s(log_cluster, "trainer-main", f"namespace: {LOG_NS}, selector: app=trainer, container: trainer", TRAINING),
        k8s(log_cluster, "nobody", f"namespace: {LOG_NS}, selector: app=nobody", AUTH),
        k8s(log_cluster, "not-started", f"namespace: {LOG_NS}, selector: app=batch", AUTH),
        k8s(log_cluster, "locked", f"namespace: {LOCKED_NS}", AUTH),
        k8s(
            log_cluster,
            "chatty",
            f"namespace: {LOG_NS}, selector: app=chatty",
            "{name: ticks, match: tick, threshold: {fail: 1000}}",
            extra="limit_bytes: 1KB",
        ),
        f'{{name: loki-prod, loki: {{{loki_source}, query: \'{{app="auth-proxy", env="prod"}}\'}}, patterns: [{AUTH}]}}',
        f'{{name: loki-all, loki: {{{loki_source}, query: \'{{app="auth-proxy"}} |= "authentication"\', max_lines: 7}}, patterns: [{AUTH}]}}',
        f"{{name: loki-denied, loki: {{url: '{loki.url}', query: '{{app=\"auth-proxy\"}}'}}, patterns: [{AUTH}]}}",
        f"{{name: loki-wrong-token, loki: {{url: '{loki.url}', headers: {{Authorization: 'Bearer ${{K8S_TOKEN}}-old'}}, query: '{{app=\"x\"}}'}}, patterns: [{AUTH}]}}",
        f"{{name: journal, host: {{url: 'local://', journal: true}}, patterns: [{NEVER}]}}",
        f"{{name: loki-bad-query, loki: {{{loki_source}, query: '{{app=\"auth-proxy\"}} | nonsense'}}, patterns: [{AUTH}]}}",
        f"{{name: cw, cloudwatch: {{log_group: '{group}', endpoint_url: '{cloudwatch.url}', region: us-east-1}}, patterns: [{AUTH}]}}",
        f"{{name: cw-missing, cloudwatch: {{log_group: /aws/none, endpoint_url: '{cloudwatch.url}', region: us-east-1}}, patterns: [{AUTH}]}}",
        f"{{name: file, host: {{url: 'local://', path: '{fresh}'}}, patterns: [{AUTH}]}}",
        f"{{name: file-stale, host: {{url: 'local://', path: '{stale}'}}, patterns: [{AUTH}]}}",
        f"{{name: file-big, host: {{url: 'local://', path: '{big}'}}, limit_bytes: 2KB, patterns: [{{name: auth-failures, match: 'authentication failed', threshold: {{fail: 1000}}}}]}}",
        f"{{name: file-missing, host: {{url: 'local://', path: '{folder / 'nope.log'}'}}, patterns: [{AUTH}]}}",
    ]
    runner = module_runner(tmp_path_factory.mktemp("logs-run"))
    runner.profile(logs_profile(*items))
    seen = {"kube": len(log_cluster.api.requests), "loki": len(loki.requests), "cw": len(cloudwatch.targets)}
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("K8S_TOKEN", SECRET)
        run = runner.run("-m", "daily")
    requests = {
        "kube": log_cluster.api.requests[seen["kube"] :],
        "loki": loki.requests[seen["loki"] :],
        "cw": cloudwatch.targets[seen["cw"] :],
    }
    yield run, requests


def outcome(run: Run, check: str) -> tuple[str, str]:
    record = run.record(check)
    return record["outcome"], record["message"]


# -- Kubernetes pod logs -----------------------------------------------------------------


def test_pod_logs_count_every_pattern_in_one_read_per_pod(main_run: tuple[Run, dict[str, Any]]) -> None:
    run, requests = main_run
    auth = run.record("logs.count[api/auth-failures]")
    # 3 + 2 + 1 in the window; the 5 per pod from two days ago are outside sinceSeconds.
    assert auth["outcome"] == "failed", auth["message"]
    assert auth["observed"]["count"] == 6
    assert "lines matching 'auth-failures' 6 is over the fail threshold 5" in auth["message"], auth["message"]
    assert auth["observed"]["streams"] == 3  # the Pending pod's container never started: nothing to read
    assert auth["expected"]["matching lines"] == {"warn": "2", "fail": "5"}
    assert run.record("logs.count[api/backup-done]")["outcome"] == "failed"
    assert "0 matching lines in the last 1d, expected at least 1" in outcome(run, "logs.count[api/backup-done]")[1]
    # One pod list, one log read per started pod container, shared by both patterns.
    kube = [seen for seen in requests["kube"] if "/namespaces/payments/" in seen.path]
    api_reads = [seen for seen in kube if seen.path.endswith("/log") and "/pods/api-" in seen.path]
    assert len(api_reads) == 3
    assert all(seen.query["sinceSeconds"] == "86400" for seen in api_reads)
    assert {seen.method for seen in requests["kube"]} == {"GET"}


def test_min_pattern_passes_and_all_containers_are_read(main_run: tuple[Run, dict[str, Any]]) -> None:
    run, _ = main_run
    done = run.record("logs.count[trainer/training-done]")
    assert done["outcome"] == "passed", done["message"]
    assert done["observed"]["streams"] == 2  # the trainer and its sidecar
    assert done["message"] == "1 lines match 'training-done' in the last 1d"
    assert done["observed"]["examples"] == ["trainer-0/trainer: INFO Training completed in 42m"]
    assert run.record("logs.count[trainer/auth-failures]")["outcome"] == "passed"
    assert run.record("logs.count[trainer-main/training-done]")["observed"]["streams"] == 1


def test_examples_are_capped_and_credentials_masked(main_run: tuple[Run, dict[str, Any]]) -> None:
    run, _ = main_run
    examples = run.record("logs.count[api/auth-failures]")["observed"]["examples"]
    assert len(examples) == 3
    assert all("password=***" in line and LEAKED not in line for line in examples)
    for text in [run.output, *(p.read_text(errors="replace") for p in run.bundle.rglob("*") if p.is_file())]:
        assert LEAKED not in text and SECRET not in text


def test_no_matching_pod_fails(main_run: tuple[Run, dict[str, Any]]) -> None:
    state, message = outcome(main_run[0], "logs.count[nobody/auth-failures]")
    assert state == "failed"
    assert message == f"no pod matches app=nobody in namespace {LOG_NS}: nothing to count 'auth-failures' in"


def test_pods_whose_containers_never_started_fail(main_run: tuple[Run, dict[str, Any]]) -> None:
    state, message = outcome(main_run[0], "logs.count[not-started/auth-failures]")
    assert state == "failed"
    assert message == (
        f"no container of the 1 matching pods in namespace {LOG_NS} has started: nothing to count 'auth-failures' in"
    )


def test_forbidden_pod_logs_are_an_error(main_run: tuple[Run, dict[str, Any]]) -> None:
    state, message = outcome(main_run[0], "logs.count[locked/auth-failures]")
    assert state == "error"
    assert message.startswith(f"cannot read pod logs in namespace {LOCKED_NS}: pods/log is forbidden")
    assert "(the checks need `get` on pods/log)" in message


def test_a_log_over_the_byte_cap_is_said_cut(main_run: tuple[Run, dict[str, Any]]) -> None:
    run, requests = main_run
    record = run.record("logs.count[chatty/ticks]")
    assert record["outcome"] == "warned", record["message"]
    assert record["observed"]["cut"] == ["chatty-0/chatty"]
    assert "held more than limit_bytes 1.0KB in the window" in record["message"]
    # Whole lines only, within the cap: the line the cap split is not counted.
    assert record["observed"]["bytes"] <= 1024
    assert record["observed"]["count"] == record["observed"]["lines"] == 1024 // 60
    read = [seen for seen in requests["kube"] if seen.path.endswith("/pods/chatty-0/log")]
    assert read[0].query["limitBytes"] == "1025"


# -- Loki --------------------------------------------------------------------------------


def test_loki_counts_the_window_of_a_query(main_run: tuple[Run, dict[str, Any]]) -> None:
    run, requests = main_run
    record = run.record("logs.count[loki-prod/auth-failures]")
    assert record["outcome"] == "warned" and record["observed"]["count"] == 4, record["message"]
    queries = [query for method, path, query in requests["loki"] if method == "GET"]
    assert {path for _, path, _ in requests["loki"]} == {"/loki/api/v1/query_range"}
    assert {method for method, _, _ in requests["loki"]} == {"GET"}
    assert all(q["direction"] == "forward" for q in queries)
    window = int(queries[0]["end"]) - int(queries[0]["start"])
    assert window == 86400 * 10**9


def test_loki_reads_at_most_max_lines_and_says_cut(main_run: tuple[Run, dict[str, Any]]) -> None:
    record = main_run[0].record("logs.count[loki-all/auth-failures]")
    # 13 lines match in the window across both streams; max_lines 7 stops the read there.
    assert record["observed"]["count"] == 7
    assert record["observed"]["cut"] == ['{app="auth-proxy"} |= "authentication"']
    assert record["outcome"] == "failed"  # 7 is already over fail 5: cut or not


def test_loki_refusals_are_errors(main_run: tuple[Run, dict[str, Any]]) -> None:
    run = main_run[0]
    state, message = outcome(run, "logs.count[loki-denied/auth-failures]")
    assert state == "error" and message.startswith("Loki refused the query (HTTP 401)")
    # The server echoed the token it refused: the record shows the reference, never the value.
    state, message = outcome(run, "logs.count[loki-wrong-token/auth-failures]")
    assert state == "error" and message == "Loki refused the query (HTTP 401): bad token: Bearer ${K8S_TOKEN}-old"
    state, message = outcome(run, "logs.count[loki-bad-query/auth-failures]")
    assert state == "error" and "(HTTP 400): parse error" in message


# -- CloudWatch Logs ---------------------------------------------------------------------


def test_cloudwatch_counts_the_window_with_filter_log_events_only(main_run: tuple[Run, dict[str, Any]]) -> None:
    run, requests = main_run
    record = run.record("logs.count[cw/auth-failures]")
    assert record["observed"]["count"] == 3 and record["outcome"] == "warned", record["message"]
    assert record["observed"]["streams"] == 2
    assert set(requests["cw"]) == {"Logs_20140328.FilterLogEvents"}


def test_a_missing_log_group_fails(main_run: tuple[Run, dict[str, Any]]) -> None:
    state, message = outcome(main_run[0], "logs.count[cw-missing/auth-failures]")
    assert state == "failed"
    assert message.startswith("CloudWatch Logs group /aws/none:") and "does not exist" in message


# -- files on a host ---------------------------------------------------------------------


def test_a_file_is_counted_and_its_age_is_the_window(main_run: tuple[Run, dict[str, Any]]) -> None:
    run = main_run[0]
    record = run.record("logs.count[file/auth-failures]")
    assert record["outcome"] == "warned" and record["observed"]["count"] == 4
    assert run.record("logs.count[file/auth-failures]")["observed"]["calls"] == 1
    stale = run.record("logs.count[file-stale/auth-failures]")
    assert stale["outcome"] == "passed" and stale["observed"]["count"] == 0
    assert stale["observed"]["empty_reason"].endswith("old.log was last modified before the window")


def test_a_file_over_the_cap_keeps_its_newest_whole_lines(main_run: tuple[Run, dict[str, Any]]) -> None:
    record = main_run[0].record("logs.count[file-big/auth-failures]")
    line = len(f"line 00000 {AUTH_FAILED}\n")
    assert record["observed"]["count"] == 2048 // line
    assert record["observed"]["examples"][0].split(": ", 1)[1].startswith(f"line {200 - 2048 // line:05d}")
    assert record["outcome"] == "warned" and "is a lower bound" in record["message"]


def test_a_missing_file_fails(main_run: tuple[Run, dict[str, Any]]) -> None:
    state, message = outcome(main_run[0], "logs.count[file-missing/auth-failures]")
    assert state == "failed" and message.endswith("nope.log does not exist"), message


def test_host_commands_only_read() -> None:
    settings = HostLogSource(url="local://", path="/var/log/auth.log")
    assert command(settings, 3600, 1024, 1000.0) == (
        "m=$(stat -c %Y -- /var/log/auth.log) && printf '@@opsproof-mtime %s\\n' \"$m\" "
        "&& tail -c 1025 -- /var/log/auth.log"
    )
    journal = HostLogSource(url="local://", journal=True, unit="sshd.service")
    assert command(journal, 3600, 1024, 10000.0) == (
        "journalctl --no-pager --quiet --output=short-iso --since=@6400 --unit=sshd.service | head -c 1025"
    )


# -- black holes: the timeout, and no more -------------------------------------------------


def _timed(runner: Runner, item: str) -> tuple[Run, float]:
    runner.profile(logs_profile(item, timeout="1s"))
    started = time.monotonic()
    run = runner.run("-m", "daily")
    return run, time.monotonic() - started


@pytest.mark.parametrize("source", ["kubernetes", "loki", "cloudwatch"])
def test_a_black_hole_costs_its_timeout(
    runner: Runner, kube_black_hole: Path, source: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("K8S_TOKEN", SECRET)
    with listening_black_hole() as port:
        settings = {
            "kubernetes": f"kubernetes: {{kubeconfig: '{kube_black_hole}', namespace: x}}",
            "loki": f"loki: {{url: 'http://127.0.0.1:{port}', query: '{{app=\"x\"}}'}}",
            "cloudwatch": f"cloudwatch: {{log_group: g, endpoint_url: 'http://127.0.0.1:{port}', region: us-east-1}}",
        }[source]
        run, elapsed = _timed(runner, f"{{name: hole, {settings}, patterns: [{AUTH}]}}")
    record = run.record("logs.count[hole/auth-failures]")
    assert record["outcome"] == "failed"
    assert record["message"].startswith("timed out after 1.0"), record["message"]
    # The probe's own cost: its timeout, not a retry or a second connect.
    assert 1.0 <= record["observed"]["elapsed_s"] < 1.5
    # The whole run (pytest, imports, the bundle) is far slower on a loaded machine (load 20 on
    # 2 cores measured 9-12 s): a bound that still catches botocore's default 5 attempts of 1s+.
    assert elapsed < 1 + 20, f"a 1s black hole took the run {elapsed:.1f}s"


# -- the profile ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("item", "expected"),
    [
        (
            "{name: x, patterns: [{name: p, match: a, min: 1}]}",
            "give exactly one source of kubernetes, loki, cloudwatch, host (given: none)",
        ),
        (
            "{name: x, host: {url: 'local://', path: /a}, loki: {url: 'http://l', query: '{a=\"b\"}'}, patterns: [{name: p, match: a, min: 1}]}",
            "(given: loki, host)",
        ),
        (
            "{name: x, host: {url: 'local://', path: /a}, patterns: [{name: p, match: a}]}",
            "pattern 'p': give `threshold: {warn, fail}` or `min:`",
        ),
        (
            "{name: x, host: {url: 'local://', path: /a}, patterns: [{name: p, match: '(a', min: 1}]}",
            "invalid regular expression '(a'",
        ),
        (
            "{name: x, host: {url: 'local://', path: /a}, patterns: [{name: p, match: a, threshold: {}}]}",
            "an empty threshold",
        ),
        (
            "{name: x, host: {url: 'local://', path: /a}, patterns: [{name: p, match: a, threshold: {warn: 9, fail: 3}}]}",
            "warn must be at or below fail",
        ),
        (
            "{name: x, host: {url: 'local://', path: /a}, patterns: [{name: p, match: a, min: 1}, {name: p, match: b, min: 1}]}",
            "two patterns are named 'p'",
        ),
        (
            "{name: x, host: {url: 'local://', path: /a, journal: true}, patterns: [{name: p, match: a, min: 1}]}",
            "give `path:` (a file) or `journal: true`, not both",
        ),
        (
            "{name: x, host: {url: 'nope://h', path: /a}, patterns: [{name: p, match: a, min: 1}]}",
            "unknown backend nope://",
        ),
        (
            "{name: x, loki: {url: 'http://l', query: 'app=x'}, patterns: [{name: p, match: a, min: 1}]}",
            "starts with a stream selector",
        ),
        (
            "{name: x, host: {url: 'local://', path: /a}, within: 1 day, patterns: [{name: p, match: a, min: 1}]}",
            "logs[0].within",
        ),
        (
            "{name: x, host: {url: 'local://', path: /a}, limit_bytes: 10B, patterns: [{name: p, match: a, min: 1}]}",
            "limit_bytes below 1KB",
        ),
        (
            "{name: x, kubernetes: {namespace: Bad_NS, kubeconfig: /nonexistent}, patterns: [{name: p, match: a, min: 1}]}",
            "kubernetes.namespace",
        ),
    ],
)
def test_bad_items_are_usage_errors_naming_the_key(tmp_path: Path, item: str, expected: str) -> None:
    message = profile_error(tmp_path, logs_profile(item))
    assert message.startswith("bad.yaml:"), message
    assert expected in message, message


def test_a_bad_profile_exits_4(runner: Runner) -> None:
    runner.profile(logs_profile("{name: x, host: {url: 'local://', path: /a}, patterns: []}"))
    run = runner.run("-m", "daily")
    assert run.ret == 4 and "logs[0].patterns" in run.output


# -- the counting itself ---------------------------------------------------------------------


def test_credentials_in_log_lines_are_masked() -> None:
    assert mask_credentials("login password=hunter2 user=bob") == "login password=*** user=bob"
    assert mask_credentials('cfg {"api_key": "abc123"}') == 'cfg {"api_key": ***}'
    assert mask_credentials("Authorization: Bearer eyJhbGciOi.xyz") == "Authorization: ***"
    assert mask_credentials("sent bearer abcdefghijkl to upstream") == "sent bearer *** to upstream"
    assert mask_credentials("no secrets here") == "no secrets here"


def test_one_pass_counts_every_pattern() -> None:
    target = LogsTarget.model_validate(
        {
            "name": "x",
            "host": {"url": "local://", "path": "/a"},
            "examples": 1,
            "patterns": [
                {"name": "a", "match": "ERROR", "min": 1},
                {"name": "b", "match": "timeout", "ignore_case": True, "threshold": {"warn": 1}},
            ],
        }
    )
    counter = LineCounter.of(target)
    counter.feed(["ERROR db Timeout", "ERROR x", "INFO TIMEOUT"] + [line for _, line in api_lines(1)], "here")
    assert counter.counts == {"a": 2, "b": 2}
    assert counter.examples == {"a": ["here: ERROR db Timeout"], "b": ["here: ERROR db Timeout"]}
    assert counter.lines == 3 + 26


def test_the_secret_token_never_reaches_a_report(main_run: tuple[Run, dict[str, Any]]) -> None:
    run, _ = main_run
    assert os.environ.get("K8S_TOKEN") != SECRET  # the run had it; this process does not keep it
    assert SECRET not in run.output


def test_patterns_searched_at_once_count_as_one_by_one() -> None:
    patterns = ["ERROR", "time(out|d out)", "user=u1[0-2]", "^INFO", "fail(ed)?$"]
    lines = ["ERROR timed out user=u11", "INFO ok", "job failed", "failed job", "nothing", "user=u13 timeout"]
    target = LogsTarget.model_validate(
        {
            "name": "x",
            "host": {"url": "local://", "path": "/a"},
            "patterns": [{"name": f"p{i}", "match": m, "min": 1} for i, m in enumerate(patterns)]
            + [{"name": "case", "match": "error", "ignore_case": True, "min": 1}],
        }
    )
    together = LineCounter.of(target)
    assert together.any_pattern is not None
    together.feed(lines)
    alone = LineCounter.of(target)
    alone.any_pattern = None
    alone.feed(lines)
    assert together.counts == alone.counts == {"p0": 1, "p1": 2, "p2": 1, "p3": 1, "p4": 1, "case": 1}


def test_patterns_that_cannot_be_joined_are_searched_one_by_one() -> None:
    assert combined([re.compile(r"(a)\1"), re.compile("(b)")]) is None  # \1 would name another group
    assert combined([re.compile("(?i)x"), re.compile("y")]) is None  # a global flag mid-expression
    assert combined([re.compile("x", re.IGNORECASE), re.compile("y")]).pattern == "(?i:x)|(?:y)"


@pytest.mark.skipif(shutil.which("journalctl") is None, reason="no journalctl on this machine (systemd)")
def test_the_journal_is_read_with_journalctl(main_run: tuple[Run, dict[str, Any]]) -> None:
    record = main_run[0].record("logs.count[journal/backup-done]")
    # Whatever this machine's journal holds of the last day, it is no backup of ours: min 1 fails.
    assert record["outcome"] == "failed", record["message"]
    assert record["message"].startswith("'backup-done': 0 matching lines in the last 1d"), record["message"]
    assert record["observed"]["where"] == "journal on local://"


def test_the_json_schema_has_the_logs_section_and_the_new_kubernetes_keys() -> None:
    from opsproof.profile import profile_json_schema

    schema = profile_json_schema()
    assert "logs" in schema["properties"]
    logs = schema["$defs"]["LogsTarget"]["properties"]
    assert {"kubernetes", "loki", "cloudwatch", "host", "within", "limit_bytes", "patterns"} <= set(logs)
    kube = schema["$defs"]["KubernetesTarget"]["properties"]
    assert {"usage", "ingresses", "network_policies", "hpa_specs", "resources"} <= set(kube)
