"""The opsproof section of pytest's terminal summary: what an operator reads first."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from opsproof import outcomes
from opsproof.compliance.change import describe_change

if TYPE_CHECKING:
    from opsproof.run.state import RunState


def write_summary(reporter: Any, state: RunState) -> None:
    records = list(state.records.values())
    if not records and not state.unmatched_waivers:
        return
    reporter.write_sep("=", "opsproof summary", bold=True)
    change = describe_change(state.change)
    reporter.write_line(
        f"environment {state.loaded.profile.environment}, fail-on {state.fail_on}" + (f"; {change}" if change else "")
    )
    order = {o: i for i, o in enumerate(outcomes.OUTCOMES)}
    notable = sorted(
        (r for r in records if r["outcome"] != "passed"),
        key=lambda r: (order[r["outcome"]], -outcomes.SEVERITY_RANK.get(r["severity"], 0), r["check"]),
    )
    for record in notable:
        blocking = outcomes.is_blocking(record["outcome"], record["severity"], state.fail_on)
        mark = " BLOCKING" if blocking else ""
        colour = {"red": True} if blocking else {"yellow": True}
        reporter.write_line(
            f"{record['outcome'].upper():8} {record['severity']:8} {record['check']}: {record['message']}{mark}",
            **colour,
        )
        waiver = record.get("waiver")
        if waiver and waiver["status"] == "applied":
            reporter.write_line(
                f"{'':17} waived by {waiver['ticket']} ({waiver['reason']}), approved by {waiver['approved_by']}, "
                f"until {waiver['expires']}"
            )
    for waiver in state.unmatched_waivers:
        reporter.write_line(
            f"waiver {waiver['ticket']} ({waiver['check']!r}) matched no check in this run", yellow=True
        )
    for line in state.shipped:  # the history, the upload
        reporter.write_line(line)
    counts = {o: sum(1 for r in records if r["outcome"] == o) for o in outcomes.OUTCOMES}
    reporter.write_line(", ".join(f"{n} {o}" for o, n in counts.items() if n) or "no checks")
