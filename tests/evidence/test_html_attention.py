"""report.html's first screen: the verdict, then what needs attention in order; the rest one line each, facts on demand."""

from __future__ import annotations

import json
import re
from typing import Any

from helpers.pages import make_check, make_results, parse, split_scripts

from opsproof.evidence.html import DRAWN_ATTENTION, OPEN_BLOCKING, render_html
from opsproof.run.results import summarize

WINDOW = {"name": "db-major", "checks": "*svc-0007*", "schedule": "tue 02:00-04:00 UTC", "ticket": "CHG-42"}


def _results(checks: list[dict[str, Any]], fail_on: str = "high") -> dict[str, Any]:
    results = make_results(0)
    results["checks"] = checks
    results["summary"] = summarize(checks, fail_on, [])  # the blocking list exactly as a run writes it
    results["run"].update(fail_on=fail_on, status="failed" if results["summary"]["blocking"] else "passed")
    return results


def _rows(page: str) -> list[tuple[str, int, bool]]:
    """Each row in page order: its anchor, the svc number in its check's name, and whether it starts open."""
    found = re.findall(r'<details id="(check-\d+)" class="check [^"]+"( open)?><summary>.*?\[svc-(\d+)\]', page)
    return [(anchor, int(number), bool(is_open)) for anchor, is_open, number in found]


def test_blocking_first_then_failed_below_fail_on_then_errors_then_warned_then_the_rest() -> None:
    page = render_html(
        _results(
            [
                make_check(1, "passed", "critical"),
                make_check(2, "warned", "critical"),
                make_check(3, "failed", "medium"),  # below --fail-on high
                make_check(4, "error", "low"),  # below
                make_check(5, "error", "high"),  # blocking
                make_check(6, "failed", "critical"),  # blocking
                make_check(7, "failed", "critical", maintenance=WINDOW),  # held by a window: not blocking
                make_check(8, "skipped", "low"),
                make_check(9, "waived", "high"),
            ]
        )
    )
    rows = _rows(page)
    # In the DOM: blocking (failed before error), failed that did not block (by severity), errors, warned,
    # then waived, skipped, passed. Anchors follow the page, so links from the controls land in order.
    assert [number for _, number, _ in rows] == [6, 5, 7, 3, 4, 2, 9, 8, 1]
    assert [anchor for anchor, _, _ in rows] == [f"check-{i}" for i in range(9)]
    assert [number for _, number, is_open in rows if is_open] == [6, 5]
    # The headings, in that order, each check with its message on its line.
    headings = [
        "Blocking: 2 checks made this run fail",
        "Failed, not blocking · 2",
        "Errors, not blocking · 1",
        "Warned · 1",
        "<h2>Severity &times; outcome</h2>",
        "<h2>Controls</h2>",
        "Other checks (3): waived, skipped, passed",
    ]
    positions = [page.index(h) for h in headings]
    assert positions == sorted(positions)
    assert re.search(r"<summary>[^\n]*FAILED-MESSAGE-7</span>", page)  # the message is on the row's line
    assert "maintenance db-major" in page[positions[1] : positions[2]]
    verdict = "Needs attention: 2 blocking (failed or error at or above --fail-on high); below it, 2 failed, 1 error and 1 warned."
    assert verdict in page and page.index(verdict) < positions[0]
    # The run's metadata is folded: one line, closed, above the attention list.
    assert re.search(r'<details class="runmeta"><summary>Run details', page)
    assert page.index('<details class="runmeta">') < positions[0]
    assert parse(page).problems == []


def test_a_run_that_passed_with_failures_below_the_line_says_so() -> None:
    page = render_html(_results([make_check(1, "passed", "high"), make_check(2, "failed", "low")]))
    assert "Nothing blocking: 1 failed below --fail-on high need a look." in page
    assert "<h2>Nothing blocking</h2>" in page and "Failed, not blocking · 1" in page
    quiet = render_html(_results([make_check(1, "passed", "high")]))
    assert "Nothing needs attention: no check failed, errored or warned." in quiet
    assert "Every check passed, was waived or skipped." in quiet


def test_a_flood_of_blocking_checks_starts_closed_and_the_facts_past_the_first_hundred_come_on_demand() -> None:
    checks = [make_check(i, "failed", "critical") for i in range(DRAWN_ATTENTION + 20)]
    page = render_html(_results(checks))
    rows = _rows(page)
    assert len(rows) == len(checks) and not any(is_open for _, _, is_open in rows)
    assert len(checks) > OPEN_BLOCKING
    bodies = re.findall(r'<details id="check-(\d+)"[^>]*>(.*?)</details>', page, re.S)
    drawn = [int(n) for n, row in bodies if '<div class="body">' in row]
    assert drawn == list(range(DRAWN_ATTENTION))
    facts = json.loads(split_scripts(page)[1])
    assert [n for n, record in enumerate(facts["c"]) if record] == list(range(DRAWN_ATTENTION, len(checks)))


def test_passed_rows_are_one_line_and_their_facts_are_embedded_once() -> None:
    results = _results([make_check(i, "passed", "high", observed={"marker": f"FACT-{i}", "n": i}) for i in range(200)])
    page = render_html(results)
    markup, facts_text, _ = split_scripts(page)
    # No facts as markup: no table, no id, no marker chips in the rows, one JSON document holding them.
    assert "FACT-" not in markup and '<table class="kv">' not in markup.split("<h2>Controls</h2>")[1]
    assert markup.count('class="check o-passed"') == 200
    facts = json.loads(facts_text)
    assert len(facts["c"]) == 200 and facts_text.count("FACT-") == 200
    assert facts["l"] == [["daily", "health"], ["SOC2:CC7.1", "ISO27001:A.8.16"]]  # each list written once
    assert len(facts["d"]) == 1  # the same expected dict, written once


def test_a_page_of_2000_checks_stays_small() -> None:
    """The page before issue 18 spent 1.55 KB a check on these records (every fact a table row); now 0.43 KB."""
    results = make_results(2000)
    page = render_html(results)
    facts = split_scripts(page)[1]
    assert len(page.encode()) < 2000 * 600, len(page.encode())
    assert len(facts.encode()) < 2000 * 150, len(facts.encode())


def test_lists_and_dicts_written_alike_but_of_other_types_keep_their_own_texts() -> None:
    """The texts of flat facts are remembered by their items *and* types: 1, 1.0 and True are equal in Python."""
    values: list[Any] = [[1], [1.0], [True], {"a": 1}, {"a": True}, {"a": 1.0}, [1], {"a": 1}, ("x", None)]
    results = _results([make_check(i, "passed", "high", observed={"v": value}) for i, value in enumerate(values)])
    facts = json.loads(split_scripts(render_html(results))[1])
    texts = facts["t"]

    def text(record: list[Any]) -> str:
        observed = record[7]  # [shape, the "v" fact], or the index of one written alike more than once
        value = (facts["d"][observed] if isinstance(observed, int) else observed)[1]
        written, how = value  # [text or i, 2]: a nested list/dict as compact JSON
        assert how == 2
        return texts[written] if isinstance(written, int) else written

    assert [text(record) for record in facts["c"]] == [
        "[1]",
        "[1.0]",
        "[true]",
        '{"a": 1}',
        '{"a": true}',
        '{"a": 1.0}',
        "[1]",
        '{"a": 1}',
        '["x", null]',
    ]
