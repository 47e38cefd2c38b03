"""Compliance evidence beyond one bundle: change context, attestations, history, period reports.

- change.py        the change a run validated (ticket, commit, image digest) from options or CI variables
- attestations.py  manual checklist lines a person attests to; an append-only, hash-chained log
- history.py       every run's metadata and records in SQLite (default) or PostgreSQL; rebuilt from bundles
- shared_chain.py  the chain head in the PostgreSQL history: one chain for runners on many machines
- period.py        the period report's model: per control, expected runs against runs, exceptions
- report_html.py, report_csv.py, report_json.py   its formats, one per file
- upload.py        shipping bundles to S3 (Object Lock retention) and reading them back

Everything here is a usage error (`ComplianceError`, exit 4) when the user's input is
wrong, and says what was expected.
"""

from __future__ import annotations

from opsproof.errors import ComplianceError

__all__ = ["ComplianceError"]
