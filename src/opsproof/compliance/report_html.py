"""report.html of a period report: one self-contained page an auditor reads.

It answers the four questions in order: did each control run every period (the daily
chart, expected against actual runs), what did it see (pass rates), who handled the
exceptions (each one with its resolution or waiver), and can the evidence be proved
unchanged (every bundle with its manifest hash, signature key and upload versions).
Like a bundle's report.html: everything escaped, nothing external, inline SVG only.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from markupsafe import Markup

from opsproof.compliance.periods import period_from_label
from opsproof.compliance.report_model import ControlRow, DayRow, PeriodReport, ReportSummary
from opsproof.evidence.page import environment
from opsproof.model.controls import framework_name

STATUS_COLOURS = {
    "failed": "#cf222e",
    "missed": "#6e7781",
    "maintenance": "#8250df",
    "waived": "#4f6d8f",
    "warned": "#d4a72c",
    "passed": "#2da44e",
    "none": "#eef1f4",
    "future": "#ffffff",
}
STATUS_WORDS = {
    "failed": "a check failed (not waived)",
    "missed": "no run",
    "maintenance": "failures only inside maintenance windows",
    "waived": "failures, all waived",
    "warned": "warnings only",
    "passed": "all passed",
    "none": "not expected",
    "future": "not yet",
}
EXCEPTION_STATUSES = ("open", "missed", "maintenance", "waived", "resolved")


def render_period_html(report: PeriodReport) -> str:
    summary = report.summary
    exceptions = report.exceptions
    counts = {s: sum(1 for e in exceptions if e.status == s) for s in EXCEPTION_STATUSES}
    return (
        environment("opsproof.compliance")
        .get_template("period.html.j2")
        .render(
            report=report,
            period=report.period,
            summary=summary,
            verdict=_verdict(summary),
            chart=_chart(report),
            controls=_controls(report.controls),
            exceptions=exceptions,
            groups=report.exception_groups,
            exception_counts=" · ".join(f"{n} {s}" for s, n in counts.items() if n),
            percent=_percent,
            STATUS_COLOURS=STATUS_COLOURS,
            STATUS_WORDS=STATUS_WORDS,
            period_css=Markup(_PERIOD_CSS),
        )
    )


def _verdict(summary: ReportSummary) -> tuple[str, str]:
    exceptions = summary.exceptions
    if exceptions.open or exceptions.missed or summary.attestations_missing:
        return "exceptions", "s-failed"
    return "no open exceptions", "s-passed"


def _percent(value: Any) -> str:
    return "\u2014" if value is None else f"{value * 100:.1f}%"


# --- the daily chart --------------------------------------------------------------------------


def _chart(report: PeriodReport) -> dict[str, Any] | None:
    """The daily chart's geometry: month ticks, and one row of cells per control (the first: all checks)."""
    days = report.days
    if not days:
        return None
    missed_days = {c.control: _missed_days(c) for c in report.controls}
    label_width, top = 150, 22
    cell = max(3.0, min(16.0, 900 / len(days)))
    row_height, gap = 14, 3
    rows = [("all checks", [d.status for d in days])]
    for control in (c.control for c in report.controls):
        statuses = []
        for d in days:
            found = d.controls.get(control)
            statuses.append(found or ("missed" if d.date in missed_days[control] else "none"))
        rows.append((control, statuses))
    width = label_width + cell * len(days) + 4
    height = top + len(rows) * (row_height + gap) + 4
    months = []
    for index, day in enumerate(days):
        when = date.fromisoformat(day.date)
        if index == 0 or when.day == 1:
            months.append({"x": f"{label_width + index * cell:.1f}", "label": f"{when:%b %Y}"})
    drawn = []
    for row, (name, statuses) in enumerate(rows):
        y = top + row * (row_height + gap)
        cells = [
            {
                "x": f"{label_width + index * cell:.1f}",
                "status": status,
                "fill": STATUS_COLOURS.get(status, "#ffffff"),
                "detail": _cell_detail(days[index], name, status, row == 0),
            }
            for index, status in enumerate(statuses)
        ]
        drawn.append({"name": name, "y": y, "overall": row == 0, "cells": cells})
    return {
        "width": f"{width:.0f}",
        "height": f"{height:.0f}",
        "tick_end": f"{height - 2:.0f}",
        "cell_width": f"{max(cell - 1, 1.5):.1f}",
        "row_height": row_height,
        "first": days[0].date,
        "last": days[-1].date,
        "months": months,
        "rows": drawn,
    }


def _missed_days(control: ControlRow) -> set[str]:
    """Every day of every period the control missed (a missed week greys the whole week)."""
    days: set[str] = set()
    for cadence, found in control.cadences.items():
        for label in found.missed:
            period = period_from_label(cadence, label)
            day = period.start
            while day < period.end:
                days.add(day.isoformat())
                day += timedelta(days=1)
    return days


def _cell_detail(day: DayRow, name: str, status: str, overall: bool) -> str:
    text = f"{day.date} {name}: {STATUS_WORDS.get(status, status)}"
    if overall and day.outcomes:
        counts = ", ".join(f"{n} {o}" for o, n in sorted(day.outcomes.items()))
        text += f" ({day.runs} run{'s' if day.runs != 1 else ''}: {counts})"
    return text


# --- tables -----------------------------------------------------------------------------------


def _controls(controls: list[ControlRow]) -> list[dict[str, Any]]:
    """The controls with a heading row before each framework, named in full."""
    rows: list[dict[str, Any]] = []
    framework = None
    for control in controls:
        if control.framework != framework:
            framework = control.framework
            rows.append({"framework": framework_name(framework)})
        missed = [label for c in control.cadences.values() for label in c.missed]
        rows.append({"control": control, "missed": missed})
    return rows


_PERIOD_CSS = """
.chartbox{overflow-x:auto;border:1px solid var(--line);border-radius:8px;padding:10px;background:#fff}
svg.chart text{font:11px var(--mono);fill:#57606a}svg.chart text.overall{font-weight:700;fill:var(--fg)}
svg.chart text.month{font:11px system-ui,sans-serif;fill:var(--muted)}
svg.chart .tick{stroke:#d0d7de;stroke-width:1}
svg.chart rect.c-future{stroke:#d0d7de;stroke-width:.5}
.legend{display:flex;flex-wrap:wrap;gap:4px 16px;margin-top:8px;font-size:12px;color:var(--muted)}
.key{display:inline-flex;align-items:center;gap:5px}
.swatch{display:inline-block;width:12px;height:12px;border-radius:2px;border:1px solid #d0d7de}
.count{display:inline-block;font-size:11.5px;margin-right:6px;white-space:nowrap}
.count.o-failed,.count.o-error,.bad{color:var(--failed);font-weight:600}
.count.o-waived{color:var(--waived)}.count.o-passed,.good{color:var(--passed)}
.xstatus{display:inline-block;border-radius:999px;padding:1px 8px;font-size:11px;font-weight:700;
text-transform:uppercase;color:#fff;background:var(--skipped)}
.xstatus.x-open{background:var(--failed)}.xstatus.x-missed{background:#57606a}
.xstatus.x-waived{background:var(--waived)}.xstatus.x-resolved{background:var(--passed)}
.xstatus.x-maintenance{background:#8250df}
tr.x-open td{background:#fff5f5}
ul.entries{margin:0;padding-left:16px;font-size:12.5px}
table.exceptions td{font-size:12.5px}
table.exceptions td.when{white-space:nowrap}.runs{font-size:11.5px;font-weight:600;color:var(--muted)}
.tablebox{overflow-x:auto}.day{white-space:nowrap}
@media (max-width:900px){table.exceptions td.when{white-space:normal}table.exceptions td{font-size:12px}}
.tiles .tile.o-warned .n{color:var(--warned)}
"""
