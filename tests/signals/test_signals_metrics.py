"""Prometheus metrics of a run: the node_exporter textfile and a push to Debian's real Pushgateway."""

from __future__ import annotations

import subprocess
from datetime import datetime
from pathlib import Path

from helpers.signal_servers import Pushgateway, promtool, pushgateway, receiver
from prometheus_client.parser import text_string_to_metric_families

from conftest import Runner, http_profile

__all__ = ["pushgateway", "receiver"]  # fixtures, imported so pytest finds them


def _series(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = {k: v for k, v in sample.labels.items() if k != "instance"}
            found[(sample.name, frozenset(labels.items()))] = sample.value
    return found


def _profile(base: str) -> str:
    return http_profile(
        f"{{name: up, url: '{base}/health'}}",
        f"{{name: down, url: '{base}/status/503', severity: high}}",
        f"{{name: slowish, url: '{base}/slow/10', critical: false, expect: {{latency: {{warn: 1ms}}}}}}",
    )


def test_textfile_and_pushgateway_hold_the_same_series(
    runner: Runner, http_server, pushgateway: Pushgateway, tmp_path: Path
) -> None:
    runner.profile(_profile(http_server.base))
    textfile = tmp_path / "textfile" / "opsproof.prom"
    run = runner.run("-m", "daily", "--metrics-file", str(textfile), "--pushgateway", pushgateway.url)
    assert run.ret == 1, run.output
    text = textfile.read_text()
    series = _series(text)
    base = {("environment", "test"), ("cadence", "daily")}
    down = frozenset({*base, ("check", "http.health[down]"), ("kind", "http"), ("target", "down"), ("severity", "high")})
    assert series[("opsproof_check_outcome", down | {("outcome", "failed")})] == 1
    assert series[("opsproof_check_outcome", down | {("outcome", "passed")})] == 0
    assert series[("opsproof_check_blocking", down)] == 1
    latency = [k for k in series if k[0] == "opsproof_check_value" and ("measure", "latency_seconds") in k[1]]
    assert latency and all(series[k] > 0 for k in latency)
    assert series[("opsproof_run_exit_code", frozenset(base))] == 1
    finished = series[("opsproof_run_last_timestamp_seconds", frozenset(base))]
    expected = datetime.fromisoformat(run.results["run"]["finished_at"].replace("Z", "+00:00")).timestamp()
    assert abs(finished - expected) < 0.01
    assert series[("opsproof_run_duration_seconds", frozenset(base))] >= 0
    counted = sum(v for (name, _), v in series.items() if name == "opsproof_run_checks")
    assert counted == run.results["summary"]["total"]
    # No message, no free text in any label: cardinality is the profile's.
    for _name, labels in series:
        assert not any(key == "message" for key, _ in labels)
    # What the gateway serves (with its job label and push_time) holds every series of the textfile.
    pushed = _series(pushgateway.scrape())
    for (name, labels), value in series.items():
        assert pushed[(name, labels | {("job", "opsproof")})] == value, name
    assert "opsproof: metrics pushed to" in run.output
    # node_exporter never sees half a file: nothing but the file itself is left in the folder.
    assert [p.name for p in textfile.parent.iterdir()] == ["opsproof.prom"]


def test_promtool_check_metrics_finds_nothing(runner: Runner, http_server, tmp_path: Path) -> None:
    tool = promtool()
    runner.profile(_profile(http_server.base))
    textfile = tmp_path / "opsproof.prom"
    runner.run("-m", "daily", "--metrics-file", str(textfile))
    done = subprocess.run(
        [tool, "check", "metrics"], input=textfile.read_text(), capture_output=True, text=True, check=False
    )
    assert done.returncode == 0 and not done.stdout.strip() and not done.stderr.strip(), done.stdout + done.stderr


def test_a_pushgateway_that_is_down_changes_nothing(runner: Runner, http_server, closed_port: str) -> None:
    runner.profile(http_profile(f"{{name: up, url: '{http_server.base}/health'}}"))
    gateway = closed_port.removesuffix("/health")
    run = runner.run("-m", "daily", "--pushgateway", gateway)
    assert run.ret == 0, run.output
    assert "metrics NOT pushed" in run.output
    assert run.results["run"]["exit_code"] == 0


def test_pushgateway_basic_auth_comes_from_the_profile_and_is_never_shown(
    runner: Runner, receiver, monkeypatch
) -> None:
    """The receiver stands in for a Pushgateway behind an authenticating proxy: it records the Authorization header."""
    monkeypatch.setenv("PUSH_PASSWORD", "push-Sup3r/secret")
    runner.profile(
        http_profile(
            f"{{name: up, url: '{receiver.base}/ping/health'}}",
            extra=f"pushgateway: {{url: '{receiver.base}/gw', username: ops, password: '${{PUSH_PASSWORD}}'}}\n",
        )
    )
    run = runner.run("-m", "daily")
    pushes = [s for s in receiver.seen if s.method == "PUT"]
    assert pushes and pushes[0].path == "/gw/metrics/job/opsproof/environment/test/cadence/daily"
    assert pushes[0].headers["Authorization"].startswith("Basic ")
    assert "push-Sup3r/secret" not in run.output
    assert "push-Sup3r/secret" not in "".join(p.read_text() for p in run.bundle.iterdir())


def test_bad_signal_options_are_usage_errors(runner: Runner, http_server, tmp_path: Path) -> None:
    runner.profile(http_profile(f"{{name: up, url: '{http_server.base}/health'}}"))
    for args, said in (
        (("--pushgateway", "push.example:9091"), "--pushgateway 'push.example:9091': expected an http"),
        (("--ping", "hc-ping.com/abc"), "--ping 'hc-ping.com/abc'"),
        (("--metrics-file", str(tmp_path)), "is a directory"),
        (("--no-notify", "--dry-run-notify"), "give one of them"),
    ):
        run = runner.run("-m", "daily", *args)
        assert run.ret == 4, run.output
        assert said in run.output
