"""`${VAR}` secrets never reach any output: terminal, results.json, JUnit, HTML, manifest, Allure."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

import pytest

from conftest import SECRET, HttpServer, Runner, http_profile
from opsproof.cli import main as opsproof
from opsproof.redaction import Redactor, encoded_forms

URL_SECRET = "pw-Url5ecret-9431"  # a password that can stand in a URL unencoded
FORMS = (SECRET, quote(SECRET, safe=""), base64.b64encode(SECRET.encode()).decode(), URL_SECRET)


def _assert_clean(text: str, where: str) -> None:
    for form in FORMS:
        assert form not in text, f"secret ({form!r}) leaked into {where}"


def test_secrets_reach_no_output(
    runner: Runner, http_server: HttpServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("API_TOKEN", SECRET)
    monkeypatch.setenv("URL_PASSWORD", URL_SECRET)
    wrong = "Bearer ${API_TOKEN}-but-wrong"  # the server echoes this (with the secret inside) in its 401
    host = http_server.base.removeprefix("http://")
    runner.profile(
        http_profile(
            f"{{name: echoes, url: '{http_server.base}/auth', headers: {{Authorization: '{wrong}'}}}}",
            f"{{name: in-url, url: 'http://ops:${{URL_PASSWORD}}@{host}/status/500'}}",
            "{name: bad-host, url: 'http://ops:${URL_PASSWORD}@no-such-host.invalid/health', timeout: 1s}",
            f"{{name: basic, url: '{http_server.base}/status/401', headers: {{Authorization: 'Basic ${{API_TOKEN}}'}}}}",
        )
    )
    allure_dir = tmp_path / "allure"
    run = runner.run("-m", "daily", "-v", "--tb=long", "-l", "-rA", "--alluredir", str(allure_dir))
    assert run.ret == 1
    # The server really did receive and echo the secret: the redaction is tested, not vacuous.
    echoed = [h for _, path, h in http_server.requests if path == "/auth"]
    assert SECRET in echoed[-1]["Authorization"]
    echoes = run.record("http.health[echoes]")
    assert echoes["outcome"] == "failed"
    assert "${API_TOKEN}" in echoes["observed"]["body_excerpt"]
    assert run.record("http.health[in-url]")["observed"]["url"].startswith("http://ops:${URL_PASSWORD}@")

    _assert_clean(run.output, "the terminal")
    files = [p for p in run.bundle.rglob("*") if p.is_file()]
    assert {p.name for p in files} >= {"results.json", "junit.xml", "report.html", "manifest.json"}
    for path in files:
        _assert_clean(path.read_text(), path.name)
    allure_files = list(allure_dir.iterdir())
    assert allure_files, "allure-pytest wrote nothing"
    for path in allure_files:
        _assert_clean(path.read_text(errors="replace"), f"allure {path.name}")


def test_secret_missing_from_environment_is_a_usage_error(runner: Runner, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("API_TOKEN", raising=False)
    runner.profile(http_profile("{name: api, url: 'http://x/health', headers: {Authorization: 'Bearer ${API_TOKEN}'}}"))
    run = runner.run("-m", "daily")
    assert run.ret == 4
    assert "environment variable API_TOKEN is not set" in run.output
    assert "test.yaml:4:" in run.output


@pytest.mark.parametrize("short_secret", ["pass", "error", "t"])
def test_a_short_secret_never_rewrites_structure_or_words(
    short_secret: str,
    runner: Runner,
    http_server: HttpServer,
    closed_port: str,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Issue 13 item 1: `PW=pass` once wrote the outcome `${PW}ed` and killed the terminal summary."""
    monkeypatch.setenv("PW", short_secret)
    address = closed_port.removeprefix("http://").split("/")[0]
    runner.profile(
        http_profile(
            f"{{name: up, url: '{http_server.base}/health'}}",
            f"{{name: echoes, url: '{http_server.base}/auth', headers: {{Authorization: 'Bearer ${{PW}}'}}}}",
            f"{{name: down, url: '{closed_port}', timeout: 1s}}",
            # The issue's own case: the secret is a postgres item's password (a literal too was masked as ***).
            extra=f"postgres:\n  - {{name: db, dsn: 'postgresql://ops@{address}/app', password: '${{PW}}', timeout: 1s}}\n",
        )
    )
    run = runner.run("-m", "daily", "-rA", subprocess=True)  # in-process pytester re-imports psycopg
    assert run.ret == 1, run.output
    assert "KeyError" not in run.output and "INTERNALERROR" not in run.output
    outcomes = {c["check"]: c["outcome"] for c in run.results["checks"]}
    assert outcomes["http.health[up]"] == "passed"
    assert outcomes["http.health[echoes]"] == "failed"
    assert outcomes["http.health[down]"] in ("failed", "error")
    assert set(run.results["summary"]["by_outcome"]) == {"passed", "warned", "failed", "error", "skipped", "waived"}
    # Free text keeps its words; the secret itself, where it stands as a word, is redacted.
    for check in ("http.health[down]", "postgres.reachable[db]"):
        message = run.record(check)["message"]
        assert "cannot connect to" in message and "***" not in message, message
    echoed = run.record("http.health[echoes]")["observed"]["body_excerpt"]
    assert "Bearer ${PW}" in echoed and f'Bearer {short_secret}"' not in echoed
    assert "opsproof summary" in run.output and "1 passed" in run.output

    today = datetime.now(UTC).date().isoformat()
    period = ["--environment", "test", "--from", today, "--to", today, "--out", str(tmp_path / "q")]
    code = opsproof(["report", "--report-dir", str(run.report_dir), *period])
    text = capsys.readouterr().out
    assert code == 0, text
    report = json.loads((tmp_path / "q" / "report.json").read_text())
    passed = sum(1 for c in run.results["checks"] if c["outcome"] == "passed")
    assert passed >= 1 and report["summary"]["pass_rate"] == pytest.approx(
        passed / len(run.results["checks"]), abs=1e-3
    )


TRICKY = "p@ss:w/rd%+=&é Zürich"  # every character a URL, HTML or JSON writer encodes


@pytest.mark.parametrize("form", sorted(encoded_forms(TRICKY, user="ops")))
def test_every_encoded_form_is_redacted(form: str) -> None:
    redactor = Redactor()
    redactor.add("PW", TRICKY)
    redactor.add_basic_auth("ops", TRICKY)
    assert redactor.redact(f"seen: {form}.") == "seen: ${PW}."


@pytest.mark.parametrize(
    "text",
    [
        "p%40ss%3Aw%2frd%25%2B%3d%26%c3%A9+Z%C3%bcrich",  # mixed hex case, + for the space
        "p@ss:w/rd%25%2B%3D%26%C3%A9+Z%C3%BCrich",  # yarl leaves @ : / unencoded in a query
        "p%2540ss%253Aw%252Frd%2525%252B%253D%2526%25C3%25A9%2520Z%25C3%25BCrich",  # a Location quoting a URL
        "p&#64;ss&#x3a;w&#X2F;rd%+=&amp;&#233; Z&#xfc;rich",  # HTML entities
        "p@ss:w\\/rd%+=\\u0026\\u00e9 Z\\u00FCrich",  # JSON escapes
    ],
)
def test_mixed_encodings_are_redacted(text: str) -> None:
    redactor = Redactor()
    redactor.add("PW", TRICKY)
    assert redactor.redact(f"<{text}>") == "<${PW}>"


def test_a_short_secret_is_redacted_only_as_a_whole_token() -> None:
    redactor = Redactor()
    redactor.add("T", "t")
    redactor.add("PW", "pass")
    assert redactor.redact("cannot connect to db: passed") == "cannot connect to db: passed"
    assert redactor.redact("password=pass; token t") == "password=${PW}; token ${T}"
    assert redactor.redact("user:pass@db, %2Fpass, \\npass") == "user:${PW}@db, %2F${PW}, \\n${PW}"
    # A long secret is redacted wherever it stands, inside a word as well.
    redactor.add("LONG", "s3cr3t-value")
    assert redactor.redact("xs3cr3t-valuex") == "x${LONG}x"


def test_structure_is_never_rewritten() -> None:
    redactor = Redactor()
    redactor.add("PW", "passed")
    record = {
        "outcome": "passed",
        "check": "http.health[passed]",
        "message": "passed",
        "observed": {"passed": "passed"},
    }
    assert redactor.redact_fields(record, ("message", "observed")) == {
        "outcome": "passed",
        "check": "http.health[passed]",
        "message": "${PW}",
        "observed": {"passed": "${PW}"},
    }


def test_redact_then_cut() -> None:
    redactor = Redactor()
    redactor.add("TOKEN", "abcdefghijklmnopqrstuvwxyz012")
    assert redactor.excerpt("x" * 5 + "abcdefghijklmnopqrstuvwxyz012" + "y" * 300, 20) == "xxxxx${TOKEN}yyyyyyy..."
