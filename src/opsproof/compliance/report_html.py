"""report.html of a period report: one self-contained page an auditor reads.

It answers the four questions in order: did each control run every period (the daily
chart, expected against actual runs), what did it see (pass rates), who handled the
exceptions (each one with its resolution or waiver), and can the evidence be proved
unchanged (every bundle with its manifest hash, signature key and upload versions).
Like a bundle's report.html: everything escaped, nothing external, inline SVG only.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, timedelta
from typing import Any

from opsproof.compliance.periods import period_from_label
from opsproof.evidence.page import CSS, code, esc, severity_badge, timestamp
from opsproof.model.controls import framework_name

STATUS_COLOURS = {
    "failed": "#cf222e",
    "missed": "#6e7781",
    "waived": "#4f6d8f",
    "warned": "#d4a72c",
    "passed": "#2da44e",
    "none": "#eef1f4",
    "future": "#ffffff",
}
STATUS_WORDS = {
    "failed": "a check failed (not waived)",
    "missed": "no run",
    "waived": "failures, all waived",
    "warned": "warnings only",
    "passed": "all passed",
    "none": "not expected",
    "future": "not yet",
}
EXCEPTION_STATUSES = ("open", "missed", "waived", "resolved")


def render_period_html(report: dict[str, Any]) -> str:
    summary = report["summary"]
    verdict = _verdict(summary)
    parts = [
        '<!doctype html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n',
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n',
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">\n",
        f"<title>opsproof period report · {esc(report['environment'])} · {esc(report['period']['from'])} to "
        f"{esc(report['period']['to'])}</title>\n",
        f"<style>{CSS}{_PERIOD_CSS}</style>\n</head>\n<body>\n<main>\n",
        _header(report, verdict),
        _tiles(summary),
        _chart(report),
        _controls(report["controls"]),
        _exceptions(report["exceptions"]),
        _attestations(report["attestations"]),
        _bundles(report["bundles"]),
        "<footer>Built from the history store; every run is one evidence bundle, listed above with the sha256 of its "
        "manifest.json. To prove none changed: <code>opsproof verify --chain REPORT_DIR</code> (add "
        "<code>--public-key</code> for signed bundles), or <code>opsproof verify s3://bucket/prefix/BUNDLE</code> for "
        "uploaded ones. Times are UTC. report.json holds everything on this page.</footer>\n",
        "</main>\n</body>\n</html>\n",
    ]
    return "".join(parts)


def _verdict(summary: dict[str, Any]) -> tuple[str, str]:
    exceptions = summary["exceptions"]
    if exceptions["open"] or exceptions["missed"] or summary["attestations_missing"]:
        return "exceptions", "s-failed"
    return "no open exceptions", "s-passed"


def _header(report: dict[str, Any], verdict: tuple[str, str]) -> str:
    period = report["period"]
    through = "" if period["through"] == period["to"] else f" (so far: through {period['through']})"
    rows = [
        ("Period", f"{esc(period['from'])} to {esc(period['to'])}, {period['days']} days{esc(through)}"),
        ("Frameworks", esc(", ".join(report["frameworks"]) or "all")),
        ("Controls", esc(", ".join(report["controls_requested"]) or "all")),
        ("Generated", esc(timestamp(report["generated_at"]))),
        ("History", code(report["history"])),
        ("Profile", code(report["profile"])),
    ]
    meta = "".join(f"<div><dt>{esc(k)}</dt><dd>{v}</dd></div>" for k, v in rows)
    word, css = verdict
    return (
        f'<header class="run {css}"><div class="headline"><div><div class="eyebrow">opsproof period report · '
        f"environment</div><h1>{esc(report['environment'])}</h1></div>"
        f'<div class="status">{esc(word)}</div></div><dl class="meta">{meta}</dl></header>\n'
    )


def _percent(value: Any) -> str:
    return "—" if value is None else f"{value * 100:.1f}%"


def _tiles(summary: dict[str, Any]) -> str:
    exceptions = summary["exceptions"]
    tiles = [
        ("runs", summary["runs"], "total"),
        ("pass rate", _percent(summary["pass_rate"]), "o-passed"),
        ("open", exceptions["open"], "o-failed" if exceptions["open"] else "zero"),
        ("missed runs", exceptions["missed"], "o-error" if exceptions["missed"] else "zero"),
        ("waived", exceptions["waived"], "o-waived" if exceptions["waived"] else "zero"),
        ("resolved", exceptions["resolved"], "o-skipped"),
        ("attested", _percent(summary["attestation_coverage"]), "o-warned" if summary["attestations_missing"] else ""),
    ]
    cells = "".join(
        f'<div class="tile {css}"><span class="n">{esc(value)}</span><span class="l">{esc(label)}</span></div>'
        for label, value, css in tiles
    )
    return f'<section><h2>Summary</h2><div class="tiles">{cells}</div></section>\n'


# --- the daily chart --------------------------------------------------------------------------


def _chart(report: dict[str, Any]) -> str:
    days = report["days"]
    if not days:
        return ""
    controls = [c["control"] for c in report["controls"]]
    missed_days = {c["control"]: _missed_days(c) for c in report["controls"]}
    label_width, top = 150, 22
    cell = max(3.0, min(16.0, 900 / len(days)))
    row_height, gap = 14, 3
    rows = [("all checks", [d["status"] for d in days])]
    for control in controls:
        statuses = []
        for d in days:
            found = d["controls"].get(control)
            statuses.append(found or ("missed" if d["date"] in missed_days[control] else "none"))
        rows.append((control, statuses))
    width = label_width + cell * len(days) + 4
    height = top + len(rows) * (row_height + gap) + 4
    parts = [
        f'<svg class="chart" xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" height="{height:.0f}" '
        f'viewBox="0 0 {width:.0f} {height:.0f}" role="img" '
        f'aria-label="Daily status of {esc(report["environment"])}, {esc(days[0]["date"])} to '
        f'{esc(days[-1]["date"])}">'
    ]
    for index, day in enumerate(days):  # month labels
        when = date.fromisoformat(day["date"])
        if index == 0 or when.day == 1:
            x = label_width + index * cell
            parts.append(f'<text x="{x:.1f}" y="12" class="month">{when:%b %Y}</text>')
            parts.append(f'<line x1="{x:.1f}" y1="15" x2="{x:.1f}" y2="{height - 2:.0f}" class="tick"/>')
    for row, (name, statuses) in enumerate(rows):
        y = top + row * (row_height + gap)
        css = ' class="overall"' if row == 0 else ""
        parts.append(f'<text x="0" y="{y + 11}"{css}>{esc(name)}</text>')
        for index, status in enumerate(statuses):
            x = label_width + index * cell
            detail = _cell_detail(days[index], name, status, row == 0)
            parts.append(
                f'<rect x="{x:.1f}" y="{y}" width="{max(cell - 1, 1.5):.1f}" height="{row_height}" '
                f'fill="{STATUS_COLOURS.get(status, "#ffffff")}" class="c-{status}">'
                f"<title>{esc(detail)}</title></rect>"
            )
    parts.append("</svg>")
    legend = "".join(
        f'<span class="key"><span class="swatch" style="background:{colour}"></span>{esc(STATUS_WORDS[status])}</span>'
        for status, colour in STATUS_COLOURS.items()
    )
    return (
        '<section><h2>Daily status</h2><p class="muted">One column per UTC day; the first row is every check of the '
        "environment, then one row per control. Hover a cell for its counts.</p>"
        f'<div class="chartbox">{"".join(parts)}</div><div class="legend">{legend}</div></section>\n'
    )


def _missed_days(control: dict[str, Any]) -> set[str]:
    """Every day of every period the control missed (a missed week greys the whole week)."""
    days: set[str] = set()
    for cadence, found in control["cadences"].items():
        for label in found["missed"]:
            period = period_from_label(cadence, label)
            day = period.start
            while day < period.end:
                days.add(day.isoformat())
                day += timedelta(days=1)
    return days


def _cell_detail(day: dict[str, Any], name: str, status: str, overall: bool) -> str:
    text = f"{day['date']} {name}: {STATUS_WORDS.get(status, status)}"
    if overall and day["outcomes"]:
        counts = ", ".join(f"{n} {o}" for o, n in sorted(day["outcomes"].items()))
        text += f" ({day['runs']} run{'s' if day['runs'] != 1 else ''}: {counts})"
    return text


# --- tables -----------------------------------------------------------------------------------


def _controls(controls: list[dict[str, Any]]) -> str:
    if not controls:
        return '<section><h2>Controls</h2><p class="muted">No control had a run in this period.</p></section>\n'
    rows = []
    framework = None
    for control in controls:
        if control["framework"] != framework:  # one heading row per framework, named in full
            framework = control["framework"]
            rows.append(f'<tr class="fw"><th colspan="7">{esc(framework_name(framework))}</th></tr>')
        cadences = control["cadences"]
        expected = "<br>".join(
            f"{esc(name)}: <b>{c['ran']}</b> of {c['expected']}"
            + (f' <span class="muted">(from {esc(c["from"])})</span>' if c["from"] else "")
            for name, c in cadences.items()
        )
        missed = [label for c in cadences.values() for label in c["missed"]]
        missed_text = (
            f'<span class="bad">{len(missed)} missed: {esc(", ".join(missed[:8]))}'
            + (f" and {len(missed) - 8} more" if len(missed) > 8 else "")
            + "</span>"
            if missed
            else '<span class="muted">none</span>'
        )
        outcomes = " ".join(
            f'<span class="count o-{esc(o)}">{n} {esc(o)}</span>' for o, n in control["outcomes"].items() if n
        )
        rows.append(
            f'<tr><td><span class="control">{esc(control["control"])}</span></td>'
            f"<td>{esc(control['title'] or '(not in the catalogue)')}</td><td>{expected or '—'}</td>"
            f'<td>{missed_text}</td><td class="num">{esc(control["checks"])}</td>'
            f'<td class="num strong">{esc(_percent(control["pass_rate"]))}</td><td>{outcomes}</td></tr>'
        )
    return (
        '<section><h2>Controls</h2><table class="grid"><thead><tr><th>control</th><th>what it asks</th>'
        "<th>runs (of expected)</th><th>timing exceptions</th><th>checks</th><th>pass rate</th><th>records</th>"
        f"</tr></thead><tbody>{''.join(rows)}</tbody></table></section>\n"
    )


def _exceptions(exceptions: list[dict[str, Any]]) -> str:
    if not exceptions:
        return '<section><h2>Exceptions</h2><p class="muted">None in this period.</p></section>\n'
    counts = {s: sum(1 for e in exceptions if e["status"] == s) for s in EXCEPTION_STATUSES}
    summary = " · ".join(f"{n} {s}" for s, n in counts.items() if n)
    rows = []
    for exception in exceptions:
        status = exception["status"]
        rows.append(
            f'<tr class="x-{status}"><td>{esc(exception["date"])}</td>'
            f'<td><span class="xstatus x-{status}">{esc(status)}</span></td>'
            f"<td>{severity_badge(exception['severity'])}</td>"
            f"<td>{code(exception['check']) if exception['check'] else '<i>timing</i>'}<br>"
            f"{_chips(exception['controls'])}</td>"
            f"<td>{esc(exception['message'])}</td><td>{_resolution(exception)}</td>"
            f"<td>{_bundle_ref(exception)}</td></tr>"
        )
    return (
        f'<section><h2>Exceptions ({len(exceptions)}: {esc(summary)})</h2><table class="grid exceptions"><thead><tr>'
        "<th>date</th><th>status</th><th>severity</th><th>check / controls</th><th>message</th>"
        f"<th>resolution</th><th>evidence</th></tr></thead><tbody>{''.join(rows)}</tbody></table></section>\n"
    )


def _resolution(exception: dict[str, Any]) -> str:
    status = exception["status"]
    if status == "waived":
        waiver = exception.get("waiver") or {}
        return (
            f'waived by <span class="ticket">{esc(waiver.get("ticket"))}</span>, approved by '
            f"{esc(waiver.get('approved_by'))}, until {esc(waiver.get('expires'))}: {esc(waiver.get('reason'))}"
        )
    if status == "resolved":
        return f"passed again {esc(timestamp(exception['resolved_at']))}<br>{code(exception['resolved_by'])}"
    if status == "missed":
        return '<span class="muted">the control did not run</span>'
    waiver = exception.get("waiver")
    expired = f" (waiver {esc(waiver.get('ticket'))} had expired)" if isinstance(waiver, dict) else ""
    return f'<span class="bad">open: no later passing run{expired}</span>'


def _bundle_ref(item: dict[str, Any]) -> str:
    if not item.get("bundle"):
        return "—"
    return f"{code(item['bundle'])}<br>{code(item['manifest_sha256'], 'hash')}"


def _attestations(attestations: list[dict[str, Any]]) -> str:
    if not attestations:
        return '<section><h2>Attestations</h2><p class="muted">No attestations declared or recorded.</p></section>\n'
    rows = []
    for item in attestations:
        missing = item["missing"]
        entries = "".join(
            f"<li>{esc(e['period'])}: <b>{esc(e['attested_by'])}</b> at {esc(timestamp(e['attested_at']))} "
            f"— {esc(e['note'])}"
            + (
                f' <span class="muted">[{esc(e["evidence_name"])} sha256 '
                f"{esc(str(e['evidence_sha256'])[:16])}…]</span>"
                if e["evidence_sha256"]
                else ""
            )
            + "</li>"
            for e in item["entries"]
        )
        rejected = "".join(
            f'<li class="bad">{esc(r["period"])}: {esc(r["attested_by"])} — not counted: {esc(r["reason"])}</li>'
            for r in item["rejected"]
        )
        coverage_css = "bad" if missing else "good"
        rows.append(
            f"<tr><td>{code(item['id'])}<br>{esc(item['title'])}</td><td>{esc(item['cadence'])}</td>"
            f"<td>{_chips(item['controls'])}</td>"
            f'<td class="num {coverage_css}"><b>{item["attested"]}</b> of {item["expected"]} '
            f"({esc(_percent(item['coverage']))})</td>"
            f'<td>{_missing(missing)}</td><td><ul class="entries">{entries}{rejected}</ul></td></tr>'
        )
    return (
        '<section><h2>Attestations</h2><table class="grid"><thead><tr><th>attestation</th><th>cadence</th>'
        "<th>controls</th><th>coverage</th><th>missing</th><th>attested</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table></section>\n"
    )


def _chips(controls: Sequence[str]) -> str:
    return " ".join(f'<span class="control">{esc(c)}</span>' for c in controls)


def _missing(labels: Sequence[str]) -> str:
    if not labels:
        return '<span class="muted">none</span>'
    shown = ", ".join(labels[:10]) + (f" and {len(labels) - 10} more" if len(labels) > 10 else "")
    return f'<span class="bad">{esc(shown)}</span>'


def _bundles(bundles: list[dict[str, Any]]) -> str:
    if not bundles:
        return '<section><h2>Evidence bundles</h2><p class="muted">No runs in this period.</p></section>\n'
    rows = []
    for bundle in bundles:
        upload = bundle["upload"] or {}
        where = esc(upload.get("location")) if upload else '<span class="muted">local only</span>'
        change = " ".join(f"{esc(k)} {code(v)}" for k, v in bundle["change"].items())
        rows.append(
            f"<tr><td>{esc(timestamp(bundle['started_at']))}</td><td>{code(bundle['bundle'])}"
            f"{f'<br>{change}' if change else ''}</td><td>{esc(bundle['status'])}</td>"
            f"<td>{code(bundle['manifest_sha256'], 'hash')}</td>"
            f"<td>{code(str(bundle['signed_by'])[:16], 'hash') if bundle['signed_by'] else '—'}</td>"
            f"<td>{where}</td></tr>"
        )
    return (
        f'<section><h2>Evidence bundles ({len(bundles)})</h2><table class="grid"><thead><tr><th>started</th>'
        "<th>bundle</th><th>status</th><th>manifest sha256</th><th>signed by key</th><th>uploaded</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table></section>\n"
    )


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
tr.x-open td{background:#fff5f5}
ul.entries{margin:0;padding-left:16px;font-size:12.5px}
table.exceptions td{font-size:12.5px}
.tiles .tile.o-warned .n{color:var(--warned)}
"""
