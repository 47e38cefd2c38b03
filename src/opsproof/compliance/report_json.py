"""report.json of a period report: the whole model, for machines and for the other formats' tests."""

from __future__ import annotations

import json
from typing import Any


def render_json(report: dict[str, Any]) -> str:
    return json.dumps(report, indent=2, default=str) + "\n"
