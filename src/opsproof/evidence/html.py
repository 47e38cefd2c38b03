"""report.html: one self-contained page for the people who read an evidence bundle.

Readers are an SRE deciding at 7am whether anything needs them, and an auditor checking
what was verified, against which profile, and who waived what. So the first screen is the
verdict and what needs attention, in this order: the blocking checks (failed or error at
or above `--fail-on`: they made the run fail), then failed and error checks that did not
block (below `--fail-on`, or inside a maintenance window), then the warned, each with its
message. Then the totals by severity, the controls, waivers, maintenance windows, and the
other checks (waived, skipped, passed) as one-line rows. The run's metadata is folded.

Rules the renderer keeps:
- Everything from `results` is escaped: observed facts and messages come from remote servers.
- Nothing external: no stylesheets, scripts, fonts or images; the bundle must read offline
  and years later, and the page must not phone home when an auditor opens it. The one
  script is inline and allowed by its hash in the page's Content-Security-Policy.
- Never crash on odd input (nulls, missing keys, wrong types): a broken report would hide
  the evidence it was meant to show. Unknown values are shown as they are, never dropped.
- It opens at any size: the facts of the rows that start closed are not markup but one
  JSON document the page draws from when a row is opened (`html_facts`), so 10,000 checks
  make a page of a few MiB that Chromium opens in well under a second.
"""

from __future__ import annotations

import base64
import hashlib
from collections import Counter
from collections.abc import Mapping
from datetime import datetime
from functools import cache
from importlib import resources
from typing import TYPE_CHECKING, Any

from markupsafe import Markup

from opsproof.evidence.html_facts import FactsData
from opsproof.evidence.html_maintenance import maintenance_section
from opsproof.evidence.html_rows import check_row, compact_row
from opsproof.evidence.html_style import REPORT_CSS
from opsproof.evidence.page import (
    OUTCOME_ORDER,
    SEVERITY_ORDER,
    Lenient,
    as_dict,
    as_list,
    as_text,
    duration,
    environment,
)
from opsproof.evidence.record_view import RecordView
from opsproof.model.controls import control_sort_key, control_title, framework_name, framework_of
from opsproof.model.results import Results

if TYPE_CHECKING:
    from opsproof.evidence.premade import CheckPieces, Premade

__all__ = ["check_sort_key", "control_sort_key", "load_template", "render_html"]

RUN_STATUSES = ("passed", "failed", "interrupted", "internal_error", "usage_error", "no_checks")
# Failures, errors and warnings need attention; the controls table names them.
OPEN_OUTCOMES = frozenset({"failed", "error", "warned"})
SHOWN_PER_CONTROL = 20
# A few blocking checks start open, facts and all; more start closed, so all their names fit the first screen.
OPEN_BLOCKING = 3
# Checks needing attention whose facts are written into the page (readable without the script,
# and printed); past this many, a flood's facts come from the embedded data like the passed ones'.
DRAWN_ATTENTION = 100
ATTENTION_KEYS = ("blocking", "failed", "error", "warned")
CHUNK = 100  # one-line rows per chunk the browser lays out or skips as one


def render_html(document: Results | dict[str, Any], premade: Premade | None = None) -> str:
    """report.html of a results document: typed, or as read from any results.json (old, foreign, damaged).

    `premade`: the checks' rows made ahead (`evidence.premade`), used for the records they were made of.
    """
    ahead: dict[int, CheckPieces] = {}
    if isinstance(document, Results):
        # The run and the summary as dicts; the checks read from their models (`RecordView`), not dumped.
        head = document.model_dump(exclude_unset=True, exclude={"checks", "schema_"})
        results = Lenient(head, schema=document.schema_)
        checks: list[Mapping[str, Any]] = [RecordView(c) for c in document.checks]
        if premade is not None:
            for record, view in zip(document.checks, checks, strict=True):
                pieces = premade.get(record)
                if pieces is not None:
                    ahead[id(view)] = pieces
    else:
        results = Lenient(as_dict(document))
        checks = [_as_check(c) for c in as_list(results.get("checks"))]
    run = Lenient(as_dict(results.get("run")))
    summary = as_dict(results.get("summary"))
    status = as_text(run.get("status"), "unknown")
    blocking_names = [as_text(name) for name in as_list(summary.get("blocking"))]

    def sort_key(check: Mapping[str, Any]) -> tuple[int, int, str, str]:
        pieces = ahead.get(id(check))
        return pieces.key if pieces is not None else check_sort_key(check)

    attention, others = _partition(sorted(checks, key=sort_key), set(blocking_names))
    # Anchors follow the page: the attention list, then the other checks.
    entries: list[dict[str, Any]] = []
    for _, group in (*attention, *others):
        for check in group:
            entries.append({"anchor": f"check-{len(entries)}", "check": check})
    facts = FactsData()
    attention_html, others_html = _rows(attention, entries, facts, ahead), _rows(others, entries, facts, ahead)
    blocking_rows = attention[0][1] if attention and attention[0][0] == "blocking" else []
    listed = {as_text(c.get(k)) for c in blocking_rows for k in ("check", "id")}
    by_outcome = _by_outcome(summary, checks)
    script, script_hash = _script()
    template = environment().get_template("report.html.j2")
    return template.render(
        results=results,
        run=run,
        status=status,
        RUN_STATUSES=RUN_STATUSES,
        profile=Lenient(as_dict(run.get("profile"))),
        suite=Lenient(as_dict(run.get("suite"))),
        selection=Lenient(as_dict(run.get("selection"))),
        run_length=_run_length(run.get("started_at"), run.get("finished_at")),
        change=_change_rows(as_dict(run.get("change"))),
        blocking=blocking_names,
        blocking_unlisted=[name for name in blocking_names if name not in listed],
        attention=attention_html,
        verdict=_verdict(status, blocking_names, attention, run.get("fail_on")),
        HEADINGS=ATTENTION_HEADINGS,
        others=others_html,
        others_count=sum(len(group) for _, group in others),
        attention_count=sum(len(group) for _, group in attention),
        totals=[
            (name, by_outcome.get(name, 0))
            for name in [*OUTCOME_ORDER, *(k for k in by_outcome if k not in OUTCOME_ORDER)]
        ],
        total=summary.get("total", len(checks)),
        severities=_severity_table(summary, checks),
        controls=_controls(entries),
        waivers=_waivers(as_dict(summary.get("waivers")), entries),
        # Escaped HTML already (built with page.esc), like the check rows.
        maintenance=Markup(maintenance_section(summary, [e["check"] for e in entries], [e["anchor"] for e in entries])),
        checked=len(entries),
        report_css=Markup(REPORT_CSS),
        facts=Markup(facts.script()),
        script=Markup(script) if facts else None,
        script_hash=script_hash if facts else "",
    )


def load_template() -> None:
    """Compile report.html's template now (~0.1 s): the plugin calls it while the first probe runs."""
    environment().get_template("report.html.j2")
    _script()


@cache
def _script() -> tuple[str, str]:
    """The page's script, and its sha256 as a Content-Security-Policy names it (base64)."""
    text = resources.files("opsproof.evidence").joinpath("templates/report.js").read_text(encoding="utf-8")
    return text, base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()


_Group = tuple[str, list[Mapping[str, Any]]]  # (blocking/failed/error/warned or an outcome, its checks)


def _partition(ordered: list[Mapping[str, Any]], blocking: set[str]) -> tuple[list[_Group], list[_Group]]:
    """The attention list (blocking; failed, not blocking; errors; warned) and the other checks by outcome."""
    buckets: dict[str, list[Mapping[str, Any]]] = {key: [] for key in ATTENTION_KEYS}
    others: dict[str, list[Mapping[str, Any]]] = {}
    for check in ordered:
        outcome = as_text(check.get("outcome"))
        # A run that blocks on nothing (most) reads no names here.
        if blocking and (as_text(check.get("check")) in blocking or as_text(check.get("id")) in blocking):
            buckets["blocking"].append(check)
        elif outcome in ("failed", "warned"):
            buckets[outcome].append(check)
        elif outcome == "error" or outcome not in OUTCOME_ORDER:  # an outcome the page does not know deserves a look
            buckets["error"].append(check)
        else:
            others.setdefault(outcome, []).append(check)
    return [(key, group) for key, group in buckets.items() if group], list(others.items())


def _rows(
    groups: list[_Group], entries: list[dict[str, Any]], facts: FactsData, ahead: dict[int, CheckPieces]
) -> list[tuple[str, int, Markup]]:
    """Each group's key, size and rows (one block of escaped HTML, see html_rows); rows not drawn here go to `facts`."""
    by_id = {id(e["check"]): i for i, e in enumerate(entries)}
    few_blocking = all(len(group) <= OPEN_BLOCKING for key, group in groups if key == "blocking")
    blocks: list[tuple[str, int, Markup]] = []
    for key, group in groups:
        parts: list[str] = []
        # Chunks of one-line rows: the browser skips laying out and painting a chunk off screen
        # (content-visibility), which costs it less than doing so row by row. Each chunk is joined
        # as soon as it is full, so the rows of 10,000 checks are never held one by one.
        chunk: list[str] | None = [] if key not in ATTENTION_KEYS else None
        for check in group:
            row = by_id[id(check)]
            anchor = entries[row]["anchor"]
            drawn = row < DRAWN_ATTENTION
            if chunk is not None:
                pieces = ahead.get(id(check))
                chunk.append(compact_row(check, anchor) if pieces is None else f'<details id="{anchor}"' + pieces.row)
                if len(chunk) == CHUNK:
                    parts.append(f'<div class="chunk">{"".join(chunk)}</div>')
                    chunk.clear()
            else:
                parts.append(check_row(check, anchor, is_open=key == "blocking" and few_blocking, body=drawn))
            if key not in ATTENTION_KEYS or not drawn:
                pieces = ahead.get(id(check))
                facts.add(row, check, pieces.draft if pieces is not None else None)
        if chunk:
            parts.append(f'<div class="chunk">{"".join(chunk)}</div>')
        blocks.append((key, len(group), Markup("".join(parts))))
    return blocks


ATTENTION_HEADINGS = {
    "failed": ("Failed, not blocking", "below --fail-on, or inside a maintenance window"),
    "error": ("Errors, not blocking", "could not be judged: the target was not reached or the check broke"),
    "warned": ("Warned", "past a warn threshold"),
}


def _verdict(status: str, blocking: list[str], attention: list[_Group], fail_on: Any) -> str:
    """One sentence under the status: what needs a person, in the order the page lists it."""
    counts = {key: len(group) for key, group in attention}
    parts = [f"{counts[key]} {key}" for key in ("failed", "error", "warned") if counts.get(key)]
    below = " and ".join([", ".join(parts[:-1]), parts[-1]] if len(parts) > 1 else parts)
    line = f"--fail-on {as_text(fail_on)}"
    if blocking:
        head = f"{len(blocking)} blocking (failed or error at or above {line})"
        return f"Needs attention: {head}" + (f"; below it, {below}." if below else ".")
    if below:
        return f"{'Nothing blocking' if status == 'passed' else 'Not blocking'}: {below} below {line} need a look."
    return "Nothing needs attention: no check failed, errored or warned." if status == "passed" else ""


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


def _by_outcome(summary: dict[str, Any], checks: list[Mapping[str, Any]]) -> dict[str, Any]:
    # summary is the record; count the checks only when an odd results.json has no summary.
    recorded = summary.get("by_outcome")
    if isinstance(recorded, dict):
        return recorded
    counted: dict[str, Any] = {}
    for c in checks:
        key = as_text(c.get("outcome"))
        counted[key] = counted.get(key, 0) + 1
    return counted


def _severity_table(summary: dict[str, Any], checks: list[Mapping[str, Any]]) -> dict[str, Any]:
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
    # Counted by (outcome, the check's controls) first: thousands of checks share a handful of
    # such pairs (a kind's checks have the kind's controls), each spread over its controls once.
    pairs: Counter[tuple[str, tuple[str, ...]]] = Counter()
    read: dict[tuple[Any, ...], tuple[str, ...]] = {}
    open_checks: dict[str, list[dict[str, Any]]] = {}
    for entry in entries:
        check = entry["check"]
        outcome = as_text(check.get("outcome"))
        written = tuple(as_list(check.get("controls")))
        # The lists read so far are keyed by their texts: a list found among them is one of those texts.
        try:
            controls = read.get(written)
        except TypeError:  # an unhashable item (a results.json from elsewhere): its text is the key
            controls = None
        if controls is None:
            key = written if all(type(c) is str for c in written) else tuple(map(as_text, written))
            controls = read.get(key)
            if controls is None:
                controls = read[key] = tuple(dict.fromkeys(key))  # each control once, in the check's order
        pairs[outcome, controls] += 1
        if outcome in OPEN_OUTCOMES or outcome not in OUTCOME_ORDER:
            for control in controls:
                open_checks.setdefault(control, []).append(entry)
    counts: dict[str, Counter[str]] = {}
    for (outcome, controls), seen in pairs.items():
        for control in controls:
            counts.setdefault(control, Counter())[outcome] += seen
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


def check_sort_key(check: Mapping[str, Any]) -> tuple[int, int, str, str]:
    outcome = as_text(check.get("outcome"))
    # Unknown outcomes sort just after errors: a value the renderer does not know deserves a look.
    rank = OUTCOME_ORDER.index(outcome) if outcome in OUTCOME_ORDER else 1
    severity = as_text(check.get("severity"))
    sev_rank = SEVERITY_ORDER.index(severity) if severity in SEVERITY_ORDER else len(SEVERITY_ORDER)
    return (rank, sev_rank, as_text(check.get("check"), ""), as_text(check.get("id"), ""))


def _run_length(started: Any, finished: Any) -> str | None:
    try:
        took = (datetime.fromisoformat(str(finished)) - datetime.fromisoformat(str(started))).total_seconds()
    except (TypeError, ValueError):
        return None
    return duration(took)


def _as_check(value: Any) -> dict[str, Any]:
    # A record that is not an object is still evidence: show it as an error row rather than drop it.
    if isinstance(value, dict):
        waiver = value.get("waiver")
        return Lenient(value, waiver=Lenient(waiver)) if isinstance(waiver, dict) else Lenient(value)
    return Lenient(check="(malformed record)", outcome="error", message=as_text(value))
