"""The facts of report.html's collapsed rows, embedded once as compact JSON and drawn on demand.

At 10,000 checks, a table per check (observed, expected, id, markers, controls: ~60 elements
and ~2 KiB each) made a 24 MiB page that took Chromium 14 s to open. Rows that start closed
(passed, skipped, waived) carry only their summary line; their facts are one JSON document
in `<script type="application/json" id="check-facts">`, read by the page's script when a
row is opened. The texts are decided here, exactly as `page.kv_table` writes them, so a
row drawn on demand shows what a server-drawn row shows.

The document, `{"v": 1, "b": ms, "t": [...], "k": [...], "l": [...], "d": [...], "c": [...]}`:

- `t`: texts that occur more than once (ids' prefixes, content types, bodies, thresholds...);
  `[i]` in a text's place is `t[i]`.
- `k`: the key lists of observed/expected dicts (one per shape); `l`: marker/control lists;
  `d`: observed/expected dicts that occur more than once (the same thresholds everywhere).
- `c[n]`: the record of the row `check-n`, or null when its facts are in the page already:
  `[id prefix, id rest, kind, started, phase, markers, controls, observed, expected, waiver?]`.
  Texts are a string or `[i]`; the id's rest is 1 when it is `[<target>]`; started is
  milliseconds after `b` (Unix ms) when the page can write it back exactly, else its text;
  markers/controls index `l`; observed/expected are null (nothing recorded), a string
  (shown as it is), an index into `d`, or `[shape, value, ...]` in the order of `k[shape]`.
- A value in a dict: a string (text), true/false/null, a number JS prints as Python does,
  or `[i]` (text `t[i]`), `[i, 1]` / `["...", 1]` (a scalar's text), `[i, 2]` / `["...", 2]`
  (a nested list/dict as compact JSON).

Every `<`, `>` and `&` is written `\\u003c`... so no text can end the script element.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from opsproof.evidence.page import as_list, as_text, timestamp

__all__ = ["FactsData"]

# Texts shorter than this cost less written out than as a reference ([12345]).
SHORTEST_SHARED = 5
_STRING, _SCALAR, _JSON, _AS_IS = 0, 1, 2, 3
_SAFE_FLOAT = (1e-4, 1e16)  # Python's repr and JavaScript's String() agree on floats in this range
# What a fact's list or dict may hold for its text to be remembered, and how many of them (three key parts each).
_FLAT = frozenset({str, int, float, bool, type(None)})
_FLAT_LONGEST = 3 * 16


class FactsData:
    """Collects the checks whose facts are drawn on demand; `script()` is the element that carries them."""

    def __init__(self) -> None:
        self._rows: dict[int, Mapping[str, Any]] = {}
        self._drafts: dict[int, list[Any]] = {}

    def add(self, row: int, check: Mapping[str, Any], draft: list[Any] | None = None) -> None:
        """The check of row `row`; `draft`: its record drafted already (`FactsDrafter.record`), as its check ended."""
        self._rows[row] = check
        if draft is not None:
            self._drafts[row] = draft

    def __bool__(self) -> bool:
        return bool(self._rows)

    def script(self) -> str:
        """`<script type="application/json" id="check-facts">...</script>`, or "" when no row needs it."""
        if not self._rows:
            return ""
        return f'<script type="application/json" id="check-facts">{script_safe_json(self.document())}</script>'

    def document(self) -> dict[str, Any]:
        # Each record drafted alone (its texts pending, its shapes, chip lists and start as they are), then
        # in the rows' order: the shapes and lists numbered, the starts made relative to the first, the
        # texts counted; then each pending text written out, or as a reference when it is shared.
        drafter = FactsDrafter()
        drafts = self._drafts
        records = {
            row: list(drafts[row]) if row in drafts else drafter.record(check) for row, check in self._rows.items()
        }
        counts, shapes, lists, base_ms = _number(records.values())
        table = [text for text, seen in counts.items() if seen > 1 and len(text) >= SHORTEST_SHARED]
        index = {text: at for at, text in enumerate(table)}
        # Observed/expected written alike are one list (the first written), counted by its id: the
        # second pass below then needs no second repr of each.
        first: dict[str, list[Any]] = {}
        dict_counts: Counter[int] = Counter()
        for record in records.values():
            for at, field in enumerate(record):
                record[at] = _final(field, index)
            for at in (7, 8):
                facts = record[at]
                if isinstance(facts, list):
                    facts = record[at] = first.setdefault(repr(facts), facts)
                    dict_counts[id(facts)] += 1
        del first
        shared: dict[int, int] = {}
        dicts: list[Any] = []
        for record in records.values():
            for at in (7, 8):
                facts = record[at]
                if isinstance(facts, list) and dict_counts[key := id(facts)] > 1:
                    record[at] = shared.setdefault(key, len(dicts))
                    if record[at] == len(dicts):
                        dicts.append(facts)
        rows: list[Any] = [None] * (max(records) + 1)
        for row, record in records.items():
            rows[row] = record
        return {
            "v": 1,
            "b": base_ms,
            "t": table,
            "k": [[as_text(key) for key in keys] for keys in shapes],
            "l": [[as_text(item) for item in items] for items in lists],
            "d": dicts,
            "c": rows,
        }


def _number(
    records: Iterable[list[Any]],
) -> tuple[Counter[str], dict[tuple[Any, ...], int], dict[tuple[str, ...], int], int | None]:
    """Drafted records, in the rows' order, made ready for `_final` (in place); what they share.

    Their facts' shapes and chip lists numbered in the order they first appear, the starts in
    milliseconds after the first, and their pending texts counted in the order a reader meets them
    (record by record, field by field): the table of shared texts lists them in that order.
    """
    counts: Counter[str] = Counter()
    shapes: dict[tuple[Any, ...], int] = {}
    lists: dict[tuple[str, ...], int] = {}
    base_ms: int | None = None
    for record in records:
        counts[record[0]] += 1
        counts[record[2]] += 1
        started = record[3]
        if type(started) is int:  # the milliseconds since the epoch: a text is pending
            if base_ms is None:
                base_ms = started
            record[3] = started - base_ms
        else:
            counts[started] += 1
        counts[record[4]] += 1
        record[5] = lists.setdefault(record[5], len(lists))
        record[6] = lists.setdefault(record[6], len(lists))
        for at in (7, 8):
            facts = record[at]
            if type(facts) is list:
                record[at] = facts = [shapes.setdefault(facts[0], len(shapes)), *facts[1:]]
                for item in facts:
                    if isinstance(item, str):
                        counts[item] += 1
                    elif type(item) is tuple:  # (text, how): a scalar's text or a nested value's JSON
                        counts[item[0]] += 1
        if len(record) > 9:
            for text in record[9]:
                counts[text] += 1
    return counts, shapes, lists, base_ms


def script_safe_json(value: Any) -> str:
    """JSON that can stand inside a <script> element: no `</script>`, `<!--` or `&` in it, still the same JSON."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


class FactsDrafter:
    """Drafts one check's record alone: its texts pending, its facts' shapes, chip lists and start as they are.

    A draft depends on its record only (`FactsData.document` numbers and counts what records share),
    so a record can be drafted as its check ends (`evidence.premade`) and the page made the same.
    """

    def __init__(self) -> None:
        # The JSON text of a small flat list or dict by its items and their types: the same
        # thresholds, statuses and bodies recur in thousands of records (4 encodings a check).
        self._json: dict[tuple[Any, ...], str] = {}
        self._lists: dict[tuple[str, ...], tuple[str, ...]] = {}  # one tuple for each chip list drafted alike

    def json_text(self, value: dict[Any, Any] | list[Any] | tuple[Any, ...]) -> str:
        """`as_text(value)`, worked out once for each flat value (only scalars in it) written alike."""
        shape = type(value)
        if shape is not dict and shape is not list and shape is not tuple:  # a subclass may show itself otherwise
            return as_text(value)
        items = value.items() if isinstance(value, dict) else enumerate(value)
        key: list[Any] = [shape]
        for name, item in items:
            kind = type(item)
            if kind not in _FLAT or len(key) > _FLAT_LONGEST:
                return as_text(value)
            key += (name, kind, item)  # with its type: 1, 1.0 and True are equal keys but different texts
        whole = tuple(key)
        text = self._json.get(whole)
        if text is None:
            text = self._json[whole] = as_text(value)
        return text

    def record(self, check: Mapping[str, Any]) -> list[Any]:
        """`[id prefix, id rest, kind, started, phase, markers, controls, observed, expected, waiver?]`, pending.

        A pending text is a str, or (text, kind) for a scalar's text, a nested value's JSON or a
        text shown as it is; started is Unix milliseconds (an int) when the page can write it back
        exactly; markers and controls are tuples of texts; facts are `[keys, value, ...]`.
        """
        node = as_text(check.get("id"))
        cut = node.find("[")  # "checks/health/test_http.py::test_health[svc-1]": the prefix is shared by a kind
        prefix, rest = (node, "") if cut < 0 else (node[:cut], node[cut:])
        target = check.get("target")
        record: list[Any] = [
            prefix,
            # Most ids end in "[<target>]"; 1 says so, and the page takes the target from the row.
            1 if isinstance(target, str) and target and rest == f"[{target}]" else (rest, _AS_IS),
            as_text(check.get("kind")),
            _started(check.get("started_at")),
            as_text(check.get("phase")),
            self.chips(check.get("markers")),
            self.chips(check.get("controls")),
            self.facts(check.get("observed")),
            self.facts(check.get("expected")),
        ]
        waiver = check.get("waiver")
        if isinstance(waiver, dict):
            # The order the page's script reads them in; the status first, "expired" or anything else.
            keys = ("status", "ticket", "approved_by", "expires", "check", "reason")
            record.append([as_text(waiver.get(k)) for k in keys])
        return record

    def chips(self, values: Any) -> tuple[str, ...]:
        # As page.chips reads them: a string is one chip, anything else not a list is none.
        items = tuple([values] if isinstance(values, str) else as_list(values))
        if not all(isinstance(item, str) for item in items):
            items = tuple(as_text(item) for item in items)
        return self._lists.setdefault(items, items)

    def facts(self, value: Any) -> Any:
        """As page.kv_table shows it: None (nothing), a string (shown as it is), or [keys, values...]."""
        if not (isinstance(value, dict) and value):
            return None if value in (None, {}, [], "") else (as_text(value), _AS_IS)
        drafted: list[Any] = [tuple(value)]
        # The loop every fact of every collapsed row goes through: the common types first, inline.
        for fact in value.values():
            kind = type(fact)
            if (
                kind is str
                or fact is None
                or kind is bool
                or (kind is int and -(2**53) < fact < 2**53)
                or (kind is float and _SAFE_FLOAT[0] <= abs(fact) < _SAFE_FLOAT[1] and not fact.is_integer())
                or isinstance(fact, str)  # a subclass: a text, pending like the others
            ):
                drafted.append(fact)
            elif isinstance(fact, (dict, list, tuple)):
                drafted.append((self.json_text(fact), _JSON))
            else:
                drafted.append((as_text(fact), _SCALAR))
        return drafted


def _started(value: Any) -> Any:
    """Unix milliseconds when the page can write the start back exactly from them, else its text."""
    if isinstance(value, str) and len(value) == 24 and value.endswith("Z"):
        try:
            at = datetime.fromisoformat(value)
        except ValueError:
            at = None
        if at is not None and at.isoformat(timespec="milliseconds").replace("+00:00", "Z") == value:
            return int(at.timestamp() * 1000 + 0.5)
    return timestamp(value)


def _final(field: Any, index: dict[str, int]) -> Any:
    """A drafted field with its pending texts written: the text, `[i]`, or `[text or i, kind]`."""
    kind = type(field)
    if kind is str:
        at = index.get(field)
        return field if at is None else [at]
    if kind is tuple:
        text, how = field
        if how == _AS_IS:
            return text
        at = index.get(text)
        return [text if at is None else at, how]
    if kind is list:
        # Inline for the plain items of a record's facts (most of every list): one call fewer each.
        written: list[Any] = []
        for item in field:
            what = type(item)
            if what is str:
                at = index.get(item)
                written.append(item if at is None else [at])
            elif what is tuple or what is list:
                written.append(_final(item, index))
            else:
                written.append(item)
        return written
    return field
