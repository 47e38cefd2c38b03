"""report.html's collapsed rows in a real browser: their facts exist only once a row is opened, drawn exactly as the
server draws an open row's, and a secret in them is in no encoding anywhere.

Opening a row: the page opens (and draws) the row a link points at, so `file://.../report.html#check-N` in headless
Chromium, dumped after load, is the page after a reader clicked that row. Skipped where chromium is not installed.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from helpers.browser import CHROMIUM, SKIP_REASON, dump_dom, rendered
from helpers.pages import HOSTILE, make_results

from conftest import SECRET, HttpServer, Runner, http_profile
from opsproof.evidence.html import render_html
from opsproof.evidence.html_facts import script_safe_json
from opsproof.evidence.html_rows import check_body
from opsproof.evidence.page import duration, esc
from opsproof.redaction import encoded_forms

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason=SKIP_REASON)

# Every kind of fact the page's script must write as page.kv_table does: the types JSON and JavaScript say
# differently (5.0, 1e-05, 2**60, 1e16), nested values, empty and missing ones, markup from a hostile server.
ODD_FACTS: dict[str, Any] = {
    "status": 200,
    "ratio": 0.0776,
    "whole_float": 5.0,
    "tiny": 1e-05,
    "huge": 1e16,
    "big_int": 2**60,
    "negative": -3,
    "ok": True,
    "missing": None,
    "empty": "",
    "nested": {"a": [1, 2], "b": {"c": None}},
    "list": ["x", 2],
    "hostile": HOSTILE + "</script><script>alert(2)</script>",
    "shared": "application/json",  # occurs in every record: written once, referenced
}


class _Shape(HTMLParser):
    """Markup as a list of (start tag with its attributes | text | end tag), entities decoded, <tbody> ignored."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.events: list[tuple[str, ...]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag != "tbody":
            self.events.append(("start", tag, *sorted(f"{k}={v}" for k, v in attrs)))

    def handle_endtag(self, tag: str) -> None:
        if tag != "tbody":
            self.events.append(("end", tag))

    def handle_data(self, data: str) -> None:
        if self.events and self.events[-1][0] == "text":
            self.events[-1] = ("text", self.events[-1][1] + data)
        else:
            self.events.append(("text", data))


def _shape(markup: str) -> list[tuple[str, ...]]:
    parser = _Shape()
    parser.feed(markup)
    parser.close()
    return parser.events


def _row(dom: str, anchor: str) -> str:
    found = re.search(rf'<details id="{anchor}"[^>]*>.*?</details>', dom, re.S)
    assert found, anchor
    return found.group(0)


def _anchor_of(page: str, check: str) -> str:
    found = re.search(rf'<details id="(check-\d+)"[^>]*><summary>(?:(?!</summary>).)*{re.escape(check)}<', page, re.S)
    assert found, check
    return found.group(1)


def test_a_passed_checks_facts_are_drawn_only_when_it_is_opened_exactly_as_the_server_draws_them(
    tmp_path: Path,
) -> None:
    results = make_results(12)
    checks = results["checks"]
    checks[0].update(observed=ODD_FACTS, expected="not a dict")  # passed
    checks[6].update(observed={}, expected=None, target=None, markers=[], started_at="not a time")  # passed
    checks[5]["waiver"] = {  # waived
        "check": "*svc-5*",
        "reason": "vendor outage <b>",
        "ticket": "OPS-123",
        "approved_by": "platform-lead",
        "expires": "2026-12-31",
        "status": "applied",
    }
    page_file = tmp_path / "report.html"
    page = render_html(results)
    page_file.write_text(page)

    before = dump_dom(page_file, tmp_path)
    for number in (0, 5, 6):
        anchor = _anchor_of(page, f"http.health[svc-{number:04d}]")
        row = _row(before, anchor)
        assert " open" not in row.split(">", 1)[0] and 'class="body"' not in row  # facts not in the DOM yet
        after = dump_dom(f"{page_file.as_uri()}#{anchor}", tmp_path)
        opened = _row(after, anchor)
        assert 'open=""' in opened.split(">", 1)[0]
        drawn = opened[opened.index('<div class="body">') : opened.rindex("</details>")]
        check = checks[number]
        assert _shape(drawn) == _shape(check_body(check, esc(duration(check["duration_s"]))))
        # Only the row that was opened: the others still have no facts in the DOM.
        assert after.count('<div class="body">') == before.count('<div class="body">') + 1
        # The hostile server's markup was drawn as text (the shapes match: text where the server has text),
        # and no element came of it.
        assert after.count("<script") == 2
    assert "alert(1)" not in " ".join(rendered(page_file, tmp_path).text)  # not drawn until opened


def test_a_secret_in_a_passed_checks_facts_is_in_no_encoding_in_the_page_or_what_it_draws(
    runner: Runner, http_server: HttpServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("API_TOKEN", SECRET)
    # The echo endpoint answers 200 with the request's headers and query in its body: the check passes and its
    # observed body holds the secret, so it goes into the facts embedded for the collapsed rows.
    runner.profile(
        http_profile(
            f"{{name: echoes, url: '{http_server.base}/echo/200/0?token=${{API_TOKEN}}', "
            "headers: {Authorization: 'Bearer ${API_TOKEN}'}}",
            f"{{name: up, url: '{http_server.base}/health'}}",
        )
    )
    run = runner.run("-m", "daily")
    assert run.record("http.health[echoes]")["outcome"] == "passed", run.output
    # The server really got it (and echoed it): the redaction is tested, not vacuous.
    assert any(headers.get("Authorization") == f"Bearer {SECRET}" for _, _, headers in http_server.requests)
    page_file = run.bundle / "report.html"
    page = page_file.read_text()
    forms = encoded_forms(SECRET) | {script_safe_json(SECRET)[1:-1]}
    anchor = _anchor_of(page, "http.health[echoes]")
    facts = page[page.index('id="check-facts">') :]
    assert "${API_TOKEN}" in facts  # the echoed fact is there, redacted
    opened = _row(dump_dom(f"{page_file.as_uri()}#{anchor}", tmp_path), anchor)
    assert "Bearer ${API_TOKEN}" in opened
    for text, where in ((page, "report.html"), (opened, "the row drawn in Chromium")):
        for form in forms:
            assert form not in text, f"secret ({form!r}) leaked into {where}"
