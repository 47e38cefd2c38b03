"""What report.html and the period report share: the stylesheet, escaping and the template environment.

Both pages are rendered with Jinja2 from templates shipped in the package
(`opsproof/evidence/templates`, `opsproof/compliance/templates`), with autoescaping on:
every value that came from a results document (observed facts and messages come from
remote servers) is escaped on its way into the page. Both are self-contained: no
external stylesheet, script, font or image. The macros both pages use (`code`,
`chips`, `outcome_badge`, `severity_badge`, `kv_table`) are template globals, the page's
head is a macro in `templates/macros.html.j2`::

    {% from "macros.html.j2" import head %}
    <td>{{ severity_badge(check.severity) }}</td><td>{{ code(check.id) }}</td>
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Iterable
from functools import cache
from typing import Any

import jinja2
from markupsafe import Markup

from opsproof.evidence.precompiled import PrecompiledLoader

# Display order: what needs a human comes first. Matches outcomes.OUTCOMES, kept here so
# a page can draw any results.json (old or foreign) without importing the run.
OUTCOME_ORDER = ("failed", "error", "warned", "waived", "skipped", "passed")
SEVERITY_ORDER = ("critical", "high", "medium", "low")
MISSING = "\u2014"


@cache
def environment(package: str = "opsproof.evidence") -> jinja2.Environment:
    """The template environment of `package`'s templates (and the shared ones), autoescaping on."""
    loaders: list[jinja2.BaseLoader] = [jinja2.PackageLoader(package, "templates")]
    if package != "opsproof.evidence":
        loaders.append(jinja2.PackageLoader("opsproof.evidence", "templates"))
    env = jinja2.Environment(
        # report.html's templates come with their Python source made beforehand (~35 ms a run less).
        loader=PrecompiledLoader(jinja2.ChoiceLoader(loaders)),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.StrictUndefined,
    )
    # `t`: any value as escaped text (html.escape, as every page since the first escaped it).
    env.filters.update(t=text_of, ts=lambda v: text_of(timestamp(v)), dur=lambda v: text_of(duration(v)))
    env.globals.update(
        code=code,
        chips=chips,
        outcome_badge=outcome_badge,
        severity_badge=severity_badge,
        kv_table=kv_table,
        tok=css_token,
        css=Markup(CSS),
        MISSING=MISSING,
        OUTCOME_ORDER=OUTCOME_ORDER,
        SEVERITY_ORDER=SEVERITY_ORDER,
    )
    return env


def text_of(value: Any, missing: str = MISSING) -> Markup:
    """A value as escaped text for a template (None: `missing`)."""
    return Markup(esc(value) if missing == MISSING else html.escape(as_text(value, missing), quote=True))


# The pieces every check row repeats are functions rather than template macros: a macro
# call costs ~10x a function call, and report.html of 1,000 checks must render in well
# under a second. Each escapes every value it is given (`esc`) and returns markup.


def code(value: Any, cls: str = "") -> Markup:
    if value in (None, ""):
        return Markup(esc(None))
    return Markup(f'<code class="{cls}">{esc(value)}</code>' if cls else f"<code>{esc(value)}</code>")


def chips(values: Any, cls: str = "chip") -> Markup:
    items = as_list(values) if not isinstance(values, str) else [values]
    if not items:
        return Markup(esc(None))
    return Markup(" ".join(f'<span class="{cls}">{esc(v)}</span>' for v in items))


def outcome_badge(outcome: Any) -> Markup:
    name = as_text(outcome, "unknown")
    return Markup(f'<span class="badge o-{css_token(name, OUTCOME_ORDER)}">{esc(name)}</span>')


def severity_badge(severity: Any) -> Markup:
    name = as_text(severity, "unknown")
    return Markup(f'<span class="sev v-{css_token(name, SEVERITY_ORDER)}">{esc(name)}</span>')


def kv_table(value: Any) -> Markup:
    """A dict as a small key/value table; nested values as compact JSON so nothing is hidden."""
    if isinstance(value, dict) and value:
        rows = "".join(f"<tr><th>{esc(k)}</th><td>{_scalar(v)}</td></tr>" for k, v in value.items())
        return Markup(f'<table class="kv">{rows}</table>')
    if value in (None, {}, [], ""):
        return Markup(f'<p class="muted">{MISSING}</p>')
    return Markup(f"<pre>{esc(value)}</pre>")


def _scalar(value: Any) -> str:
    if isinstance(value, (dict, list, tuple)):
        return f'<code class="json">{esc(value)}</code>'
    if isinstance(value, str):
        return esc(value) if value else '<span class="muted">""</span>'
    return f'<span class="scalar">{esc(value)}</span>'


def css_token(value: str, known: Iterable[str]) -> str:
    # Class names are built only from known words; anything else from the data becomes "unknown".
    return value if value in known else "unknown"


def timestamp(value: Any) -> str:
    # "2026-11-24T10:45:00.123Z" -> "2026-11-24 10:45:00.123 UTC": easier to read, same instant.
    if isinstance(value, str) and value.endswith("Z") and "T" in value:
        return value[:-1].replace("T", " ", 1) + " UTC"
    return as_text(value)


def duration(seconds: Any) -> str:
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
        return as_text(seconds)
    if seconds < 1:
        return f"{seconds * 1000:.1f} ms"
    if seconds < 60:
        return f"{seconds:.2f} s"
    minutes, rest = divmod(int(seconds), 60)
    return f"{minutes}m {rest:02d}s"


class Lenient(dict[str, Any]):
    """A record as report.html's template reads it: a key it does not have is None, never an error."""

    def __missing__(self, key: str) -> None:
        return None


def as_dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, (list, tuple)) else []


# `json.dumps(value, ensure_ascii=False, separators=(", ", ": "), default=str)`, one encoder for every
# value (report.html of 10,000 checks writes ~40,000 nested facts as text).
_AS_TEXT = json.JSONEncoder(ensure_ascii=False, separators=(", ", ": "), default=str)


def as_text(value: Any, missing: str = MISSING) -> str:
    if value is None:
        return missing
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    try:
        return _AS_TEXT.encode(value)
    except (TypeError, ValueError):  # circular structures
        return repr(value)


_SPECIAL = re.compile(r"[&<>\"']")


def esc(value: Any) -> str:
    """Escaped text; the one way data reaches the page."""
    shown = as_text(value)
    # Most values (names, numbers, ids) need no escaping: one scan instead of five replaces.
    return html.escape(shown, quote=True) if _SPECIAL.search(shown) else shown




CSS = """
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
/* seven tiles in a row leave ~100 px each below 960 px: a figure like 96.8% must still fit its tile */
@media (max-width:960px){.tile{padding:8px 8px}.tile .n{font-size:22px}}
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
