/* report.html: draws a collapsed check's facts when it is opened, from the JSON embedded once in the page
   (the format is described in opsproof/evidence/html_facts.py; the markup is html_rows.check_body's).
   Allowed by its hash in the page's Content-Security-Policy; no inline handlers, no network, text only
   (textContent only, never parsed as markup: the facts come from remote servers). */
(() => {
  "use strict";
  const MISSING = "\u2014";
  let data;
  const load = () => {
    if (data === undefined) {
      const holder = document.getElementById("check-facts");
      data = holder ? JSON.parse(holder.textContent) : null;
    }
    return data;
  };
  const el = (tag, cls, text) => {
    const node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined) node.textContent = text;
    return node;
  };
  const add = (parent, ...children) => {
    for (const child of children) parent.append(child);
    return parent;
  };
  const text = (v) => (Array.isArray(v) ? data.t[v[0]] : v);

  // One value of an observed/expected dict, as page._scalar writes it.
  const value = (v) => {
    if (v === null) return el("span", "scalar", MISSING);
    if (typeof v === "boolean" || typeof v === "number") return el("span", "scalar", String(v));
    if (typeof v === "string") return v === "" ? el("span", "muted", '""') : document.createTextNode(v);
    const shown = typeof v[0] === "number" ? data.t[v[0]] : v[0];
    if (v.length === 1) return document.createTextNode(shown);
    return v[1] === 2 ? el("code", "json", shown) : el("span", "scalar", shown);
  };

  // observed or expected, as page.kv_table writes it.
  const facts = (f) => {
    if (f === null) return el("p", "muted", MISSING);
    if (typeof f === "string") return el("pre", "", f);
    const [shape, ...values] = typeof f === "number" ? data.d[f] : f;
    const table = el("table", "kv");
    data.k[shape].forEach((key, i) => {
      add(table, add(el("tr"), el("th", "", key), add(el("td"), value(values[i]))));
    });
    return table;
  };

  const chips = (list, cls) => {
    const items = data.l[list];
    const dd = el("dd");
    if (!items.length) return add(dd, MISSING);
    items.forEach((item, i) => add(dd, ...(i ? [" "] : []), el("span", cls, item)));
    return dd;
  };

  const item = (label, content, wide) => add(el("div", wide ? "wide" : ""), el("dt", "", label), content);

  const waiver = ([status, ticket, approvedBy, expires, pattern, reason]) => {
    const expired = text(status) === "expired";
    const note = el("div", expired ? "waiver expired" : "waiver");
    add(note, el("b", "", expired ? "Waiver expired: not applied, the failure counts" : "Waived"), " \u00b7 ticket ");
    add(note, el("span", "ticket", text(ticket)), ` \u00b7 approved by ${text(approvedBy)}`);
    add(note, ` \u00b7 expires ${text(expires)} \u00b7 pattern `, el("code", "", text(pattern)), el("br"));
    return add(note, `reason: ${text(reason)}`);
  };

  const body = (row, record) => {
    const [prefix, rest, kind, started, phase, markers, controls, observed, expected, waived] = record;
    // What the row's line shows already: a full row's .target/.dur, a one-line row's i/small.
    const shownOf = (selector) => row.querySelector(selector)?.textContent ?? MISSING;
    const target = shownOf("summary .target, summary > i");
    const id = text(prefix) + (rest === 1 ? `[${target}]` : rest);
    const at = typeof started === "number" ? new Date(data.b + started).toISOString() : null;
    const meta = add(
      el("dl", "cmeta"),
      item("id", add(el("dd"), id === MISSING ? id : el("code", "", id)), true),
      item("target", el("dd", "", target)),
      item("kind", el("dd", "", text(kind))),
      item("started", el("dd", "", at ? `${at.slice(0, 10)} ${at.slice(11, -1)} UTC` : text(started))),
      item("duration", el("dd", "", shownOf("summary .dur, summary > small"))),
      item("phase", el("dd", "", text(phase))),
      item("markers", chips(markers, "chip"), true),
      item("controls", chips(controls, "control"), true),
    );
    const shown = add(
      el("div", "facts"),
      add(el("div"), el("h4", "", "observed"), facts(observed)),
      add(el("div"), el("h4", "", "expected"), facts(expected)),
    );
    return add(el("div", "body"), meta, ...(waived ? [waiver(waived)] : []), shown);
  };

  const draw = (row) => {
    if (!(row instanceof HTMLDetailsElement) || !row.classList.contains("check")) return;
    if (row.querySelector(":scope > .body") || !load()) return;
    const record = data.c[Number(row.id.slice("check-".length))];
    if (record) row.append(body(row, record));
  };

  // `toggle` does not bubble: listen while it goes down (capture).
  document.addEventListener("toggle", (event) => { if (event.target.open) draw(event.target); }, true);
  // A link to #check-N (controls, waivers, maintenance) opens that row.
  const follow = () => {
    const target = location.hash.length > 1 && document.getElementById(decodeURIComponent(location.hash.slice(1)));
    if (!(target instanceof HTMLDetailsElement)) return;
    target.open = true;
    draw(target); // now, not when the toggle event comes: the row is on screen at once
  };
  window.addEventListener("hashchange", follow);
  follow();
  // Printed, every row shows its facts, as every page before this one did.
  window.addEventListener("beforeprint", () => document.querySelectorAll("details.check").forEach(draw));
})();
