"""report.html: one self-contained page for the people who read an evidence bundle.

Readers are an SRE deciding at 7am whether anything needs them, and an auditor checking
what was verified, against which profile, and who waived what. So the page leads with the
verdict (status, blocking checks), then totals, then every check with failures first.

Rules the renderer keeps:
- Everything from `results` is escaped: observed facts and messages come from remote servers.
- Nothing external: no stylesheets, scripts, fonts or images; the bundle must read offline
  and years later, and the page must not phone home when an auditor opens it.
- Never crash on odd input (nulls, missing keys, wrong types): a broken report would hide
  the evidence it was meant to show. Unknown values are shown as they are, never dropped.
- Linear work per check (list of parts, one join) so a 1,000-check run renders instantly.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from markupsafe import Markup

from opsproof.evidence.html_maintenance import maintenance_section, maintenance_tag
from opsproof.evidence.page import (
    OUTCOME_ORDER,
    SEVERITY_ORDER,
    as_dict,
    as_list,
    as_text,
    chips,
    code,
    css_token,
    duration,
    environment,
    esc,
    kv_table,
    outcome_badge,
    severity_badge,
    timestamp,
)
from opsproof.model.controls import control_sort_key, control_title, framework_name, framework_of
from opsproof.model.results import Results

__all__ = ["control_sort_key", "load_template", "render_html"]

RUN_STATUSES = ("passed", "failed", "interrupted", "internal_error", "usage_error", "no_checks")
# Failures, errors and warnings are open; quieter outcomes collapse so failures dominate.
OPEN_OUTCOMES = frozenset({"failed", "error", "warned"})
SHOWN_PER_CONTROL = 20


def render_html(document: Results | dict[str, Any]) -> str:
    """report.html of a results document: typed, or as read from any results.json (old, foreign, damaged)."""
    results = Lenient(document.dump() if isinstance(document, Results) else as_dict(document))
    run = Lenient(as_dict(results.get("run")))
    checks = [_as_check(c) for c in as_list(results.get("checks"))]
    summary = as_dict(results.get("summary"))
    ordered = sorted(checks, key=_check_sort_key)
    # Anchors let the blocking list jump to the check; assigned after sorting so they follow the page.
    entries: list[dict[str, Any]] = [{"anchor": f"check-{i}", "check": check} for i, check in enumerate(ordered)]
    by_name: dict[str, str] = {}
    for entry in entries:
        by_name.setdefault(as_text(entry["check"].get("check")), entry["anchor"])
        by_name.setdefault(as_text(entry["check"].get("id")), entry["anchor"])
    status = as_text(run.get("status"), "unknown")
    blocking = [(name, by_name.get(as_text(name))) for name in as_list(summary.get("blocking"))]
    by_outcome = _by_outcome(summary, checks)
    return environment().get_template("report.html.j2").render(
        results=results,
        run=run,
        status=status,
        RUN_STATUSES=RUN_STATUSES,
        profile=Lenient(as_dict(run.get("profile"))),
        suite=Lenient(as_dict(run.get("suite"))),
        selection=Lenient(as_dict(run.get("selection"))),
        run_length=_run_length(run.get("started_at"), run.get("finished_at")),
        change=_change_rows(as_dict(run.get("change"))),
        blocking=blocking,
        totals=[(name, by_outcome.get(name, 0)) for name in [*OUTCOME_ORDER, *(k for k in by_outcome if k not in OUTCOME_ORDER)]],  # noqa: E501
        total=summary.get("total", len(checks)),
        severities=_severity_table(summary, checks),
        controls=_controls(entries),
        waivers=_waivers(as_dict(summary.get("waivers")), entries),
        # Escaped HTML already (built with page.esc), like the check rows.
        maintenance=Markup(
            maintenance_section(summary, [e["check"] for e in entries], [e["anchor"] for e in entries])
        ),
        groups=_groups(entries),
        checked=len(ordered),
        OPEN_OUTCOMES=OPEN_OUTCOMES,
    )


def load_template() -> None:
    """Compile report.html's template now (~0.1 s): the plugin calls it while the first probe runs."""
    environment().get_template("report.html.j2")


def _change_rows(change: dict[str, Any]) -> dict[str, Any]:
    """The change the run validated, each value with where it came from; nothing when none is known."""
    sources = as_dict(change.get("sources"))
    rows = [
        (label, change.get(key), cls, sources.get(key))
        for label, key, cls in (
            ("Change", "ticket", ""),
            ("Commit", "commit", "hash"),
            ("Image", "image_digest", "hash"),
        )
        if change.get(key)
    ]
    ci = as_dict(change.get("ci"))
    build = [ci[k] for k in ("provider", "ref", "build_id") if ci.get(k)] if ci else []
    return {"rows": rows, "ci": bool(ci), "build": build, "build_url": ci.get("build_url")}


def _by_outcome(summary: dict[str, Any], checks: list[dict[str, Any]]) -> dict[str, Any]:
    # summary is the record; count the checks only when an odd results.json has no summary.
    recorded = summary.get("by_outcome")
    if isinstance(recorded, dict):
        return recorded
    counted: dict[str, Any] = {}
    for c in checks:
        key = as_text(c.get("outcome"))
        counted[key] = counted.get(key, 0) + 1
    return counted


def _severity_table(summary: dict[str, Any], checks: list[dict[str, Any]]) -> dict[str, Any]:
    table = summary.get("by_severity")
    if not isinstance(table, dict):
        table = {}
        for c in checks:
            row = table.setdefault(as_text(c.get("severity")), {})
            row[as_text(c.get("outcome"))] = row.get(as_text(c.get("outcome")), 0) + 1
    severities = list(SEVERITY_ORDER) + [s for s in table if s not in SEVERITY_ORDER]
    extra = sorted({o for row in table.values() if isinstance(row, dict) for o in row if o not in OUTCOME_ORDER})
    outcomes = list(OUTCOME_ORDER) + extra
    rows = []
    for severity in severities:
        row = as_dict(table.get(severity))
        total = sum(v for v in row.values() if isinstance(v, int))
        rows.append({"severity": severity, "cells": [(o, row.get(o, 0)) for o in outcomes], "total": total})
    return {"outcomes": outcomes, "rows": rows}


def _controls(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Results rolled up by control: what an auditor asks first ("did CC7.1 operate?"); framework rows between."""
    counts: dict[str, Counter[str]] = {}
    open_checks: dict[str, list[dict[str, Any]]] = {}
    for entry in entries:
        check = entry["check"]
        outcome = as_text(check.get("outcome"))
        for control in dict.fromkeys(as_text(c) for c in as_list(check.get("controls"))):
            counts.setdefault(control, Counter())[outcome] += 1
            if outcome in OPEN_OUTCOMES or outcome not in OUTCOME_ORDER:
                open_checks.setdefault(control, []).append(entry)
    rows: list[dict[str, Any]] = []
    framework = None
    for control in sorted(counts, key=control_sort_key):
        if framework_of(control) != framework:  # one heading row per framework, named in full
            framework = framework_of(control)
            rows.append({"framework": framework_name(framework)})
        row = counts[control]
        listed = open_checks.get(control, [])
        rows.append(
            {
                "control": control,
                "title": control_title(control),
                "worst": next((o for o in OUTCOME_ORDER if row.get(o)), "skipped"),
                "cells": [(o, row.get(o)) for o in OUTCOME_ORDER],
                "open": listed[:SHOWN_PER_CONTROL],
                "more": len(listed) - SHOWN_PER_CONTROL,
            }
        )
    return rows


def _waivers(waivers: dict[str, Any], entries: list[dict[str, Any]]) -> dict[str, Any]:
    used = [entry for entry in entries if isinstance(entry["check"].get("waiver"), dict)]
    return {
        "used": used,
        "unmatched": [Lenient(as_dict(w)) for w in as_list(waivers.get("unmatched"))],
        "expired": as_list(waivers.get("expired")),
        "applied": as_list(waivers.get("applied")),
    }


def _check_sort_key(check: dict[str, Any]) -> tuple[int, int, str, str]:
    outcome = as_text(check.get("outcome"))
    # Unknown outcomes sort just after errors: a value the renderer does not know deserves a look.
    rank = OUTCOME_ORDER.index(outcome) if outcome in OUTCOME_ORDER else 1
    severity = as_text(check.get("severity"))
    sev_rank = SEVERITY_ORDER.index(severity) if severity in SEVERITY_ORDER else len(SEVERITY_ORDER)
    return (rank, sev_rank, as_text(check.get("check"), ""), as_text(check.get("id"), ""))


def _groups(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The checks by outcome (they arrive sorted, so each outcome is one contiguous group)."""
    groups: list[dict[str, Any]] = []
    for entry in entries:
        row = _CheckRow.of(entry["check"], entry["anchor"])
        if not groups or groups[-1]["outcome"] != row.outcome:
            groups.append({"outcome": row.outcome, "rows": []})
        groups[-1]["rows"].append(row)
    return groups


@dataclass(slots=True)
class _CheckRow:
    """One check as its row shows it: every text field is already escaped HTML (`esc`).

    A row's pieces are worked out in Python rather than in the template, and the template
    writes them inside `{% autoescape false %}`: over 1,000 checks, the template's own
    lookups, filters and escaping cost more than the page is worth waiting for (measured
    0.5 s against 0.05 s). Everything put in a field here must go through `esc` or one of
    the page functions, which escape what they are given.
    """

    anchor: str
    outcome: str
    outcome_token: str
    open: bool
    outcome_badge: str
    severity_badge: str
    name: str
    has_target: bool
    target: str
    message: str
    duration: str
    id: str
    kind: str
    started: str
    phase: str
    markers: str
    controls: str
    observed: str
    expected: str
    waiver: dict[str, Any] | None
    waiver_expired: bool
    maintenance: str  # the window's chip, escaped, or ""

    @classmethod
    def of(cls, check: dict[str, Any], anchor: str) -> _CheckRow:
        outcome = as_text(check.get("outcome"))
        waiver = check.get("waiver")
        waiver = waiver if isinstance(waiver, dict) else None
        target = check.get("target")
        shown_duration = esc(duration(check.get("duration_s")))
        return cls(
            anchor=anchor,
            outcome=outcome,
            outcome_token=css_token(outcome, OUTCOME_ORDER),
            open=outcome in OPEN_OUTCOMES or outcome not in OUTCOME_ORDER,
            outcome_badge=outcome_badge(outcome),
            severity_badge=severity_badge(check.get("severity")),
            name=esc(check.get("check", check.get("id"))),
            has_target=target not in (None, ""),
            target=esc(target),
            message=esc(check.get("message")),
            duration=shown_duration,
            id=code(check.get("id")),
            kind=esc(check.get("kind")),
            started=esc(timestamp(check.get("started_at"))),
            phase=esc(check.get("phase")),
            markers=chips(check.get("markers")),
            controls=chips(check.get("controls"), "control"),
            observed=kv_table(check.get("observed")),
            expected=kv_table(check.get("expected")),
            waiver=waiver,
            waiver_expired=waiver is not None and waiver.get("status") == "expired",
            maintenance=maintenance_tag(check),
        )


def _run_length(started: Any, finished: Any) -> str | None:
    try:
        took = (datetime.fromisoformat(str(finished)) - datetime.fromisoformat(str(started))).total_seconds()
    except (TypeError, ValueError):
        return None
    return duration(took)


class Lenient(dict[str, Any]):
    """A record as the template reads it: a key it does not have is None, never an error."""

    def __missing__(self, key: str) -> None:
        return None


def _as_check(value: Any) -> dict[str, Any]:
    # A record that is not an object is still evidence: show it as an error row rather than drop it.
    if isinstance(value, dict):
        waiver = value.get("waiver")
        return Lenient(value, waiver=Lenient(waiver)) if isinstance(waiver, dict) else Lenient(value)
    return Lenient(check="(malformed record)", outcome="error", message=as_text(value))
