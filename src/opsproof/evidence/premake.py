"""Make one check's pieces of the bundle's files (`evidence.premade`) from its final record."""

from __future__ import annotations

from opsproof.evidence.html import check_sort_key
from opsproof.evidence.html_facts import FactsDrafter
from opsproof.evidence.html_rows import compact_rest
from opsproof.evidence.junit import testcase
from opsproof.evidence.premade import CheckPieces
from opsproof.evidence.record_view import RecordView
from opsproof.evidence.results_json import check_line
from opsproof.model.results import CheckRecord


def make_pieces(record: CheckRecord, drafter: FactsDrafter | None = None) -> CheckPieces:
    """Its results.json line, junit.xml testcase and report.html row and facts, as the writers would make them.

    `drafter`: one for the run's records, which share its texts of facts written alike.
    """
    view = RecordView(record)
    return CheckPieces(
        record,
        check_line(record),
        testcase(record),
        compact_rest(view),
        check_sort_key(view),
        (drafter or FactsDrafter()).record(view),
    )
