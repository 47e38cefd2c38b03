"""report.html's own styles, added after the stylesheet it shares with the period report (page.CSS)."""

from __future__ import annotations

REPORT_CSS = """
header.run .verdict{margin:10px 0 0;font-size:16px;font-weight:600}
header.run .tiles{margin-top:12px;gap:8px;grid-template-columns:none;grid-auto-flow:column;
grid-auto-columns:minmax(0,1fr)}
header.run .tile{padding:5px 10px;border-top-width:4px}
header.run .tile .n{font-size:22px}
.runline{margin:10px 0 0;font-size:12.5px;color:var(--muted)}
.runline code{color:var(--fg)}
details.runmeta{margin-top:6px}
details.runmeta>summary{display:block;padding:4px 0;font-size:12.5px;color:var(--muted)}
details.runmeta>summary::before{margin-right:6px}
details.runmeta[open]>summary{color:var(--fg)}
.attention{margin-top:16px}
.blocking .why{margin:0 0 8px;font-size:12.5px;color:#82071e}
.blocking.ok{padding:8px 16px}.blocking.ok h2{font-size:15px}.blocking.ok p{margin:4px 0 0}
h3.group .why{margin-left:6px;font-weight:400;text-transform:none;letter-spacing:0;color:var(--muted)}
.rows details.check:not([open])>summary{padding:4px 10px}
.checks .rows details.check{margin:2px 0}
.checks .rows summary{display:flex;gap:10px;white-space:nowrap;overflow:hidden}
.checks .rows .sev{width:78px;flex:none}.checks .rows .sev.v-critical{background:#fff;color:#82071e}
.checks .rows summary>b{font-family:var(--mono);font-size:13px}
.checks .rows summary>i{font-style:normal;font-size:12.5px;color:var(--muted)}
.checks .rows summary>i::before{content:"\\2192  "}
.checks .rows summary>em{flex:1;min-width:0;overflow:hidden;text-overflow:ellipsis;font-style:normal;color:var(--muted)}
.checks .rows summary>small{font-size:12px;color:var(--muted);font-variant-numeric:tabular-nums}
.checks .rows details[open]>summary{flex-wrap:wrap;white-space:normal}
.checks .chunk{content-visibility:auto;contain-intrinsic-size:auto 3300px}
.scroll{overflow-x:auto}
@media (max-width:900px){
main{padding:12px}
.meta{grid-template-columns:minmax(0,1fr)}
.meta>div{grid-template-columns:96px minmax(0,1fr)}
header.run .tiles{gap:5px}
header.run .tile{padding:4px 6px}
header.run .tile .n{font-size:19px}
header.run .tile .l{font-size:10.5px}
summary{grid-template-columns:12px 78px 78px minmax(0,1fr)}
.dur{display:none}
.facts{grid-template-columns:minmax(0,1fr)}
table.sevtable{min-width:0}
}
@media print{
.checks .chunk{content-visibility:visible}
details.runmeta .meta{display:grid}
}
"""
