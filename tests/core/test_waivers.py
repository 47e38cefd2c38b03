"""Waivers: an unexpired match turns a failure into `waived`; an expired one does not; unmatched ones are reported."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta

from conftest import HttpServer, Runner, http_profile


def _waiver(check: str, ticket: str, expires: str) -> str:
    return (
        f"  - {{check: '{check}', reason: 'Decommissioned in Q1', ticket: {ticket}, "
        f"approved_by: platform-lead, expires: {expires}}}\n"
    )


def test_matching_expired_and_unmatched_waivers(runner: Runner, http_server: HttpServer) -> None:
    tomorrow = (datetime.now(UTC).date() + timedelta(days=1)).isoformat()
    yesterday = (datetime.now(UTC).date() - timedelta(days=1)).isoformat()
    runner.profile(
        http_profile(
            f"{{name: reporting, url: '{http_server.base}/status/503'}}",
            f"{{name: legacy, url: '{http_server.base}/status/500'}}",
            f"{{name: wallet-guard, url: '{http_server.base}/health'}}",
            extra="waivers:\n"
            + _waiver("*[reporting]*", "OPS-123", tomorrow)
            + _waiver("http.health[legacy]", "OPS-99", yesterday)
            + _waiver("*[qldb]*", "OPS-7", tomorrow),
        )
    )
    run = runner.run("-m", "daily", "-v")

    waived = run.record("http.health[reporting]")
    assert waived["outcome"] == "waived"
    assert waived["waiver"] == {
        "check": "*[reporting]*",
        "reason": "Decommissioned in Q1",
        "ticket": "OPS-123",
        "approved_by": "platform-lead",
        "expires": tomorrow,
        "status": "applied",
    }
    assert waived["message"] == "HTTP 503 Service Unavailable, expected 200"

    expired = run.record("http.health[legacy]")
    assert expired["outcome"] == "failed"
    assert expired["waiver"]["status"] == "expired"
    assert f"(waiver OPS-99 expired on {yesterday}; not applied)" in expired["message"]

    # `[` `]` are literal: the reporting waiver does not swallow other checks.
    assert run.record("http.health[wallet-guard]")["outcome"] == "passed"

    summary = run.results["summary"]["waivers"]
    assert summary["applied"] == ["OPS-123"]
    assert summary["expired"] == ["OPS-99"]
    assert [w["ticket"] for w in summary["unmatched"]] == ["OPS-7"]
    assert "waiver OPS-7 ('*[qldb]*') matched no check in this run" in run.output
    run.result.stdout.fnmatch_lines(["*test_health[[]reporting[]] WAIVED*", "*1 failed*1 passed*1 waived*"])
    assert run.ret == 1  # the expired waiver leaves a critical failure

    case = next(
        c for c in ET.parse(run.bundle / "junit.xml").getroot().iter("testcase") if "reporting" in c.get("name", "")
    )
    skipped = case.find("skipped")
    assert skipped is not None and skipped.get("type") == "waived" and "OPS-123" in (skipped.get("message") or "")


def test_waiver_makes_a_run_pass(runner: Runner, http_server: HttpServer) -> None:
    tomorrow = (datetime.now(UTC).date() + timedelta(days=1)).isoformat()
    runner.profile(
        http_profile(
            f"{{name: reporting, url: '{http_server.base}/status/503'}}",
            extra="waivers:\n" + _waiver("http.health[reporting]", "OPS-1", tomorrow),
        )
    )
    run = runner.run("-m", "daily")
    assert run.ret == 0
    assert run.results["run"]["status"] == "passed"


def test_waiver_expiring_today_still_applies(runner: Runner, http_server: HttpServer) -> None:
    today = datetime.now(UTC).date().isoformat()
    runner.profile(
        http_profile(
            f"{{name: reporting, url: '{http_server.base}/status/503'}}",
            extra="waivers:\n" + _waiver("http.health[reporting]", "OPS-1", today),
        )
    )
    assert runner.run("-m", "daily").record("http.health[reporting]")["outcome"] == "waived"
