"""Notifications on state change, against loopback receivers that record every request.

The receivers (tests/signal_servers.py) stand in for PagerDuty's Events API, a Slack
incoming webhook and a generic webhook, which the tests cannot reach; they answer as
those services do.
"""

from __future__ import annotations

import json
import sqlite3
import time
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from helpers.signal_servers import Receiver, receiver

from conftest import Runner, http_profile, profile_error
from opsproof.evidence.verify import verify_bundle

__all__ = ["receiver"]  # a fixture, imported so pytest finds it

ROUTING_KEY = "pd-R0uting/key+secret"
HOOK_TOKEN = "hook-t0ken/secret+value"


@pytest.fixture(autouse=True)
def secrets(monkeypatch: pytest.MonkeyPatch, receiver: Receiver) -> None:
    monkeypatch.setenv("PD_ROUTING_KEY", ROUTING_KEY)
    monkeypatch.setenv("SLACK_WEBHOOK", f"{receiver.base}/slack/T0001/B0001/s3cretHookPath")
    monkeypatch.setenv("HOOK_TOKEN", HOOK_TOKEN)
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)


def _notify(receiver: Receiver, *, pd: str = "/pd/v2/enqueue", hook: str = "/hook", extra: str = "") -> str:
    return (
        "notify:\n"
        f"  - pagerduty: {{routing_key: '${{PD_ROUTING_KEY}}', url: '{receiver.base}{pd}'}}\n"
        "    bundle_url: 'https://evidence.example/{bundle}/report.html'\n"
        "    when: {severity: [critical, high]}\n"
        f"{extra}"
        "  - slack: {webhook_url: '${SLACK_WEBHOOK}'}\n"
        "    when: {outcome: [failed, error], severity: [critical, high, medium]}\n"
        f"  - webhook: {{url: '{receiver.base}{hook}', headers: {{Authorization: 'Bearer ${{HOOK_TOKEN}}'}}}}\n"
        "    timeout: 1s\n    deadline: 2500ms\n"
    )


def _profile(base: str, receiver: Receiver, path: str, **kwargs: str) -> str:
    return http_profile(
        f"{{name: api, url: '{base}{path}'}}",
        f"{{name: fine, url: '{base}/health'}}",
        extra=_notify(receiver, **kwargs),
    )


def _notifications(bundle: Path) -> dict:
    return json.loads((bundle / "notifications.json").read_text())


def _bundle_text(bundle: Path) -> str:
    return "".join(p.read_text() for p in bundle.iterdir() if p.is_file())


def _newest(runner: Runner) -> Path:
    """The bundle sealed last: by its run's start, since two bundles of one second sort by their random suffix."""
    bundles = [p for p in runner.report_dir.iterdir() if (p / "results.json").is_file()]
    return max(bundles, key=lambda p: json.loads((p / "results.json").read_text())["run"]["started_at"])


def test_trigger_then_no_repeat_then_resolve(runner: Runner, http_server, receiver: Receiver) -> None:
    runner.profile(_profile(http_server.base, receiver, "/status/503"))
    first = runner.run("-m", "daily")
    assert first.ret == 1, first.output
    triggers = receiver.bodies("/pd")
    assert [t["event_action"] for t in triggers] == ["trigger"]
    trigger = triggers[0]
    assert trigger["routing_key"] == ROUTING_KEY  # the receiver gets the real key...
    assert trigger["dedup_key"] == "opsproof/test/http.health[api]"
    assert trigger["payload"]["severity"] == "critical"
    assert trigger["payload"]["custom_details"]["bundle"] == str(first.bundle)
    assert "HTTP 503" in trigger["payload"]["summary"]
    assert trigger["links"][0]["href"] == f"https://evidence.example/{first.bundle.name}/report.html"
    slack = receiver.bodies("/slack")
    assert len(slack) == 1 and "1 new failure" in slack[0]["text"]
    assert any("http.health[api]" in b.get("text", {}).get("text", "") for b in slack[0]["blocks"])
    hook = receiver.bodies("/hook")[0]
    assert hook["schema"] == "opsproof/notification/v1"
    assert [(c["change"], c["record"]["check"]) for c in hook["changes"]] == [("new", "http.health[api]")]
    recorded = _notifications(first.bundle)
    assert recorded["previous_state"].startswith("history")
    assert all(d["delivered"] and d["attempts"][0]["status"] in (200, 202) for d in recorded["deliveries"])
    assert recorded["deliveries"][0]["body"]["routing_key"] == "${PD_ROUTING_KEY}"  # ...the bundle never does
    assert "notifications.json" in json.loads((first.bundle / "manifest.json").read_text())["files"]
    assert verify_bundle(first.bundle) == []

    second = runner.run("-m", "daily")  # still failing: nobody is told again
    assert second.ret == 1
    assert len(receiver.seen) == 3
    assert _notifications(_newest(runner))["deliveries"] == []

    runner.profile(_profile(http_server.base, receiver, "/health"))
    third = runner.run("-m", "daily")
    assert third.ret == 0, third.output
    resolves = receiver.bodies("/pd")[1:]
    assert resolves == [
        {"routing_key": ROUTING_KEY, "dedup_key": "opsproof/test/http.health[api]", "event_action": "resolve"}
    ]
    assert "1 recovered" in receiver.bodies("/slack")[1]["text"]
    assert receiver.bodies("/hook")[1]["changes"][0]["change"] == "recovered"


def _shift_history(report_dir: Path, hours: float) -> None:
    """Move every recorded run `hours` into the past: the next run then comes that much later."""
    with sqlite3.connect(report_dir / "history.sqlite") as db:
        for run_id, started in db.execute("SELECT run_id, started_at FROM runs").fetchall():
            moved = datetime.fromisoformat(started.replace("Z", "+00:00")) - timedelta(hours=hours)
            db.execute(
                "UPDATE runs SET started_at = ? WHERE run_id = ?",
                (moved.isoformat(timespec="milliseconds").replace("+00:00", "Z"), run_id),
            )


def test_a_reminder_after_24h_of_failing(runner: Runner, http_server, receiver: Receiver) -> None:
    reminder = "    reminder: 24h\n"
    runner.profile(_profile(http_server.base, receiver, "/status/503", extra=reminder))
    runner.run("-m", "daily")
    _shift_history(runner.report_dir, 10)
    runner.run("-m", "daily")  # 10 h in: no reminder yet
    assert len(receiver.bodies("/pd")) == 1
    _shift_history(runner.report_dir, 15)
    run = runner.run("-m", "daily")  # 25 h since the first failure: one reminder
    pd = receiver.bodies("/pd")
    assert len(pd) == 2, pd
    assert pd[1]["event_action"] == "trigger" and pd[1]["payload"]["custom_details"]["reminder"] is True
    assert "still failing, for 1d 1h" in pd[1]["payload"]["summary"]
    assert pd[1]["dedup_key"] == pd[0]["dedup_key"]
    # Slack has no reminder set: it heard of the failure once.
    assert len(receiver.bodies("/slack")) == 1
    assert _notifications(run.bundle if len(run.bundles) == 1 else _newest(runner))["deliveries"][0]["event"] == "trigger"


def test_a_receiver_that_times_out_changes_nothing_and_is_recorded(
    runner: Runner, http_server, receiver: Receiver
) -> None:
    runner.profile(_profile(http_server.base, receiver, "/status/503", hook="/slow/hook"))
    started = time.monotonic()
    run = runner.run("-m", "daily")
    elapsed = time.monotonic() - started
    assert run.ret == 1, run.output  # what the checks found, as without notifications
    assert elapsed < 15  # the webhook's deadline (2.5 s) bounds the wait, with a margin for a busy machine
    hook = next(d for d in _notifications(run.bundle)["deliveries"] if d["channel"] == "webhook")
    assert not hook["delivered"]
    assert len(hook["attempts"]) >= 2 and all("timed out" in a["error"] for a in hook["attempts"])
    assert "NOT delivered (timed out" in run.output
    assert run.record("http.health[api]")["outcome"] == "failed"
    assert run.results["run"]["exit_code"] == 1
    assert verify_bundle(run.bundle) == []


def test_a_flaky_receiver_is_retried_with_backoff(runner: Runner, http_server, receiver: Receiver) -> None:
    runner.profile(_profile(http_server.base, receiver, "/status/503", pd="/flaky/pd"))
    run = runner.run("-m", "daily")
    pd = _notifications(run.bundle)["deliveries"][0]
    assert pd["delivered"] and [a.get("status") for a in pd["attempts"]] == [503, 503, 202]
    gaps = [datetime.fromisoformat(a["at"].replace("Z", "+00:00")) for a in pd["attempts"]]
    assert (gaps[2] - gaps[1]) > (gaps[1] - gaps[0])  # the backoff doubles


def test_a_receiver_that_echoes_secrets_leaks_none(runner: Runner, http_server, receiver: Receiver) -> None:
    runner.profile(_profile(http_server.base, receiver, "/status/503", pd="/echo/pd", hook="/echo/hook"))
    run = runner.run("-m", "daily")
    hook = receiver.at("/echo/hook")
    assert hook and hook[0].headers["Authorization"] == f"Bearer {HOOK_TOKEN}"  # the receiver got the real token
    deliveries = _notifications(run.bundle)["deliveries"]
    assert any("you_sent" in a.get("answer", "") for d in deliveries for a in d["attempts"])
    everything = run.output + _bundle_text(run.bundle) + (runner.report_dir / "history.sqlite").read_bytes().decode(
        "latin-1"
    )
    for secret in (ROUTING_KEY, HOOK_TOKEN, "s3cretHookPath"):
        assert secret not in everything
    assert "${HOOK_TOKEN}" in _bundle_text(run.bundle)


def test_dry_run_prints_redacted_and_sends_nothing(runner: Runner, http_server, receiver: Receiver) -> None:
    runner.profile(_profile(http_server.base, receiver, "/status/503"))
    run = runner.run("-m", "daily", "--dry-run-notify")
    assert receiver.seen == []
    assert "would send to pagerduty#0 (pagerduty trigger)" in run.output
    assert '"routing_key": "${PD_ROUTING_KEY}"' in run.output
    assert "${SLACK_WEBHOOK}" in run.output
    assert ROUTING_KEY not in run.output and "s3cretHookPath" not in run.output
    recorded = _notifications(run.bundle)
    assert recorded["mode"] == "dry-run" and all(d["dry_run"] for d in recorded["deliveries"])


def test_no_notify_sends_nothing_and_says_so(runner: Runner, http_server, receiver: Receiver) -> None:
    runner.profile(_profile(http_server.base, receiver, "/status/503"))
    run = runner.run("-m", "daily", "--no-notify")
    assert receiver.seen == []
    assert _notifications(run.bundle) == {"schema": "opsproof/notifications/v1", "mode": "disabled", "deliveries": []}
    assert "notifications off (--no-notify)" in run.output


def test_ping_start_and_exit_code(runner: Runner, http_server, receiver: Receiver) -> None:
    runner.profile(http_profile(f"{{name: api, url: '{http_server.base}/status/503'}}"))
    run = runner.run("-m", "daily", "--ping", f"{receiver.base}/ping/abc-123")
    assert run.ret == 1
    assert [s.path for s in receiver.seen] == ["/ping/abc-123/start", "/ping/abc-123/1"]


def test_a_ping_that_hangs_is_bounded_and_changes_nothing(runner: Runner, http_server, receiver: Receiver) -> None:
    runner.profile(http_profile(f"{{name: api, url: '{http_server.base}/health'}}"))
    started = time.monotonic()
    run = runner.run("-m", "daily", "--ping", f"{receiver.base}/slow/ping")
    assert run.ret == 0, run.output
    assert time.monotonic() - started < 20  # two pings, 5 s each at most
    assert "the start ping (--ping) failed: no answer within 5s" in run.output
    assert "the end ping (--ping) failed" in run.output


def test_github_step_summary(runner: Runner, http_server, receiver: Receiver, tmp_path: Path, monkeypatch) -> None:
    summary = tmp_path / "step_summary.md"
    summary.write_text("# earlier step\n")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    runner.profile(
        http_profile(
            f"{{name: api, url: '{http_server.base}/status/503'}}",
            f"{{name: slowish, url: '{http_server.base}/slow/10', critical: false, expect: {{latency: {{warn: 1ms}}}}}}",
        )
    )
    run = runner.run("-m", "daily")
    text = summary.read_text()
    assert text.startswith("# earlier step\n")  # appended, never replaced
    assert "opsproof test: FAILED (exit 1)" in text
    assert "### Blocking (1)" in text and "`http.health[api]`" in text
    assert "### Warnings (1)" in text and "`http.health[slowish]`" in text
    assert f"`{run.bundle}`" in text


@pytest.mark.parametrize(
    ("notify", "said"),
    [
        ("[{slack: {webhook_url: 'https://x'}, webhook: {url: 'https://y'}}]", "give exactly one of pagerduty, slack, webhook"),
        ("[{when: {severity: [high]}}]", "give exactly one of pagerduty, slack, webhook (got none)"),
        ("[{pagerduty: {routing_key: k}, when: {severity: [urgent]}}]", "notify[0].when.severity[0]"),
        ("[{pagerduty: {routing_key: k}, when: {outcome: [passed]}}]", "notify[0].when.outcome[0]"),
        ("[{pagerduty: {routing_key: k}, reminder: 24}]", "notify[0].reminder: invalid duration 24"),
        ("[{pagerduty: {routing_key: k, url: 'events.eu.pagerduty.com'}}]", "notify[0].pagerduty.url"),
        ("[{pagerduty: {routing_key: k}, page: true}]", "notify[0].page: unknown key"),
        ("[{pagerduty: {routing_key: k}, bundle_url: 'https://e.example/x'}]", "notify[0].bundle_url"),
        ("[{pagerduty: {routing_key: k}, timeout: 30s, deadline: 10s}]", "timeout is longer than deadline"),
        ("[{pagerduty: {routing_key: literal-key}}]", "notify[0].pagerduty.routing_key: a secret; write it as ${NAME}"),
        ("[{slack: {webhook_url: 'https://hooks.slack.com/services/T/B/x'}}]", "notify[0].slack.webhook_url: a secret"),
        ("[{name: a, slack: {webhook_url: 'https://x'}}, {name: a, slack: {webhook_url: 'https://y'}}]", "duplicate name 'a'"),
    ],
)
def test_bad_notify_keys_are_named(tmp_path: Path, notify: str, said: str) -> None:
    assert said in profile_error(tmp_path, f"environment: test\nnotify: {notify}\n")


def test_a_bad_notify_key_exits_4(runner: Runner) -> None:
    runner.profile("environment: test\nnotify: [{pagerduty: {routing_key: '${PD_ROUTING_KEY}'}, when: {severity: [p1]}}]\n")
    run = runner.run("-m", "daily")
    assert run.ret == 4
    assert "notify[0].when.severity[0]" in run.output
    assert ROUTING_KEY not in run.output


def test_the_profile_schema_has_the_signal_keys() -> None:
    """`opsproof schema` is generated from the models: editors learn notify:, maintenance: and pushgateway: from it."""
    from opsproof.profile import profile_json_schema

    schema = profile_json_schema()
    assert {"notify", "maintenance", "pushgateway"} <= set(schema["properties"])
    definitions = schema["$defs"]
    assert {"pagerduty", "slack", "webhook", "when", "reminder"} <= set(definitions["Notify"]["properties"])
    assert {"from", "to", "every", "timezone", "checks", "ticket"} <= set(definitions["MaintenanceWindow"]["properties"])
    assert definitions["When"]["properties"]["severity"]["items"]["enum"] == ["critical", "high", "medium", "low"]


def test_collect_only_sends_no_ping(runner: Runner, http_server, receiver: Receiver) -> None:
    runner.profile(http_profile(f"{{name: api, url: '{http_server.base}/health'}}"))
    run = runner.run("-m", "daily", "--collect-only", "--ping", f"{receiver.base}/ping/abc")
    assert run.ret == 0, run.output
    assert receiver.seen == []  # a start with no end would read as a run that died
