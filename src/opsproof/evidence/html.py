"""report.html (placeholder until the real renderer lands)."""

from __future__ import annotations

import html
import json
from typing import Any


def render_html(results: dict[str, Any]) -> str:
    return "<!doctype html><pre>" + html.escape(json.dumps(results, indent=2)) + "</pre>"
