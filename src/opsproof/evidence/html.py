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

import html
import json
import re
from collections import Counter
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from opsproof.controls import control_sort_key, control_title, framework_name, framework_of
from opsproof.evidence.html_maintenance import maintenance_section, maintenance_tag

# Display order: what needs a human comes first. Matches outcomes.OUTCOMES, kept local so
# the renderer can draw any results.json (old or foreign) without importing the plugin.
OUTCOME_ORDER = ("failed", "error", "warned", "waived", "skipped", "passed")
SEVERITY_ORDER = ("critical", "high", "medium", "low")
RUN_STATUSES = ("passed", "failed", "interrupted", "internal_error", "usage_error", "no_checks")
# Failures, errors and warnings are open; quieter outcomes collapse so failures dominate.
OPEN_OUTCOMES = frozenset({"failed", "error", "warned"})
MISSING = "—"


def render_html(results: dict[str, Any]) -> str:
    results = _as_dict(results)
    run = _as_dict(results.get("run"))
    checks = [_as_check(c) for c in _as_list(results.get("checks"))]
    summary = _as_dict(results.get("summary"))
    ordered = sorted(checks, key=_check_sort_key)
    # Anchors let the blocking list jump to the check; assigned after sorting so they follow the page.
    anchors = [f"check-{i}" for i in range(len(ordered))]
    by_name: dict[str, str] = {}
    for anchor, check in zip(anchors, ordered, strict=True):
        by_name.setdefault(_text(check.get("check")), anchor)
        by_name.setdefault(_text(check.get("id")), anchor)

    status = _text(run.get("status"), "unknown")
    parts: list[str] = [
        '<!doctype html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n',
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n',
        # Even if the page is opened from a web server, forbid every network fetch.
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">\n",
        f"<title>opsproof · {_esc(run.get('environment'))} · {_esc(status.upper())}</title>\n",
        f"<style>{_CSS}</style>\n</head>\n<body>\n<main>\n",
    ]
    parts.append(_header(run, status))
    parts.append(_alerts(run))
    parts.append(_blocking(_as_list(summary.get("blocking")), by_name, status))
    by_outcome = _by_outcome(summary, checks)
    parts.append(_totals(by_outcome, summary.get("total", len(checks))))
    parts.append(_severity_table(summary, checks))
    parts.append(_controls(ordered, anchors))
    parts.append(_waivers(_as_dict(summary.get("waivers")), ordered, anchors))
    parts.append(maintenance_section(summary, ordered, anchors))
    parts.append(_checks(ordered, anchors))
    parts.append(
        f"<footer>Rendered from results.json (schema {_esc(results.get('schema'))}). "
        "Times are UTC. results.json is the record; this page is a view of it.</footer>\n"
    )
    parts.append("</main>\n</body>\n</html>\n")
    return "".join(parts)


# --- header ---------------------------------------------------------------------------------


def _header(run: dict[str, Any], status: str) -> str:
    profile = _as_dict(run.get("profile"))
    suite = _as_dict(run.get("suite"))
    selection = _as_dict(run.get("selection"))
    started, finished = run.get("started_at"), run.get("finished_at")
    fail_on = run.get("fail_on")  # a severity, or "never"
    rows: list[tuple[str, str]] = [
        ("Exit code", _code(run.get("exit_code"))),
        ("Fail on", _severity_badge(fail_on) if fail_on in SEVERITY_ORDER else _esc(fail_on)),
        ("Started", _esc(_timestamp(started))),
        ("Finished", _esc(_timestamp(finished)) + _run_length(started, finished)),
        ("Profile", _code(profile.get("path"))),
        ("Profile sha256", _code(profile.get("sha256"), "hash")),
        ("Suite", _esc(suite.get("version")) + " @ " + _code(suite.get("commit"), "hash")),
        ("Host", _esc(run.get("host"))),
        ("User", _esc(run.get("user"))),
        ("Command", _code(run.get("command"))),
        ("Markers", _code(selection.get("markers"))),
        ("Keywords", _code(selection.get("keywords"))),
        ("Paths", _chips(selection.get("paths"))),
        ("Vars", _kv_table(run.get("vars")) if run.get("vars") else _esc(None)),
        ("Run id", _code(run.get("id"), "hash")),
    ]
    rows.extend(_change_rows(_as_dict(run.get("change"))))
    # Long values (the command line, the plain vars) get the whole width, not a third of it.
    wide = {"Command", "Vars", "Image", "CI build"}
    meta = "".join(f"<div{_WIDE if k in wide else ''}><dt>{_esc(k)}</dt><dd>{v}</dd></div>" for k, v in rows)
    return (
        f'<header class="run s-{_css_token(status, RUN_STATUSES)}">'
        '<div class="headline"><div><div class="eyebrow">opsproof run · environment</div>'
        f"<h1>{_esc(run.get('environment'))}</h1></div>"
        f'<div class="status">{_esc(status.replace("_", " "))}</div></div>'
        f'<dl class="meta">{meta}</dl></header>\n'
    )


_WIDE = ' class="wide"'


def _change_rows(change: dict[str, Any]) -> list[tuple[str, str]]:
    """The change the run validated, each value with where it came from; nothing when none is known."""
    sources = _as_dict(change.get("sources"))

    def shown(key: str, cls: str = "") -> str:
        source = sources.get(key)
        return _code(change.get(key), cls) + (f' <span class="muted">from {_esc(source)}</span>' if source else "")

    rows = [
        (label, shown(key, cls))
        for label, key, cls in (
            ("Change", "ticket", ""),
            ("Commit", "commit", "hash"),
            ("Image", "image_digest", "hash"),
        )
        if change.get(key)
    ]
    ci = _as_dict(change.get("ci"))
    if ci:
        what = " · ".join(_esc(ci[k]) for k in ("provider", "ref", "build_id") if ci.get(k))
        rows.append(("CI build", what + (f" · {_code(ci.get('build_url'))}" if ci.get("build_url") else "")))
    return rows


def _alerts(run: dict[str, Any]) -> str:
    # An interrupted or partly collected run is incomplete evidence; say so above the numbers.
    notes: list[str] = []
    if run.get("interrupted_by"):
        notes.append(
            f"Run was interrupted by <b>{_esc(run.get('interrupted_by'))}</b>: checks that had not run are missing."
        )
    if run.get("collection_errors"):
        notes.append(
            f"<b>{_esc(run.get('collection_errors'))}</b> collection error(s): some checks could not be loaded "
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
    anchor = by_name.get(_text(name))
    label = f"<code>{_esc(name)}</code>"
    return f'<li><a href="#{anchor}">{label}</a></li>' if anchor else f"<li>{label}</li>"


# --- totals ---------------------------------------------------------------------------------


def _by_outcome(summary: dict[str, Any], checks: list[dict[str, Any]]) -> dict[str, Any]:
    # summary is the record; count the checks only when an odd results.json has no summary.
    recorded = summary.get("by_outcome")
    if isinstance(recorded, dict):
        return recorded
    counted: dict[str, Any] = {}
    for c in checks:
        key = _text(c.get("outcome"))
        counted[key] = counted.get(key, 0) + 1
    return counted


def _totals(by_outcome: dict[str, Any], total: Any) -> str:
    names = list(OUTCOME_ORDER) + [k for k in by_outcome if k not in OUTCOME_ORDER]
    tiles = [f'<div class="tile total"><span class="n">{_esc(total)}</span><span class="l">total</span></div>']
    for name in names:
        count = by_outcome.get(name, 0)
        quiet = " zero" if count in (0, None) else ""
        tiles.append(
            f'<div class="tile o-{_css_token(name, OUTCOME_ORDER)}{quiet}">'
            f'<span class="n">{_esc(count or 0)}</span><span class="l">{_esc(name)}</span></div>'
        )
    return f'<section><h2>Totals</h2><div class="tiles">{"".join(tiles)}</div></section>\n'


def _severity_table(summary: dict[str, Any], checks: list[dict[str, Any]]) -> str:
    table = summary.get("by_severity")
    if not isinstance(table, dict):
        table = {}
        for c in checks:
            row = table.setdefault(_text(c.get("severity")), {})
            row[_text(c.get("outcome"))] = row.get(_text(c.get("outcome")), 0) + 1
    severities = list(SEVERITY_ORDER) + [s for s in table if s not in SEVERITY_ORDER]
    extra = sorted({o for row in table.values() if isinstance(row, dict) for o in row if o not in OUTCOME_ORDER})
    outcomes = list(OUTCOME_ORDER) + extra
    head = "".join(f'<th class="num">{_esc(o)}</th>' for o in outcomes)
    body: list[str] = []
    for sev in severities:
        row = _as_dict(table.get(sev))
        cells = []
        for o in outcomes:
            n = row.get(o, 0)
            cls = f"num c-{_css_token(o, OUTCOME_ORDER)}" if n else "num zero"
            cells.append(f'<td class="{cls}">{_esc(n if n else "·")}</td>')
        total = sum(v for v in row.values() if isinstance(v, int))
        body.append(
            f"<tr><th>{_severity_badge(sev)}</th>{''.join(cells)}"
            f'<td class="num strong{"" if total else " zero"}">{_esc(total)}</td></tr>'
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
        outcome = _text(check.get("outcome"))
        for control in dict.fromkeys(_text(c) for c in _as_list(check.get("controls"))):
            counts.setdefault(control, Counter())[outcome] += 1
            if outcome in OPEN_OUTCOMES or outcome not in OUTCOME_ORDER:
                open_checks.setdefault(control, []).append((anchor, check))
    if not counts:
        return '<section><h2>Controls</h2><p class="muted">No check named a control.</p></section>\n'
    head = "".join(f'<th class="num">{_esc(o)}</th>' for o in OUTCOME_ORDER)
    rows = []
    framework = None
    for control in sorted(counts, key=control_sort_key):
        if framework_of(control) != framework:  # one heading row per framework, named in full
            framework = framework_of(control)
            rows.append(
                f'<tr class="fw"><th colspan="{3 + len(OUTCOME_ORDER)}">{_esc(framework_name(framework))}</th></tr>'
            )
        row = counts[control]
        worst = next((o for o in OUTCOME_ORDER if row.get(o)), "skipped")
        cells = "".join(
            f'<td class="num{f" c-{o}" if row.get(o) else " zero"}">{_esc(row.get(o) or "·")}</td>'
            for o in OUTCOME_ORDER
        )
        title = control_title(control)
        links = "".join(
            f'<a href="#{a}"><code>{_esc(c.get("check"))}</code></a> ' for a, c in open_checks.get(control, [])[:20]
        )
        more = len(open_checks.get(control, [])) - 20
        links += f'<span class="muted">and {more} more</span>' if more > 0 else ""
        what = _esc(title) if title else '<span class="muted">(not in the catalogue)</span>'
        if links:
            what += f'<div class="cchecks">{links}</div>'
        rows.append(
            f'<tr><td><span class="control">{_esc(control)}</span></td><td>{what}</td>'
            f"<td>{_outcome_badge(worst)}</td>{cells}</tr>"
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
    unmatched = _as_list(waivers.get("unmatched"))
    expired = _as_list(waivers.get("expired"))
    applied = _as_list(waivers.get("applied"))
    if not (used or unmatched or expired or applied):
        return '<section><h2>Waivers</h2><p class="muted">No waivers applied, expired or unmatched.</p></section>\n'
    parts = ["<section><h2>Waivers</h2>"]
    if applied or expired:
        parts.append(
            '<p class="tickets">Applied: '
            + (" ".join(f'<span class="ticket">{_esc(t)}</span>' for t in applied) or _esc(None))
            + " &nbsp; Expired: "
            + (" ".join(f'<span class="ticket expired">{_esc(t)}</span>' for t in expired) or _esc(None))
            + "</p>"
        )
    if used:
        rows = []
        for anchor, check in used:
            w = _as_dict(check.get("waiver"))
            state = _text(w.get("status"))
            cls = "expired" if state == "expired" else ""
            rows.append(
                f'<tr class="{cls}"><td><span class="ticket {cls}">{_esc(w.get("ticket"))}</span></td>'
                f'<td><a href="#{anchor}"><code>{_esc(check.get("check"))}</code></a></td>'
                f"<td>{_outcome_badge(check.get('outcome'))}</td><td>{_esc(state)}</td>"
                f"<td>{_esc(w.get('reason'))}</td><td>{_esc(w.get('approved_by'))}</td>"
                f"<td>{_esc(w.get('expires'))}</td></tr>"
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
            w = _as_dict(item)
            rows.append(
                f'<tr><td><span class="ticket">{_esc(w.get("ticket"))}</span></td><td><code>{_esc(w.get("check"))}'
                f"</code></td><td>{_esc(w.get('reason'))}</td><td>{_esc(w.get('approved_by'))}</td>"
                f"<td>{_esc(w.get('expires'))}</td></tr>"
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
    outcome = _text(check.get("outcome"))
    # Unknown outcomes sort just after errors: a value the renderer does not know deserves a look.
    rank = OUTCOME_ORDER.index(outcome) if outcome in OUTCOME_ORDER else 1
    severity = _text(check.get("severity"))
    sev_rank = SEVERITY_ORDER.index(severity) if severity in SEVERITY_ORDER else len(SEVERITY_ORDER)
    return (rank, sev_rank, _text(check.get("check"), ""), _text(check.get("id"), ""))


def _checks(ordered: list[dict[str, Any]], anchors: list[str]) -> str:
    if not ordered:
        return '<section><h2>Checks</h2><p class="muted">This run recorded no checks.</p></section>\n'
    counts = Counter(_text(c.get("outcome")) for c in ordered)
    parts = [f'<section class="checks"><h2>Checks ({len(ordered)}), failures first</h2>']
    group: str | None = None
    for anchor, check in zip(anchors, ordered, strict=True):
        outcome = _text(check.get("outcome"))
        if outcome != group:  # checks arrive sorted, so each outcome is one contiguous group
            group = outcome
            parts.append(
                f'<h3 class="group c-{_css_token(outcome, OUTCOME_ORDER)}">{_esc(outcome)} · {counts[outcome]}</h3>'
            )
        parts.append(_check(check, anchor))
    parts.append("</section>\n")
    return "".join(parts)


def _check(check: dict[str, Any], anchor: str) -> str:
    outcome = _text(check.get("outcome"))
    waiver = check.get("waiver")
    tag = ""
    if isinstance(waiver, dict):
        expired = waiver.get("status") == "expired"
        word = "expired waiver" if expired else "waived by"
        tag = f' <span class="ticket{" expired" if expired else ""}">{word} {_esc(waiver.get("ticket"))}</span>'
    tag += maintenance_tag(check)
    target = check.get("target")
    sub = f'<span class="target">{_esc(target)}</span>' if target not in (None, "") else ""
    is_open = " open" if outcome in OPEN_OUTCOMES or outcome not in OUTCOME_ORDER else ""
    summary = (
        f"<summary>{_outcome_badge(outcome)}{_severity_badge(check.get('severity'))}"
        f'<span class="what"><span class="name">{_esc(check.get("check", check.get("id")))}</span>{sub}{tag}'
        f'<span class="msg">{_esc(check.get("message"))}</span></span>'
        f'<span class="dur">{_esc(_duration(check.get("duration_s")))}</span></summary>'
    )
    return (
        f'<details id="{anchor}" class="check o-{_css_token(outcome, OUTCOME_ORDER)}"{is_open}>{summary}'
        f'<div class="body">{_check_meta(check)}{_waiver_box(waiver)}{_facts(check)}</div></details>\n'
    )


def _check_meta(check: dict[str, Any]) -> str:
    # Short facts share a line; the id and the chip lists get full rows because they run long.
    short = [
        ("target", _esc(check.get("target"))),
        ("kind", _esc(check.get("kind"))),
        ("started", _esc(_timestamp(check.get("started_at")))),
        ("duration", _esc(_duration(check.get("duration_s")))),
        ("phase", _esc(check.get("phase"))),
    ]
    chips = [
        ("markers", _chips(check.get("markers"))),
        ("controls", _chips(check.get("controls"), "control")),
    ]
    head = f'<div class="wide"><dt>id</dt><dd>{_code(check.get("id"))}</dd></div>'
    cells = "".join(f"<div><dt>{k}</dt><dd>{v}</dd></div>" for k, v in short)
    tail = "".join(f'<div class="wide"><dt>{k}</dt><dd>{v}</dd></div>' for k, v in chips)
    return f'<dl class="cmeta">{head}{cells}{tail}</dl>'


def _waiver_box(waiver: Any) -> str:
    if not isinstance(waiver, dict):
        return ""
    expired = waiver.get("status") == "expired"
    title = "Waiver expired: not applied, the failure counts" if expired else "Waived"
    return (
        f'<div class="waiver{" expired" if expired else ""}"><b>{_esc(title)}</b> · '
        f'ticket <span class="ticket">{_esc(waiver.get("ticket"))}</span> · '
        f"approved by {_esc(waiver.get('approved_by'))} · expires {_esc(waiver.get('expires'))} · "
        f"pattern <code>{_esc(waiver.get('check'))}</code><br>reason: {_esc(waiver.get('reason'))}</div>"
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
        rows = "".join(f"<tr><th>{_esc(k)}</th><td>{_value(v)}</td></tr>" for k, v in value.items())
        return f'<table class="kv">{rows}</table>'
    if value in (None, {}, [], ""):
        return f'<p class="muted">{MISSING}</p>'
    return f"<pre>{_esc(value)}</pre>"


def _value(value: Any) -> str:
    if isinstance(value, (dict, list, tuple)):
        return f'<code class="json">{_esc(value)}</code>'
    if isinstance(value, str):
        return _esc(value) if value else '<span class="muted">""</span>'
    return f'<span class="scalar">{_esc(value)}</span>'


def _chips(values: Any, cls: str = "chip") -> str:
    items = _as_list(values) if not isinstance(values, str) else [values]
    if not items:
        return _esc(None)
    return " ".join(f'<span class="{cls}">{_esc(v)}</span>' for v in items)


def _code(value: Any, cls: str = "") -> str:
    if value in (None, ""):
        return _esc(None)
    return f'<code class="{cls}">{_esc(value)}</code>' if cls else f"<code>{_esc(value)}</code>"


def _outcome_badge(outcome: Any) -> str:
    name = _text(outcome, "unknown")
    return f'<span class="badge o-{_css_token(name, OUTCOME_ORDER)}">{_esc(name)}</span>'


def _severity_badge(severity: Any) -> str:
    name = _text(severity, "unknown")
    return f'<span class="sev v-{_css_token(name, SEVERITY_ORDER)}">{_esc(name)}</span>'


def _css_token(value: str, known: Iterable[str]) -> str:
    # Class names are built only from known words; anything else from the data becomes "unknown".
    return value if value in known else "unknown"


def _timestamp(value: Any) -> str:
    # "2026-11-24T10:45:00.123Z" -> "2026-11-24 10:45:00.123 UTC": easier to read, same instant.
    if isinstance(value, str) and value.endswith("Z") and "T" in value:
        return value[:-1].replace("T", " ", 1) + " UTC"
    return _text(value)


def _run_length(started: Any, finished: Any) -> str:
    try:
        took = (datetime.fromisoformat(str(finished)) - datetime.fromisoformat(str(started))).total_seconds()
    except (TypeError, ValueError):
        return ""
    return f' <span class="muted">({_esc(_duration(took))})</span>'


def _duration(seconds: Any) -> str:
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
        return _text(seconds)
    if seconds < 1:
        return f"{seconds * 1000:.1f} ms"
    if seconds < 60:
        return f"{seconds:.2f} s"
    minutes, rest = divmod(int(seconds), 60)
    return f"{minutes}m {rest:02d}s"


def _as_dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, (list, tuple)) else []


def _as_check(value: Any) -> dict[str, Any]:
    # A record that is not an object is still evidence: show it as an error row rather than drop it.
    if isinstance(value, dict):
        return value
    return {"check": "(malformed record)", "outcome": "error", "message": _text(value)}


def _text(value: Any, missing: str = MISSING) -> str:
    if value is None:
        return missing
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    try:
        return json.dumps(value, ensure_ascii=False, separators=(", ", ": "), default=str)
    except (TypeError, ValueError):  # circular structures
        return repr(value)


_SPECIAL = re.compile(r"[&<>\"']")


def _esc(value: Any) -> str:
    """Escaped text; the one way data reaches the page."""
    text = _text(value)
    # Most values (names, numbers, ids) need no escaping: one scan instead of five replaces.
    return html.escape(text, quote=True) if _SPECIAL.search(text) else text


_CSS = """
:root{--fg:#1f2328;--muted:#656d76;--line:#d0d7de;--bg:#fff;--panel:#f6f8fa;
--passed:#1a7f37;--passed-bg:#dafbe1;--warned:#9a6700;--warned-bg:#fff8c5;--failed:#cf222e;--failed-bg:#ffebe9;
--error:#7b1e7a;--error-bg:#f8e8f7;--waived:#4f6d8f;--waived-bg:#e7eef6;--skipped:#6e7781;--skipped-bg:#eef1f4;
--mono:ui-monospace,SFMono-Regular,"SF Mono",Menlo,Consolas,"Liberation Mono",monospace}
*{box-sizing:border-box}
html{color-scheme:light}
body{margin:0;background:var(--bg);color:var(--fg);
font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,"Noto Sans",sans-serif}
main{max-width:1200px;margin:0 auto;padding:24px}
h2{font-size:17px;margin:28px 0 10px;padding-bottom:4px;border-bottom:1px solid var(--line)}
h3{font-size:14px;margin:18px 0 8px}
h4{font-size:11px;text-transform:uppercase;letter-spacing:.06em;color:var(--muted);margin:0 0 4px}
code,pre{font-family:var(--mono);font-size:12.5px}
code{overflow-wrap:anywhere}
pre{margin:0;white-space:pre-wrap;overflow-wrap:anywhere}
a{color:inherit}
.muted{color:var(--muted)}
header.run{border:1px solid var(--line);border-top:8px solid var(--muted);border-radius:8px;padding:18px 20px}
header.s-passed{border-top-color:var(--passed)}header.s-failed{border-top-color:var(--failed)}
header.s-interrupted{border-top-color:var(--warned)}
header.s-internal_error,header.s-usage_error{border-top-color:var(--error)}
.headline{display:flex;justify-content:space-between;align-items:center;gap:16px;flex-wrap:wrap}
.eyebrow{font-size:11px;text-transform:uppercase;letter-spacing:.08em;color:var(--muted)}
h1{font-size:30px;margin:0;overflow-wrap:anywhere}
.status{font-size:24px;font-weight:800;text-transform:uppercase;letter-spacing:.05em;color:#fff;
background:var(--skipped);padding:8px 22px;border-radius:8px}
.s-passed .status{background:var(--passed)}.s-failed .status{background:var(--failed)}
.s-interrupted .status{background:var(--warned)}
.s-internal_error .status,.s-usage_error .status{background:var(--error)}
dl{margin:0}dd{margin:0}
.meta{display:grid;grid-template-columns:repeat(auto-fill,minmax(340px,1fr));gap:6px 24px;margin-top:16px}
.meta>div{display:grid;grid-template-columns:110px minmax(0,1fr);gap:8px;align-items:baseline}
.meta>div.wide{grid-column:1/-1}
.meta dt,.cmeta dt{color:var(--muted);font-size:12px}
.hash{font-size:11.5px;color:var(--muted)}
.alert{margin-top:12px;padding:10px 14px;border-radius:6px;background:var(--warned-bg);
border:1px solid #d4a72c;color:#4d2d00}
.blocking{margin-top:16px;padding:12px 16px;border-radius:8px;background:var(--failed-bg);
border:1px solid #ff8182;border-left:6px solid var(--failed)}
.blocking h2{border:0;margin:0 0 6px;padding:0;color:#82071e}
.blocking ul{margin:0;padding-left:20px;columns:2 360px}
.blocking li{margin:2px 0}
.blocking.ok{background:var(--passed-bg);border-color:#4ac26b;border-left-color:var(--passed)}
.blocking.ok h2{color:var(--passed);margin:0}
.tiles{display:grid;grid-template-columns:repeat(7,minmax(0,1fr));gap:10px}
.tile{border-radius:8px;padding:10px 12px;background:var(--panel);border:1px solid var(--line);
border-top:5px solid var(--skipped)}
.tile .n{display:block;font-size:28px;font-weight:700;line-height:1.1}
.tile .l{font-size:12px;text-transform:uppercase;letter-spacing:.05em;color:var(--muted)}
.tile.total{border-top-color:var(--fg)}
.tile.o-passed{background:var(--passed-bg);border-top-color:var(--passed)}.tile.o-passed .n{color:var(--passed)}
.tile.o-warned{background:var(--warned-bg);border-top-color:var(--warned)}.tile.o-warned .n{color:var(--warned)}
.tile.o-failed{background:var(--failed-bg);border-top-color:var(--failed)}.tile.o-failed .n{color:var(--failed)}
.tile.o-error{background:var(--error-bg);border-top-color:var(--error)}.tile.o-error .n{color:var(--error)}
.tile.o-waived{background:var(--waived-bg);border-top-color:var(--waived)}.tile.o-waived .n{color:var(--waived)}
.tile.o-skipped{background:var(--skipped-bg)}
.tile.zero{background:var(--panel);border-top-color:var(--line)}.tile.zero .n{color:#afb8c1}
table{border-collapse:collapse}
table.grid{width:100%;font-size:13px}
.grid th,.grid td{border:1px solid var(--line);padding:5px 9px;text-align:left;vertical-align:top}
.grid thead th{background:var(--panel);font-size:12px;text-transform:uppercase;letter-spacing:.04em;
color:var(--muted)}
table.sevtable{width:auto;min-width:60%}
.num{text-align:right!important;font-variant-numeric:tabular-nums}
.strong{font-weight:700}
.zero{color:#afb8c1}
td.c-passed{color:var(--passed);font-weight:600}td.c-warned{color:var(--warned);font-weight:700}
td.c-failed{color:var(--failed);font-weight:700;background:var(--failed-bg)}
td.c-error{color:var(--error);font-weight:700;background:var(--error-bg)}
td.c-waived{color:var(--waived);font-weight:600}td.c-skipped{color:var(--skipped)}
tr.expired td{background:var(--warned-bg)}
.badge,.sev{display:inline-block;min-width:64px;text-align:center;border-radius:999px;font-size:11px;
font-weight:700;text-transform:uppercase;letter-spacing:.04em;padding:2px 8px;white-space:nowrap}
.badge{color:#fff;background:var(--skipped)}
.badge.o-passed{background:var(--passed)}.badge.o-warned{background:#bf8700}.badge.o-failed{background:var(--failed)}
.badge.o-error{background:var(--error)}.badge.o-waived{background:var(--waived)}
.badge.o-unknown{background:#24292f}
.sev{background:#fff;border:1.5px solid var(--skipped);color:var(--skipped)}
.sev.v-critical{border-color:#82071e;color:#fff;background:#82071e}
.sev.v-high{border-color:#bc4c00;color:#bc4c00}
.sev.v-medium{border-color:#9a6700;color:#7d4e00}
.sev.v-low{border-color:#8c959f;color:#57606a}
.chip,.control{display:inline-block;font-size:11.5px;padding:0 6px;border-radius:4px;margin:1px 0;
background:var(--panel);border:1px solid var(--line);font-family:var(--mono)}
.control{background:#eef4ff;border-color:#b6cff5}
.ticket{display:inline-block;font-family:var(--mono);font-size:11.5px;font-weight:600;padding:0 6px;
border-radius:4px;background:var(--waived-bg);color:#2f4a68;border:1px solid #b3c6dc}
.ticket.expired{background:var(--warned-bg);color:#6c3f00;border-color:#d4a72c}
.tickets{margin:4px 0 10px}
.cchecks{margin-top:3px;font-size:12px}.cchecks a{margin-right:6px}
tr.fw th{background:#f6f8fa;font-size:12px;letter-spacing:.03em;color:var(--fg);border-top:2px solid var(--line)}
h3.group{text-transform:uppercase;letter-spacing:.06em;font-size:12px;margin:20px 0 6px;color:var(--muted)}
h3.c-failed{color:var(--failed)}h3.c-error{color:var(--error)}h3.c-warned{color:var(--warned)}
h3.c-waived{color:var(--waived)}h3.c-passed{color:var(--passed)}
details.check{border:1px solid var(--line);border-left:5px solid var(--skipped);border-radius:6px;margin:4px 0;
background:#fff}
details.o-passed{border-left-color:var(--passed)}details.o-warned{border-left-color:#d4a72c}
details.o-failed{border-left-color:var(--failed)}details.o-error{border-left-color:var(--error)}
details.o-waived{border-left-color:var(--waived)}details.o-unknown{border-left-color:#24292f}
details.o-failed[open]>summary{background:var(--failed-bg)}details.o-error[open]>summary{background:var(--error-bg)}
details.o-warned[open]>summary{background:var(--warned-bg)}
summary{display:grid;grid-template-columns:12px 78px 78px minmax(0,1fr) auto;gap:10px;align-items:baseline;
padding:6px 10px;cursor:pointer;list-style:none}
summary::-webkit-details-marker{display:none}
summary::before{content:"\\25B8";color:var(--muted)}
details[open]>summary::before{content:"\\25BE"}
.what{min-width:0}
.name{font-family:var(--mono);font-weight:600;font-size:13px;overflow-wrap:anywhere}
.target{margin-left:8px;color:var(--muted);font-size:12.5px}
.target::before{content:"\\2192  "}
.what .ticket{margin-left:8px}
.msg{display:block;overflow-wrap:anywhere}
.o-passed .msg,.o-skipped .msg{color:var(--muted)}
.dur{color:var(--muted);font-size:12px;font-variant-numeric:tabular-nums;white-space:nowrap}
.body{padding:8px 12px 12px 32px;border-top:1px solid var(--line)}
.cmeta{display:flex;flex-wrap:wrap;gap:2px 28px;font-size:12.5px}
.cmeta>div{display:flex;gap:8px;align-items:baseline}
.cmeta>div.wide{flex-basis:100%}
.cmeta dt{min-width:56px}
.waiver{margin-top:8px;padding:6px 10px;border-radius:6px;background:var(--waived-bg);border:1px solid #b3c6dc;
font-size:13px}
.waiver.expired{background:var(--warned-bg);border-color:#d4a72c}
.facts{display:grid;grid-template-columns:1fr 1fr;gap:16px;margin-top:10px}
.facts>div{min-width:0}
table.kv{width:100%;font-size:12.5px}
.kv th,.kv td{border-bottom:1px solid #eaeef2;padding:3px 8px 3px 0;text-align:left;vertical-align:top}
.kv th{font-family:var(--mono);font-weight:600;color:var(--muted);white-space:nowrap;width:1%}
.kv td{overflow-wrap:anywhere}
.json{color:#0a3069}
.scalar{font-family:var(--mono);color:#0550ae}
footer{margin:32px 0 8px;font-size:12px;color:var(--muted)}
@media (max-width:760px){.tiles{grid-template-columns:repeat(4,minmax(0,1fr))}.facts{grid-template-columns:1fr}
summary{grid-template-columns:12px 1fr 1fr}.what,.dur{grid-column:1/-1}}
@media print{
@page{margin:14mm}
body{font-size:12px}main{max-width:none;padding:0}
a{text-decoration:none}
header.run,.tile,details.check,.blocking,table{break-inside:avoid}
details.check{break-inside:avoid-page}
summary::before{content:""}
summary{grid-template-columns:0 78px 78px minmax(0,1fr) auto}
details::details-content{content-visibility:visible;display:block}
details:not([open]) .body{display:block}
*{-webkit-print-color-adjust:exact;print-color-adjust:exact}
}
"""
