"""Maintenance windows: a failing check inside one is recorded with the window, not paged, not blocking, named everywhere.

The receiver (tests/signal_servers.py) stands in for PagerDuty's Events API and a Slack webhook.
"""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest
from helpers.signal_servers import Receiver, receiver
from prometheus_client.parser import text_string_to_metric_families

from conftest import Runner, http_profile, profile_error
from opsproof.cli import main as opsproof
from opsproof.model.signals import MaintenanceWindow

__all__ = ["receiver"]  # a fixture, imported so pytest finds it


@pytest.fixture(autouse=True)
def routing_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PD_ROUTING_KEY", "pd-key-for-maintenance")


def _window(**fields: object) -> MaintenanceWindow:
    return MaintenanceWindow.model_validate({"name": "w", **fields})


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def test_a_recurring_window_in_its_own_timezone() -> None:
    window = _window(every="tue 02:00-04:00", timezone="America/Los_Angeles")
    # 2026-12-08 is a Tuesday; Los Angeles is UTC-8 in December.
    assert window.is_open(_at("2026-12-08T10:00Z"))  # 02:00 there
    assert window.is_open(_at("2026-12-08T11:59Z"))
    assert not window.is_open(_at("2026-12-08T12:00Z"))  # 04:00 there: the end is not in the window
    assert not window.is_open(_at("2026-12-08T03:00Z"))  # 02:00 UTC is Monday evening there
    assert not window.is_open(_at("2026-12-09T10:00Z"))  # Wednesday
    # In July the same window is an hour earlier in UTC (daylight saving time).
    assert window.is_open(_at("2026-07-07T09:30Z")) and not window.is_open(_at("2026-07-07T11:30Z"))


def test_windows_across_midnight_day_ranges_and_fixed() -> None:
    night = _window(every="fri-sat 23:00-01:00")
    assert night.is_open(_at("2026-12-11T23:30Z"))  # Friday
    assert night.is_open(_at("2026-12-12T00:30Z"))  # Saturday morning: Friday's window
    assert night.is_open(_at("2026-12-13T00:30Z"))  # Sunday morning: Saturday's window
    assert not night.is_open(_at("2026-12-14T00:30Z"))  # Monday morning: Sunday has none
    weekend = _window(every="sat,sun 00:00-24:00")
    assert weekend.is_open(_at("2026-12-13T23:59Z")) and not weekend.is_open(_at("2026-12-14T00:00Z"))
    # Runbook 000: major updates the first Sunday of each month, 01:00-06:00 Pacific.
    major = _window(every="sun#1 01:00-06:00", timezone="America/Los_Angeles")
    assert major.is_open(_at("2026-12-06T10:00Z"))  # Sunday 6 December, 02:00 there
    assert not major.is_open(_at("2026-12-13T10:00Z"))  # the second Sunday
    database = _window(every="sun#3 00:00-04:00", timezone="America/Los_Angeles")
    assert database.is_open(_at("2026-12-20T09:00Z")) and not database.is_open(_at("2026-12-06T09:00Z"))
    fixed = _window(**{"from": "2026-12-20T00:00Z", "to": "2026-12-20T06:00Z"})
    assert fixed.is_open(_at("2026-12-20T05:59Z")) and not fixed.is_open(_at("2026-12-20T06:00Z"))
    assert fixed.describe() == "2026-12-20T00:00Z to 2026-12-20T06:00Z"


@pytest.mark.parametrize(
    ("window", "said"),
    [
        ("{name: a, every: 'tuesday 02:00-04:00'}", "maintenance[0].every: unknown day 'tuesday'"),
        ("{name: a, every: 'tue 2am'}", "invalid every 'tue 2am'"),
        ("{name: a, every: 'sun#6 01:00-02:00'}", "#N is a single day's occurrence in the month, 1-5"),
        ("{name: a, every: 'sat#1-sun 01:00-02:00'}", "#N is a single day's occurrence"),
        ("{name: a, every: 'tue 04:00-04:00'}", "the window is empty"),
        ("{name: a, every: 'tue 25:00-26:00'}", "invalid time '25:00'"),
        ("{name: a, every: 'tue 02:00-04:00', timezone: Mars/Olympus}", "maintenance[0].timezone: unknown timezone 'Mars/Olympus'"),
        ("{name: a, from: 2026-12-20T00:00Z}", "give every: (a recurring window) or both from: and to:"),
        ("{name: a, from: 2026-12-20T06:00Z, to: 2026-12-20T00:00Z}", "to: must be after from:"),
        ("{name: a, every: 'tue 02:00-04:00', from: 2026-12-20T00:00Z, to: 2026-12-21T00:00Z}", "not both"),
        ("{name: a, from: tomorrow, to: 2026-12-20T00:00Z}", "maintenance[0].from"),
        ("{name: a, every: 'daily 01:00-02:00', why: x}", "maintenance[0].why: unknown key"),
        ("[{name: a, every: 'daily 01:00-02:00'}, {name: a, every: 'daily 03:00-04:00'}]", "duplicate name 'a'"),
    ],
)
def test_bad_maintenance_keys_are_named(tmp_path: Path, window: str, said: str) -> None:
    listed = window if window.startswith("[") else f"[{window}]"
    assert said in profile_error(tmp_path, f"environment: test\nmaintenance: {listed}\n")


def _profile(base: str, receiver: Receiver, windows: str) -> str:
    return http_profile(
        f"{{name: db-api, url: '{base}/status/503'}}",
        f"{{name: web, url: '{base}/health'}}",
        extra=(
            f"maintenance:\n{windows}"
            "notify:\n"
            f"  - pagerduty: {{routing_key: '${{PD_ROUTING_KEY}}', url: '{receiver.base}/pd'}}\n"
            f"  - webhook: {{url: '{receiver.base}/hook'}}\n"
        ),
    )


WINDOWS = (
    "  - {name: db-major, checks: 'http.*[db-*]', every: 'daily 00:00-24:00', ticket: CHG-42}\n"
    "  - {name: stale-window, checks: 'postgres.*', from: 2026-01-01T00:00Z, to: 2026-01-02T00:00Z}\n"
)


def test_a_failure_inside_a_window_is_named_everywhere_and_neither_pages_nor_blocks(
    runner: Runner, http_server, receiver: Receiver, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    step_summary = tmp_path / "summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(step_summary))
    runner.profile(_profile(http_server.base, receiver, WINDOWS))
    textfile = tmp_path / "opsproof.prom"
    run = runner.run("-m", "daily", "--metrics-file", str(textfile))
    assert run.ret == 0, run.output  # not blocking
    assert receiver.seen == []  # not paged, no webhook either
    record = run.record("http.health[db-api]")
    assert record["outcome"] == "failed"  # it did fail: the record says so
    assert record["maintenance"] == {
        "name": "db-major",
        "checks": "http.*[db-*]",
        "schedule": "daily 00:00-24:00 UTC",
        "ticket": "CHG-42",
    }
    summary = run.results["summary"]
    assert summary["blocking"] == []
    assert [w["name"] for w in summary["maintenance"]["applied"]] == ["db-major"]
    assert [w["name"] for w in summary["maintenance"]["unmatched"]] == ["stale-window"]
    assert "waiver" not in record and summary["waivers"]["applied"] == []  # distinct from a waiver
    # the terminal
    assert "inside maintenance window db-major (daily 00:00-24:00 UTC, ticket CHG-42): not paged, not blocking" in run.output
    assert "maintenance window stale-window ('postgres.*') matched no check in this run" in run.output
    # report.html, junit.xml, the metrics, the CI summary
    html = (run.bundle / "report.html").read_text()
    assert "Maintenance windows" in html and "maintenance db-major" in html and "CHG-42" in html
    assert "Maintenance windows that matched nothing (1)" in html and "stale-window" in html
    junit = (run.bundle / "junit.xml").read_text()
    assert 'type="maintenance" message="failed inside maintenance window db-major' in junit
    assert 'failures="0"' in junit
    samples = [s for f in text_string_to_metric_families(textfile.read_text()) for s in f.samples]
    held = [s for s in samples if s.name == "opsproof_check_maintenance"]
    assert [(s.labels["check"], s.labels["window"], s.value) for s in held] == [("http.health[db-api]", "db-major", 1.0)]
    blocking = [s for s in samples if s.name == "opsproof_check_blocking" and s.labels["check"] == "http.health[db-api]"]
    assert blocking[0].value == 0
    text = step_summary.read_text()
    assert "Inside maintenance windows (not blocking) (1)" in text and "db-major" in text
    # the period report (from the history)
    out = tmp_path / "period"
    today = datetime.now(UTC).date().isoformat()
    code = opsproof(
        ["report", "--report-dir", str(runner.report_dir), "--environment", "test", "--from", today, "--to", today,
         "--out", str(out)]
    )
    assert code == 0
    report = json.loads((out / "report.json").read_text())
    held_exceptions = [e for e in report["exceptions"] if e["status"] == "maintenance"]
    assert [(e["check"], e["maintenance"]["name"]) for e in held_exceptions] == [("http.health[db-api]", "db-major")]
    assert report["summary"]["exceptions"]["maintenance"] == 1 and report["summary"]["exceptions"]["open"] == 0
    assert report["days"][-1]["status"] == "maintenance"
    assert "inside maintenance window" in (out / "report.html").read_text()
    assert "db-major" in (out / "exceptions.csv").read_text()


def test_a_failure_that_outlasts_its_window_pages_once_the_window_ends(
    runner: Runner, http_server, receiver: Receiver
) -> None:
    runner.profile(_profile(http_server.base, receiver, WINDOWS))
    runner.run("-m", "daily")
    assert receiver.seen == []
    outside = "  - {name: db-major, checks: 'http.*[db-*]', from: 2026-01-01T00:00Z, to: 2026-01-02T00:00Z}\n"
    runner.profile(_profile(http_server.base, receiver, outside))
    run = runner.run("-m", "daily")
    assert run.ret == 1
    assert [b["event_action"] for b in receiver.bodies("/pd")] == ["trigger"]
    assert receiver.bodies("/hook")[0]["changes"][0]["change"] == "new"


def test_history_rebuild_keeps_the_windows(runner: Runner, http_server, receiver: Receiver) -> None:
    """The history is an index of bundles: rebuilt from them, it still knows which failures were in a window."""
    runner.profile(_profile(http_server.base, receiver, WINDOWS))
    runner.run("-m", "daily")
    for suffix in ("", "-wal", "-shm"):
        (runner.report_dir / f"history.sqlite{suffix}").unlink(missing_ok=True)
    assert opsproof(["history", "rebuild", "--report-dir", str(runner.report_dir)]) == 0
    with sqlite3.connect(runner.report_dir / "history.sqlite") as db:
        rows = db.execute("SELECT check_id, maintenance FROM records WHERE maintenance IS NOT NULL").fetchall()
    assert [(check, json.loads(window)["name"]) for check, window in rows] == [("http.health[db-api]", "db-major")]


def test_an_older_history_gains_the_maintenance_column(runner: Runner, http_server, receiver: Receiver) -> None:
    runner.report_dir.mkdir()
    with sqlite3.connect(runner.report_dir / "history.sqlite") as db:  # the records table as it was before windows
        db.execute(
            "CREATE TABLE records (run_id TEXT NOT NULL, node_id TEXT NOT NULL, check_id TEXT NOT NULL, kind TEXT, "
            "target TEXT, cadence TEXT, severity TEXT, outcome TEXT NOT NULL, message TEXT, controls TEXT NOT NULL, "
            "waiver TEXT, started_at TEXT, PRIMARY KEY (run_id, node_id))"
        )
    runner.profile(_profile(http_server.base, receiver, WINDOWS))
    run = runner.run("-m", "daily")
    assert run.ret == 0, run.output
    with sqlite3.connect(runner.report_dir / "history.sqlite") as db:
        rows = db.execute("SELECT check_id, maintenance FROM records WHERE maintenance IS NOT NULL").fetchall()
    assert [(check, json.loads(window)["name"]) for check, window in rows] == [("http.health[db-api]", "db-major")]


def test_windows_under_xdist(runner: Runner, http_server, receiver: Receiver) -> None:
    """Workers build the records; the controller gathers them and the windows that matched nothing."""
    runner.profile(_profile(http_server.base, receiver, WINDOWS))
    run = runner.run("-m", "daily", "-n", "2", "--use-workers", subprocess=True)
    assert run.ret == 0, run.output
    assert run.record("http.health[db-api]")["maintenance"]["name"] == "db-major"
    assert [w["name"] for w in run.results["summary"]["maintenance"]["unmatched"]] == ["stale-window"]
    assert receiver.seen == []
