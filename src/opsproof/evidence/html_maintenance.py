"""report.html's maintenance section and the tag a check inside a window carries.

A failure inside a planned window is shown with the window's name, schedule and ticket:
it did fail (the record keeps its outcome), it paged no one and did not block the run.
Windows whose glob matched no check are listed like waivers that matched nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from opsproof.evidence.page import esc as _esc


def maintenance_tag(check: Mapping[str, Any]) -> str:
    """The chip beside a check's name: `maintenance <window>`."""
    window = check.get("maintenance")
    if not isinstance(window, dict):
        return ""
    return f' <span class="ticket">maintenance {_esc(window.get("name"))}</span>'


def maintenance_section(summary: dict[str, Any], ordered: list[Mapping[str, Any]], anchors: list[str]) -> str:
    """Failures inside maintenance windows, and the windows that matched no check; nothing when neither."""
    held = [(a, c) for a, c in zip(anchors, ordered, strict=True) if isinstance(c.get("maintenance"), dict)]
    unmatched = [w for w in (summary.get("maintenance") or {}).get("unmatched") or [] if isinstance(w, dict)]
    if not (held or unmatched):
        return ""
    parts = [
        '<section><h2>Maintenance windows</h2><p class="muted">A check that failed inside a planned window '
        "keeps its outcome; it paged no one and did not block the run.</p>"
    ]
    if held:
        rows = "".join(
            f'<tr><td><span class="ticket">{_esc(c["maintenance"].get("name"))}</span></td>'
            f'<td><a href="#{a}"><code>{_esc(c.get("check"))}</code></a></td><td>{_esc(c.get("outcome"))}</td>'
            f"<td>{_esc(c['maintenance'].get('schedule'))}</td><td>{_esc(c['maintenance'].get('ticket'))}</td>"
            f"<td>{_esc(c.get('message'))}</td></tr>"
            for a, c in held
        )
        parts.append(
            '<table class="grid"><thead><tr><th>window</th><th>check</th><th>outcome</th><th>schedule</th>'
            f"<th>ticket</th><th>message</th></tr></thead><tbody>{rows}</tbody></table>"
        )
    if unmatched:
        rows = "".join(
            f'<tr><td><span class="ticket">{_esc(w.get("name"))}</span></td><td><code>{_esc(w.get("checks"))}</code>'
            f"</td><td>{_esc(w.get('schedule'))}</td><td>{_esc(w.get('ticket'))}</td></tr>"
            for w in unmatched
        )
        parts.append(
            f"<h3>Maintenance windows that matched nothing ({len(unmatched)})</h3>"
            '<table class="grid"><thead><tr><th>window</th><th>check pattern</th><th>schedule</th><th>ticket</th>'
            f"</tr></thead><tbody>{rows}</tbody></table>"
        )
    parts.append("</section>\n")
    return "".join(parts)
