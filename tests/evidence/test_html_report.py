"""report.html: self-contained, escaped, failures first, fast, and well-formed."""

from __future__ import annotations

import base64
import hashlib
import itertools
import re
import time
from datetime import date
from typing import Any

from helpers.pages import HOSTILE, OUTCOMES, make_check, make_results, parse, split_scripts

from opsproof.evidence.html import render_html
from opsproof.evidence.record_view import RecordView
from opsproof.model.results import Results


def test_page_is_self_contained() -> None:
    page = render_html(make_results(30))
    parser = parse(page)
    for tag, attrs in parser.tags:
        for name in ("src", "href", "action", "srcset", "poster"):
            value = (attrs.get(name) or "").strip().lower()
            assert not value.startswith(("http:", "https:", "//", "data:", "file:")), (tag, name, value)
        assert tag not in ("link", "img", "iframe", "object", "embed"), tag
        assert not [name for name in attrs if name.startswith("on")], (tag, attrs)  # no inline handlers
    # Two scripts, both inline: the facts of the collapsed rows (data, never run) and the page's own code,
    # the only code the Content-Security-Policy allows (by its hash; no 'unsafe-inline' for scripts).
    assert [attrs for tag, attrs in parser.tags if tag == "script"] == [
        {"type": "application/json", "id": "check-facts"},
        {},
    ]
    markup, facts, code = split_scripts(page)
    assert "<script" not in markup and facts and code
    digest = base64.b64encode(hashlib.sha256(code.encode()).digest()).decode()
    policy = re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', page)
    assert policy is not None
    assert policy.group(1) == f"default-src 'none'; style-src 'unsafe-inline'; script-src 'sha256-{digest}'"
    assert not re.search(r"fetch\(|XMLHttpRequest|import\(|innerHTML|eval\(", code)
    assert not re.search(r"<link\b[^>]*stylesheet", page, re.I)
    assert not re.search(r"@import|url\(", page, re.I)  # CSS can fetch too


def test_tags_balance() -> None:
    results = make_results(50)
    results["checks"][0]["message"] = HOSTILE + "</details></table>"
    parser = parse(render_html(results))
    assert parser.problems == []
    assert parser.stack == []


def test_failures_come_before_passes() -> None:
    page = render_html(make_results(60))
    positions = {o: [m.start() for m in re.finditer(f"{o.upper()}-MESSAGE-", page)] for o in OUTCOMES}
    order = ("failed", "error", "warned", "waived", "skipped", "passed")
    for earlier, later in itertools.pairwise(order):
        assert max(positions[earlier]) < min(positions[later]), (earlier, later)


def test_within_an_outcome_severity_then_check_id() -> None:
    results = make_results(0)
    results["checks"] = [
        make_check(3, "failed", "low"),
        make_check(2, "failed", "critical"),
        make_check(1, "failed", "medium"),
        make_check(0, "failed", "critical"),
    ]
    page = render_html(results)
    found = [int(m.group(1)) for m in re.finditer(r"FAILED-MESSAGE-(\d+)", page)]
    assert found == [0, 2, 1, 3]


def test_hostile_values_are_escaped() -> None:
    results = make_results(6)
    check = results["checks"][0]
    check["message"] = HOSTILE
    check["target"] = '"><img src=x onerror=alert(2)>'
    check["observed"] = {HOSTILE: HOSTILE, "nested": {"k": HOSTILE}}
    check["severity"] = '"><script>x</script>'
    check["outcome"] = "failed onclick=alert(3)"
    results["run"]["environment"] = HOSTILE
    results["run"]["vars"] = {"X": HOSTILE}
    results["summary"]["waivers"]["unmatched"] = [{"check": HOSTILE, "ticket": HOSTILE}]
    page = render_html(results)
    markup, facts, _ = split_scripts(page)
    assert "<script" not in markup.lower()  # the page's own two scripts aside
    assert "<" not in facts and ">" not in facts  # nothing in the embedded facts can end their element
    assert "<img" not in page.lower()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    # Unknown words from the data never become class names or attributes.
    assert 'class="badge o-unknown"' in page
    assert "onclick=alert" not in page.replace("failed onclick=alert(3)", "")
    assert parse(page).problems == []


def test_totals_and_run_header_shown() -> None:
    results = make_results(12)
    page = render_html(results)
    for outcome, count in results["summary"]["by_outcome"].items():
        assert re.search(rf'<span class="n">{count}</span><span class="l">{outcome}</span>', page), outcome
    assert '<span class="n">12</span><span class="l">total</span>' in page
    for text in ("demo", "ops-runner-1", "ab12cd34", "/work/main/profiles/demo.yaml", "DEMO_PORT", "9f1c2b7e4d"):
        assert text in page
    assert "2026-11-24 10:45:00.123 UTC" in page
    assert "Blocking: 4 checks made this run fail" in page


def test_waivers_shown() -> None:
    results = make_results(6)
    results["checks"][2]["outcome"] = "waived"
    results["checks"][2]["waiver"] = {
        "check": "*[svc-2]*",
        "reason": "vendor outage",
        "ticket": "OPS-123",
        "approved_by": "platform-lead",
        "expires": "2026-12-31",
        "status": "applied",
    }
    results["checks"][3]["outcome"] = "failed"
    results["checks"][3]["waiver"] = {
        "check": "*[svc-3]*",
        "ticket": "OPS-77",
        "expires": "2026-01-01",
        "status": "expired",
    }
    results["summary"]["waivers"] = {
        "applied": ["OPS-123"],
        "expired": ["OPS-77"],
        "unmatched": [
            {"check": "*[gone]*", "reason": "old", "ticket": "OPS-999", "approved_by": "cto", "expires": "2027-01-01"}
        ],
    }
    page = render_html(results)
    assert "OPS-123" in page and "vendor outage" in page and "platform-lead" in page
    assert "Waiver expired" in page and "OPS-77" in page
    assert "Waivers that matched nothing" in page
    unmatched = page[page.index("Waivers that matched nothing") :]
    assert "OPS-999" in unmatched and "*[gone]*" in unmatched


def test_zero_checks_render() -> None:
    results = make_results(0)
    results["run"]["status"] = "no_checks"
    results["run"]["exit_code"] = 5
    page = render_html(results)
    assert "no checks" in page.lower()
    assert parse(page).problems == []


def test_odd_input_does_not_crash() -> None:
    check = make_check(0, "failed", "high", target=None, observed={}, expected=None, markers=None)
    check.pop("duration_s")
    odd: dict[str, Any] = {"run": {"status": None, "profile": None}, "checks": [check, "not a record"], "summary": {}}
    page = render_html(odd)
    assert "(malformed record)" in page
    assert parse(page).problems == []
    assert parse(render_html({})).problems == []


def test_passed_collapsed_failures_open() -> None:
    page = render_html(make_results(6))
    details = re.findall(r'<details id="check-\d+" class="check o-(\w+)"( open)?>', page)
    # Issue 18: the blocking checks open (make_results blocks on every failed and error); the rest of
    # what needs attention one click away, its facts in the page all the same; passed ones facts on demand.
    assert {o for o, is_open in details if is_open} == {"failed", "error"}
    rows = dict(re.findall(r'<details id="check-\d+" class="check o-(\w+)"[^>]*>(.*?)</details>', page, re.S))
    assert '<div class="body">' in rows["warned"] and '<div class="body">' in rows["failed"]
    assert '<div class="body">' not in rows["passed"]


def test_thousand_checks_render_fast() -> None:
    results = make_results(1000)
    render_html(results)  # warm-up: imports and first-call costs are not what this measures
    start = time.perf_counter()
    page = render_html(results)
    took = time.perf_counter() - start
    assert took < 1.0, took
    assert page.count('class="check ') == 1000


def test_a_results_model_renders_the_page_its_dump_renders() -> None:
    """The model is read through views (`RecordView`), not dumped: the page must be the dump's, byte for byte.

    With what a record may hold besides plain JSON: a waiver, a maintenance window, a key this
    version does not know, nested facts, and a tuple and an object a check of one's own observed.
    """
    document = make_results(240)
    checks = document["checks"]
    checks[3]["waiver"] = {
        "check": "http.*",
        "reason": "known",
        "ticket": "OPS-7",
        "approved_by": "lead",
        "expires": "2099-01-01",
        "status": "applied",
    }
    checks[4]["maintenance"] = {"name": "patching", "checks": "http.*", "schedule": "tue 02:00-04:00 UTC"}
    checks[5]["team"] = {"name": "payments", "pager": ["a", 1]}
    checks[6]["observed"] = {"pair": (1, 2), "when": date(2026, 11, 24), "nested": {"a": [1, {"b": None}]}}
    checks[7]["measures"] = {"latency_ms": 12.5}
    document["run"]["change"] = None
    results = Results.model_validate(document)
    assert render_html(results) == render_html(results.dump())
    for model in results.checks:
        view = RecordView(model)
        dumped = model.model_dump(exclude_unset=True)
        assert list(view) == list(dumped) and dict(view) == dumped
        assert view["not-a-key"] is None and view.get("not-a-key", "x") == "x"
