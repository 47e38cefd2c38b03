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
from collections.abc import Callable, Mapping
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
# The most items (and keys) of the facts a drafter holds one list of for those drafted alike.
_ALIKE_LONGEST = 8
# One record drafted alone (`FactsDrafter.record`): its fields, and its pending texts in the order a reader meets them.
Draft = tuple[list[Any], list[str]]


class FactsData:
    """Collects the checks whose facts are drawn on demand; `script()` is the element that carries them."""

    def __init__(self) -> None:
        self._rows: dict[int, Mapping[str, Any]] = {}
        self._drafts: dict[int, Draft] = {}

    def add(self, row: int, check: Mapping[str, Any], draft: Draft | None = None) -> None:
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
        # Each record drafted alone (`FactsDrafter`: as its check ended, or now), then in the rows' order its
        # texts counted, its facts' shapes and chip lists numbered, its start made relative to the first, and
        # its observed/expected facts found among those drafted alike (`_Alike`); then each pending text
        # written out, or as a reference when it is shared, once for each set of facts drafted alike.
        drafter = FactsDrafter()
        drafts = self._drafts
        texts_met: list[str] = []  # every record's pending texts, in the order a reader meets them
        shapes: dict[tuple[Any, ...], int] = {}
        lists: dict[tuple[str, ...], int] = {}
        alike = _Alike()
        base_ms: int | None = None
        # Per row: its draft (never changed: one made ahead is the run's), its start, its chip lists' numbers,
        # and its observed and expected facts (the first drafted alike, else as drafted).
        records: dict[int, tuple[list[Any], Any, int, int, Any, Any]] = {}
        for row, check in self._rows.items():
            given = drafts.get(row)
            record, texts = given if given is not None else drafter.record(check)
            texts_met += texts
            started = record[3]
            if type(started) is int:  # milliseconds since the epoch (else a pending text)
                if base_ms is None:
                    base_ms = started
                started -= base_ms
            markers = lists.setdefault(record[5], len(lists))
            controls = lists.setdefault(record[6], len(lists))
            observed, expected = record[7], record[8]
            if type(observed) is list:
                observed = alike.first(observed, shapes)
            if type(expected) is list:
                expected = alike.first(expected, shapes)
            records[row] = (record, started, markers, controls, observed, expected)
        # The table lists the shared texts in the order a reader first meets them.
        counts = Counter(texts_met)
        del texts_met
        table = [text for text, seen in counts.items() if seen > 1 and len(text) >= SHORTEST_SHARED]
        index = {text: at for at, text in enumerate(table)}
        alike.merge(lambda facts: _final_facts(facts, shapes, index))
        # Observed/expected written alike are one list, written once; those of more than one record are
        # written once into `d`, in the order the rows first hold them.
        written: dict[int, list[Any]] = {}
        shared: dict[int, int] = {}
        dicts: list[Any] = []
        seen = alike.seen
        rows: list[Any] = [None] * (max(records) + 1)
        shared_at = index.get
        for row, (record, started, markers, controls, *facts) in records.items():
            prefix, rest, kind, _, phase = record[:5]
            # Inline for the texts every record has (the id's prefix, the kind, the phase): `_final` of each.
            final = [
                prefix if type(prefix) is not str or (at := shared_at(prefix)) is None else [at],
                rest if rest == 1 else _final(rest, index),
                kind if type(kind) is not str or (at := shared_at(kind)) is None else [at],
                started if type(started) is int else _final(started, index),
                phase if type(phase) is not str or (at := shared_at(phase)) is None else [at],
                markers,
                controls,
            ]
            for drafted in facts:
                if type(drafted) is not list:
                    final.append(_final(drafted, index))
                    continue
                drafted = alike.of(drafted)
                key = id(drafted)
                if seen[key] > 1:
                    at = shared.get(key)
                    if at is None:
                        at = shared[key] = len(dicts)
                        dicts.append(_final_facts(drafted, shapes, index))
                    final.append(at)
                else:
                    once = written.get(key)
                    if once is None:
                        once = written[key] = _final_facts(drafted, shapes, index)
                    final.append(once)
            if len(record) > 9:
                final.extend(_final(field, index) for field in record[9:])
            rows[row] = final
        return {
            "v": 1,
            "b": base_ms,
            "t": table,
            "k": [[as_text(key) for key in keys] for keys in shapes],
            "l": [[as_text(item) for item in items] for items in lists],
            "d": dicts,
            "c": rows,
        }


class _Alike:
    """The observed/expected facts of a page's records, each found among those drafted alike before it.

    Written alike, facts are held once in the page's data (thresholds and bodies recur in thousands
    of records). Drafted alike (the same items of the same types), they are written alike; found by
    their items, where the repr of each record's written facts (~3 ms for 1,000 records) was the key.
    """

    __slots__ = ("_by_id", "_firsts", "_into", "_types", "_variants", "seen")

    def __init__(self) -> None:
        self._firsts: dict[tuple[Any, ...], list[Any]] = {}  # the first facts of equal items
        # Where items are equal but not of the same types (1, True and 1.0; a str and a str subclass):
        # the first of each types, written alike or not (`merge`).
        self._variants: dict[tuple[tuple[Any, ...], tuple[type, ...]], list[Any]] = {}
        self._into: dict[int, list[Any]] = {}  # a variant written as an earlier one, by its id
        self._types: dict[int, tuple[type, ...]] = {}  # the types of a first one's items, by its id, once asked
        self._by_id: dict[int, list[Any]] = {}  # the first one of each list met, by the list's id
        self.seen: Counter[int] = Counter()  # how many records hold each first one, by its id

    def first(self, facts: list[Any], shapes: dict[tuple[Any, ...], int]) -> list[Any]:
        """The first facts drafted alike (`facts` when they are the first); numbers a new shape, in order."""
        found = self._by_id.get(id(facts))
        if found is None:  # a list not met yet (a drafter gives short facts drafted alike as one list)
            found = self._by_id[id(facts)] = self._find(facts, shapes)
        self.seen[id(found)] += 1
        return found

    def _find(self, facts: list[Any], shapes: dict[tuple[Any, ...], int]) -> list[Any]:
        items = tuple(facts)
        found = self._firsts.get(items)
        if found is None:
            found = self._firsts[items] = facts
            shapes.setdefault(facts[0], len(shapes))
        elif found is not facts:
            types = tuple(map(type, facts))
            first_types = self._types.get(id(found))
            if first_types is None:
                first_types = self._types[id(found)] = tuple(map(type, found))
            if types != first_types:
                found = self._variants.setdefault((items, types), facts)
        return found

    def merge(self, written: Callable[[list[Any]], list[Any]]) -> None:
        """Once the shared texts are known: variants written alike (`written`) are the first of them."""
        firsts: dict[str, list[Any]] = {}
        for (items, _), variant in self._variants.items():  # in the order the rows first hold them
            first = self._firsts[items]
            firsts.setdefault(repr(written(first)), first)
            into = firsts.setdefault(repr(written(variant)), variant)
            if into is not variant:
                self._into[id(variant)] = into
                self.seen[id(into)] += self.seen.pop(id(variant))

    def of(self, facts: list[Any]) -> list[Any]:
        """The first facts written alike: `facts`, or the earlier variant they were merged into."""
        return self._into.get(id(facts), facts) if self._into else facts


# `json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)`, made once and without the
# encoder's guard against a list holding itself (~20% of its time): the page's data is lists this module made.
_SCRIPT_JSON = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False, check_circular=False)


def script_safe_json(value: Any) -> str:
    """JSON that can stand inside a <script> element: no `</script>`, `<!--` or `&` in it, still the same JSON."""
    text = _SCRIPT_JSON.encode(value)
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
        # Short facts drafted alike (the same items of the same types) as one list: the same thresholds recur
        # in thousands of records, and the page finds one list at once among those it holds (`_Alike.first`).
        self._alike: dict[tuple[Any, ...], list[Any]] = {}

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

    def record(self, check: Mapping[str, Any]) -> Draft:
        """`[id prefix, id rest, kind, started, phase, markers, controls, observed, expected, waiver?]`, pending.

        A pending text is a str, or (text, kind) for a scalar's text, a nested value's JSON or a
        text shown as it is; started is Unix milliseconds (an int) when the page can write it back
        exactly; markers and controls are tuples of texts; facts are `[keys, value, ...]`. With it,
        its pending texts in the order a reader meets them (the page counts them).
        """
        node = as_text(check.get("id"))
        cut = node.find("[")  # "checks/health/test_http.py::test_health[svc-1]": the prefix is shared by a kind
        prefix, rest = (node, "") if cut < 0 else (node[:cut], node[cut:])
        target = check.get("target")
        kind, phase = as_text(check.get("kind")), as_text(check.get("phase"))
        started = _started(check.get("started_at"))
        texts = [prefix, kind, phase] if type(started) is int else [prefix, kind, started, phase]
        record: list[Any] = [
            prefix,
            # Most ids end in "[<target>]"; 1 says so, and the page takes the target from the row.
            1 if isinstance(target, str) and target and rest == f"[{target}]" else (rest, _AS_IS),
            kind,
            started,
            phase,
            self.chips(check.get("markers")),
            self.chips(check.get("controls")),
            self.facts(check.get("observed"), texts),
            self.facts(check.get("expected"), texts),
        ]
        waiver = check.get("waiver")
        if isinstance(waiver, dict):
            # The order the page's script reads them in; the status first, "expired" or anything else.
            keys = ("status", "ticket", "approved_by", "expires", "check", "reason")
            shown = [as_text(waiver.get(k)) for k in keys]
            texts += shown
            record.append(shown)
        return record, texts

    def chips(self, values: Any) -> tuple[str, ...]:
        # As page.chips reads them: a string is one chip, anything else not a list is none.
        items = tuple([values] if isinstance(values, str) else as_list(values))
        if not all(isinstance(item, str) for item in items):
            items = tuple(as_text(item) for item in items)
        return self._lists.setdefault(items, items)

    def facts(self, value: Any, texts: list[str]) -> Any:
        """As page.kv_table shows it: None (nothing), a string (shown as it is), or [keys, values...]."""
        if not (isinstance(value, dict) and value):
            return None if value in (None, {}, [], "") else (as_text(value), _AS_IS)
        drafted: list[Any] = [tuple(value)]
        pending = texts.append
        # The loop every fact of every collapsed row goes through: the common types first, inline.
        for fact in value.values():
            kind = type(fact)
            if kind is str:
                pending(fact)
                drafted.append(fact)
            elif (
                fact is None
                or kind is bool
                or (kind is int and -(2**53) < fact < 2**53)
                or (kind is float and _SAFE_FLOAT[0] <= abs(fact) < _SAFE_FLOAT[1] and not fact.is_integer())
            ):
                drafted.append(fact)
            else:
                if isinstance(fact, (dict, list, tuple)):
                    text, how = self.json_text(fact), _JSON
                elif isinstance(fact, str):  # a subclass: a text like the others
                    text, how = fact, _STRING
                else:
                    text, how = as_text(fact), _SCALAR
                pending(text)
                drafted.append(text if how == _STRING else (text, how))
        if len(drafted) <= _ALIKE_LONGEST:
            drafted = self._alike.setdefault((*drafted, *map(type, drafted)), drafted)
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


def _final_facts(drafted: list[Any], shapes: dict[tuple[Any, ...], int], index: dict[str, int]) -> list[Any]:
    """Drafted observed/expected facts written: `[shape, value, ...]`, the shape numbered."""
    return _final_items(drafted, [shapes[drafted[0]]], 1, index)


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
        return _final_items(field, [], 0, index)
    return field


def _final_items(items: list[Any], written: list[Any], start: int, index: dict[str, int]) -> list[Any]:
    """`written` with `items[start:]` written after it (`_final` of each)."""
    # Inline for the plain items of a record's facts (most of every list): one call fewer each.
    for item in items[start:] if start else items:
        what = type(item)
        if what is str:
            at = index.get(item)
            written.append(item if at is None else [at])
        elif what is tuple or what is list:
            written.append(_final(item, index))
        else:
            written.append(item)
    return written
