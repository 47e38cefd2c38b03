"""Each way a secret once reached an output (issue 13, items 5-9), staged for real.

A server that echoes what it was sent, a real PostgreSQL history store, a redirect:
every test proves the secret really travelled (the server saw it) and then that no
output shows it in any encoding `encoded_forms` knows.
"""

from __future__ import annotations

import uuid
from pathlib import Path

from history_servers import history_pg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from conftest import HttpServer, Runner, http_profile
from opsproof.localpg import LocalPostgres
from opsproof.redaction import encoded_forms

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
