"""results.json: the machine-readable record of the run."""

from __future__ import annotations

import json
from typing import Any


def render_json(results: dict[str, Any]) -> str:
    return json.dumps(results, indent=2, sort_keys=False, default=str) + "\n"
