"""The evidence bundle: its files, `opsproof verify`, the hash chain, Allure results."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import subprocess
import sys
import threading
import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from pathlib import Path

import pytest

from conftest import HttpServer, Runner, http_profile
from opsproof.cli import main as opsproof
from opsproof.evidence.junit import render_junit
from opsproof.model.results import CheckRecord, Results, Run, Summary


def _profile(runner: Runner, base: str, environment: str = "test") -> None:
    runner.profile(
        http_profile(
            f"{{name: up, url: '{base}/health', expect: {{latency: {{warn: 1s, fail: 2s}}}}}}",
            f"{{name: down, url: '{base}/status/503', critical: false}}",
            environment=environment,
        )
    )


def test_bundle_layout_and_run_metadata(runner: Runner, http_server: HttpServer) -> None:
    _profile(runner, http_server.base)
    run = runner.run("-m", "daily")
    assert run.ret == 0
    names = sorted(p.name for p in run.bundle.iterdir())
    assert names == ["junit.xml", "manifest.json", "report.html", "results.json"]
    results = run.results
    assert results["schema"] == "opsproof/results/v1"
    meta = results["run"]
    for key in (
        "id",
        "environment",
        "profile",
        "started_at",
        "finished_at",
        "selection",
        "suite",
        "host",
        "user",
        "command",
        "status",
    ):
        assert key in meta, key
    profile_file = runner.pytester.path / "profiles" / "test.yaml"
    assert meta["profile"]["sha256"] == hashlib.sha256(profile_file.read_bytes()).hexdigest()
    assert meta["started_at"].endswith("Z") and meta["finished_at"] >= meta["started_at"]
    assert meta["status"] == "passed"
    for record in results["checks"]:
        for key in (
            "id",
            "check",
            "kind",
            "target",
            "markers",
            "controls",
            "severity",
            "outcome",
            "message",
            "observed",
            "expected",
            "started_at",
            "duration_s",
        ):
            assert key in record, key
    assert run.output.strip().splitlines()[-1].endswith(str(run.bundle.relative_to(runner.pytester.path)))
    manifest = json.loads((run.bundle / "manifest.json").read_text())
    assert manifest["previous"] is None
    assert set(manifest["files"]) == {"junit.xml", "report.html", "results.json"}


def test_verify_untouched_and_tampered_bundles(
    runner: Runner, http_server: HttpServer, capsys: pytest.CaptureFixture[str]
) -> None:
    _profile(runner, http_server.base)
    bundle = runner.run("-m", "daily").bundle
    assert opsproof(["verify", str(bundle)]) == 0

    results = bundle / "results.json"
    original = results.read_text()
    results.write_text(original.replace('"outcome": "failed"', '"outcome": "passed"'))
    assert opsproof(["verify", str(bundle)]) == 1
    assert "changed: results.json" in capsys.readouterr().out
    results.write_text(original)

    (bundle / "extra.txt").write_text("slipped in")
    assert opsproof(["verify", str(bundle)]) == 1
    assert "added: extra.txt" in capsys.readouterr().out
    (bundle / "extra.txt").unlink()

    (bundle / "junit.xml").unlink()
    assert opsproof(["verify", str(bundle)]) == 1
    assert "removed: junit.xml" in capsys.readouterr().out


def test_verify_refuses_what_is_not_a_bundle(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert opsproof(["verify", str(tmp_path / "missing")]) == 4
    assert "not a folder" in capsys.readouterr().err
    assert opsproof(["verify", str(tmp_path)]) == 4
    assert "no manifest.json" in capsys.readouterr().err


def test_chain_links_each_bundle_to_the_previous_of_its_environment(runner: Runner, http_server: HttpServer) -> None:
    _profile(runner, http_server.base, environment="prod")
    first = runner.run("-m", "daily").bundles
    _profile(runner, http_server.base, environment="staging")
    runner.run("-m", "daily")
    _profile(runner, http_server.base, environment="prod")
    bundles = runner.run("-m", "daily").bundles
    prod = [b for b in bundles if b.name.startswith("prod-")]
    newest = max(prod, key=lambda b: json.loads((b / "manifest.json").read_text())["run"]["finished_at"])
    manifest = json.loads((newest / "manifest.json").read_text())
    assert manifest["previous"]["bundle"] == first[0].name
    expected = hashlib.sha256((first[0] / "manifest.json").read_bytes()).hexdigest()
    assert manifest["previous"]["manifest_sha256"] == expected


def test_two_runs_at_once_write_valid_bundles_and_a_linear_chain(runner: Runner, http_server: HttpServer) -> None:
    _profile(runner, http_server.base, environment="prod")
    command = [
        sys.executable,
        "-m",
        "pytest",
        "-m",
        "daily",
        "--profile",
        "test",
        "--report-dir",
        str(runner.report_dir),
        "-q",
    ]
    runs = 4
    outputs: list[subprocess.CompletedProcess[str]] = []

    def one() -> None:
        outputs.append(subprocess.run(command, cwd=runner.pytester.path, capture_output=True, text=True, timeout=120))

    threads = [threading.Thread(target=one) for _ in range(runs)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [o.returncode for o in outputs] == [0] * runs, [o.stdout[-500:] for o in outputs]
    bundles = [p for p in runner.report_dir.iterdir() if p.is_dir() and not p.name.startswith(".")]
    assert len(bundles) == runs
    manifests = {b.name: json.loads((b / "manifest.json").read_text()) for b in bundles}
    for bundle in bundles:
        assert opsproof(["verify", str(bundle)]) == 0
    # Linear: exactly one genesis, every other bundle names a distinct predecessor whose hash matches.
    previous = [m["previous"] for m in manifests.values()]
    assert sum(p is None for p in previous) == 1
    linked = [p["bundle"] for p in previous if p is not None]
    assert len(set(linked)) == runs - 1
    for link in (p for p in previous if p is not None):
        digest = hashlib.sha256((runner.report_dir / link["bundle"] / "manifest.json").read_bytes()).hexdigest()
        assert link["manifest_sha256"] == digest
    head = json.loads((runner.report_dir / ".chain" / "prod.json").read_text())
    assert head["bundle"] not in linked
    # ...and the history holds all four runs, each with its bundle's manifest hash, in a sound database.
    with sqlite3.connect(runner.report_dir / "history.sqlite") as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        recorded = dict(conn.execute("SELECT bundle, manifest_sha256 FROM runs").fetchall())
    assert recorded == {b.name: hashlib.sha256((b / "manifest.json").read_bytes()).hexdigest() for b in bundles}
    assert opsproof(["verify", "--chain", str(runner.report_dir)]) == 0


def test_allure_results_carry_severity_and_observed_facts(
    runner: Runner, http_server: HttpServer, tmp_path: Path
) -> None:
    _profile(runner, http_server.base)
    allure_dir = tmp_path / "allure"
    assert runner.run("-m", "daily", "--alluredir", str(allure_dir)).ret == 0
    results = [json.loads(p.read_text()) for p in allure_dir.glob("*-result.json")]
    by_name = {r["name"]: r for r in results}
    up = by_name["test_health[up]"]
    labels = {label["name"]: label["value"] for label in up["labels"]}
    assert labels["severity"] == "blocker"  # critical -> Allure's blocker
    assert labels["opsproof_severity"] == "critical"
    assert labels["opsproof_check"] == "http.health[up]"
    attachment = next(a for a in up["attachments"] if a["name"] == "observed facts")
    evidence = json.loads((allure_dir / attachment["source"]).read_text())
    assert evidence["observed"]["status"] == 200
    assert evidence["expected"]["latency"] == {"warn": "1s", "fail": "2s"}
    down = by_name["test_health[down]"]
    assert down["status"] == "failed"
    assert {label["name"]: label["value"] for label in down["labels"]}["severity"] == "normal"


def test_schema_command_prints_a_json_schema(capsys: pytest.CaptureFixture[str]) -> None:
    assert opsproof(["schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert schema["additionalProperties"] is False
    assert {"environment", "http", "waivers", "defaults"} <= set(schema["properties"])


def test_cli_usage_errors_exit_4(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as raised:
        opsproof(["frobnicate"])
    assert raised.value.code == 4
    assert "invalid choice: 'frobnicate'" in capsys.readouterr().err


def test_junit_carries_any_message_as_valid_xml() -> None:
    message = 'body said "\x1b[31mdown\x00" & <nothing> else\n\tsee\r ticket'
    check = {
        "id": "checks/health/test_http.py::test_health[api]",
        "check": "http.health[api]",
        "outcome": "failed",
        "severity": "high",
        "target": "api",
        "message": message,
        "duration_s": 0.25,
    }
    run = {"environment": "t", "started_at": "2026-11-24T10:00:00.000Z", "host": "h", "id": "r1"}
    run |= {"status": "failed", "exit_code": 1, "fail_on": "high", "change": {"ticket": "CHG-1 <&>"}}
    outcomes = dict.fromkeys(("passed", "warned", "failed", "error", "skipped", "waived"), 0) | {"failed": 1}
    # A partial document on purpose (only what junit reads), so built without validation.
    document = Results.model_construct(
        run=Run.model_construct(**run),
        checks=[CheckRecord.model_construct(**check)],
        summary=Summary.model_construct(by_outcome=outcomes),
    )
    suite = ET.fromstring(render_junit(document))
    failure = suite.find("testcase/failure")
    assert failure is not None
    shown = message.replace("\x1b", "\ufffd").replace("\x00", "\ufffd")
    assert failure.get("message") == shown
    assert failure.text == shown.replace("\r", "\n")  # XML parsers normalise line ends in text
    props = {p.get("name"): p.get("value") for p in suite.iter("property")}
    assert props["opsproof.change.ticket"] == "CHG-1 <&>"
    assert props["opsproof.outcome"] == "failed"
    assert suite.get("failures") == "1" and suite.get("tests") == "1"


def test_junit_escapes_every_attribute_of_a_testcase() -> None:
    """Names, targets and ids come from the profile: any character in them reaches the parser as it was."""
    odd = 'a"b&c<d>e\nf\tg\rh\x00i'
    shown = odd.replace("\x00", "\ufffd")
    check = {
        "id": f"checks/health/test_http.py::test_health[{odd}]",
        "check": f"http.health[{odd}]",
        "outcome": "passed",
        "severity": "high",
        "target": odd,
        "message": "fine",
        "duration_s": 0.25,
    }
    run = {"environment": "t", "started_at": "2026-11-24T10:00:00.000Z", "host": "h", "id": "r1"}
    run |= {"status": "passed", "exit_code": 0, "fail_on": "high", "change": None}
    outcomes = dict.fromkeys(("passed", "warned", "failed", "error", "skipped", "waived"), 0) | {"passed": 1}
    document = Results.model_construct(
        run=Run.model_construct(**run),
        checks=[CheckRecord.model_construct(**check)],
        summary=Summary.model_construct(by_outcome=outcomes),
    )
    case = ET.fromstring(render_junit(document)).find("testcase")
    assert case is not None
    assert case.get("classname") == "checks.health.test_http" and case.get("name") == f"test_health[{shown}]"
    props = {p.get("name"): p.get("value") for p in case.iter("property")}
    assert props == {
        "opsproof.check": f"http.health[{shown}]",
        "opsproof.outcome": "passed",
        "opsproof.severity": "high",
        "opsproof.target": shown,
    }


def test_schema_results_prints_the_json_schema_of_results_json(capsys: pytest.CaptureFixture[str]) -> None:
    import jsonschema
    from helpers.compliance_data import record, results

    from opsproof.model.results import Results as TypedResults

    assert opsproof(["schema", "--results"]) == 0
    validator = jsonschema.Draft202012Validator(json.loads(capsys.readouterr().out))
    at = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
    document = results("prod", at, [record("http.health[api]", "failed", at=at)])
    assert not list(validator.iter_errors(document))
    assert TypedResults.model_validate(document).dump() == document  # the typed model writes it back as it was
    broken = json.loads(json.dumps(document))
    del broken["checks"][0]["outcome"]
    broken["run"]["exit_code"] = "one"
    found = sorted(error.json_path for error in validator.iter_errors(broken))
    assert found == ["$.checks[0]", "$.run.exit_code"]
