"""`${VAR}` secrets never reach any output: terminal, results.json, JUnit, HTML, manifest, Allure."""

from __future__ import annotations

import base64
from pathlib import Path
from urllib.parse import quote

import pytest

from conftest import SECRET, HttpServer, Runner, http_profile

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
