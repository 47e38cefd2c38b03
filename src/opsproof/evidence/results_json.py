"""results.json: the machine-readable record of the run.

One check per line: readable and diffable, and written by json's C encoder (an
indented dump of 1,000 checks goes through the pure-Python one, ten times slower).
"""

from __future__ import annotations

import json

from opsproof.model.results import Results


def render_json(results: Results) -> str:
    document = results.dump()
    head = {key: value for key, value in document.items() if key != "checks"}
    lines = [json.dumps(check, default=str) for check in document["checks"]]
    checks = "[\n    " + ",\n    ".join(lines) + "\n  ]" if lines else "[]"
    body = json.dumps(head, indent=2, default=str)
    return body[:-2] + f',\n  "checks": {checks}\n}}\n'
