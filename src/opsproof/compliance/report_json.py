"""report.json of a period report: the whole model, for machines and for the other formats' tests."""

from __future__ import annotations

import json

from opsproof.compliance.report_model import PeriodReport


def render_json(report: PeriodReport) -> str:
    return json.dumps(report.dump(), indent=2) + "\n"
