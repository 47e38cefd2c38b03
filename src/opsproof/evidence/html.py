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
from datetime import datetime
from typing import Any

from opsproof.evidence.page import (
    CSS,
    MISSING,
    OUTCOME_ORDER,
    SEVERITY_ORDER,
    as_dict,
    as_list,
    as_text,
    chips,
    code,
    css_token,
    duration,
    esc,
    outcome_badge,
    severity_badge,
    timestamp,
)
from opsproof.model.controls import control_sort_key, control_title, framework_name, framework_of
from opsproof.model.results import Results

RUN_STATUSES = ("passed", "failed", "interrupted", "internal_error", "usage_error", "no_checks")
# Failures, errors and warnings are open; quieter outcomes collapse so failures dominate.
OPEN_OUTCOMES = frozenset({"failed", "error", "warned"})


def render_html(document: Results | dict[str, Any]) -> str:
    """report.html of a results document: typed, or as read from any results.json (old, foreign, damaged)."""
    results = document.dump() if isinstance(document, Results) else as_dict(document)
    run = as_dict(results.get("run"))
    checks = [_as_check(c) for c in as_list(results.get("checks"))]
    summary = as_dict(results.get("summary"))
    ordered = sorted(checks, key=_check_sort_key)
    # Anchors let the blocking list jump to the check; assigned after sorting so they follow the page.
    anchors = [f"check-{i}" for i in range(len(ordered))]
    by_name: dict[str, str] = {}
    for anchor, check in zip(anchors, ordered, strict=True):
        by_name.setdefault(as_text(check.get("check")), anchor)
        by_name.setdefault(as_text(check.get("id")), anchor)

    status = as_text(run.get("status"), "unknown")
    parts: list[str] = [
        '<!doctype html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n',
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n',
        # Even if the page is opened from a web server, forbid every network fetch.
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">\n",
        f"<title>opsproof · {esc(run.get('environment'))} · {esc(status.upper())}</title>\n",
        f"<style>{CSS}</style>\n</head>\n<body>\n<main>\n",
    ]
    parts.append(_header(run, status))
    parts.append(_alerts(run))
    parts.append(_blocking(as_list(summary.get("blocking")), by_name, status))
    by_outcome = _by_outcome(summary, checks)
    parts.append(_totals(by_outcome, summary.get("total", len(checks))))
    parts.append(_severity_table(summary, checks))
    parts.append(_controls(ordered, anchors))
    parts.append(_waivers(as_dict(summary.get("waivers")), ordered, anchors))
    parts.append(_checks(ordered, anchors))
    parts.append(
        f"<footer>Rendered from results.json (schema {esc(results.get('schema'))}). "
        "Times are UTC. results.json is the record; this page is a view of it.</footer>\n"
    )
    parts.append("</main>\n</body>\n</html>\n")
    return "".join(parts)


# --- header ---------------------------------------------------------------------------------


def _header(run: dict[str, Any], status: str) -> str:
    profile = as_dict(run.get("profile"))
    suite = as_dict(run.get("suite"))
    selection = as_dict(run.get("selection"))
    started, finished = run.get("started_at"), run.get("finished_at")
    fail_on = run.get("fail_on")  # a severity, or "never"
    rows: list[tuple[str, str]] = [
        ("Exit code", code(run.get("exit_code"))),
        ("Fail on", severity_badge(fail_on) if fail_on in SEVERITY_ORDER else esc(fail_on)),
        ("Started", esc(timestamp(started))),
        ("Finished", esc(timestamp(finished)) + _run_length(started, finished)),
        ("Profile", code(profile.get("path"))),
        ("Profile sha256", code(profile.get("sha256"), "hash")),
        ("Suite", esc(suite.get("version")) + " @ " + code(suite.get("commit"), "hash")),
        ("Host", esc(run.get("host"))),
        ("User", esc(run.get("user"))),
        ("Command", code(run.get("command"))),
        ("Markers", code(selection.get("markers"))),
        ("Keywords", code(selection.get("keywords"))),
        ("Paths", chips(selection.get("paths"))),
        ("Vars", _kv_table(run.get("vars")) if run.get("vars") else esc(None)),
        ("Run id", code(run.get("id"), "hash")),
    ]
    rows.extend(_change_rows(as_dict(run.get("change"))))
    # Long values (the command line, the plain vars) get the whole width, not a third of it.
    wide = {"Command", "Vars", "Image", "CI build"}
    meta = "".join(f"<div{_WIDE if k in wide else ''}><dt>{esc(k)}</dt><dd>{v}</dd></div>" for k, v in rows)
    return (
        f'<header class="run s-{css_token(status, RUN_STATUSES)}">'
        '<div class="headline"><div><div class="eyebrow">opsproof run · environment</div>'
        f"<h1>{esc(run.get('environment'))}</h1></div>"
        f'<div class="status">{esc(status.replace("_", " "))}</div></div>'
        f'<dl class="meta">{meta}</dl></header>\n'
    )


_WIDE = ' class="wide"'


def _change_rows(change: dict[str, Any]) -> list[tuple[str, str]]:
    """The change the run validated, each value with where it came from; nothing when none is known."""
    sources = as_dict(change.get("sources"))

    def shown(key: str, cls: str = "") -> str:
        source = sources.get(key)
        return code(change.get(key), cls) + (f' <span class="muted">from {esc(source)}</span>' if source else "")

    rows = [
        (label, shown(key, cls))
        for label, key, cls in (
            ("Change", "ticket", ""),
            ("Commit", "commit", "hash"),
            ("Image", "image_digest", "hash"),
        )
        if change.get(key)
    ]
    ci = as_dict(change.get("ci"))
    if ci:
        what = " · ".join(esc(ci[k]) for k in ("provider", "ref", "build_id") if ci.get(k))
        rows.append(("CI build", what + (f" · {code(ci.get('build_url'))}" if ci.get("build_url") else "")))
    return rows


def _alerts(run: dict[str, Any]) -> str:
    # An interrupted or partly collected run is incomplete evidence; say so above the numbers.
    notes: list[str] = []
    if run.get("interrupted_by"):
        notes.append(
            f"Run was interrupted by <b>{esc(run.get('interrupted_by'))}</b>: checks that had not run are missing."
        )
    if run.get("collection_errors"):
        notes.append(
            f"<b>{esc(run.get('collection_errors'))}</b> collection error(s): some checks could not be loaded "
            "and are not in this report."
        )
    return "".join(f'<div class="alert">{n}</div>\n' for n in notes)


def _blocking(blocking: list[Any], by_name: dict[str, str], status: str) -> str:
    if not blocking:
        if status == "passed":
            return '<section class="blocking ok"><h2>Nothing blocking</h2></section>\n'
        return ""
    items = "".join(_link(name, by_name) for name in blocking)
    return (
        '<section class="blocking"><h2>Blocking: '
        f"{len(blocking)} check{'s' if len(blocking) != 1 else ''} made this run fail</h2>"
        f"<ul>{items}</ul></section>\n"
    )


def _link(name: Any, by_name: dict[str, str]) -> str:
    anchor = by_name.get(as_text(name))
    label = f"<code>{esc(name)}</code>"
    return f'<li><a href="#{anchor}">{label}</a></li>' if anchor else f"<li>{label}</li>"


# --- totals ---------------------------------------------------------------------------------


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


def _totals(by_outcome: dict[str, Any], total: Any) -> str:
    names = list(OUTCOME_ORDER) + [k for k in by_outcome if k not in OUTCOME_ORDER]
    tiles = [f'<div class="tile total"><span class="n">{esc(total)}</span><span class="l">total</span></div>']
    for name in names:
        count = by_outcome.get(name, 0)
        quiet = " zero" if count in (0, None) else ""
        tiles.append(
            f'<div class="tile o-{css_token(name, OUTCOME_ORDER)}{quiet}">'
            f'<span class="n">{esc(count or 0)}</span><span class="l">{esc(name)}</span></div>'
        )
    return f'<section><h2>Totals</h2><div class="tiles">{"".join(tiles)}</div></section>\n'


def _severity_table(summary: dict[str, Any], checks: list[dict[str, Any]]) -> str:
    table = summary.get("by_severity")
    if not isinstance(table, dict):
        table = {}
        for c in checks:
            row = table.setdefault(as_text(c.get("severity")), {})
            row[as_text(c.get("outcome"))] = row.get(as_text(c.get("outcome")), 0) + 1
    severities = list(SEVERITY_ORDER) + [s for s in table if s not in SEVERITY_ORDER]
    extra = sorted({o for row in table.values() if isinstance(row, dict) for o in row if o not in OUTCOME_ORDER})
    outcomes = list(OUTCOME_ORDER) + extra
    head = "".join(f'<th class="num">{esc(o)}</th>' for o in outcomes)
    body: list[str] = []
    for sev in severities:
        row = as_dict(table.get(sev))
        cells = []
        for o in outcomes:
            n = row.get(o, 0)
            cls = f"num c-{css_token(o, OUTCOME_ORDER)}" if n else "num zero"
            cells.append(f'<td class="{cls}">{esc(n if n else "·")}</td>')
        total = sum(v for v in row.values() if isinstance(v, int))
        body.append(
            f"<tr><th>{severity_badge(sev)}</th>{''.join(cells)}"
            f'<td class="num strong{"" if total else " zero"}">{esc(total)}</td></tr>'
        )
    return (
        '<section><h2>Severity &times; outcome</h2><table class="grid sevtable">'
        f'<thead><tr><th>severity</th>{head}<th class="num">total</th></tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table></section>\n"
    )


# --- controls -------------------------------------------------------------------------------


def _controls(ordered: list[dict[str, Any]], anchors: list[str]) -> str:
    """Results rolled up by control: what an auditor asks first ("did CC7.1 operate?")."""
    counts: dict[str, Counter[str]] = {}
    open_checks: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    for anchor, check in zip(anchors, ordered, strict=True):
        outcome = as_text(check.get("outcome"))
        for control in dict.fromkeys(as_text(c) for c in as_list(check.get("controls"))):
            counts.setdefault(control, Counter())[outcome] += 1
            if outcome in OPEN_OUTCOMES or outcome not in OUTCOME_ORDER:
                open_checks.setdefault(control, []).append((anchor, check))
    if not counts:
        return '<section><h2>Controls</h2><p class="muted">No check named a control.</p></section>\n'
    head = "".join(f'<th class="num">{esc(o)}</th>' for o in OUTCOME_ORDER)
    rows = []
    framework = None
    for control in sorted(counts, key=control_sort_key):
        if framework_of(control) != framework:  # one heading row per framework, named in full
            framework = framework_of(control)
            rows.append(
                f'<tr class="fw"><th colspan="{3 + len(OUTCOME_ORDER)}">{esc(framework_name(framework))}</th></tr>'
            )
        row = counts[control]
        worst = next((o for o in OUTCOME_ORDER if row.get(o)), "skipped")
        cells = "".join(
            f'<td class="num{f" c-{o}" if row.get(o) else " zero"}">{esc(row.get(o) or "·")}</td>'
            for o in OUTCOME_ORDER
        )
        title = control_title(control)
        links = "".join(
            f'<a href="#{a}"><code>{esc(c.get("check"))}</code></a> ' for a, c in open_checks.get(control, [])[:20]
        )
        more = len(open_checks.get(control, [])) - 20
        links += f'<span class="muted">and {more} more</span>' if more > 0 else ""
        what = esc(title) if title else '<span class="muted">(not in the catalogue)</span>'
        if links:
            what += f'<div class="cchecks">{links}</div>'
        rows.append(
            f'<tr><td><span class="control">{esc(control)}</span></td><td>{what}</td>'
            f"<td>{outcome_badge(worst)}</td>{cells}</tr>"
        )
    return (
        '<section class="controls"><h2>Controls</h2><p class="muted">Each check counts once for every control '
        "it gives evidence for; a control's status is its worst outcome.</p>"
        '<table class="grid"><thead><tr><th>control</th><th>what it asks</th><th>status</th>'
        f"{head}</tr></thead><tbody>{''.join(rows)}</tbody></table></section>\n"
    )


# --- waivers --------------------------------------------------------------------------------


def _waivers(waivers: dict[str, Any], ordered: list[dict[str, Any]], anchors: list[str]) -> str:
    used = [(a, c) for a, c in zip(anchors, ordered, strict=True) if isinstance(c.get("waiver"), dict)]
    unmatched = as_list(waivers.get("unmatched"))
    expired = as_list(waivers.get("expired"))
    applied = as_list(waivers.get("applied"))
    if not (used or unmatched or expired or applied):
        return '<section><h2>Waivers</h2><p class="muted">No waivers applied, expired or unmatched.</p></section>\n'
    parts = ["<section><h2>Waivers</h2>"]
    if applied or expired:
        parts.append(
            '<p class="tickets">Applied: '
            + (" ".join(f'<span class="ticket">{esc(t)}</span>' for t in applied) or esc(None))
            + " &nbsp; Expired: "
            + (" ".join(f'<span class="ticket expired">{esc(t)}</span>' for t in expired) or esc(None))
            + "</p>"
        )
    if used:
        rows = []
        for anchor, check in used:
            w = as_dict(check.get("waiver"))
            state = as_text(w.get("status"))
            cls = "expired" if state == "expired" else ""
            rows.append(
                f'<tr class="{cls}"><td><span class="ticket {cls}">{esc(w.get("ticket"))}</span></td>'
                f'<td><a href="#{anchor}"><code>{esc(check.get("check"))}</code></a></td>'
                f"<td>{outcome_badge(check.get('outcome'))}</td><td>{esc(state)}</td>"
                f"<td>{esc(w.get('reason'))}</td><td>{esc(w.get('approved_by'))}</td>"
                f"<td>{esc(w.get('expires'))}</td></tr>"
            )
        parts.append(
            '<table class="grid"><thead><tr><th>ticket</th><th>check</th><th>outcome</th><th>waiver</th>'
            "<th>reason</th><th>approved by</th><th>expires</th></tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table>"
        )
    if unmatched:
        # A waiver that matches nothing is either stale or mistyped; either way an auditor should see it.
        rows = []
        for item in unmatched:
            w = as_dict(item)
            rows.append(
                f'<tr><td><span class="ticket">{esc(w.get("ticket"))}</span></td><td><code>{esc(w.get("check"))}'
                f"</code></td><td>{esc(w.get('reason'))}</td><td>{esc(w.get('approved_by'))}</td>"
                f"<td>{esc(w.get('expires'))}</td></tr>"
            )
        parts.append(
            f"<h3>Waivers that matched nothing ({len(unmatched)})</h3>"
            '<table class="grid"><thead><tr><th>ticket</th><th>check pattern</th><th>reason</th>'
            f"<th>approved by</th><th>expires</th></tr></thead><tbody>{''.join(rows)}</tbody></table>"
        )
    parts.append("</section>\n")
    return "".join(parts)


# --- checks ---------------------------------------------------------------------------------


def _check_sort_key(check: dict[str, Any]) -> tuple[int, int, str, str]:
    outcome = as_text(check.get("outcome"))
    # Unknown outcomes sort just after errors: a value the renderer does not know deserves a look.
    rank = OUTCOME_ORDER.index(outcome) if outcome in OUTCOME_ORDER else 1
    severity = as_text(check.get("severity"))
    sev_rank = SEVERITY_ORDER.index(severity) if severity in SEVERITY_ORDER else len(SEVERITY_ORDER)
    return (rank, sev_rank, as_text(check.get("check"), ""), as_text(check.get("id"), ""))


def _checks(ordered: list[dict[str, Any]], anchors: list[str]) -> str:
    if not ordered:
        return '<section><h2>Checks</h2><p class="muted">This run recorded no checks.</p></section>\n'
    counts = Counter(as_text(c.get("outcome")) for c in ordered)
    parts = [f'<section class="checks"><h2>Checks ({len(ordered)}), failures first</h2>']
    group: str | None = None
    for anchor, check in zip(anchors, ordered, strict=True):
        outcome = as_text(check.get("outcome"))
        if outcome != group:  # checks arrive sorted, so each outcome is one contiguous group
            group = outcome
            parts.append(
                f'<h3 class="group c-{css_token(outcome, OUTCOME_ORDER)}">{esc(outcome)} · {counts[outcome]}</h3>'
            )
        parts.append(_check(check, anchor))
    parts.append("</section>\n")
    return "".join(parts)


def _check(check: dict[str, Any], anchor: str) -> str:
    outcome = as_text(check.get("outcome"))
    waiver = check.get("waiver")
    tag = ""
    if isinstance(waiver, dict):
        expired = waiver.get("status") == "expired"
        word = "expired waiver" if expired else "waived by"
        tag = f' <span class="ticket{" expired" if expired else ""}">{word} {esc(waiver.get("ticket"))}</span>'
    target = check.get("target")
    sub = f'<span class="target">{esc(target)}</span>' if target not in (None, "") else ""
    is_open = " open" if outcome in OPEN_OUTCOMES or outcome not in OUTCOME_ORDER else ""
    summary = (
        f"<summary>{outcome_badge(outcome)}{severity_badge(check.get('severity'))}"
        f'<span class="what"><span class="name">{esc(check.get("check", check.get("id")))}</span>{sub}{tag}'
        f'<span class="msg">{esc(check.get("message"))}</span></span>'
        f'<span class="dur">{esc(duration(check.get("duration_s")))}</span></summary>'
    )
    return (
        f'<details id="{anchor}" class="check o-{css_token(outcome, OUTCOME_ORDER)}"{is_open}>{summary}'
        f'<div class="body">{_check_meta(check)}{_waiver_box(waiver)}{_facts(check)}</div></details>\n'
    )


def _check_meta(check: dict[str, Any]) -> str:
    # Short facts share a line; the id and the chip lists get full rows because they run long.
    short = [
        ("target", esc(check.get("target"))),
        ("kind", esc(check.get("kind"))),
        ("started", esc(timestamp(check.get("started_at")))),
        ("duration", esc(duration(check.get("duration_s")))),
        ("phase", esc(check.get("phase"))),
    ]
    chip_rows = [
        ("markers", chips(check.get("markers"))),
        ("controls", chips(check.get("controls"), "control")),
    ]
    head = f'<div class="wide"><dt>id</dt><dd>{code(check.get("id"))}</dd></div>'
    cells = "".join(f"<div><dt>{k}</dt><dd>{v}</dd></div>" for k, v in short)
    tail = "".join(f'<div class="wide"><dt>{k}</dt><dd>{v}</dd></div>' for k, v in chip_rows)
    return f'<dl class="cmeta">{head}{cells}{tail}</dl>'


def _waiver_box(waiver: Any) -> str:
    if not isinstance(waiver, dict):
        return ""
    expired = waiver.get("status") == "expired"
    title = "Waiver expired: not applied, the failure counts" if expired else "Waived"
    return (
        f'<div class="waiver{" expired" if expired else ""}"><b>{esc(title)}</b> · '
        f'ticket <span class="ticket">{esc(waiver.get("ticket"))}</span> · '
        f"approved by {esc(waiver.get('approved_by'))} · expires {esc(waiver.get('expires'))} · "
        f"pattern <code>{esc(waiver.get('check'))}</code><br>reason: {esc(waiver.get('reason'))}</div>"
    )


def _facts(check: dict[str, Any]) -> str:
    return (
        '<div class="facts">'
        f"<div><h4>observed</h4>{_kv_table(check.get('observed'))}</div>"
        f"<div><h4>expected</h4>{_kv_table(check.get('expected'))}</div></div>"
    )


# --- small pieces ---------------------------------------------------------------------------


def _kv_table(value: Any) -> str:
    """A dict as a small key/value table; nested values as compact JSON so nothing is hidden."""
    if isinstance(value, dict) and value:
        rows = "".join(f"<tr><th>{esc(k)}</th><td>{_value(v)}</td></tr>" for k, v in value.items())
        return f'<table class="kv">{rows}</table>'
    if value in (None, {}, [], ""):
        return f'<p class="muted">{MISSING}</p>'
    return f"<pre>{esc(value)}</pre>"


def _value(value: Any) -> str:
    if isinstance(value, (dict, list, tuple)):
        return f'<code class="json">{esc(value)}</code>'
    if isinstance(value, str):
        return esc(value) if value else '<span class="muted">""</span>'
    return f'<span class="scalar">{esc(value)}</span>'


def _run_length(started: Any, finished: Any) -> str:
    try:
        took = (datetime.fromisoformat(str(finished)) - datetime.fromisoformat(str(started))).total_seconds()
    except (TypeError, ValueError):
        return ""
    return f' <span class="muted">({esc(duration(took))})</span>'


def _as_check(value: Any) -> dict[str, Any]:
    # A record that is not an object is still evidence: show it as an error row rather than drop it.
    if isinstance(value, dict):
        return value
    return {"check": "(malformed record)", "outcome": "error", "message": as_text(value)}
