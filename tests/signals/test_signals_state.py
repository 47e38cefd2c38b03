"""What a destination is told, from a check's earlier records (state changes, reminders), and the Pushgateway's auth."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers.signal_servers import Receiver, receiver

from conftest import Runner, http_profile
from opsproof.compliance.history import History, locate
from opsproof.model.signals import Notify
from opsproof.signals.state import Past, Timeline, changes, load_timeline

__all__ = ["receiver"]  # a fixture, imported so pytest finds it

NOW = "2026-12-05T06:00:00.000Z"


def _rule(**extra: object) -> Notify:
    return Notify.model_validate({"webhook": {"url": "https://ops.example/hook"}, **extra})


def _record(outcome: str, severity: str = "critical", **extra: object) -> dict[str, object]:
    return {"check": "http.health[api]", "outcome": outcome, "severity": severity, **extra}


def _told(rule: Notify, record: dict[str, object], *past: Past) -> list[tuple[str, str | None]]:
    timeline = Timeline({"http.health[api]": list(past)})
    return [(n.change, n.since) for n in changes(rule, [record], timeline, NOW)]


def test_new_still_recovered() -> None:
    rule = _rule()
    assert _told(rule, _record("failed")) == [("new", NOW)]  # no history: a first failure is new
    assert _told(rule, _record("failed"), Past("2026-12-04T06:00:00Z", "passed", "critical")) == [("new", NOW)]
    failing = [Past("2026-12-04T06:00:00Z", "error", "critical"), Past("2026-12-03T06:00:00Z", "failed", "critical")]
    assert _told(rule, _record("failed"), *failing) == [("still", "2026-12-03T06:00:00Z")]
    for outcome in ("passed", "warned", "waived"):
        assert _told(rule, _record(outcome), *failing) == [("recovered", "2026-12-04T06:00:00Z")]
    assert _told(rule, _record("skipped"), *failing) == []  # a skipped check says nothing of the target
    assert _told(rule, _record("passed"), Past("2026-12-04T06:00:00Z", "passed", "critical")) == []


def test_when_filters_severity_and_outcome() -> None:
    only_high = _rule(when={"severity": ["critical", "high"]})
    assert _told(only_high, _record("failed", "medium")) == []
    warned_too = _rule(when={"outcome": ["failed", "error", "warned"]})
    assert _told(warned_too, _record("warned")) == [("new", NOW)]
    # A failure whose severity rose into the filter is new to that destination.
    assert _told(only_high, _record("failed", "high"), Past("2026-12-04T06:00:00Z", "failed", "low")) == [("new", NOW)]


def test_a_failure_inside_a_window_is_never_told() -> None:
    assert _told(_rule(), _record("failed", maintenance={"name": "w"})) == []


def test_reminders_every_multiple_of_the_interval_since_the_streak_began() -> None:
    rule = _rule(reminder="24h")
    began = Past("2026-12-04T05:00:00Z", "failed", "critical")  # 25 h before NOW
    assert _told(rule, _record("failed"), began) == [("reminder", began.at)]
    recent = Past("2026-12-05T05:30:00Z", "failed", "critical")  # 24.5 h: the previous run had the reminder
    assert _told(rule, _record("failed"), recent, began) == [("still", began.at)]
    young = Past("2026-12-04T12:00:00Z", "failed", "critical")  # 18 h: not yet
    assert _told(rule, _record("failed"), young) == [("still", young.at)]


def test_the_history_walk_passes_over_skipped_and_window_records(tmp_path: Path) -> None:
    location = locate(tmp_path, None)
    with History(location) as history:
        with history.transaction():
            for run_id, started, outcome, window in (
                ("r1", "2026-12-01T06:00:00.000Z", "passed", None),
                ("r2", "2026-12-02T06:00:00.000Z", "failed", None),
                ("r3", "2026-12-03T06:00:00.000Z", "failed", '{"name": "w"}'),
                ("r4", "2026-12-04T06:00:00.000Z", "skipped", None),
                ("other", "2026-12-04T07:00:00.000Z", "passed", None),
            ):
                environment = "staging" if run_id == "other" else "prod"
                history.execute(
                    "INSERT INTO runs (run_id, environment, started_at, status, bundle, manifest_sha256, recorded_at) "
                    "VALUES (?, ?, ?, 'failed', ?, 'x', ?)",
                    (run_id, environment, started, run_id, started),
                )
                history.execute(
                    "INSERT INTO records (run_id, node_id, check_id, severity, outcome, controls, maintenance) "
                    "VALUES (?, ?, 'http.health[api]', 'critical', ?, '[]', ?)",
                    (run_id, run_id, outcome, window),
                )
        timeline = load_timeline(history, "prod", NOW, ["http.health[api]", "http.health[new]"])
    assert timeline.of("http.health[api]") == [
        Past("2026-12-02T06:00:00.000Z", "failed", "critical"),
        Past("2026-12-01T06:00:00.000Z", "passed", "critical"),
    ]
    assert timeline.of("http.health[new]") == []


@pytest.mark.parametrize(
    ("auth", "header"),
    [("bearer_token: '${PUSH_TOKEN}'", "Bearer push-T0ken"), ("username: ops, password: '${PUSH_TOKEN}'", "Basic ")],
)
def test_pushgateway_auth(runner: Runner, receiver: Receiver, monkeypatch: pytest.MonkeyPatch, auth: str, header: str) -> None:
    """The receiver stands in for a Pushgateway behind an authenticating proxy."""
    monkeypatch.setenv("PUSH_TOKEN", "push-T0ken")
    runner.profile(
        http_profile(
            f"{{name: up, url: '{receiver.base}/ping/ok'}}",
            extra=f"pushgateway: {{{auth}}}\n",
        )
    )
    run = runner.run("-m", "daily", "--pushgateway", f"{receiver.base}/gw")
    assert run.ret == 0, run.output
    (push,) = [s for s in receiver.seen if s.method == "PUT"]
    assert push.headers["Authorization"].startswith(header)
    assert "push-T0ken" not in run.output
