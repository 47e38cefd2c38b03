"""Period reports over generated histories: missed days, waivers expiring mid-period, missing attestations."""

from __future__ import annotations

import csv
import hashlib
import io
import json
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from helpers.compliance_data import record, results, write
from helpers.pages import TagBalance

from opsproof.cli import main as opsproof
from opsproof.compliance import ComplianceError
from opsproof.compliance.attestations import record_attestation
from opsproof.compliance.history import History, locate
from opsproof.compliance.period import ReportRequest, build_report, last_complete
from opsproof.compliance.periods import periods_between
from opsproof.compliance.report_csv import CSV_FILES, render_csv
from opsproof.compliance.report_html import render_period_html
from opsproof.compliance.report_json import render_json
from opsproof.compliance.report_model import PeriodReport
from opsproof.evidence.chain import find_environments
from opsproof.evidence.manifest import manifest_sha256, seal_report
from opsproof.targets.attestations import AttestationTarget

# A quarter-long history that ended ten days ago: every date below is relative to it, so the
# tests mean the same thing whatever day they run on.
TODAY = datetime.now(UTC).date()
FIRST = (TODAY - timedelta(days=130)).replace(day=1)
LAST = FIRST + timedelta(days=91)
NOW = datetime.combine(LAST + timedelta(days=10), datetime.min.time(), UTC)
MISSED = (FIRST + timedelta(days=13), FIRST + timedelta(days=32))
FAILED_ONCE = FIRST + timedelta(days=19)  # http.health[api] fails, passes again the next day
WAIVED_FROM = FIRST + timedelta(days=40)  # postgres.connections[reporting] fails from here...
WAIVER_EXPIRES = FIRST + timedelta(days=45)  # ...waived until here (inclusive)...
FIXED_ON = FIRST + timedelta(days=51)  # ...and passes again from here
NOT_ATTESTED = (FIRST + timedelta(days=5), FIRST + timedelta(days=6))
WAIVER = {
    "check": "postgres.connections[reporting]",
    "reason": "reporting DB migration",
    "ticket": "OPS-7",
    "approved_by": "cto",
    "expires": WAIVER_EXPIRES.isoformat(),
}

REVIEW = AttestationTarget.model_validate(
    {
        "id": "review-alerts",
        "title": "Review overnight alerts",
        "cadence": "daily",
        "controls": ["SOC2:CC7.2"],
        "attesters": ["alice", "bob"],
    }
)
CONTACTS = AttestationTarget.model_validate(
    {"id": "contacts", "title": "Update emergency contacts", "cadence": "monthly", "attesters": ["*"]}
)


@dataclass
class Quarter:
    report_dir: Path
    bundles: list[Path]
    weekly_missed: date

    def model(self, **kwargs: Any) -> PeriodReport:
        request = ReportRequest(kwargs.pop("environment", "prod"), FIRST, LAST, now=NOW, **kwargs)
        with History(locate(self.report_dir, None)) as history:
            return build_report(history, request)

    def report(self, **kwargs: Any) -> dict[str, Any]:
        """The report as report.json holds it."""
        found: dict[str, Any] = json.loads(render_json(self.model(**kwargs)))
        return found


def _daily_checks(day: date, at: datetime) -> list[dict[str, Any]]:
    api = "failed" if day in (FAILED_ONCE, LAST) else "passed"
    checks = [
        record(
            "http.health[api]",
            api,
            at=at,
            message="HTTP 503 Service Unavailable, expected 200" if api == "failed" else None,
        ),
        record("postgres.connections[primary]", "warned" if day.day == 15 else "passed", at=at),
        record("backups.max_age[db]", at=at),
    ]
    if WAIVED_FROM <= day < FIXED_ON:
        waived = day <= WAIVER_EXPIRES
        message = "connections 97% is over the fail threshold 95%"
        if not waived:
            message += f" (waiver OPS-7 expired on {WAIVER_EXPIRES}; not applied)"
        checks.append(
            record(
                "postgres.connections[reporting]",
                "waived" if waived else "failed",
                at=at,
                severity="medium",
                message=message,
                waiver={**WAIVER, "status": "applied" if waived else "expired"},
            )
        )
    else:
        checks.append(record("postgres.connections[reporting]", at=at, severity="medium"))
    return checks


@pytest.fixture(scope="module")
def quarter(tmp_path_factory: pytest.TempPathFactory) -> Quarter:
    report_dir = tmp_path_factory.mktemp("quarter") / "reports"
    mondays = [FIRST + timedelta(days=d) for d in range(92) if (FIRST + timedelta(days=d)).weekday() == 0]
    weekly_missed = mondays[2]
    bundles = []
    with History(locate(report_dir, None)) as history:
        day = FIRST
        while day <= LAST:
            at = datetime.combine(day, datetime.min.time(), UTC) + timedelta(hours=6)
            if day not in MISSED:
                bundles.append(write(report_dir, results("prod", at, _daily_checks(day, at))))
            if day.weekday() == 0 and day != weekly_missed:
                weekly_at = at + timedelta(hours=1)
                drill = [record("drills.restore[db]", at=weekly_at, cadence="weekly")]
                bundles.append(write(report_dir, results("prod", weekly_at, drill, markers="weekly")))
            # In time order: an attestation never claims a time before the newest entry of its chain.
            if day.day == 2 and day.month != (FIRST.month % 12) + 1:  # every month but the second
                record_attestation(history, "prod", CONTACTS, by="carol", note="sheet updated", at=at)
            if day not in NOT_ATTESTED:
                record_attestation(history, "prod", REVIEW, by="alice", note="reviewed", at=at + timedelta(hours=3))
            day += timedelta(days=1)
        # Another environment, to prove the report keeps to its own.
        staging_at = datetime.combine(FIRST, datetime.min.time(), UTC)
        staging = write(
            report_dir, results("staging", staging_at, [record("http.health[api]", "failed", at=staging_at)])
        )
        for bundle in [*bundles, staging]:
            history.record_bundle(bundle, manifest_sha256(bundle))
    return Quarter(report_dir, bundles, weekly_missed)


def _control(report: dict[str, Any], control: str) -> dict[str, Any]:
    return next(c for c in report["controls"] if c["control"] == control)


def test_expected_runs_against_runs_that_happened(quarter: Quarter) -> None:
    report = quarter.report()
    assert report["period"] == {
        "from": FIRST.isoformat(),
        "to": LAST.isoformat(),
        "through": LAST.isoformat(),
        "days": 92,
    }
    cc71 = _control(report, "SOC2:CC7.1")
    assert cc71["cadences"] == {
        "daily": {"expected": 92, "ran": 90, "missed": [d.isoformat() for d in MISSED], "from": FIRST.isoformat()}
    }
    a13 = _control(report, "SOC2:A1.3")  # backups daily, drills weekly
    weekly = a13["cadences"]["weekly"]
    assert weekly["ran"] == weekly["expected"] - 1
    assert len(weekly["missed"]) == 1 and weekly["missed"][0].endswith(f"W{quarter.weekly_missed.isocalendar()[1]:02d}")
    assert a13["timing_exceptions"] == 3
    timing = [e for e in report["exceptions"] if e["type"] == "timing"]
    week = quarter.weekly_missed.isocalendar()
    assert [e["message"] for e in timing] == [
        f"no daily run in the day {MISSED[0]}",
        f"no weekly run in the week {week[0]}-W{week[1]:02d}",
        f"no daily run in the day {MISSED[1]}",
    ]
    assert {e["status"] for e in timing} == {"missed"}
    daily_miss = next(e for e in timing if e["date"] == MISSED[0].isoformat())
    assert {"SOC2:CC7.1", "ISO27001:A.8.13", "SOX-ITGC:OPS"} <= set(daily_miss["controls"])
    assert daily_miss["severity"] == "critical"


def test_every_failure_is_resolved_waived_or_open(quarter: Quarter) -> None:
    report = quarter.report()
    results_ = [e for e in report["exceptions"] if e["type"] == "result"]
    api = [e for e in results_ if e["check"] == "http.health[api]"]
    assert [(e["date"], e["status"]) for e in api] == [
        (FAILED_ONCE.isoformat(), "resolved"),
        (LAST.isoformat(), "open"),
    ]
    assert api[0]["resolved_at"].startswith((FAILED_ONCE + timedelta(days=1)).isoformat())
    assert api[0]["resolved_by"].startswith("prod-")
    assert api[0]["message"] == "HTTP 503 Service Unavailable, expected 200"
    assert api[0]["severity"] == "critical"
    reporting = [e for e in results_ if e["check"] == "postgres.connections[reporting]"]
    waived = [e for e in reporting if e["status"] == "waived"]
    after = [e for e in reporting if e["status"] != "waived"]
    assert [e["date"] for e in waived] == [(WAIVED_FROM + timedelta(days=n)).isoformat() for n in range(6)]
    assert all(e["waiver"]["ticket"] == "OPS-7" and e["waiver"]["status"] == "applied" for e in waived)
    # The waiver expired mid-period: the same failure is no longer waived, and is resolved when it passes again.
    assert [e["date"] for e in after] == [(WAIVER_EXPIRES + timedelta(days=n)).isoformat() for n in range(1, 6)]
    assert {e["status"] for e in after} == {"resolved"}
    assert all(e["resolved_at"].startswith(FIXED_ON.isoformat()) for e in after)
    assert all(e["waiver"]["status"] == "expired" for e in after)
    bundles = {b.name: b for b in quarter.bundles}
    for exception in results_:
        assert exception["manifest_sha256"] == manifest_sha256(bundles[exception["bundle"]])
    assert report["summary"]["exceptions"] == {"open": 1, "resolved": 6, "waived": 6, "maintenance": 0, "missed": 3}


def test_pass_rates(quarter: Quarter) -> None:
    report = quarter.report()
    http = _control(report, "SOC2:A1.1")  # http and postgres: 3 records a day on 90 days
    assert http["records"] == 90 * 3
    failing = 2 + 11  # http.health[api] twice, reporting on 11 days (waived ones count as not passing)
    assert http["pass_rate"] == round((270 - failing) / 270, 4)
    assert http["outcomes"]["warned"] == 3  # the 15th of each month
    assert report["summary"]["runs"] == len(quarter.bundles)


def test_attestation_coverage_names_the_missing_periods(quarter: Quarter) -> None:
    report = quarter.report()
    review, contacts = (next(a for a in report["attestations"] if a["id"] == n) for n in ("review-alerts", "contacts"))
    assert (review["expected"], review["attested"]) == (92, 90)
    assert review["missing"] == [d.isoformat() for d in NOT_ATTESTED]
    assert review["entries"][0]["attested_by"] == "alice" and review["entries"][0]["entry_sha256"]
    months = list(periods_between("monthly", FIRST, LAST))
    # Attested on the 2nd of every month but the second; a last month that ends the period on its 1st has no 2nd.
    missing = [p.label for i, p in enumerate(months) if i == 1 or p.start + timedelta(days=1) > LAST]
    assert contacts["expected"] == len(months)
    assert contacts["missing"] == missing
    assert contacts["controls"] == ["SOX-ITGC:OPS"]
    expected = 92 + len(months)
    assert report["summary"]["attestation_coverage"] == round((expected - 2 - len(missing)) / expected, 4)


def test_the_daily_chart_data(quarter: Quarter) -> None:
    days = {d["date"]: d for d in quarter.report()["days"]}
    assert len(days) == 92
    assert days[MISSED[0].isoformat()]["status"] == "missed"
    assert days[FAILED_ONCE.isoformat()]["status"] == "failed"
    assert days[WAIVED_FROM.isoformat()]["status"] == "waived"
    assert days[(WAIVER_EXPIRES + timedelta(days=1)).isoformat()]["status"] == "failed"
    assert days[(FIRST + timedelta(days=1)).isoformat()]["controls"]["SOC2:CC7.1"] in ("passed", "warned")


def test_every_bundle_is_referenced_by_its_manifest_hash(quarter: Quarter) -> None:
    report = quarter.report()
    assert [b["bundle"] for b in report["bundles"]] == sorted(b.name for b in quarter.bundles)
    for bundle in report["bundles"]:
        assert (
            bundle["manifest_sha256"]
            == hashlib.sha256((quarter.report_dir / bundle["bundle"] / "manifest.json").read_bytes()).hexdigest()
        )
    assert all(not b["bundle"].startswith("staging") for b in report["bundles"])


def test_a_framework_keeps_to_its_controls(quarter: Quarter) -> None:
    report = quarter.report(frameworks=("soc2",))
    assert report["controls"] and {c["framework"] for c in report["controls"]} == {"SOC2"}
    assert all(any(c.startswith("SOC2:") for c in e["controls"]) for e in report["exceptions"])
    assert [a["id"] for a in report["attestations"]] == ["review-alerts"]  # contacts is SOX only
    sox = quarter.report(frameworks=("sox",))
    assert [c["control"] for c in sox["controls"]] == ["SOX-ITGC:OPS"]
    one = quarter.report(controls=("ISO27001:A.5.30",))  # drills only
    assert [c["control"] for c in one["controls"]] == ["ISO27001:A.5.30"]
    assert {e["type"] for e in one["exceptions"]} == {"timing"}


def test_a_period_in_progress_counts_only_days_that_are_over(quarter: Quarter) -> None:
    request = ReportRequest("prod", FIRST, LAST + timedelta(days=30), now=NOW)
    with History(locate(quarter.report_dir, None)) as history:
        report = build_report(history, request).dump()
    assert report["period"]["through"] == (NOW.date()).isoformat()
    cc71 = _control(report, "SOC2:CC7.1")["cadences"]["daily"]
    # The nine whole days after the history ended are missed; `now`'s day and later are not expected yet.
    assert cc71["expected"] == 92 + 9 and cc71["ran"] == 90
    assert report["days"][-1]["status"] == "future"


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"environment": "prdo"}, "--environment 'prdo': no runs or attestations of it in the history"),
        ({"frameworks": ("pci",)}, "--framework 'pci': unknown framework (frameworks: ISO27001, SOC2, SOX-ITGC)"),
        ({"controls": ("CC7.1",)}, "--control 'CC7.1': unknown control; did you mean SOC2:CC7.1?"),
        ({"controls": ("SOC2:CC99",)}, "--control 'SOC2:CC99': unknown control (write it FRAMEWORK:ID"),
    ],
)
def test_bad_requests_are_usage_errors(quarter: Quarter, kwargs: dict[str, Any], words: str) -> None:
    with pytest.raises(ComplianceError) as raised:
        quarter.report(**kwargs)
    assert words in str(raised.value)
    if "environment" in kwargs:
        assert "(environments: prod, staging)" in str(raised.value)


def test_dates_out_of_order_are_a_usage_error(quarter: Quarter) -> None:
    with History(locate(quarter.report_dir, None)) as history, pytest.raises(ComplianceError) as raised:
        build_report(history, ReportRequest("prod", LAST, FIRST, now=NOW))
    assert f"--from {LAST} is after --to {FIRST}: the dates are out of order" in str(raised.value)


def test_last_complete_periods() -> None:
    assert last_complete("monthly", date(2026, 11, 24)) == (date(2026, 10, 1), date(2026, 10, 31))
    assert last_complete("quarterly", date(2026, 11, 24)) == (date(2026, 7, 1), date(2026, 9, 30))
    assert last_complete("quarterly", date(2026, 1, 5)) == (date(2025, 10, 1), date(2025, 12, 31))
    assert last_complete("yearly", date(2026, 11, 24)) == (date(2025, 1, 1), date(2025, 12, 31))
    assert last_complete("weekly", date(2026, 11, 25)) == (date(2026, 11, 16), date(2026, 11, 22))


# -- the command and its files --------------------------------------------------------------


def _report(capsys: pytest.CaptureFixture[str], quarter: Quarter, *args: str) -> tuple[int, str]:
    code = opsproof(["report", "--report-dir", str(quarter.report_dir), *args])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def test_the_command_writes_html_csv_and_json(
    quarter: Quarter, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "q"
    code, text = _report(
        capsys, quarter, "--environment", "prod", "--from", str(FIRST), "--to", str(LAST), "--out", str(out)
    )
    assert code == 0, text
    assert "exceptions: 1 open, 3 missed runs, 6 waived, 6 resolved" in text
    assert sorted(p.name for p in out.iterdir()) == [
        "attestations.csv",
        "bundles.csv",
        "controls.csv",
        "exceptions.csv",
        "manifest.json",
        "report.html",
        "report.json",
    ]
    data = json.loads((out / "report.json").read_text())
    assert data["schema"] == "opsproof/period-report/v1"
    exceptions = list(csv.DictReader(io.StringIO((out / "exceptions.csv").read_text())))
    assert len(exceptions) == len(data["exceptions"])
    waived = next(e for e in exceptions if e["status"] == "waived")
    assert (waived["waiver_ticket"], waived["waiver_approved_by"]) == ("OPS-7", "cto")
    controls = {r["control"]: r for r in csv.DictReader(io.StringIO((out / "controls.csv").read_text()))}
    assert (controls["SOC2:CC7.1"]["expected_runs"], controls["SOC2:CC7.1"]["runs"]) == ("92", "90")
    bundles = list(csv.DictReader(io.StringIO((out / "bundles.csv").read_text())))
    assert len(bundles) == len(quarter.bundles)
    attestations = list(csv.DictReader(io.StringIO((out / "attestations.csv").read_text())))
    assert sum(1 for r in attestations if r["status"] == "missing") == data["summary"]["attestations_missing"]


def test_a_report_is_sealed_and_verify_proves_it(
    quarter: Quarter, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "q"
    key = tmp_path / "auditor"
    assert opsproof(["keygen", str(key)]) == 0
    args = ["--environment", "prod", "--from", str(FIRST), "--to", str(LAST), "--out", str(out)]
    code, text = _report(capsys, quarter, *args, "--sign-key", str(key.with_suffix(".pem")))
    assert code == 0, text
    assert f"sealed in {out / 'manifest.json'}, signed by key" in text
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["schema"] == "opsproof/report-manifest/v1"
    assert manifest["report"]["period"]["from"] == str(FIRST)
    assert set(manifest["files"]) == set(render_csv(quarter.model())) | {"report.html", "report.json"}
    assert opsproof(["verify", str(out), "--public-key", str(key.with_suffix(".pub"))]) == 0
    assert "OK" in capsys.readouterr().out
    # An exception quietly dropped from the auditor's spreadsheet is found.
    exceptions = (out / "exceptions.csv").read_text().splitlines()
    (out / "exceptions.csv").write_text("\n".join(exceptions[:-1]) + "\n")
    assert opsproof(["verify", str(out)]) == 1
    assert f"TAMPERED {out}: changed: exceptions.csv" in capsys.readouterr().out
    # Written again into the same folder, it is sealed afresh.
    code, text = _report(capsys, quarter, *args)
    assert code == 0, text
    assert not (out / "manifest.sig").exists()
    assert opsproof(["verify", str(out)]) == 0


def test_a_report_folder_holding_other_files_is_refused(
    quarter: Quarter, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "shared"
    out.mkdir()
    (out / "notes.txt").write_text("the auditor's own notes")
    code, text = _report(capsys, quarter, "--environment", "prod", "--period", "monthly", "--out", str(out))
    assert code == 4
    assert "holds files an opsproof report did not write (notes.txt)" in text
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]


def test_a_sealed_report_is_in_no_bundle_chain(tmp_path: Path) -> None:
    (tmp_path / "q3").mkdir()
    (tmp_path / "q3" / "report.json").write_text("{}")
    seal_report(tmp_path / "q3", {"environment": "prod"})
    assert find_environments(tmp_path) == {}


def test_the_csv_files_are_the_ones_named(quarter: Quarter) -> None:
    assert tuple(render_csv(quarter.model())) == CSV_FILES


def test_report_html_is_self_contained_balanced_and_escaped(quarter: Quarter) -> None:
    report = quarter.model()
    report.exception_groups[0].message = "<script>alert(1)</script>"
    page = render_period_html(report)
    checker = TagBalance()
    checker.feed(page)
    checker.close()
    assert checker.problems == [], checker.problems[:5]
    assert "<script>alert(1)" not in page and "&lt;script&gt;" in page
    assert "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert page.count("<rect ") == 92 * (1 + len(report.controls))


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--environment", "prod", "--from", "2026-07-01", "--to", "2026-06-01"], "the dates are out of order"),
        (["--environment", "prod", "--from", "2026-7-1", "--to", "2026-09-30"], "--from '2026-7-1': expected a date"),
        (["--environment", "prod", "--from", "2026-07-01"], "give --from YYYY-MM-DD and --to YYYY-MM-DD"),
        (["--environment", "prod", "--period", "monthly", "--from", "2026-07-01"], "--period replaces --from/--to"),
        (["--environment", "qa", "--period", "monthly"], "--environment 'qa': no runs"),
        (["--environment", "prod", "--period", "monthly", "--type", "hipaa"], "--framework 'hipaa': unknown framework"),
        (["--environment", "prod", "--period", "monthly", "--control", "SOC2:X9"], "--control 'SOC2:X9': unknown"),
        (["--environment", "prod", "--period", "monthly", "--sign-key", "/nonexistent/ops.pem"], "--sign-key"),
    ],
)
def test_bad_report_input_exits_4(
    quarter: Quarter, capsys: pytest.CaptureFixture[str], args: list[str], words: str
) -> None:
    code, text = _report(capsys, quarter, *args)
    assert code == 4
    assert words in text


def test_no_history_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = opsproof(["report", "--report-dir", str(tmp_path), "--environment", "prod", "--period", "monthly"])
    assert code == 4
    assert "no history at" in capsys.readouterr().err


def test_monthly_sox_like_the_runbook(quarter: Quarter, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Runbook 000: generate-compliance-report --period monthly --type sox
    code, text = _report(capsys, quarter, "--environment", "prod", "--period", "monthly", "--type", "sox")
    assert code == 0, text
    first, last = last_complete("monthly", TODAY)
    folder = quarter.report_dir / "period-reports" / f"prod-{first}-to-{last}-sox"
    data = json.loads((folder / "report.json").read_text())
    assert data["frameworks"] == ["SOX-ITGC"]
    assert {c["framework"] for c in data["controls"]} <= {"SOX-ITGC"}


def test_a_declared_attestation_never_attested_is_all_missing(quarter: Quarter, tmp_path: Path) -> None:
    from opsproof.compliance.declared import load_declared

    profile = tmp_path / "prod.yaml"
    profile.write_text(
        "environment: prod\nattestations:\n"
        "  - {id: sla-review, title: SLA review, cadence: weekly, attesters: [head-of-ops], controls: [SOC2:A1.1]}\n"
        "  - {id: review-alerts, title: Review overnight alerts, cadence: daily, attesters: [bob]}\n"
    )
    declared = load_declared(str(profile))
    with History(locate(quarter.report_dir, None)) as history:
        report = build_report(history, ReportRequest("prod", FIRST, LAST, now=NOW), declared).dump()
    sla = next(a for a in report["attestations"] if a["id"] == "sla-review")
    weeks = [p.label for p in periods_between("weekly", FIRST, LAST)]
    assert (sla["expected"], sla["attested"], sla["missing"]) == (len(weeks), 0, weeks)
    assert sla["declared"] is True and sla["controls"] == ["SOC2:A1.1"]
    # The profile now allows only bob: alice's attestations no longer count, and say why.
    review = next(a for a in report["attestations"] if a["id"] == "review-alerts")
    assert review["attested"] == 0
    assert review["rejected"][0]["reason"] == "alice is not among the profile's attesters"


def test_a_profile_of_another_environment_is_refused(
    quarter: Quarter, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    profile = tmp_path / "staging.yaml"
    profile.write_text("environment: staging\n")
    code, text = _report(capsys, quarter, "--environment", "prod", "--period", "monthly", "--profile", str(profile))
    assert code == 4
    assert "is the profile of environment 'staging', not 'prod'" in text
