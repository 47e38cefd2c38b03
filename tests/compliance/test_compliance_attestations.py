"""Attestations: the profile model, `opsproof attest`, and the check each cadence's run makes of them."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from helpers.compliance_data import stamp
from helpers.history_servers import history_dsn, history_pg

from conftest import SECRET, HttpServer, Runner, listening_black_hole
from opsproof import ProfileError, load_profile
from opsproof.cli import main as opsproof
from opsproof.compliance.attestations import FIELDS, chain_problems, entries, entry_sha256, record_attestation
from opsproof.compliance.history import History, locate
from opsproof.compliance.periods import period_from_label, period_of

__all__ = ["history_dsn", "history_pg"]  # fixtures

PROFILE = """environment: prod
attestations:
  - id: review-alerts
    title: Review overnight alerts and resolve any issues
    cadence: daily
    controls: [SOC2:CC7.2, SOC2:CC7.3]
    attesters: [alice, bob]
  - id: contacts
    title: Update emergency contact information
    cadence: monthly
    attesters: ["*"]
  - name: sla-review
    title: Conduct the SLA review
    cadence: weekly
    severity: high
    attesters: [head-of-ops]
    evidence_required: true
"""


@pytest.fixture
def attesting(runner: Runner) -> Runner:
    runner.profile(PROFILE)
    return runner


def _attest(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = opsproof(["attest", *args, "--profile", "test"])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def _store(runner: Runner) -> History:
    return History(locate(runner.report_dir, None))


def test_no_attestation_fails_and_says_never_attested(attesting: Runner) -> None:
    run = attesting.run("-m", "daily")
    assert run.ret == 1
    found = run.record("attestations.attested[review-alerts]")
    assert found["outcome"] == "failed"
    assert found["message"] == (
        "no valid attestation of 'Review overnight alerts and resolve any issues' for "
        f"{datetime.now(UTC).date().isoformat()} (daily); never attested"
    )
    assert found["controls"] == ["SOC2:CC7.2", "SOC2:CC7.3"]
    assert found["markers"] == ["compliance", "daily"]
    assert found["expected"]["attesters"] == ["alice", "bob"]
    # Monthly and weekly attestations are not part of the daily run.
    assert [c["check"] for c in run.results["checks"]] == ["attestations.attested[review-alerts]"]


def test_an_attestation_makes_the_check_pass_and_names_who_and_when(
    attesting: Runner, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = _attest(capsys, "review-alerts", "--by", "alice", "--note", "Two alerts overnight, both resolved.")
    assert code == 0, out
    today = datetime.now(UTC).date().isoformat()
    assert f"review-alerts (Review overnight alerts and resolve any issues) attested by alice at {today}" in out
    assert f"for {today} (daily), environment prod" in out
    run = attesting.run("-m", "daily")
    assert run.ret == 0, run.output
    found = run.record("attestations.attested[review-alerts]")
    assert found["outcome"] == "passed"
    assert found["message"].startswith(f"attested by alice at {today} ")
    assert found["message"].endswith("UTC: Two alerts overnight, both resolved.")
    entry = found["observed"]["attestation"]
    assert entry["attested_by"] == "alice" and entry["note"] == "Two alerts overnight, both resolved."
    assert found["observed"]["period"]["label"] == today
    with _store(attesting) as history:
        assert entries(history, "prod")[0]["entry_sha256"] == entry["entry_sha256"]


def test_yesterdays_attestation_does_not_count_today(attesting: Runner) -> None:
    yesterday = datetime.now(UTC) - timedelta(days=1)
    declared = load_profile(attesting.pytester.path / "profiles" / "test.yaml").profile
    with _store(attesting) as history:
        record_attestation(history, "prod", declared.attestations[0], by="bob", note="done", at=yesterday)
    found = attesting.run("-m", "daily").record("attestations.attested[review-alerts]")
    assert found["outcome"] == "failed"
    assert found["message"].endswith(f"last attested {yesterday.date().isoformat()} {yesterday:%H:%M} UTC by bob")


def test_each_attestation_runs_in_its_own_cadence(attesting: Runner, capsys: pytest.CaptureFixture[str]) -> None:
    evidence = attesting.pytester.path / "sla-2026-07.pdf"
    evidence.write_bytes(b"%PDF-1.7 SLA review minutes")
    code, out = _attest(capsys, "sla-review", "--by", "head-of-ops", "--note", "SLA met", "--evidence", str(evidence))
    assert code == 0, out
    digest = hashlib.sha256(evidence.read_bytes()).hexdigest()
    assert f"evidence sla-2026-07.pdf: 27 bytes, sha256 {digest}" in out
    weekly = attesting.run("-m", "weekly")
    found = weekly.record("attestations.attested[sla-review]")
    assert found["outcome"] == "passed" and found["markers"] == ["compliance", "weekly"]
    assert found["severity"] == "high"
    assert found["observed"]["attestation"]["evidence_sha256"] == digest
    assert found["controls"] == ["SOX-ITGC:OPS"]  # none declared: the catalogue's default
    assert found["observed"]["period"]["label"].startswith(f"{datetime.now(UTC).isocalendar()[0]}-W")
    monthly = attesting.run("-m", "monthly")
    assert monthly.ret == 1
    assert "for " + datetime.now(UTC).strftime("%Y-%m") + " (monthly); never attested" in monthly.output


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["nope", "--by", "alice", "--note", "x"], "attestation 'nope' is not declared in profiles/test.yaml"),
        (["review-alerts", "--by", "mallory", "--note", "x"], "'mallory' may not attest 'review-alerts'"),
        (["review-alerts", "--by", "alice", "--note", "  "], "--note: say what was done"),
        (["sla-review", "--by", "head-of-ops", "--note", "x"], "'sla-review' requires --evidence FILE"),
        (
            ["contacts", "--by", "anyone", "--note", "x", "--evidence", "missing.txt"],
            "--evidence 'missing.txt': no such",
        ),
    ],
)
def test_bad_attestations_are_refused_with_exit_4(
    attesting: Runner, capsys: pytest.CaptureFixture[str], args: list[str], words: str
) -> None:
    code, out = _attest(capsys, *args)
    assert code == 4
    assert words in out
    with _store(attesting) as history:
        assert history.count("attestations") == 0


def test_the_undeclared_id_error_lists_the_declared_ones(attesting: Runner, capsys: pytest.CaptureFixture[str]) -> None:
    code, out = _attest(capsys, "review-alert", "--by", "alice", "--note", "x")
    assert code == 4
    assert "(attestations: contacts, review-alerts, sla-review)" in out


def test_an_attester_removed_from_the_profile_no_longer_counts(
    attesting: Runner, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _attest(capsys, "review-alerts", "--by", "bob", "--note", "checked")[0] == 0
    attesting.profile(PROFILE.replace("attesters: [alice, bob]", "attesters: [alice]"))
    found = attesting.run("-m", "daily").record("attestations.attested[review-alerts]")
    assert found["outcome"] == "failed"
    assert (
        "not counted: " in found["message"] and "by bob: bob is not among the profile's attesters" in found["message"]
    )


def test_edited_evidence_does_not_count(attesting: Runner, capsys: pytest.CaptureFixture[str]) -> None:
    evidence = attesting.pytester.path / "minutes.txt"
    evidence.write_text("minutes")
    assert _attest(capsys, "sla-review", "--by", "head-of-ops", "--note", "ok", "--evidence", str(evidence))[0] == 0
    with sqlite3.connect(attesting.report_dir / "history.sqlite") as conn:
        conn.execute("UPDATE attestation_evidence SET content = ?", (b"other minutes",))
    found = attesting.run("-m", "weekly").record("attestations.attested[sla-review]")
    assert found["outcome"] == "failed"
    assert "its evidence file minutes.txt was changed" in found["message"]


def test_attest_works_without_the_runs_secrets(runner: Runner, capsys: pytest.CaptureFixture[str]) -> None:
    # The attester's laptop has none of the run's secrets; attesting needs none.
    runner.profile(PROFILE + "http:\n  - {name: api, url: 'http://127.0.0.1:9/', headers: {X-Token: '${API_TOKEN}'}}\n")
    code, out = _attest(capsys, "contacts", "--by", "carol", "--note", "contact sheet updated")
    assert code == 0, out


def test_attestations_in_postgresql(attesting: Runner, history_dsn: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out = _attest(capsys, "review-alerts", "--by", "alice", "--note", "quiet night", "--history-dsn", history_dsn)
    assert code == 0, out
    assert SECRET not in out
    run = attesting.run("-m", "daily", "--history-dsn", history_dsn)
    assert run.record("attestations.attested[review-alerts]")["outcome"] == "passed"
    assert not (attesting.report_dir / "history.sqlite").exists()


def test_an_unreadable_store_is_an_error_not_a_failure(attesting: Runner, history_pg: Any) -> None:
    dsn = history_pg.dsn(user="historian", dbname="no_such_database", password=SECRET)
    run = attesting.run("-m", "daily", "--history-dsn", dsn)
    found = run.record("attestations.attested[review-alerts]")
    assert found["outcome"] == "error"
    assert "cannot read the attestation store" in found["message"]
    assert SECRET not in run.output


def test_rebuild_restores_attestations_from_the_bundles(attesting: Runner, capsys: pytest.CaptureFixture[str]) -> None:
    assert _attest(capsys, "review-alerts", "--by", "alice", "--note", "fine")[0] == 0
    run = attesting.run("-m", "daily")
    assert run.ret == 0
    for suffix in ("", "-wal", "-shm"):
        (attesting.report_dir / f"history.sqlite{suffix}").unlink(missing_ok=True)
    assert opsproof(["history", "rebuild", "--report-dir", str(attesting.report_dir)]) == 0
    assert "1 attestations restored" in capsys.readouterr().out
    with _store(attesting) as history:
        (entry,) = entries(history, "prod")
    assert (
        entry["entry_sha256"]
        == run.record("attestations.attested[review-alerts]")["observed"]["attestation"]["entry_sha256"]
    )


# -- the profile model ----------------------------------------------------------------------


def _load(tmp_path: Path, text: str) -> Any:
    path = tmp_path / "p.yaml"
    path.write_text(text)
    return load_profile(path)


@pytest.mark.parametrize(
    ("item", "words"),
    [
        ("{id: a, title: A, attesters: [x]}", "attestations[0].cadence: required key is missing"),
        ("{id: a, title: A, cadence: daily}", "attestations[0].attesters: required key is missing"),
        ("{id: a, title: A, cadence: daily, attesters: []}", "attestations[0].attesters: list should have at least 1"),
        ("{id: a, title: A, cadence: hourly, attesters: [x]}", "attestations[0].cadence: input should be 'daily'"),
        ("{id: a, title: A, cadence: daily, attesters: ['*', x]}", '"*" (anyone) cannot be combined with names'),
        ("{id: a, title: A, cadence: daily, attesters: [x, x]}", "'x' is listed twice"),
        ("{id: a, title: A, cadence: daily, attesters: [x], controls: [CC7.2]}", "invalid control id 'CC7.2'"),
        ("{id: 'a b', title: A, cadence: daily, attesters: [x]}", "attestations[0].id: string should match"),
        ("{id: a, cadence: daily, attesters: [x]}", "attestations[0].title: required key is missing"),
    ],
)
def test_bad_attestation_items_are_profile_errors(tmp_path: Path, item: str, words: str) -> None:
    with pytest.raises(ProfileError) as raised:
        _load(tmp_path, f"environment: prod\nattestations:\n  - {item}\n")
    assert words.lower() in str(raised.value).lower()
    assert "p.yaml:3:" in str(raised.value)


def test_id_and_name_are_the_same_key(tmp_path: Path) -> None:
    profile = _load(tmp_path, PROFILE).profile
    assert [a.name for a in profile.attestations] == ["review-alerts", "contacts", "sla-review"]
    with pytest.raises(ProfileError, match="duplicate name 'a'"):
        _load(
            tmp_path,
            "environment: p\nattestations:\n  - {id: a, title: A, cadence: daily, attesters: [x]}\n"
            "  - {name: a, title: B, cadence: daily, attesters: [x]}\n",
        )


def test_a_store_that_never_answers_is_an_error_after_the_items_timeout(runner: Runner) -> None:
    runner.profile(
        PROFILE.replace("    attesters: [alice, bob]\n", "    attesters: [alice, bob]\n    timeout: 1s\n", 1)
    )
    with listening_black_hole() as port:
        run = runner.run("-m", "daily", "--history-dsn", f"postgresql://ops@127.0.0.1:{port}/history?connect_timeout=2")
    found = run.record("attestations.attested[review-alerts]")
    assert found["outcome"] == "error"
    assert found["message"] == "the attestation store did not answer within 1s"
    assert run.ret == 3  # and the run could not be recorded in that history either


def test_the_json_schema_takes_id_or_name() -> None:
    from opsproof.profile import profile_json_schema

    schema = profile_json_schema()["$defs"]["AttestationTarget"]
    assert schema["properties"]["id"] == schema["properties"]["name"]
    assert "name" not in schema["required"] and {"title", "cadence", "attesters"} <= set(schema["required"])
    assert schema["oneOf"] == [{"required": ["name"]}, {"required": ["id"]}]


@pytest.mark.skipif(shutil.which("faketime") is None, reason="Debian's faketime is not installed")
def test_an_attestation_with_the_clock_set_back_is_refused(
    attesting: Runner, capsys: pytest.CaptureFixture[str]
) -> None:
    """The real `opsproof attest` under libfaketime, three days behind the entry already in the chain."""
    code, out = _attest(capsys, "review-alerts", "--by", "alice", "--note", "done today")
    assert code == 0, out
    env = {**os.environ, "OPSPROOF_PROFILE": "test"}
    back = subprocess.run(
        [
            "faketime",
            "-f",
            "-3d",
            sys.executable,
            "-m",
            "opsproof.cli",
            "attest",
            "contacts",
            "--by",
            "mallory",
            "--note",
            "done three days ago, honest",
        ],
        cwd=attesting.pytester.path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert back.returncode == 4, back.stdout + back.stderr
    assert "before the newest attestation of prod" in back.stderr
    with _store(attesting) as history:
        assert [e["attestation_id"] for e in entries(history, "prod")] == ["review-alerts"]


def test_a_back_dated_entry_forged_into_the_chain_is_found_and_not_counted(attesting: Runner) -> None:
    """An entry written straight into the store, hash-chained correctly but claiming an earlier time."""
    declared = load_profile(attesting.pytester.path / "profiles" / "test.yaml").profile
    with _store(attesting) as history:
        first = record_attestation(history, "prod", declared.attestations[1], by="alice", note="contacts updated")
        forged: dict[str, Any] = {
            **first,
            "attestation_id": "review-alerts",
            "title": declared.attestations[0].title,
            "cadence": "daily",
            "controls": list(declared.attestations[0].controls),
            "attested_at": stamp(datetime.now(UTC) - timedelta(days=3)),
            "previous_sha256": first["entry_sha256"],
        }
        forged["entry_sha256"] = entry_sha256(forged)
        with history.transaction():
            history.execute(
                f"INSERT INTO attestations ({', '.join((*FIELDS, 'entry_sha256'))}) "
                f"VALUES ({', '.join('?' for _ in (*FIELDS, 'entry_sha256'))})",
                [json.dumps(forged[k]) if k == "controls" else forged.get(k) for k in (*FIELDS, "entry_sha256")],
            )
        problems = chain_problems(history, "prod")
    assert len(problems) == 1 and "back-dated" in problems[0], problems
    assert opsproof(["history", "verify", "--report-dir", str(attesting.report_dir)]) == 1
    three_days_ago = (datetime.now(UTC) - timedelta(days=3)).date()
    out = attesting.pytester.path / "period"
    code = opsproof(
        [
            "report",
            "--environment",
            "prod",
            "--from",
            three_days_ago.isoformat(),
            "--to",
            datetime.now(UTC).date().isoformat(),
            "--profile",
            "test",
            "--report-dir",
            str(attesting.report_dir),
            "--out",
            str(out),
        ]
    )
    assert code == 0
    report = json.loads((out / "report.json").read_text())
    daily = next(a for a in report["attestations"] if a["id"] == "review-alerts")
    assert three_days_ago.isoformat() in daily["missing"]
    assert [r["reason"] for r in daily["rejected"]] == [
        f"back-dated: it claims {forged['attested_at']}, before the entry it follows ({first['attested_at']})"
    ]


QUARTERLY = """environment: prod
attestations:
  - id: dr-drill
    title: Quarterly DR drill (runbook 003)
    cadence: quarterly
    attesters: [alice]
  - id: access-review
    title: Yearly access review
    cadence: yearly
    attesters: [alice]
"""


def test_quarterly_and_yearly_cadences_have_their_markers_and_periods(
    runner: Runner, capsys: pytest.CaptureFixture[str]
) -> None:
    runner.profile(QUARTERLY)
    quarter = (datetime.now(UTC).month - 1) // 3 + 1
    year = datetime.now(UTC).year
    run = runner.run("-m", "quarterly")
    assert run.ret == 1, run.output
    (found,) = run.results["checks"]
    assert found["check"] == "attestations.attested[dr-drill]" and "quarterly" in found["markers"]
    assert f"for {year}-Q{quarter} (quarterly)" in found["message"]
    earlier = set(run.bundles)
    code, out = _attest(capsys, "access-review", "--by", "alice", "--note", "reviewed every account")
    assert code == 0, out
    assert f"for {year} (yearly)" in out
    second = runner.run("-m", "yearly")
    (bundle,) = set(second.bundles) - earlier
    (yearly,) = json.loads((bundle / "results.json").read_text())["checks"]
    assert yearly["check"] == "attestations.attested[access-review]"
    assert yearly["outcome"] == "passed" and yearly["observed"]["period"]["label"] == str(year)


@pytest.mark.parametrize(
    ("cadence", "day", "label", "start", "end"),
    [
        ("quarterly", "2026-02-14", "2026-Q1", "2026-01-01", "2026-04-01"),
        ("quarterly", "2026-12-31", "2026-Q4", "2026-10-01", "2027-01-01"),
        ("yearly", "2026-07-04", "2026", "2026-01-01", "2027-01-01"),
    ],
)
def test_quarter_and_year_periods(cadence: str, day: str, label: str, start: str, end: str) -> None:
    found = period_of(cadence, date.fromisoformat(day))
    assert (found.label, found.start.isoformat(), found.end.isoformat()) == (label, start, end)
    assert period_from_label(cadence, label) == found


CHANGE_CHECKLIST = """environment: prod
http:
  - {{name: api, url: '{base}/health'}}
attestations:
  - id: notify-customers
    title: Notify customers of the maintenance window
    cadence: change
    attesters: [alice]
  - id: rollback-plan
    title: Prepare the rollback procedure
    cadence: change
    attesters: [alice, bob]
  - id: review-alerts
    title: Review overnight alerts
    cadence: daily
    attesters: [alice]
"""


def test_a_change_checklist_gates_the_post_deploy_run_of_its_change(
    runner: Runner, http_server: HttpServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """SOX change management: every checklist line of CHG-123 attested before its post-deploy run, or it fails."""
    runner.profile(CHANGE_CHECKLIST.format(base=http_server.base))
    seen: set[Path] = set()

    def post_deploy(*args: str) -> tuple[int, dict[str, dict[str, Any]]]:
        run = runner.run("-m", "post_deploy", *args)
        (bundle,) = set(run.bundles) - seen
        seen.add(bundle)
        checks = json.loads((bundle / "results.json").read_text())["checks"]
        return run.ret, {c["check"]: c for c in checks}

    code, found = post_deploy("--change", "CHG-123")
    assert code == 1
    assert set(found) == {
        "http.health[api]",
        "attestations.attested[notify-customers]",
        "attestations.attested[rollback-plan]",
    }
    notify = found["attestations.attested[notify-customers]"]
    assert notify["outcome"] == "failed" and "for change CHG-123 (change)" in notify["message"]
    assert "change" in notify["markers"] and "post_deploy" in notify["markers"]
    code, out = _attest(
        capsys, "notify-customers", "--by", "alice", "--note", "status page updated", "--change", "CHG-123"
    )
    assert code == 0, out
    assert "for change CHG-123 (change)" in out
    code, found = post_deploy("--change", "CHG-123")
    assert code == 1
    assert found["attestations.attested[notify-customers]"]["outcome"] == "passed"
    assert found["attestations.attested[rollback-plan]"]["outcome"] == "failed"
    code, out = _attest(
        capsys, "rollback-plan", "--by", "bob", "--note", "helm rollback rehearsed", "--change", "CHG-123"
    )
    assert code == 0, out
    code, found = post_deploy("--change", "CHG-123")
    assert code == 0, found
    # Another change starts with an empty checklist; a run naming no change cannot judge one.
    code, found = post_deploy("--change", "CHG-124")
    assert code == 1 and found["attestations.attested[rollback-plan]"]["outcome"] == "failed"
    code, found = post_deploy()
    assert code == 1
    assert "this run names no change" in found["attestations.attested[rollback-plan]"]["message"]
    # The period report lists the changes with their checklists.
    today = datetime.now(UTC).date().isoformat()
    out_dir = runner.pytester.path / "period"
    report = ["report", "--environment", "prod", "--from", today, "--to", today, "--profile", "test"]
    assert opsproof([*report, "--report-dir", str(runner.report_dir), "--out", str(out_dir)]) == 0
    changes = {c["ticket"]: c for c in json.loads((out_dir / "report.json").read_text())["changes"]}
    assert set(changes) == {"CHG-123", "CHG-124"}
    attested = {line["id"]: line["attested"] for line in changes["CHG-123"]["checklist"]}
    assert attested["rollback-plan"]["attested_by"] == "bob"
    assert [line["attested"] for line in changes["CHG-124"]["checklist"]] == [None, None]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["notify-customers", "--by", "alice", "--note", "done"],
            "is a change checklist line: name the change with --change",
        ),
        (
            ["review-alerts", "--by", "alice", "--note", "done", "--change", "CHG-1"],
            "is attested per daily period, not per change",
        ),
        (["notify-customers", "--by", "alice", "--note", "done", "--change", "CHG 1; rm"], "--change 'CHG 1; rm'"),
    ],
)
def test_change_attestation_mistakes_are_usage_errors(
    runner: Runner, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    runner.profile(CHANGE_CHECKLIST.format(base="http://127.0.0.1:9"))
    code, out = _attest(capsys, *args)
    assert code == 4 and message in out, out
