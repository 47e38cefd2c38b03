"""report.html's embedded facts (`evidence.html_facts`): facts written alike are held once, in the rows' order.

The document's format is in the module's docstring; the page's script reads it (tests/evidence/test_html_chromium.py
draws rows from it in a real browser). These say which observed/expected facts are one entry of `d`.
"""

from __future__ import annotations

import copy
from typing import Any

from helpers.pages import make_check

from opsproof.evidence.html_facts import FactsData, FactsDrafter


class Text(str):
    """A text of a type of its own, as a check of one's own may put in its facts."""


def _document(observed: list[Any], expected: Any = None) -> dict[str, Any]:
    facts = FactsData()
    for row, value in enumerate(observed):
        facts.add(row, make_check(row, "passed", "low", observed=value, expected=expected))
    return facts.document()


def test_facts_written_alike_are_one_entry_in_the_order_the_rows_first_hold_them() -> None:
    document = _document([{"a": 1}, {"a": True}, {"a": 1.0}, {"a": 1}, {"a": True}, {"a": 1.0}], {"status": [200]})
    assert document["t"][1:] == ["[200]"] and document["k"] == [["a"], ["status"]]
    # 1, True and 1.0 are equal in Python, but written 1, true and "1.0": three entries, not one.
    assert document["d"] == [[0, 1], [1, [1, 2]], [0, True], [0, ["1.0", 1]]]
    assert [row[7:] for row in document["c"]] == [[0, 1], [2, 1], [3, 1], [0, 1], [2, 1], [3, 1]]


def test_facts_held_by_one_row_stay_in_it() -> None:
    document = _document([{"a": 1, "b": "one"}, {"a": 2, "b": "two"}], {"status": [200]})
    assert document["d"] == [[1, [1, 2]]]  # only the expected facts, shared by both rows
    assert [row[7:] for row in document["c"]] == [[[0, 1, "one"], 0], [[0, 2, "two"], 0]]


def test_a_text_of_its_own_type_is_one_entry_with_a_text_only_where_they_are_written_alike() -> None:
    document = _document([{"a": Text("ab")}, {"a": "ab"}, {"a": Text("xxxxx")}, {"a": "xxxxx"}])
    # "ab" is too short to share: both rows write it out, one entry. "xxxxx" is shared (t[1]): the plain text is
    # written as its reference, the text of its own type as it is, so those two are not written alike.
    assert document["t"][1:] == ["xxxxx"]
    assert document["d"] == [[0, "ab"]]
    assert [row[7] for row in document["c"]] == [0, 0, [0, "xxxxx"], [0, [1]]]


def test_drafts_made_ahead_are_left_as_they_were_made() -> None:
    """A draft made as its check ended is the run's: a page made of it (twice, should a child fail) never changes it."""
    checks = [make_check(row, "passed", "low", expected={"status": [200]}) for row in range(4)]
    drafter = FactsDrafter()
    drafts = [drafter.record(check) for check in checks]
    made = copy.deepcopy(drafts)
    pages = []
    for _ in range(2):
        facts = FactsData()
        for row, (check, draft) in enumerate(zip(checks, drafts, strict=True)):
            facts.add(row, check, draft)
        pages.append(facts.script())
    assert drafts == made
    assert pages[0] == pages[1]
    alone = FactsData()
    for row, check in enumerate(checks):
        alone.add(row, check)
    assert alone.script() == pages[0]


def test_a_drafter_holds_one_list_of_the_short_facts_drafted_alike() -> None:
    """The same thresholds in thousands of records: one list, which the page finds at once; 1 and True are two."""
    drafter = FactsDrafter()
    one, two, other = (
        drafter.record(make_check(row, "passed", "low", expected=expected))[0][8]
        for row, expected in enumerate([{"x": 1}, {"x": 1}, {"x": True}])
    )
    assert one is two and one == [("x",), 1]
    assert other == [("x",), True] and other is not one
