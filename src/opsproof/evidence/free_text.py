"""Which fields of a run's results are free text: the only ones the redactor rewrites.

A secret that is also a word (`pass`, `error`) must never corrupt the evidence, so
structure (outcomes, ids, check and target names, kinds, severities, markers, controls,
waivers, the summary and every JSON key) is never redacted; free text always is.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from opsproof.redaction import Redactor

# A check record's free text.
CHECK_FREE_TEXT = ("message", "observed", "expected")
# The run's free text; the rest of `run` (ids, environment, times, status) is structure.
RUN_FREE_TEXT = ("command", "host", "user", "profile", "selection", "change")


def redact_results(results: dict[str, Any], redactor: Redactor) -> dict[str, Any]:
    """The last pass before any format is written: the free text of the run and of every record, redacted."""
    return {
        **results,
        "run": redactor.redact_fields(results["run"], RUN_FREE_TEXT),
        "checks": [redactor.redact_fields(check, CHECK_FREE_TEXT) for check in results["checks"]],
    }
