"""Maintenance windows: a check failing inside one is recorded with the window, not paged, not blocking.

Unlike a waiver (an accepted, long-lived exception that turns the outcome into
`waived`), a window keeps the outcome as it was — the target really was down — and adds
`maintenance: {name, ticket, schedule}` to the record. The exit status, the pages and
the `blocking` list leave such records out; reports show them under the window's name.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from opsproof.model.fields import glob_to_regex
from opsproof.model.signals import MaintenanceWindow


def window_dict(window: MaintenanceWindow) -> dict[str, Any]:
    """What a record (and the summary) says of a window."""
    return {"name": window.name, "checks": window.checks, "schedule": window.describe(), "ticket": window.ticket}


def matches(window: MaintenanceWindow, check_id: str) -> bool:
    return glob_to_regex(window.checks).fullmatch(check_id) is not None


def covering(windows: Sequence[MaintenanceWindow], check_id: str, moment: datetime) -> MaintenanceWindow | None:
    """The first window open at `moment` whose glob matches the check."""
    for window in windows:
        if matches(window, check_id) and window.is_open(moment):
            return window
    return None


def apply(record: dict[str, Any], windows: Sequence[MaintenanceWindow], now: datetime | None = None) -> None:
    """Mark a failed/error record that a window covers (at the check's start); waived records stay as they are."""
    if not windows or record["outcome"] not in ("failed", "error"):
        return
    moment = _moment(record.get("started_at")) or now or datetime.now(UTC)
    window = covering(windows, record["check"], moment)
    if window is not None:
        record["maintenance"] = window_dict(window)


def unmatched(windows: Iterable[MaintenanceWindow], check_ids: Iterable[str]) -> list[dict[str, Any]]:
    """Windows whose glob matches no check of the run: stale or mistyped, like an unmatched waiver."""
    ids = list(check_ids)
    return [window_dict(w) for w in windows if not any(matches(w, check_id) for check_id in ids)]


def summary(records: Iterable[Mapping[str, Any]], unmatched_windows: list[dict[str, Any]]) -> dict[str, Any]:
    """`summary.maintenance` of results.json: the windows that covered failures, and those that matched nothing."""
    applied: dict[str, dict[str, Any]] = {}
    for record in records:
        window = record.get("maintenance")
        if window:
            entry = applied.setdefault(window["name"], {**window, "records": 0})
            entry["records"] += 1
    return {"applied": [applied[name] for name in sorted(applied)], "unmatched": unmatched_windows}


def _moment(stamp: Any) -> datetime | None:
    if not isinstance(stamp, str):
        return None
    try:
        moment = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
