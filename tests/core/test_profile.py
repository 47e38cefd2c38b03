"""Unit tests of opsproof.profile: loading, validation messages, substitution, secrets, waivers, schema.

Bad-input cases mark the line the message must point at with a trailing `# <-` comment;
each message must read `FILE:LINE: dotted.key: ...` (the format profile.py documents).
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import re
from datetime import date
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import pytest

from opsproof import units
from opsproof.profile import (
    LoadedProfile,
    Profile,
    ProfileError,
    Threshold,
    Waiver,
    glob_to_regex,
    load_profile,
    profile_json_schema,
)
from opsproof.targets.http import HttpTarget

MARK = "# <-"

# The first http item occupies lines 1-4; cases append lines 5 and on.
HEAD = """\
environment: prod
http:
  - name: wallet-guard
    url: http://wallet-guard:8000/health
"""
# A second http item (http[1]) to append after HEAD: lines 5-6.
SECOND = """\
  - name: reporting
    url: http://reporting:8000/health
"""
WAIVER = """\
environment: prod
waivers:
  - check: "*[reporting]*"
    reason: Decommissioned in Q1
    ticket: OPS-123
    approved_by: platform-lead
    expires: 2026-12-31
"""

SECRET = "s3cr3t/t0ken+v@lue=="  # characters that URL-encoding changes


def write(tmp_path: Path, text: str, name: str = "profile.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def marked_line(text: str) -> int:
    found = [number for number, line in enumerate(text.splitlines(), start=1) if MARK in line]
    assert len(found) == 1, f"exactly one {MARK!r} marker expected in the case text"
    return found[0]


def load_error(path: Path, **kwargs) -> str:
    kwargs.setdefault("environ", {})
    with pytest.raises(ProfileError) as info:
        load_profile(path, **kwargs)
    return str(info.value)


def load(path: Path, **kwargs) -> LoadedProfile:
    kwargs.setdefault("environ", {})
    return load_profile(path, **kwargs)


# --- a valid profile --------------------------------------------------------------------------

FULL = """\
# production profile
environment: production
description: Production cluster
defaults:
  timeout: 10s
  concurrency: 32
http:
  - name: wallet-guard
    url: http://wallet-guard:8000/health
    critical: true
    timeout: 5s
    headers: {Authorization: "Bearer ${WALLET_TOKEN}", X-Env: "${vars.ENV_NAME}"}
    expect:
      status: 200
      json: {status: healthy}
      body: "ok|healthy"
      latency: {warn: 100ms, fail: 500ms}
  - name: reporting
    url: https://reporting.example.com/ready
    critical: false
    method: HEAD
    expect:
      status: [200, 204]
      latency: {fail: 2s}
  - name: billing
    url: https://billing:8443/health
    critical: false
    severity: high
    cadence: weekly
    verify_tls: false
    follow_redirects: true
  - name: ledger
    url: http://ledger/health
    severity: low
waivers:
  - check: "*[reporting]*"
    reason: Decommissioned in Q1
    ticket: OPS-123
    approved_by: platform-lead
    expires: 2026-12-31
"""


@pytest.fixture
def full(tmp_path: Path) -> LoadedProfile:
    path = write(tmp_path, FULL)
    return load(path, environ={"WALLET_TOKEN": SECRET, "ENV_NAME": "prod-eu"})


def test_full_profile_top_level(full: LoadedProfile, tmp_path: Path) -> None:
    profile = full.profile
    assert isinstance(profile, Profile)
    assert profile.environment == "production"
    assert profile.description == "Production cluster"
    assert profile.defaults.timeout == 10.0
    assert isinstance(profile.defaults.timeout, float)
    assert profile.defaults.concurrency == 32
    assert [item.name for item in profile.http] == ["wallet-guard", "reporting", "billing", "ledger"]
    assert list(profile.targets("http")) == ["wallet-guard", "reporting", "billing", "ledger"]
    assert profile.targets("http")["billing"] is profile.http[2]
    assert full.path == (tmp_path / "profile.yaml").resolve()
    assert full.sha256 == hashlib.sha256(FULL.encode()).hexdigest()


def test_full_profile_first_http_item(full: LoadedProfile) -> None:
    item = full.profile.http[0]
    assert isinstance(item, HttpTarget)
    assert item.url == "http://wallet-guard:8000/health"
    assert item.timeout == 5.0
    assert isinstance(item.timeout, float)
    assert full.profile.timeout_of(item) == 5.0
    assert item.method == "GET"
    assert item.headers == {"Authorization": f"Bearer {SECRET}", "X-Env": "prod-eu"}
    assert item.verify_tls is True
    assert item.follow_redirects is False
    assert item.ca_file is None
    assert item.cadence is None
    assert item.expect.status == [200]
    assert item.expect.json_body == {"status": "healthy"}
    assert item.expect.body == "ok|healthy"
    latency = item.expect.latency
    assert isinstance(latency, Threshold)
    assert latency.warn == pytest.approx(0.1)
    assert latency.fail == pytest.approx(0.5)
    assert item.effective_severity == "critical"


def test_full_profile_other_http_items(full: LoadedProfile) -> None:
    reporting, billing, ledger = full.profile.http[1:]
    assert reporting.method == "HEAD"
    assert reporting.expect.status == [200, 204]
    assert reporting.expect.latency is not None
    assert reporting.expect.latency.warn is None
    assert reporting.expect.latency.fail == 2.0
    assert reporting.expect.body is None
    assert reporting.expect.json_body is None
    assert reporting.timeout is None
    assert full.profile.timeout_of(reporting) == 10.0  # defaults.timeout
    assert reporting.effective_severity == "medium"  # critical: false
    assert billing.effective_severity == "high"  # explicit severity wins over critical: false
    assert billing.cadence == "weekly"
    assert billing.verify_tls is False
    assert billing.follow_redirects is True
    assert billing.expect.status == [200]  # default
    assert billing.expect.latency is None
    assert ledger.critical is True
    assert ledger.effective_severity == "low"  # explicit severity wins over critical: true


def test_full_profile_waiver(full: LoadedProfile) -> None:
    (waiver,) = full.profile.waivers
    assert isinstance(waiver, Waiver)
    assert waiver.check == "*[reporting]*"
    assert waiver.reason == "Decommissioned in Q1"
    assert waiver.ticket == "OPS-123"
    assert waiver.approved_by == "platform-lead"
    assert waiver.expires == date(2026, 12, 31)
    assert waiver.matches("http.health[reporting]")
    assert not waiver.matches("http.health[wallet-guard]")


def test_minimal_profile_defaults(tmp_path: Path) -> None:
    loaded = load(write(tmp_path, "environment: staging\n"))
    profile = loaded.profile
    assert profile.environment == "staging"
    assert profile.description is None
    assert profile.defaults.timeout == 5.0
    assert profile.defaults.concurrency == 256
    assert profile.http == []
    assert profile.waivers == []
    assert not loaded.redactor
    assert loaded.plain_vars == {}


def test_item_defaults_and_severity_from_critical(tmp_path: Path) -> None:
    profile = load(write(tmp_path, HEAD + SECOND + "    critical: false\n")).profile
    first, second = profile.http
    assert first.critical is True
    assert first.severity is None
    assert first.effective_severity == "critical"
    assert second.effective_severity == "medium"
    assert profile.timeout_of(first) == 5.0


def test_status_list_and_explicit_severity_critical(tmp_path: Path) -> None:
    text = (
        HEAD + "    critical: false\n    severity: critical\n    expect:\n      status:\n        - 301\n        - 302\n"
    )
    item = load(write(tmp_path, text)).profile.http[0]
    assert item.effective_severity == "critical"
    assert item.expect.status == [301, 302]


def test_existing_ca_file_is_a_path(tmp_path: Path) -> None:
    ca = tmp_path / "ops-ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    item = load(write(tmp_path, HEAD + f"    ca_file: {ca}\n")).profile.http[0]
    assert item.ca_file == ca
    assert isinstance(item.ca_file, Path)


def test_relative_ca_file_is_relative_to_the_profile_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    ca = profiles / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    item = load(write(profiles, HEAD + "    ca_file: ca.pem\n")).profile.http[0]
    assert item.ca_file is not None
    assert item.ca_file.is_absolute()
    assert item.ca_file.resolve() == ca.resolve()


def test_relative_ca_file_is_not_looked_up_in_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "ca.pem").write_text("-----BEGIN CERTIFICATE-----\n")  # only in the cwd
    monkeypatch.chdir(elsewhere)
    path = write(profiles, HEAD + "    ca_file: ca.pem\n")
    message = load_error(path)
    assert message == f"{path}:5: http[0].ca_file: ca_file {str(profiles / 'ca.pem')!r} does not exist"


def test_yaml_dates_stay_strings_outside_date_fields(tmp_path: Path) -> None:
    # The loader drops PyYAML's timestamp resolver: only `expires` is a date, and pydantic parses it.
    text = "environment: prod\ndescription: 2026-01-01\n" + HEAD.split("\n", 1)[1]
    text += "    expect:\n      json: {built: 2026-01-01}\n" + WAIVER.split("\n", 1)[1]
    profile = load(write(tmp_path, text)).profile
    assert profile.description == "2026-01-01"
    assert profile.http[0].expect.json_body == {"built": "2026-01-01"}
    assert profile.waivers[0].expires == date(2026, 12, 31)


def test_models_are_frozen(full: LoadedProfile) -> None:
    with pytest.raises(ValueError):
        full.profile.http[0].url = "http://elsewhere/"  # type: ignore[misc]


# --- bad inputs: one table ----------------------------------------------------------------------


def bad(case_id: str, text: str, key: str, *fragments: str, environ: dict[str, str] | None = None) -> Any:
    """One bad profile: its text (`# <-` marks the line the message must name), the key and what the message says."""
    return pytest.param(text, key, list(fragments), environ or {}, id=case_id)


BAD = [
    # unknown keys
    bad("unknown-top-level-key", "environment: prod\nbogus: 1  # <-\n", "bogus", "unknown key"),
    bad("unknown-top-level-typo", "environment: prod\nhtpp:  # <-\n  - name: a\n", "htpp", "unknown key"),
    bad("unknown-item-key", HEAD + "    retries: 3  # <-\n", "http[0].retries", "unknown key"),
    bad("unknown-nested-key", HEAD + "    expect:\n      latancy: {warn: 1s}  # <-\n", "http[0].expect.latancy", "unknown key"),
    bad("unknown-threshold-key", HEAD + SECOND + "    expect:\n      latency: {warn: 1s, critical: 2s}  # <-\n", "http[1].expect.latency.critical", "unknown key"),
    bad("unknown-default", "environment: prod\ndefaults:\n  timout: 5s  # <-\n", "defaults.timout", "unknown key"),
    # wrong types
    bad("timeout-bare-number", HEAD + "    timeout: 5  # <-\n", "http[0].timeout", "invalid duration 5", units.DURATION_HELP),
    bad("default-timeout-bare-number", "environment: prod\ndefaults:\n  timeout: 30  # <-\n", "defaults.timeout", "invalid duration 30"),
    bad("critical-maybe", HEAD + "    critical: maybe  # <-\n", "http[0].critical", "input should be a valid boolean (got 'maybe')"),
    bad("critical-quoted", HEAD + "    critical: 'maybe'  # <-\n", "http[0].critical", "input should be a valid boolean (got 'maybe')"),
    bad("verify-tls-word", HEAD + "    verify_tls: sometimes  # <-\n", "http[0].verify_tls", "input should be a valid boolean (got 'sometimes')"),
    bad("headers-list", HEAD + "    headers:  # <-\n      - Authorization: x\n", "http[0].headers", "expected a mapping (got list)"),
    bad("header-value-number", HEAD + "    headers: {X-Retry: 5}  # <-\n", "http[0].headers.X-Retry", "valid string", "5"),
    bad("environment-list", "environment: [a, b]  # <-\n", "environment", "valid string"),
    bad("environment-empty", "environment: ''  # <-\n", "environment", "at least 1 character"),
    bad("description-map", "environment: prod\ndescription: {a: 1}  # <-\n", "description", "valid string"),
    bad("http-mapping", "environment: prod\nhttp:  # <-\n  name: a\n  url: http://a/\n", "http", "expected a list (got dict)"),
    bad("item-str", "environment: prod\nhttp:\n  - wallet-guard  # <-\n", "http[0]", "expected a mapping (got str)"),
    bad("expect-list", HEAD + "    expect: [200]  # <-\n", "http[0].expect", "expected a mapping (got list)"),
    bad("status-str", HEAD + "    expect:\n      status: ok  # <-\n", "http[0].expect.status", "expected a list (got str)"),
    bad("waivers-mapping", "environment: prod\nwaivers:  # <-\n  check: x\n", "waivers", "expected a list (got dict)"),
    # bad values
    bad("latency-warn-with-space", HEAD + SECOND + "    expect:\n      latency:\n        warn: 100 ms  # <-\n        fail: 1s\n", "http[1].expect.latency.warn", "invalid duration '100 ms'", units.DURATION_HELP),
    bad("latency-fail-word", HEAD + "    expect:\n      latency: {warn: 100ms, fail: fast}  # <-\n", "http[0].expect.latency.fail", "invalid duration 'fast'"),
    bad("timeout-5-sec", HEAD + "    timeout: 5 sec  # <-\n", "http[0].timeout", "invalid duration '5 sec'"),
    bad("concurrency-zero", "environment: prod\ndefaults:\n  concurrency: 0  # <-\n", "defaults.concurrency", "greater than or equal to 1", "(got 0)"),
    bad("status-999", HEAD + "    expect:\n      status: 999  # <-\n", "http[0].expect.status[0]", "599", "(got 999)"),
    bad("status-list-999", HEAD + "    expect:\n      status:\n        - 200\n        - 999  # <-\n", "http[0].expect.status[1]", "599", "(got 999)"),
    bad("status-99", HEAD + "    expect:\n      status: 99  # <-\n", "http[0].expect.status[0]", "100", "(got 99)"),
    bad("method-post", HEAD + "    method: POST  # <-\n", "http[0].method", "method 'POST' is not allowed: checks never write, use GET, HEAD or OPTIONS"),
    bad("method-delete", HEAD + "    method: DELETE  # <-\n", "http[0].method", "method 'DELETE' is not allowed: checks never write, use GET, HEAD or OPTIONS"),
    bad("method-lowercase", HEAD + "    method: get  # <-\n", "http[0].method", "method 'get' is not allowed: checks never write, use GET, HEAD or OPTIONS"),
    bad("url-without-scheme", "environment: prod\nhttp:\n  - name: wallet-guard\n    url: wallet-guard:8000/health  # <-\n", "http[0].url", "'wallet-guard:8000/health'", "http://", "https://"),
    bad("url-ftp", "environment: prod\nhttp:\n  - name: a\n    url: ftp://files/x  # <-\n", "http[0].url", "'ftp://files/x'", "scheme"),
    bad("url-without-host", "environment: prod\nhttp:\n  - name: a\n    url: 'http://'  # <-\n", "http[0].url", "'http://'", "host"),
    bad("body-bad-regex", HEAD + "    expect:\n      body: '([a'  # <-\n", "http[0].expect.body", "invalid regular expression", "'([a'"),
    bad("severity", HEAD + "    severity: urgent  # <-\n", "http[0].severity", "(got 'urgent')", "critical"),
    bad("cadence", HEAD + "    cadence: hourly  # <-\n", "http[0].cadence", "(got 'hourly')", "weekly"),
    bad("name-with-space", "environment: prod\nhttp:\n  - name: 'wallet guard'  # <-\n    url: http://a/\n", "http[0].name", "(got 'wallet guard')", "pattern"),
    bad("ca-file-missing", HEAD + "    ca_file: /nonexistent/opsproof-ca.pem  # <-\n", "http[0].ca_file", "'/nonexistent/opsproof-ca.pem'", "does not exist"),
    # missing keys: the line is the enclosing mapping's
    bad("no-environment", "description: staging  # <-\n", "environment", "required key is missing"),
    bad("no-environment-after-comment", "# a profile\n\ndescription: staging  # <-\n", "environment", "required key is missing"),
    bad("no-url", "environment: prod\nhttp:\n  - name: a  # <-\n", "http[0].url", "required key is missing"),
    bad("no-name-second-item", HEAD + "  - url: http://b/  # <-\n", "http[1].name", "required key is missing"),
    bad("waiver-without-ticket", "environment: prod\nwaivers:\n  - check: 'http.*'  # <-\n    reason: r\n    approved_by: lead\n"         "    expires: 2026-12-31\n", "waivers[0].ticket", "required key is missing"),
    bad("waiver-empty-ticket", WAIVER.replace("ticket: OPS-123", "ticket: ''  # <-"), "waivers[0].ticket", "at least 1 character"),
    bad("waiver-date-dmy", WAIVER.replace("expires: 2026-12-31", "expires: 31/12/2026  # <-"), "waivers[0].expires", "valid date", "'31/12/2026'"),
    bad("waiver-date-month-13-quoted", WAIVER.replace("expires: 2026-12-31", "expires: '2026-13-01'  # <-"), "waivers[0].expires", "valid date", "'2026-13-01'"),
    bad("waiver-date-word", WAIVER.replace("expires: 2026-12-31", "expires: soon  # <-"), "waivers[0].expires", "valid date", "'soon'"),
    bad("waiver-datetime", WAIVER.replace("expires: 2026-12-31", "expires: 2026-12-31T12:00:00  # <-"), "waivers[0].expires", "invalid date '2026-12-31T12:00:00': expected YYYY-MM-DD"),
    # ${...} references
    bad("missing-secret", HEAD + "    headers: {Authorization: 'Bearer ${WALLET_TOKEN}'}  # <-\n", "http[0].headers.Authorization", "environment variable WALLET_TOKEN is not set", "${WALLET_TOKEN}", environ={"OTHER": "x"}),
    bad("missing-plain-var", "environment: prod\nhttp:\n  - name: a\n    url: 'http://${vars.HOST}:8000/health'  # <-\n", "http[0].url", "${vars.HOST} is not set", "--var HOST=VALUE", "environment variable HOST"),
    bad("secret-with-default", HEAD + "    headers: {Authorization: 'Bearer ${WALLET_TOKEN:-dev}'}  # <-\n", "http[0].headers.Authorization", "secrets take no default", "WALLET_TOKEN"),
    bad("plain-var-substituted-then-validated", "environment: prod\ndefaults:\n  timeout: ${vars.TIMEOUT}  # <-\n", "defaults.timeout", "invalid duration '5'", environ={"TIMEOUT": "5"}),
    # duplicate YAML keys
    bad("dup-top-level-key", "environment: prod\nenvironment: staging  # <-\n", "environment", "duplicate key"),
    bad("dup-item-key", HEAD + "    url: http://other/  # <-\n", "http[0].url", "duplicate key"),
    # an inverted threshold would never warn: refused where it is written, for every kind
    bad("inverted-latency", HEAD + "    expect:\n      latency: {warn: 2s, fail: 1s}  # <-\n", "http[0].expect.latency", "higher is worse here: warn must be at or below fail"),
    bad("inverted-connections", "environment: prod\npostgres:\n  - name: db\n    dsn: postgresql://ops@db/app\n"         "    connections: {warn: 95%, fail: 80%}  # <-\n", "postgres[0].connections", "higher is worse here: warn must be at or below fail"),
    bad("inverted-backup-age", "environment: prod\nbackups:\n  - name: db\n    path: /b\n    max_age: {warn: 2d, fail: 1d}  # <-\n", "backups[0].max_age", "higher is worse here: warn must be at or below fail"),
    # YAML's own structure, refused where it cannot make a profile
    bad("alias-loop", "environment: prod\nhttp: &all  # <-\n  - *all\n", "http[0]", "a recursive alias"),
    bad("key-not-a-plain-value", "environment: prod\nhttp:\n  - name: a\n    ? [x, y]  # <-\n    : 1\n", "http[0]", "a key must be a plain value"),
    bad("dup-nested-key", HEAD + "    expect:\n      latency:\n        warn: 1s\n        warn: 2s  # <-\n", "http[0].expect.latency.warn", "duplicate key"),
    # cross-references and duplicate names point at their own line
    bad("backups-without-a-store", "environment: prod\n\nbackups:\n  - name: db  # <-\n    max_age: 26h\n", "backups[0]", "give exactly one of s3: or path:"),
    bad("drill-of-an-unknown-backup", "environment: prod\nbackups:\n  - name: db\n    path: /b\n    max_age: 1d\n"         "drills:\n  - name: restore\n    backup: dbb  # <-\n", "drills[0].backup", "no backups item named 'dbb' (db)"),
    bad("duplicate-item-name-line", HEAD + SECOND + "  - name: wallet-guard  # <-\n    url: http://other/\n", "http[2].name", "duplicate name 'wallet-guard'"),
    # pydantic's message keeps its case: only the first letter is lowercased
    bad("name-pattern-keeps-case", "environment: prod\nhttp:\n  - name: 'wallet guard'  # <-\n    url: http://a/\n", "http[0].name", "string should match pattern '^[A-Za-z0-9][A-Za-z0-9_.:-]*$'"),
    # wrong types are refused, not coerced
    bad("concurrency-quoted-string", "environment: prod\ndefaults:\n  concurrency: '10'  # <-\n", "defaults.concurrency", "input should be a valid integer (got '10')"),
    bad("concurrency-float", "environment: prod\ndefaults:\n  concurrency: 10.0  # <-\n", "defaults.concurrency", "input should be a valid integer (got 10.0)"),
    bad("concurrency-bool", "environment: prod\ndefaults:\n  concurrency: true  # <-\n", "defaults.concurrency", "input should be a valid integer (got True)"),
    bad("verify-tls-quoted-string", HEAD + "    verify_tls: 'off'  # <-\n", "http[0].verify_tls", "input should be a valid boolean (got 'off')"),
    bad("verify-tls-int", HEAD + "    verify_tls: 1  # <-\n", "http[0].verify_tls", "input should be a valid boolean (got 1)"),
    bad("critical-quoted-true", HEAD + "    critical: 'true'  # <-\n", "http[0].critical", "input should be a valid boolean (got 'true')"),
    bad("follow-redirects-quoted-string", HEAD + "    follow_redirects: 'yes'  # <-\n", "http[0].follow_redirects", "input should be a valid boolean (got 'yes')"),
    bad("status-quoted-string", HEAD + "    expect:\n      status: '200'  # <-\n", "http[0].expect.status", "expected a list (got str)"),
    bad("status-bool", HEAD + "    expect:\n      status: true  # <-\n", "http[0].expect.status", "expected a list (got bool)"),
    bad("status-list-quoted-entry", HEAD + "    expect:\n      status:\n        - 200\n        - '204'  # <-\n", "http[0].expect.status[1]", "input should be a valid integer (got '204')"),
    bad("status-list-float-entry", HEAD + "    expect:\n      status: [200, 200.0]  # <-\n", "http[0].expect.status[1]", "input should be a valid integer (got 200.0)"),
    # an unquoted impossible date is a pydantic error with line and key, like the quoted form
    bad("waiver-date-month-13-unquoted", WAIVER.replace("expires: 2026-12-31", "expires: 2026-13-01  # <-"), "waivers[0].expires", "invalid date '2026-13-01': month must be in 1..12"),
    bad("waiver-date-feb-30-unquoted", WAIVER.replace("expires: 2026-12-31", "expires: 2026-02-30  # <-"), "waivers[0].expires", "invalid date '2026-02-30': day is out of range for month"),
    # malformed references are refused rather than sent as literal text
    bad("reference-with-dash", HEAD + "    headers: {Authorization: 'Bearer ${WALLET-TOKEN}'}  # <-\n", "http[0].headers.Authorization", "'${WALLET-TOKEN}' is not a valid reference", "$${", environ={"WALLET": "x", "WALLET_TOKEN": "x"}),
    bad("reference-empty", HEAD + "    headers: {Authorization: 'Bearer ${}'}  # <-\n", "http[0].headers.Authorization", "'${}' is not a valid reference"),
    bad("plain-reference-with-dash", "environment: prod\nhttp:\n  - name: a\n    url: 'http://${vars.HOST-NAME}/'  # <-\n", "http[0].url", "is not a valid reference", environ={"HOST": "x"}),
    bad("bad-reference-after-a-good-one", "environment: prod\ndescription: 'ok ${vars.A} then ${1X}'  # <-\n", "description", "'${1X}' is not a valid reference", environ={"A": "a"}),
    # a timeout must be positive
    bad("timeout-zero", HEAD + "    timeout: 0s  # <-\n", "http[0].timeout", "greater than 0", "(got '0s')"),
    bad("default-timeout-zero", "environment: prod\ndefaults:\n  timeout: 0ms  # <-\n", "defaults.timeout", "greater than 0", "(got '0ms')"),
]


@pytest.mark.parametrize(("text", "key", "fragments", "environ"), BAD)
def test_bad_profile(tmp_path: Path, text: str, key: str, fragments: list[str], environ: dict[str, str]) -> None:
    path = write(tmp_path, text, name="bad.yaml")
    message = load_error(path, environ=environ)
    expected = f"{path}:{marked_line(text)}: {key}: "
    assert expected in message, f"{expected!r} not in {message!r}"
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"


def test_display_path_names_the_file_as_given(tmp_path: Path) -> None:
    path = write(tmp_path, "environment: prod\nbogus: 1\n")
    message = load_error(path, display_path="profiles/prod.yaml")
    assert message == "profiles/prod.yaml:2: bogus: unknown key"


def test_every_error_is_reported_on_its_own_line(tmp_path: Path) -> None:
    text = HEAD + "    timeout: fast\n" + SECOND + "    critical: maybe\n"
    path = write(tmp_path, text, name="two.yaml")
    messages = load_error(path, display_path="two.yaml").splitlines()
    assert messages == [
        "two.yaml:5: http[0].timeout: invalid duration 'fast': expected " + units.DURATION_HELP,
        "two.yaml:8: http[1].critical: input should be a valid boolean (got 'maybe')",
    ]


def test_unknown_and_missing_keys_in_a_waiver(tmp_path: Path) -> None:
    text = WAIVER.replace("expires: 2026-12-31", "expiry: 2026-12-31")
    message = load_error(write(tmp_path, text), display_path="w.yaml")
    assert "w.yaml:3: waivers[0].expires: required key is missing" in message.splitlines()
    assert "w.yaml:7: waivers[0].expiry: unknown key" in message.splitlines()


def test_duplicate_item_names_are_refused(tmp_path: Path) -> None:
    path = write(tmp_path, HEAD + SECOND + "  - name: wallet-guard\n    url: http://other/\n")
    message = load_error(path)
    assert message == f"{path}:7: http[2].name: duplicate name 'wallet-guard'"


def test_two_waivers_may_share_a_pattern(tmp_path: Path) -> None:
    # Two waivers may share a check pattern; only item names must be unique.
    text = WAIVER + WAIVER.split("waivers:\n", 1)[1]
    assert len(load(write(tmp_path, text)).profile.waivers) == 2


# --- files that are not profiles --------------------------------------------------------------


def test_profile_not_found(tmp_path: Path) -> None:
    path = tmp_path / "missing.yaml"
    assert load_error(path) == f"{path}: profile not found"


def test_profile_is_a_directory(tmp_path: Path) -> None:
    message = load_error(tmp_path)
    assert message.startswith(f"{tmp_path}: cannot read profile")


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("", id="empty"),
        pytest.param("# only a comment\n\n", id="comment-only"),
        pytest.param("- environment: prod\n- http: []\n", id="top-level-list"),
        pytest.param("production\n", id="top-level-scalar"),
    ],
)
def test_profile_that_is_not_a_mapping(tmp_path: Path, text: str) -> None:
    path = write(tmp_path, text, name="notmap.yaml")
    assert load_error(path) == f"{path}: a profile is a mapping with at least `environment:`"


@pytest.mark.parametrize(
    ("text", "line"),
    [
        pytest.param("environment: prod\nhttp:\n  - name: a\n   url: http://a/\n", 4, id="bad-indent"),
        pytest.param("environment: prod\nhttp: [a, b\n", 3, id="unclosed-flow-sequence"),
        pytest.param("environment: prod\n\tdescription: x\n", 2, id="tab"),
        pytest.param("environment: prod\ndescription: 'unterminated\n", 3, id="unterminated-quote"),
    ],
)
def test_invalid_yaml_names_the_line(tmp_path: Path, text: str, line: int) -> None:
    path = write(tmp_path, text, name="syntax.yaml")
    message = load_error(path)
    assert message.startswith(f"{path}:{line}: not valid YAML: ")


def test_anchors_and_merge_keys_are_yaml_as_usual(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "environment: prod\n"
        "http:\n"
        "  - &api {name: api, url: 'https://api/health', timeout: 2s, expect: {status: [200, 204]}}\n"
        "  - <<: *api\n"
        "    name: api-eu\n"
        "    url: https://api.eu/health\n",
    )
    items = load_profile(path).profile.targets("http")
    assert items["api-eu"].timeout == 2.0
    assert items["api-eu"].expect.status == items["api"].expect.status == [200, 204]
    assert items["api-eu"].url == "https://api.eu/health"


def test_profile_that_is_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes("environment: pr\u00f6d\n".encode("latin-1"))
    assert load_error(path) == f"{path}: profile is not UTF-8 text"


# --- ${vars.NAME} and $${...} -------------------------------------------------------------------


def test_plain_var_from_cli_wins_over_environment(tmp_path: Path) -> None:
    text = "environment: prod\ndescription: 'deploy ${vars.VERSION} on ${vars.REGION}'\n"
    loaded = load(
        write(tmp_path, text), cli_vars={"VERSION": "1.2.3"}, environ={"VERSION": "0.0.1", "REGION": "eu-west-1"}
    )
    assert loaded.profile.description == "deploy 1.2.3 on eu-west-1"
    assert loaded.plain_vars == {"VERSION": "1.2.3", "REGION": "eu-west-1"}
    assert not loaded.redactor  # plain values are not secrets
    assert loaded.redactor.redact("1.2.3 eu-west-1") == "1.2.3 eu-west-1"


@pytest.mark.parametrize(
    ("cli_vars", "environ", "expected"),
    [
        pytest.param({}, {}, "v-default", id="default"),
        pytest.param({}, {"VERSION": "v-env"}, "v-env", id="environment-over-default"),
        pytest.param({"VERSION": "v-cli"}, {"VERSION": "v-env"}, "v-cli", id="cli-over-environment"),
        pytest.param({"VERSION": ""}, {}, "", id="empty-cli-value-over-default"),
    ],
)
def test_plain_var_default(tmp_path: Path, cli_vars: dict, environ: dict, expected: str) -> None:
    text = "environment: prod\ndescription: '${vars.VERSION:-v-default}'\n"
    loaded = load(write(tmp_path, text), cli_vars=cli_vars, environ=environ)
    assert loaded.profile.description == expected
    assert loaded.plain_vars == {"VERSION": expected}


def test_plain_var_empty_default(tmp_path: Path) -> None:
    loaded = load(write(tmp_path, "environment: prod\ndescription: 'x${vars.SUFFIX:-}y'\n"))
    assert loaded.profile.description == "xy"
    assert loaded.plain_vars == {"SUFFIX": ""}


def test_dollar_dollar_escape_gives_a_literal_reference(tmp_path: Path) -> None:
    text = HEAD + "    headers: {X-Template: '$${X} and $${vars.Y}'}\n"
    loaded = load(write(tmp_path, text), environ={})
    assert loaded.profile.http[0].headers == {"X-Template": "${X} and ${vars.Y}"}
    assert not loaded.redactor
    assert loaded.plain_vars == {}


def test_references_in_non_string_positions_are_typed_after_substitution(tmp_path: Path) -> None:
    text = "environment: prod\ndefaults:\n  timeout: ${vars.TIMEOUT}\n" + HEAD.split("\n", 1)[1]
    text += "    expect:\n      latency: {warn: '${vars.WARN:-150ms}'}\n"
    loaded = load(write(tmp_path, text), cli_vars={"TIMEOUT": "2m"})
    assert loaded.profile.defaults.timeout == 120.0
    assert loaded.profile.http[0].expect.latency is not None
    assert loaded.profile.http[0].expect.latency.warn == pytest.approx(0.15)
    assert loaded.plain_vars == {"TIMEOUT": "2m", "WARN": "150ms"}


def test_environ_defaults_to_the_process_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPSPROOF_TEST_TOKEN", "from-os-environ")
    text = HEAD + "    headers: {Authorization: 'Bearer ${OPSPROOF_TEST_TOKEN}'}\n"
    loaded = load_profile(write(tmp_path, text))
    assert loaded.profile.http[0].headers["Authorization"] == "Bearer from-os-environ"


# --- secrets --------------------------------------------------------------------------------------

SECRET_HEADER = HEAD + "    headers: {Authorization: 'Bearer ${TOKEN}'}\n"


@pytest.fixture
def with_secret(tmp_path: Path) -> LoadedProfile:
    return load(write(tmp_path, SECRET_HEADER), environ={"TOKEN": SECRET})


def test_secret_is_substituted_and_registered(with_secret: LoadedProfile) -> None:
    assert with_secret.profile.http[0].headers["Authorization"] == f"Bearer {SECRET}"
    assert with_secret.redactor
    assert with_secret.redactor.redact(f"Bearer {SECRET}") == "Bearer ${TOKEN}"
    assert with_secret.plain_vars == {}


@pytest.mark.parametrize(
    "encoded",
    [
        pytest.param(quote(SECRET, safe=""), id="url-quoted"),
        pytest.param(quote_plus(SECRET), id="url-quoted-plus"),
        pytest.param(quote(SECRET), id="url-quoted-keep-slash"),
        pytest.param(base64.b64encode(SECRET.encode()).decode(), id="base64"),
    ],
)
def test_encoded_secret_forms_are_redacted(with_secret: LoadedProfile, encoded: str) -> None:
    assert encoded != SECRET
    assert with_secret.redactor.redact(f"dsn=x:{encoded}@db") == "dsn=x:${TOKEN}@db"


def test_secret_not_in_reprs(with_secret: LoadedProfile) -> None:
    item = with_secret.profile.http[0]
    assert repr(item) == "HttpTarget(name='wallet-guard')"
    assert SECRET not in repr(with_secret.profile)
    assert SECRET not in str(with_secret.profile)
    assert SECRET not in repr(with_secret)
    assert SECRET not in repr(with_secret.profile.http)


def test_secret_not_in_str_of_an_item(with_secret: LoadedProfile) -> None:
    # str(), f-strings and logging's '%s' use __str__, which pydantic would fill with every field.
    item = with_secret.profile.http[0]
    assert str(item) == "HttpTarget(name='wallet-guard')"
    assert f"{item}" == repr(item)
    record = logging.LogRecord("opsproof", logging.INFO, __file__, 1, "checking %s", (item,), None)
    assert record.getMessage() == f"checking {item!r}"
    assert SECRET not in str(item)


@pytest.mark.parametrize(
    ("extra", "line", "key"),
    [
        pytest.param("    timeout: 100 ms\n", 6, "http[0].timeout", id="bad-duration"),
        pytest.param("    critical: maybe\n", 6, "http[0].critical", id="bad-bool"),
        pytest.param("    expect:\n      status: 999\n", 7, "http[0].expect.status[0]", id="bad-status"),
        pytest.param("    bogus: 1\n", 6, "http[0].bogus", id="unknown-key"),
        pytest.param("    headers: {X: 1}\n", 6, "http[0].headers", id="duplicate-headers-key"),
    ],
)
def test_secret_not_in_message_for_another_mistake(tmp_path: Path, extra: str, line: int, key: str) -> None:
    path = write(tmp_path, SECRET_HEADER + extra)
    message = load_error(path, environ={"TOKEN": SECRET})
    assert f"{path}:{line}: {key}: " in message
    for form in (SECRET, quote(SECRET, safe=""), base64.b64encode(SECRET.encode()).decode()):
        assert form not in message


def test_secret_not_in_message_for_a_mistake_in_a_later_item(tmp_path: Path) -> None:
    text = SECRET_HEADER + SECOND + "    url: reporting/health\n"
    message = load_error(write(tmp_path, text), environ={"TOKEN": SECRET})
    assert "duplicate key" in message  # the second url: key in the same item
    assert SECRET not in message


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        pytest.param(
            "environment: prod\nhttp:\n  - name: a\n    url: '${HEALTH_URL}'\n",
            "wallet-guard:8000/health?token=s3cr3t",
            id="url",
        ),
        pytest.param(HEAD + "    timeout: '${TIMEOUT_SECRET}'\n", "s3cr3t-timeout", id="duration"),
    ],
)
def test_secret_not_in_message_for_a_mistake_in_the_secret_value(tmp_path: Path, text: str, secret: str) -> None:
    name = re.search(r"\$\{(\w+)\}", text).group(1)  # type: ignore[union-attr]
    path = write(tmp_path, text)
    message = load_error(path, environ={name: secret})
    assert message.startswith(f"{path}:")
    assert "${" + name + "}" in message
    assert secret not in message


def test_missing_secret_message_does_not_show_other_secrets(tmp_path: Path) -> None:
    text = SECRET_HEADER + "    url: 'http://host/?k=${API_KEY}'\n"
    path = write(tmp_path, text.replace("    url: http://wallet-guard:8000/health\n", ""))
    message = load_error(path, environ={"TOKEN": SECRET})
    assert "API_KEY" in message
    assert SECRET not in message


# --- waivers ------------------------------------------------------------------------------------


def make_waiver(check: str) -> Waiver:
    return Waiver(check=check, reason="r", ticket="OPS-1", approved_by="lead", expires=date(2026, 12, 31))


@pytest.mark.parametrize(
    ("pattern", "check_id", "matches"),
    [
        ("*[reporting]*", "http.health[reporting]", True),
        ("*[reporting]*", "http.latency[reporting]", True),
        ("*[reporting]*", "http.health[wallet-guard]", False),  # a character class would match this
        ("*[reporting]*", "http.health[r]", False),
        ("*[reporting]*", "reporting", False),
        ("http.health[reporting]", "http.health[reporting]", True),
        ("http.health[reporting]", "http.health[reporting]x", False),  # the whole id must match
        ("http.health[reporting]", "xhttp.health[reporting]", False),
        ("http.*", "http.health[a]", True),
        ("http.*", "tls.expiry[a]", False),
        ("http.health[?]", "http.health[a]", True),
        ("http.health[?]", "http.health[ab]", False),
        ("http.health[?]", "http.health[]", False),
        ("http.health", "httpXhealth", False),  # '.' is literal
        ("a+b", "a+b", True),
        ("a+b", "aab", False),
        ("*", "anything[at-all]", True),
        ("*", "", True),
        ("", "x", False),
        ("http.health[(x|y)]", "http.health[(x|y)]", True),
        ("http.health[(x|y)]", "http.health[x]", False),
    ],
)
def test_waiver_matches(pattern: str, check_id: str, matches: bool) -> None:
    assert make_waiver(pattern).matches(check_id) is matches
    assert (glob_to_regex(pattern).fullmatch(check_id) is not None) is matches


def test_waiver_star_spans_any_character() -> None:
    assert make_waiver("http.*").matches("http.health[a b\tc]")


# --- JSON schema --------------------------------------------------------------------------------


def test_the_schema_describes_metrics_dns_buckets_and_json_values() -> None:
    defs = profile_json_schema()["$defs"]
    for model in ("MetricsTarget", "Series", "LabelMatcher", "DnsTarget", "DnsExpect", "BucketsTarget", "ValueExpect"):
        assert defs[model]["additionalProperties"] is False, model
    assert defs["Series"]["properties"]["aggregate"]["enum"] == ["each", "max", "min", "sum", "avg", "count"]
    assert "not" in defs["LabelMatcher"]["properties"]  # the alias users write, not not_
    assert defs["DnsTarget"]["properties"]["type"]["enum"] == ["A", "AAAA", "CNAME", "SRV", "TXT"]
    assert "in" in defs["ValueExpect"]["properties"]
    assert "values" in defs["HttpExpect"]["properties"]
    size = defs["BucketsTarget"]["properties"]["size"]
    assert "share of it (80%)" in str(size)


def test_profile_json_schema() -> None:
    schema = profile_json_schema()
    round_trip = json.loads(json.dumps(schema))
    assert round_trip == schema
    assert schema["type"] == "object"
    assert schema["additionalProperties"] is False
    assert schema["title"] == "opsproof profile"
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    sections = {"http", "tls", "postgres", "redis", "backups", "drills", "kubernetes", "prometheus", "hosts"}
    assert {"environment", "waivers", "defaults", *sections} <= set(schema["properties"])
    assert schema["required"] == ["environment"]
    assert schema["properties"]["http"]["type"] == "array"
    assert schema["properties"]["waivers"]["type"] == "array"
    defs = schema["$defs"]
    for model in ("HttpTarget", "HttpExpect", "TlsTarget", "PostgresTarget", "RedisTarget", "Waiver", "Defaults"):
        assert defs[model]["additionalProperties"] is False, model
    http = defs["HttpTarget"]["properties"]
    assert "json" in defs["HttpExpect"]["properties"]  # the alias users write, not json_body
    assert "json_body" not in defs["HttpExpect"]["properties"]
    assert http["method"]["enum"] == ["GET", "HEAD", "OPTIONS"]
    assert set(defs["Waiver"]["required"]) == {"check", "reason", "ticket", "approved_by", "expires"}
    timeout = defs["Defaults"]["properties"]["timeout"]
    assert timeout["type"] == "string"
    assert re.match(timeout["pattern"], "250ms")
    assert not re.match(timeout["pattern"], "100 ms")


def _accepts_integer(schema: dict) -> bool:
    if schema.get("type") == "integer":
        return True
    return any(_accepts_integer(option) for option in schema.get("anyOf", []) + schema.get("oneOf", []))


def _accepts_array_of_integers(schema: dict) -> bool:
    if schema.get("type") == "array":
        return _accepts_integer(schema.get("items", {}))
    return any(_accepts_array_of_integers(option) for option in schema.get("anyOf", []) + schema.get("oneOf", []))


def test_schema_accepts_a_single_status() -> None:
    # `status: 200` (the contract's own example) and `status: [200, 204]` are both valid.
    status = profile_json_schema()["$defs"]["HttpExpect"]["properties"]["status"]
    assert _accepts_integer(status)
    assert _accepts_array_of_integers(status)
    assert status["anyOf"][0] == {"type": "integer", "minimum": 100, "maximum": 599}


def test_schema_method_is_an_enum_of_read_only_methods() -> None:
    method = profile_json_schema()["$defs"]["HttpTarget"]["properties"]["method"]
    assert method["type"] == "string"
    assert method["enum"] == ["GET", "HEAD", "OPTIONS"]
    assert method["default"] == "GET"


def test_schema_strict_types() -> None:
    defs = profile_json_schema()["$defs"]
    assert defs["Defaults"]["properties"]["concurrency"]["type"] == "integer"
    for key in ("critical", "verify_tls", "follow_redirects"):
        assert defs["HttpTarget"]["properties"][key]["type"] == "boolean", key


@pytest.mark.parametrize("expires", ["0", "1798675200", "'31/12/2026'"])
def test_waiver_dates_are_iso_only(tmp_path: Path, expires: str) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(
        f"environment: t\nwaivers:\n  - {{check: '*', reason: r, ticket: T-1, approved_by: me, expires: {expires}}}\n"
    )
    with pytest.raises(ProfileError, match=r"p\.yaml:3: waivers\[0\]\.expires: invalid date .*expected YYYY-MM-DD"):
        load_profile(path, environ={})


def test_empty_status_list_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text("environment: t\nhttp:\n  - {name: a, url: 'http://x/', expect: {status: []}}\n")
    with pytest.raises(ProfileError, match=r"http\[0\]\.expect\.status: list should have at least 1 item"):
        load_profile(path, environ={})


def test_secret_with_escaped_characters_is_redacted_in_messages(tmp_path: Path) -> None:
    secret = "wallet:8000/x?token=a\\b'\"c"
    path = tmp_path / "p.yaml"
    path.write_text("environment: t\nhttp:\n  - {name: a, url: '${U}'}\n")
    with pytest.raises(ProfileError) as raised:
        load_profile(path, environ={"U": secret})
    message = str(raised.value)
    assert "${U}" in message
    assert "token=a" not in message


def test_unclosed_reference_says_so(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text("environment: t\nhttp:\n  - {name: a, url: 'http://x/${A}${B'}\n")
    with pytest.raises(ProfileError, match=r"'\$\{B' is not a valid reference|no closing"):
        load_profile(path, environ={"A": "1", "B": "2"})
