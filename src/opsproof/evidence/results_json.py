"""results.json: the machine-readable record of the run.

One check per line: readable and diffable, and written by json's C encoder (an
indented dump of 1,000 checks goes through the pure-Python one, ten times slower).
Made in pieces (`json_chunks`: the head, then one piece per check), so the bundle
writes a 10,000-check file without holding it, or a dump of every record, whole.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

from opsproof.model.results import Results


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
