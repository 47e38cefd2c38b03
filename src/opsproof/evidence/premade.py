"""Pieces of a bundle's files made for one check as it ends, ahead of the bundle.

During the checks the run waits for facts most of the time; after the last one, everything
it does delays its exit. So each check's line of results.json, its `<testcase>` of junit.xml
and its one-line row of report.html (with the key the page sorts it by and its facts drafted
for the page's embedded data) are made while a later check waits (`evidence.premake.make_pieces`,
from the final record: redacted as the bundle shows it), and the writers join them. The
writers take a piece only for the very record object it was made of: a record copied,
replaced or redacted again is rendered as it is. The files are the same bytes either way
(tests/evidence/test_premade.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from opsproof.model.results import CheckRecord

if TYPE_CHECKING:
    from opsproof.evidence.html_facts import Draft


@dataclass(frozen=True, slots=True)
class CheckPieces:
    """One check's pieces, and the record they were made of."""

    record: CheckRecord
    json: str  # its line of results.json, without the separator (results_json.check_line)
    junit: str  # its <testcase> element (junit.testcase)
    row: str  # its report.html one-line row after the anchor (html_rows.compact_rest)
    key: tuple[int, int, str, str]  # where report.html sorts it (html.check_sort_key)
    draft: Draft  # its record in report.html's embedded facts, drafted (html_facts.FactsDrafter.record)


class Premade:
    """The pieces made ahead for some of a document's checks, each found by its record."""

    __slots__ = ("_pieces",)

    def __init__(self) -> None:
        self._pieces: dict[int, CheckPieces] = {}

    def add(self, pieces: CheckPieces) -> None:
        self._pieces[id(pieces.record)] = pieces

    def get(self, record: object) -> CheckPieces | None:
        """The pieces made of this very record object, or None (made of none, or of another)."""
        pieces = self._pieces.get(id(record))
        return pieces if pieces is not None and pieces.record is record else None

    def __len__(self) -> int:
        return len(self._pieces)
