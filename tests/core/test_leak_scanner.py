"""The leak scanner (issue 13, "Done means"): one run over every kind, then every output searched.

The demo's services (PostgreSQL, Redis, moto's S3, Prometheus, the Kubernetes API emulator,
TLS endpoints, the local host, attestations, drills) with their own `${...}` passwords, plus
items that carry hard secrets to an echoing server and to the real services: `@:/%+=&`,
non-ASCII, and a 4-character one. Every file the run and the commands after it write (the
bundle, the history in SQLite and in PostgreSQL, Allure results, the period report, the
terminal) is searched for every secret in every form `encoded_forms` lists.
"""

from __future__ import annotations

import sqlite3
import uuid
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest
from helpers.history_servers import history_pg
from helpers.ssh_servers import SSHD, SshServer, ssh_server
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from conftest import REPO, HttpServer, Runner
from opsproof.cli import main as opsproof
from opsproof.demo.environment import demo_environment
from opsproof.local.postgres import LocalPostgres
from opsproof.redaction import encoded_forms

__all__ = ["history_pg"]  # fixtures

HARD_SECRETS = {
    "S_AT": "p@ss:w/rd%+=&é",  # every character a URL, form, HTML or JSON writer encodes
    "S_UNI": "Zürich-Straße-密码-42",  # non-ASCII: UTF-8 bytes in URLs, \\u escapes in JSON
    "S_4": "Kq7#",  # short: redacted as a whole token only (docs/threat-model/secrets.md)
}
USERS = (None, "ops", "scraper")  # the Basic-auth users of the items below


def _extra_items(echo: str, demo: dict[str, str], ssh: SshServer) -> str:
    host = echo.removeprefix("http://")
    pg = conninfo_to_dict(demo["DEMO_PG_DSN"])
    return f"""
  - {{name: echo-bearer, url: '{echo}/echo/401/0/b', headers: {{Authorization: 'Bearer ${{S_4}}'}}}}
  - {{name: echo-query, url: '{echo}/echo/401/0/q?token=${{S_AT}}&other=${{S_UNI}}'}}
  - {{name: echo-userinfo, url: 'http://ops:${{S_UNI}}@{host}/echo/401/0/u', timeout: 10s}}
  - {{name: echo-short-user, url: 'http://ops:${{S_4}}@{host}/echo/401/0/s'}}
  - {{name: moved, url: '{echo}/redirect-with-query?token=${{S_AT}}'}}
postgres-extra:
  - name: wrong-password
    dsn: 'postgresql://ops@{pg["host"]}:{pg["port"]}/app'
    password: ${{S_UNI}}
  - name: wrong-in-dsn
    dsn: 'postgresql://ops:${{S_AT}}@{pg["host"]}:{pg["port"]}/app'
redis-extra:
  - {{name: wrong-password, url: 'redis://:${{S_AT}}@{demo["DEMO_REDIS"]}/0'}}
  - {{name: wrong-short, url: 'redis://:${{S_4}}@{demo["DEMO_REDIS"]}/0'}}
prometheus-extra:
  - {{name: prom-basic, url: '{demo.get("DEMO_PROMETHEUS", echo)}', basic_auth: {{username: scraper, password: '${{S_AT}}'}}, alerts: false}}
  - {{name: prom-echo, url: '{echo}/echo/401/0/p', bearer_token: '${{S_UNI}}', alerts: false}}
hosts-extra:
  - {{name: ssh-password, url: 'paramiko://{ssh.user}:${{S_AT}}@127.0.0.1:{ssh.port}?ssh_config={ssh.ssh_config}', timeout: 10s}}
kubernetes-extra:
  - {{name: wrong-token, kubeconfig: '{demo["DEMO_KUBECONFIG"]}', token: '${{S_AT}}', namespaces: [scorpius-platform]}}
"""


def _profile(echo: str, demo: dict[str, str], ssh: SshServer) -> str:
    """The demo profile with the extra items appended to their sections."""
    text = (REPO / "profiles" / "demo.yaml").read_text()
    extra = _extra_items(echo, demo, ssh)
    current = "http"
    by_section: dict[str, list[str]] = {}
    for line in extra.split("\n"):
        if line.endswith("-extra:"):
            current = line.removesuffix("-extra:")
            continue
        by_section.setdefault(current, []).append(line)
    for section, lines in by_section.items():
        marker = f"\n{section}:\n"
        assert marker in text, section
        text = text.replace(marker, marker + "\n".join(line for line in lines if line.strip()) + "\n", 1)
    return text


def _pg_dump(dsn: str) -> str:
    with psycopg.connect(dsn) as conn:
        tables = [r[0] for r in conn.execute("select tablename from pg_tables where schemaname = 'public'")]
        return "\n".join(str(row) for table in tables for row in conn.execute(f'select * from "{table}"'))


def _sqlite_dump(path: Path) -> str:
    with sqlite3.connect(path) as conn:
        return "\n".join(conn.iterdump())


def _files(*folders: Path) -> dict[str, str]:
    found = {}
    for folder in folders:
        for path in folder.rglob("*"):
            if path.is_file():
                found[str(path)] = path.read_bytes().decode("utf-8", errors="replace")
    return found


@pytest.mark.skipif(SSHD is None, reason="needs Debian's openssh-server (sshd)")
def test_no_secret_reaches_any_output_in_any_encoding(
    runner: Runner,
    http_server: HttpServer,
    history_pg: LocalPostgres,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for name, value in HARD_SECRETS.items():
        monkeypatch.setenv(name, value)
    role, database = f"leak_{uuid.uuid4().hex[:8]}", f"history_{uuid.uuid4().hex[:8]}"
    history_pg.create_role(role, password=HARD_SECRETS["S_AT"])
    history_pg.create_database(database, owner=role)
    history_dsn = make_conninfo(
        **{**conninfo_to_dict(history_pg.dsn(user=role, dbname=database)), "password": HARD_SECRETS["S_AT"]}
    )
    allure = tmp_path / "allure"
    with demo_environment(0, any_ports=True) as demo, ssh_server(tmp_path / "sshd") as ssh:
        for name, value in demo.environ.items():
            monkeypatch.setenv(name, value)
        profile = _profile(http_server.base, demo.plain_vars, ssh)
        runner.profile(profile)
        run = runner.run(
            "-m",
            "daily or weekly or monthly",
            "-v",
            "-rA",
            "--tb=long",
            "-l",
            "--alluredir",
            str(allure),
            *demo.pytest_args(),
            subprocess=True,
        )
        # The demo's own `${...}` passwords too (its AWS variables are moto's fixed fakes, not profile secrets).
        secrets = {**HARD_SECRETS, **{k: v for k, v in demo.environ.items() if "${" + k + "}" in profile}}
    assert run.ret == 1, run.output  # the wrong passwords fail; nothing crashed on the way
    assert "INTERNALERROR" not in run.output
    kinds = {c["kind"] for c in run.results["checks"]}
    assert kinds >= {"http", "tls", "postgres", "redis", "backups", "drills", "hosts", "kubernetes", "attestations"}
    # The secrets really travelled: the echoing server saw them.
    sent = str(http_server.requests)
    assert "Bearer Kq7#" in sent
    ssh_record = run.record("hosts.reachable[ssh-password]")
    assert ssh_record["outcome"] == "passed", ssh_record["message"]  # the URL with the password in it parsed
    # A non-ASCII password in a URL's userinfo goes out as UTF-8 Basic auth (aiohttp's default, latin-1, crashed).
    assert "Error" not in run.record("http.health[echo-userinfo]")["message"]

    code = opsproof(["history", "rebuild", "--report-dir", str(run.report_dir), "--history-dsn", history_dsn])
    today = datetime.now(UTC).date().isoformat()
    period = tmp_path / "period"
    code_report = opsproof(
        [
            "report",
            "--report-dir",
            str(run.report_dir),
            "--environment",
            "demo",
            "--from",
            today,
            "--to",
            today,
            "--out",
            str(period),
        ]
    )
    terminal = capsys.readouterr()
    assert (code, code_report) == (0, 0), terminal.out + terminal.err

    outputs = _files(run.report_dir, allure, period)
    outputs["terminal (pytest)"] = run.output
    outputs["terminal (history rebuild, report)"] = terminal.out + terminal.err
    outputs["history (SQLite rows)"] = _sqlite_dump(run.report_dir / "history.sqlite")
    outputs["history (PostgreSQL rows)"] = _pg_dump(
        history_pg.dsn(user=role, dbname=database, password=HARD_SECRETS["S_AT"])
    )
    assert len(outputs) > 20 and any("allure" in where for where in outputs)
    leaks = [
        f"{name} as {form!r} in {where}"
        for name, value in secrets.items()
        for user in USERS
        for form in encoded_forms(value, user=user)
        for where, text in outputs.items()
        if form in text
    ]
    assert not leaks, "\n".join(leaks[:30])
