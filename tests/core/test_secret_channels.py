"""Each way a secret once reached an output (issue 13, items 5-9), staged for real.

A server that echoes what it was sent, a real PostgreSQL history store, a redirect:
every test proves the secret really travelled (the server saw it) and then that no
output shows it in any encoding `encoded_forms` knows.
"""

from __future__ import annotations

import base64
import uuid
from pathlib import Path

import pytest
from helpers.history_servers import history_pg
from helpers.kubernetes_servers import kube_profile
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from conftest import HttpServer, Runner, TlsServer, http_profile
from opsproof import ProfileError, load_profile
from opsproof.local.postgres import LocalPostgres
from opsproof.redaction import encoded_forms
from opsproof.testing.kubernetes import ServedApi, write_kubeconfig

__all__ = ["history_pg"]  # fixtures


def assert_nowhere(secret: str, texts: dict[str, str], user: str | None = None) -> None:
    """No form of `secret` in any of `texts` (where -> text)."""
    for form in encoded_forms(secret, user=user):
        for where, text in texts.items():
            assert form not in text, f"{form!r} (a form of the secret) in {where}"


def bundle_texts(run_output: str, bundle: Path) -> dict[str, str]:
    texts = {"terminal": run_output}
    texts.update({path.name: path.read_text(errors="replace") for path in bundle.iterdir() if path.is_file()})
    return texts


def test_a_keyword_history_dsn_is_masked_in_the_command(
    runner: Runner, http_server: HttpServer, history_pg: LocalPostgres
) -> None:
    """Item 5: `--history-dsn "host=... password=..."` was written whole into run.command."""
    password = "it's a s3cret/%+=&"  # quoted in the keyword form: a space and a quote inside
    role, database = f"kw_{uuid.uuid4().hex[:8]}", f"history_{uuid.uuid4().hex[:8]}"
    history_pg.create_role(role, password=password)
    history_pg.create_database(database, owner=role)
    parts = conninfo_to_dict(history_pg.dsn(user=role, dbname=database))
    dsn = make_conninfo(**{**parts, "password": password})
    assert "password='it\\'s a s3cret/%+=&'" in dsn
    runner.profile(http_profile(f"{{name: up, url: '{http_server.base}/health'}}"))
    run = runner.run("-m", "daily", "--history-dsn", dsn)
    assert run.ret == 0, run.output
    assert "recorded in the history" in run.output  # the password really opened the store
    command = run.results["run"]["command"]
    assert "password=" in command and "${HISTORY_DSN_PASSWORD}" in command
    assert_nowhere(password, bundle_texts(run.output, run.bundle))


def _host_port(server: HttpServer) -> str:
    return server.base.removeprefix("http://")


def _sent(server: HttpServer, prefix: str) -> list[dict[str, str]]:
    return [headers for _, path, headers in server.requests if path.startswith(prefix)]


# Non-ASCII: found by the leak scanner, aiohttp encodes Basic auth as latin-1 and crashed on `密码`.
@pytest.mark.parametrize("password", ["B4sicAuthPassw0rd-77", "Zürich-Straße-密码-42"])
def test_basic_auth_is_never_shown_as_base64(
    password: str, runner: Runner, http_server: HttpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Item 6: a server echoing `Authorization: Basic base64(user:password)` showed the password."""
    monkeypatch.setenv("PW", password)
    runner.profile(
        http_profile(
            f"{{name: userinfo, url: 'http://ops:${{PW}}@{_host_port(http_server)}/echo/401/0/userinfo'}}",
            extra=(
                "prometheus:\n"
                f"  - {{name: prom, url: '{http_server.base}/echo/401/0/prom', basic_auth: "
                "{username: scraper, password: '${PW}'}, alerts: false}\n"
            ),
        )
    )
    run = runner.run("-m", "daily or weekly")
    assert run.ret == 1, run.output
    basic = {h.get("Authorization") for h in _sent(http_server, "/echo/401/0/")}
    for user in ("ops", "scraper"):  # the server really got (and echoed) each pair
        assert "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode() in basic
        assert_nowhere(password, bundle_texts(run.output, run.bundle), user=user)
    userinfo = run.record("http.health[userinfo]")
    assert userinfo["message"] == "HTTP 401 Unauthorized, expected 200"
    assert "${PW}" in userinfo["observed"]["body_excerpt"]


def test_a_token_is_redacted_before_an_excerpt_is_cut(
    runner: Runner, http_server: HttpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Item 7: an excerpt cut at 300 characters, then redacted, kept 27 of a token's 29 characters."""
    token = "Zq7VxK2mW9pL4sT8nR3yB6cH1dF5g"
    monkeypatch.setenv("TOKEN", token)
    # Padding 0, 20, ... 300: wherever the echoed header sits, one excerpt's cut falls inside the token.
    items = "".join(
        f"  - {{name: p{pad}, url: '{http_server.base}/echo/401/{pad}/p', bearer_token: '${{TOKEN}}', alerts: false}}\n"
        for pad in range(0, 320, 20)
    )
    runner.profile(f"environment: test\ndefaults: {{timeout: 3s}}\nprometheus:\n{items}")
    run = runner.run("-m", "daily or weekly")
    assert run.ret == 1, run.output
    assert f"Bearer {token}" in {h.get("Authorization") for h in _sent(http_server, "/echo/401/")}
    _assert_no_piece(token, bundle_texts(run.output, run.bundle))


def _assert_no_piece(token: str, texts: dict[str, str]) -> None:
    """No 6 characters in a row of `token` anywhere: not even most of it survives a cut."""
    for start in range(len(token) - 5):
        piece = token[start : start + 6]
        for where, text in texts.items():
            assert piece not in text, f"{piece!r}, part of the token, in {where}"


def test_encodings_of_a_query_token_are_redacted(
    runner: Runner, http_server: HttpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Item 8: yarl re-encodes a `?token=` query; a redirect's Location quotes it once more."""
    token = "Qy/7+Vx=K2 é~!*"
    monkeypatch.setenv("TOKEN", token)
    runner.profile(
        http_profile(
            f"{{name: echo, url: '{http_server.base}/echo/401/0/q?token=${{TOKEN}}'}}",
            f"{{name: moved, url: '{http_server.base}/redirect-with-query?token=${{TOKEN}}'}}",
        )
    )
    run = runner.run("-m", "daily", "-rA", "--tb=long")
    assert run.ret == 1, run.output
    assert run.record("http.health[moved]")["observed"]["location"].startswith("/login?next=")
    assert "${TOKEN}" in run.record("http.health[echo]")["observed"]["body_excerpt"]
    assert "${TOKEN}" in run.record("http.health[moved]")["observed"]["location"]
    assert_nowhere(token, bundle_texts(run.output, run.bundle))


def test_an_at_sign_in_a_url_password_never_becomes_a_host(
    runner: Runner, http_server: HttpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Item 9: `http://ops:${PW}@host` with an @ and a / in PW looked up part of the password in DNS."""
    password = "pw@leak-part.invalid/rest%zz"
    monkeypatch.setenv("PW", password)
    runner.profile(http_profile(f"{{name: at, url: 'http://ops:${{PW}}@{_host_port(http_server)}/echo/401/0/at'}}"))
    run = runner.run("-m", "daily")
    assert run.ret == 1, run.output
    sent = {h.get("Authorization") for h in _sent(http_server, "/echo/401/0/at")}
    assert "Basic " + base64.b64encode(f"ops:{password}".encode()).decode() in sent  # the password, whole
    texts = bundle_texts(run.output, run.bundle)
    assert_nowhere(password, texts, user="ops")
    for where, text in texts.items():
        assert "leak-part" not in text, where


def test_a_dsn_password_with_percent_and_slash_loads_and_is_never_echoed(tmp_path: Path) -> None:
    """Item 9: a DSN password with % and / was echoed in full by `malformed DSN: invalid percent-encoded token`."""
    password = "p%zz/w@rd"
    path = tmp_path / "p.yaml"
    path.write_text("environment: t\npostgres:\n  - {name: db, dsn: 'postgresql://ops:${PW}@127.0.0.1:5432/app'}\n")
    loaded = load_profile(path, environ={"PW": password})
    assert conninfo_to_dict(loaded.profile.postgres[0].dsn)["password"] == password
    # A whole DSN from a secret that libpq cannot parse: libpq's words, not the token it stopped at.
    path.write_text("environment: t\npostgres:\n  - {name: db, dsn: '${DSN}'}\n")
    with pytest.raises(ProfileError) as caught:
        load_profile(path, environ={"DSN": f"postgresql://ops:{password}@db/app"})
    assert "malformed DSN: invalid percent-encoded token" in str(caught.value)
    assert "p%zz" not in str(caught.value)


def test_a_kubernetes_body_is_redacted_before_it_is_cut(
    runner: Runner, tls_server: TlsServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Item 7: a non-JSON API answer was cut at 200 bytes, then redacted: most of the token survived the cut."""
    token = "Zq7VxK2mW9pL4sT8nR3yB6cH1dF5g"
    monkeypatch.setenv("K8S_TOKEN", token)
    items = []
    for pad in range(0, 220, 20):  # wherever the echoed header sits, one cut falls inside the token
        served = ServedApi(f"{tls_server.base}/echo/401/{pad}/k", tls_server.ca_file.read_bytes())
        config = write_kubeconfig(tmp_path / f"kubeconfig-{pad}", served, token="from-the-kubeconfig", context="main")
        items.append(
            f"{{name: k{pad}, kubeconfig: '{config}', token: '${{K8S_TOKEN}}', namespaces: [default], timeout: 10s}}"
        )
    runner.profile(kube_profile(*items))
    run = runner.run("-m", "daily")
    assert run.ret == 1, run.output
    assert "rejected the credentials" in run.output
    _assert_no_piece(token, bundle_texts(run.output, run.bundle))
