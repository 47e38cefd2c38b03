"""The opsproof section of pytest's terminal summary: what an operator reads first."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from opsproof import outcomes
from opsproof.compliance.change import describe_change
from opsproof.model.results import CheckRecord, Maintenance, Waiver


def write_summary(
    reporter: Any,
    *,
    environment: str,
    fail_on: str,
    change: dict[str, Any] | None,
    records: Sequence[CheckRecord],
    unmatched: Sequence[Waiver],
    shipped: Sequence[str],
    unmatched_windows: Sequence[Maintenance] = (),
) -> None:
    if not records and not unmatched and not unmatched_windows:
        return
    reporter.write_sep("=", "opsproof summary", bold=True)
    changed = describe_change(change)
    reporter.write_line(f"environment {environment}, fail-on {fail_on}" + (f"; {changed}" if changed else ""))
    order = {o: i for i, o in enumerate(outcomes.OUTCOMES)}
    notable = sorted(
        (r for r in records if r.outcome != "passed"),
        key=lambda r: (order[r.outcome], -outcomes.SEVERITY_RANK.get(r.severity, 0), r.check),
    )
    for record in notable:
        blocking = outcomes.is_blocking(record.outcome, record.severity, fail_on, held=record.maintenance is not None)
        mark = " BLOCKING" if blocking else ""
        colour = {"red": True} if blocking else {"yellow": True}
        reporter.write_line(
            f"{record.outcome.upper():8} {record.severity:8} {record.check}: {record.message}{mark}", **colour
        )
        waiver = record.waiver
        if waiver is not None and waiver.status == "applied":
            reporter.write_line(
                f"{'':17} waived by {waiver.ticket} ({waiver.reason}), approved by {waiver.approved_by}, "
                f"until {waiver.expires}"
            )
        window = record.maintenance
        if window is not None:
            ticket = f", ticket {window.ticket}" if window.ticket else ""
            reporter.write_line(
                f"{'':17} inside maintenance window {window.name} ({window.schedule}{ticket}): not paged, not blocking"
            )
    for unused_window in unmatched_windows:
        reporter.write_line(
            f"maintenance window {unused_window.name} ({unused_window.checks!r}) matched no check in this run",
            yellow=True,
        )
    for unused in unmatched:
        reporter.write_line(f"waiver {unused.ticket} ({unused.check!r}) matched no check in this run", yellow=True)
    for line in shipped:  # the history, the upload, the signals
        reporter.write_line(line)
    counts = {o: sum(1 for r in records if r.outcome == o) for o in outcomes.OUTCOMES}
    reporter.write_line(", ".join(f"{n} {o}" for o, n in counts.items() if n) or "no checks")
