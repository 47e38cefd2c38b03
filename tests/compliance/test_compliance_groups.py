"""The period report groups a check's consecutive failures into one row with a count and a span."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from helpers.compliance_data import record, results, write

from opsproof.compliance.history import History, locate
from opsproof.compliance.period import ReportRequest, build_report
from opsproof.compliance.report_csv import render_csv
from opsproof.compliance.report_html import render_period_html
from opsproof.compliance.report_json import render_json
from opsproof.compliance.report_model import PeriodReport
from opsproof.evidence.manifest import manifest_sha256

FIRST = date(2026, 3, 1)
LAST = date(2026, 3, 12)
NOW = datetime(2026, 3, 20, tzinfo=UTC)
# api: fails on the 2nd..5th (four runs in a row), passes on the 6th and 7th, fails again from the 8th to the
# end (the days without a run do not break that stretch: the check had no record then).
API_FAILS = {date(2026, 3, d) for d in (2, 3, 4, 5, 8, 9, 12)}
# No run at all on the 10th and 11th: two missed days in a row, one row.
NO_RUN = {date(2026, 3, 10), date(2026, 3, 11)}


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> PeriodReport:
    report_dir = tmp_path_factory.mktemp("groups") / "reports"
    bundles = []
    day = FIRST
    while day <= LAST:
        at = datetime(day.year, day.month, day.day, 6, tzinfo=UTC)
        if day not in NO_RUN:
            failing = day in API_FAILS
            message = f"HTTP 503 on the {day.day}th" if day == date(2026, 3, 5) else "HTTP 503, expected 200"
            checks = [
                record(
                    "http.health[api]", "failed" if failing else "passed", at=at, message=message if failing else None
                ),
                record("backups.max_age[db]", at=at),
            ]
            bundles.append(write(report_dir, results("prod", at, checks)))
        day += timedelta(days=1)
    with History(locate(report_dir, None)) as history:
        for bundle in bundles:
            history.record_bundle(bundle, manifest_sha256(bundle))
        return build_report(history, ReportRequest("prod", FIRST, LAST, now=NOW))


def test_consecutive_failures_then_a_pass_then_a_failure_are_two_rows(report: PeriodReport) -> None:
    api = [g for g in report.exception_groups if g.check == "http.health[api]"]
    assert [(g.first, g.last, g.count, g.status) for g in api] == [
        ("2026-03-02", "2026-03-05", 4, "resolved"),
        ("2026-03-08", "2026-03-12", 3, "open"),
    ]
    first, second = api
    assert first.resolved_at is not None and first.resolved_at.startswith("2026-03-06")
    assert first.outcomes == {"failed": 4} and first.severity == "critical"
    assert (first.message, first.messages) == ("HTTP 503 on the 5th", 2)  # the last one's, and how many differ
    assert first.first_bundle != first.last_bundle
    assert second.resolved_at is None
    # Every failure keeps its own entry, numbered with its row.
    failures = [e for e in report.exceptions if e.check == "http.health[api]"]
    assert len(failures) == 7
    assert [e.group for e in failures] == [first.group] * 4 + [second.group] * 3


def test_missed_days_in_a_row_are_one_row(report: PeriodReport) -> None:
    timing = [g for g in report.exception_groups if g.type == "timing"]
    assert [(g.first, g.last, g.count, g.status) for g in timing] == [("2026-03-10", "2026-03-11", 2, "missed")]
    assert timing[0].message == "no daily run in 2 days, 2026-03-10 to 2026-03-11"
    assert len([e for e in report.exceptions if e.type == "timing"]) == 2
    assert [g.group for g in report.exception_groups] == list(range(1, len(report.exception_groups) + 1))


def test_the_groups_in_json_csv_and_html(report: PeriodReport) -> None:
    document = json.loads(render_json(report))
    assert [(g["first"], g["last"], g["count"]) for g in document["exception_groups"]] == [
        ("2026-03-02", "2026-03-05", 4),
        ("2026-03-08", "2026-03-12", 3),
        ("2026-03-10", "2026-03-11", 2),
    ]
    rows = list(csv.DictReader(io.StringIO(render_csv(report)["exceptions.csv"])))
    assert len(rows) == 9  # one per exception, as before
    assert [(r["group"], r["group_count"], r["group_first"], r["group_last"]) for r in rows[:4]] == [
        ("1", "4", "2026-03-02", "2026-03-05")
    ] * 4
    page = render_period_html(report)
    table = page[page.index('<table class="grid exceptions">') :]
    table = table[: table.index("</table>")]
    assert table.count("<tr class=") == 3  # three rows, not nine
    assert '2026-03-02</span> <span class="muted">to</span> <span class="day">2026-03-05' in table
    assert "4 runs in a row" in table and "3 runs in a row" in table and "2 periods in a row" in table
    assert "9 exceptions in 3 rows" in page


def test_a_report_without_failures_has_no_groups(tmp_path: Path) -> None:
    report_dir = tmp_path / "reports"
    at = datetime(2026, 3, 1, 6, tzinfo=UTC)
    bundle = write(report_dir, results("prod", at, [record("http.health[api]", at=at)]))
    with History(locate(report_dir, None)) as history:
        history.record_bundle(bundle, manifest_sha256(bundle))
        found = build_report(history, ReportRequest("prod", FIRST, FIRST, now=NOW))
    assert found.exceptions == [] and found.exception_groups == []
    assert "None in this period." in render_period_html(found)
