"""The Markdown a CI job shows: GitHub Actions' `$GITHUB_STEP_SUMMARY` (appended, as each step may add its own)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from opsproof import outcomes
from opsproof.model.results import CheckRecord, Results

LISTED = 50  # rows per table: a summary is read by people; the bundle has everything


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")[:300]


def step_summary(results: Results, bundle: str | None) -> str:
    """Verdict, blocking checks, warnings (and waived / maintenance), and where the bundle is."""
    run, checks = results.run, results.checks
    verdict = {0: "passed", 1: "FAILED"}.get(run.exit_code, run.status)
    icon = ":white_check_mark:" if run.exit_code == 0 else ":x:"
    counts = ", ".join(f"{n} {o}" for o, n in results.summary.by_outcome.items() if n)
    lines = [
        f"## {icon} opsproof {run.environment}: {verdict} (exit {run.exit_code})",
        "",
        f"{counts or 'no checks'} · fail-on `{run.fail_on}` · run `{run.id}`",
        "",
    ]
    blocking = [
        c for c in checks if outcomes.is_blocking(c.outcome, c.severity, run.fail_on, held=c.maintenance is not None)
    ]
    lines += _table("Blocking", blocking)
    lines += _table("Inside maintenance windows (not blocking)", [c for c in checks if c.maintenance], window=True)
    lines += _table("Warnings", [c for c in checks if c.outcome == "warned"])
    lines += _table("Waived", [c for c in checks if c.outcome == "waived"])
    if bundle is not None:
        lines += [f"Evidence bundle: `{bundle}` (`opsproof verify {bundle}`)", ""]
    else:
        lines += ["**No evidence bundle could be written**: see the job's log.", ""]
    return "\n".join(lines) + "\n"


def _table(title: str, rows: list[CheckRecord], window: bool = False) -> list[str]:
    if not rows:
        return []
    head = ["check", "severity", "outcome", "window" if window else None, "message"]
    columns = [h for h in head if h]
    out = [f"### {title} ({len(rows)})", "", "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows[:LISTED]:
        cells = [f"`{_cell(row.check)}`", _cell(row.severity), _cell(row.outcome)]
        if window and row.maintenance is not None:
            cells.append(_cell(row.maintenance.name))
        cells.append(_cell(row.message))
        out.append("| " + " | ".join(cells) + " |")
    if len(rows) > LISTED:
        out.append(f"\n… and {len(rows) - LISTED} more in the bundle.")
    return [*out, ""]


def append_step_summary(path: Path, text: str) -> None:
    with open(path, "a", encoding="utf-8") as out:
        out.write(text)
