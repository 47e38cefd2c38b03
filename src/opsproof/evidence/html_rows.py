"""One check's row in report.html: the summary line, and the facts beneath it (drawn here, or on demand).

Rows are built as strings rather than in the template: over 10,000 checks the template's own
lookups, filters and escaping cost more than the page is worth waiting for. Everything put
into a row goes through `esc` or one of the page functions, which escape what they are given.

A row whose facts are not drawn here has an empty body; `report.js` draws it from the facts
embedded once in the page (`html_facts`) when the row is opened, with the same markup.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from opsproof.evidence.html_maintenance import maintenance_tag
from opsproof.evidence.page import (
    OUTCOME_ORDER,
    as_text,
    chips,
    code,
    css_token,
    duration,
    esc,
    kv_table,
    outcome_badge,
    severity_badge,
    timestamp,
)


def check_row(check: Mapping[str, Any], anchor: str, *, is_open: bool, body: bool) -> str:
    """`<details id="check-N" class="check o-OUTCOME">`: badges, name, target, message, duration; facts if `body`."""
    outcome = as_text(check.get("outcome"))
    shown_duration = esc(duration(check.get("duration_s")))
    target = check.get("target")
    return "".join(
        (
            f'<details id="{anchor}" class="check o-{css_token(outcome, OUTCOME_ORDER)}"{" open" if is_open else ""}>',
            f"<summary>{outcome_badge(outcome)}{severity_badge(check.get('severity'))}",
            f'<span class="what"><span class="name">{esc(check.get("check", check.get("id")))}</span>',
            f'<span class="target">{esc(target)}</span>' if target not in (None, "") else "",
            _tags(check),
            f'<span class="msg">{esc(check.get("message"))}</span></span>',
            f'<span class="dur">{shown_duration}</span></summary>',
            check_body(check, shown_duration) if body else "",
            "</details>\n",
        )
    )


def compact_row(check: Mapping[str, Any], anchor: str) -> str:
    """One line (severity, name, target, message, duration) for a check that needs no one; facts on demand.

    The same `<details id="check-N" class="check o-OUTCOME">` as `check_row`, with short tags
    (`b` name, `i` target, `em` message, `small` duration): at 10,000 rows every byte is 10 kB.
    """
    return f'<details id="{anchor}"' + compact_rest(check)


def compact_rest(check: Mapping[str, Any]) -> str:
    """`compact_row` after its anchor: all of the row a check's record decides, made once its check ends."""
    outcome = as_text(check.get("outcome"))
    target = check.get("target")
    return "".join(
        (
            f' class="check o-{css_token(outcome, OUTCOME_ORDER)}">',
            f"<summary>{severity_badge(check.get('severity'))}<b>{esc(check.get('check', check.get('id')))}</b>",
            f"<i>{esc(target)}</i>" if target not in (None, "") else "",
            _tags(check),
            f"<em>{esc(check.get('message'))}</em><small>{esc(duration(check.get('duration_s')))}</small>",
            "</summary></details>\n",
        )
    )


def _tags(check: Mapping[str, Any]) -> str:
    """The waiver's and the maintenance window's chips beside the name, or ""."""
    waiver = check.get("waiver")
    if not isinstance(waiver, dict):
        return maintenance_tag(check)
    expired = waiver.get("status") == "expired"
    chip = (
        f' <span class="ticket{" expired" if expired else ""}">'
        f"{'expired waiver' if expired else 'waived by'} {esc(waiver.get('ticket'))}</span>"
    )
    return chip + maintenance_tag(check)


def check_body(check: Mapping[str, Any], shown_duration: str) -> str:
    """The facts under a row: id, target, kind, times, markers, controls, the waiver, observed and expected."""
    # Short facts share a line; the id and the chip lists get full rows because they run long.
    meta = (
        f'<dl class="cmeta"><div class="wide"><dt>id</dt><dd>{code(check.get("id"))}</dd></div>'
        f"<div><dt>target</dt><dd>{esc(check.get('target'))}</dd></div>"
        f"<div><dt>kind</dt><dd>{esc(check.get('kind'))}</dd></div>"
        f"<div><dt>started</dt><dd>{esc(timestamp(check.get('started_at')))}</dd></div>"
        f"<div><dt>duration</dt><dd>{shown_duration}</dd></div>"
        f"<div><dt>phase</dt><dd>{esc(check.get('phase'))}</dd></div>"
        f'<div class="wide"><dt>markers</dt><dd>{chips(check.get("markers"))}</dd></div>'
        f'<div class="wide"><dt>controls</dt><dd>{chips(check.get("controls"), "control")}</dd></div></dl>'
    )
    return (
        f'<div class="body">{meta}{waiver_note(check.get("waiver"))}'
        f'<div class="facts"><div><h4>observed</h4>{kv_table(check.get("observed"))}</div>'
        f"<div><h4>expected</h4>{kv_table(check.get('expected'))}</div></div></div>"
    )


def waiver_note(waiver: Any) -> str:
    if not isinstance(waiver, dict):
        return ""
    expired = waiver.get("status") == "expired"
    headline = "Waiver expired: not applied, the failure counts" if expired else "Waived"
    return (
        f'<div class="waiver{" expired" if expired else ""}"><b>{headline}</b> · ticket '
        f'<span class="ticket">{esc(waiver.get("ticket"))}</span> · approved by {esc(waiver.get("approved_by"))}'
        f" · expires {esc(waiver.get('expires'))} · pattern <code>{esc(waiver.get('check'))}</code><br>"
        f"reason: {esc(waiver.get('reason'))}</div>"
    )
