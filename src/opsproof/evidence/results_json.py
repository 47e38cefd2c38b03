"""results.json: the machine-readable record of the run.

One check per line: readable and diffable, and written by json's C encoder (an
indented dump of 1,000 checks goes through the pure-Python one, ten times slower).
Made in pieces (`json_chunks`: the head, then one piece per check), so the bundle
writes a 10,000-check file without holding it, or a dump of every record, whole.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from opsproof.model.results import CheckRecord, Results

# How `json_chunks` lays the checks out: after the head, one check per line, four spaces in.
_CHECKS_OPEN = ',\n  "checks": [\n    '
_CHECKS_CLOSE = "\n  ]\n}\n"


def json_chunks(results: Results) -> Iterator[str]:
    """results.json in pieces; joined, they are `render_json`'s text."""
    head = {"schema": results.schema_, **results.model_dump(exclude_unset=True, exclude={"schema_", "checks"})}
    body = json.dumps(head, indent=2, default=str)
    if not results.checks:
        yield body[:-2] + ',\n  "checks": []\n}\n'
        return
    yield body[:-2] + ',\n  "checks": [\n    '
    last = len(results.checks) - 1
    for index, check in enumerate(results.checks):
        line = json.dumps(check.model_dump(exclude_unset=True), default=str)
        yield line + (",\n    " if index < last else "\n  ]\n}\n")


def render_json(results: Results) -> str:
    return "".join(json_chunks(results))


def read_streamed(path: Path) -> tuple[Results, Iterator[CheckRecord]]:
    """results.json as its head (the document with no checks) and its checks, read one at a time.

    For readers that pass over the checks once (the history): a 10,000-check document as
    models is ~20 MiB. Only the layout `json_chunks` writes is read this way; the
    iterator raises ValueError (pydantic's ValidationError is one) on a line that is not a
    whole check, and a document laid out otherwise is read whole, so a caller that gets
    ValueError mid-way reads it with `Results.model_validate_json` instead.
    """
    text = path.read_text(encoding="utf-8")
    start = text.find(_CHECKS_OPEN)
    if start < 0 or not text.endswith(_CHECKS_CLOSE):
        whole = Results.model_validate_json(text)
        return whole, iter(whole.checks)
    head = Results.model_validate_json(text[:start] + ',\n  "checks": []\n}')

    def checks() -> Iterator[CheckRecord]:
        at, end = start + len(_CHECKS_OPEN), len(text) - len(_CHECKS_CLOSE)
        while at < end:
            stop = text.find("\n", at, end)
            stop = end if stop < 0 else stop
            line = text[at:stop]
            yield CheckRecord.model_validate_json(line[:-1] if stop < end else line)
            at = stop + 5  # past "\n    "

    return head, checks()
