"""What earlier runs measured, read from the history once per run for the checks that judge against it.

A record's `measures` (the numbers a check kept, such as `deadlocks` or `bytes`) are stored in
the history's `observations` table when its run is recorded (history.py). A run that has
`increase:` or `trend:` checks reads them back here, lazily and once: the first such check
triggers ONE query for every check of the run that needs history (the newest value of each
measure, and every value in the widest trend window), and every other check answers from
memory::

    past = Observations(location, "production", needs=lambda: {"postgres.deadlocks[primary]": 0.0})
    past.previous("postgres.deadlocks[primary]", "deadlocks")   # ('2026-12-01T06:00:00.000Z', 3.0)

A history that cannot be read is not a crash: `problem` says why, and the checks say so.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path

from opsproof.compliance.history import History, HistoryError, Location, _database_errors, _pg_message
from opsproof.units import format_utc

# (check id, measure) -> [(observed_at, value)], oldest first.
Stored = dict[tuple[str, str], list[tuple[str, float]]]
_COLUMNS = "o.check_id, o.measure, o.observed_at, o.value"
# SQLite's default limit of bound parameters is 32,766; stay well under it per statement.
_CHUNK = 5000


class Observations:
    """The stored measures of this environment's earlier runs, for the checks of one run (the `Past` protocol)."""

    def __init__(
        self,
        location: Location | None,
        environment: str,
        needs: Callable[[], Mapping[str, float]],
        *,
        now: datetime | None = None,
    ) -> None:
        """`needs()`: check id -> the widest window (seconds) its checks fit over, 0 for the previous value only."""
        self.location = location
        self.environment = environment
        self._needs = needs
        self._now = now
        self._lock = threading.Lock()
        self._stored: Stored | None = None
        self._problem: str | None = None
        self.queries = 0  # statements sent to the store (the tests count them: one per run)

    @property
    def problem(self) -> str | None:
        self._load()
        return self._problem

    def previous(self, check_id: str, measure: str) -> tuple[str, float] | None:
        points = self._load().get((check_id, measure))
        return points[-1] if points else None

    def series(self, check_id: str, measure: str, since: str) -> list[tuple[str, float]]:
        return [point for point in self._load().get((check_id, measure), []) if point[0] >= since]

    def _load(self) -> Stored:
        with self._lock:
            if self._stored is None:
                self._stored = {}
                if self.location is None:
                    self._problem = "this run has no history store to read earlier values from"
                else:
                    try:
                        self._stored = self._read(self.location)
                    except HistoryError as exc:
                        self._problem = f"the history could not be read: {exc}"
                    except _database_errors(self.location.kind) as exc:  # a query the store refused
                        why = _pg_message(exc, self.location)
                        self._problem = f"the history could not be read: history {self.location.shown}: {why}"
            return self._stored

    def _read(self, location: Location) -> Stored:
        needs = dict(self._needs())
        if not needs:
            return {}
        if location.kind == "sqlite" and not Path(location.target).exists():
            return {}  # nothing was ever recorded here: every check's first observation
        widest = max(needs.values())
        # An hour more than the widest window: a check's window ends at its probe's time, a little before now.
        since = format_utc((self._now or datetime.now(UTC)) - timedelta(seconds=widest + 3600))
        stored: Stored = {}
        ids = sorted(needs)
        # A reader: it neither creates a store nor takes the writers' lock (a run must not wait on
        # another runner's recording); a store from before trends has no observations yet.
        with History(location, create=False) as history:
            if not history.has_column("observations", "value"):
                return {}
            for start in range(0, len(ids), _CHUNK):
                chunk = ids[start : start + _CHUNK]
                wanted = ", ".join("(?)" for _ in chunk)
                # Per check: every value in the window, and the newest value however old (the previous
                # run of a weekly check may be older than any window); each an index seek per check.
                rows = history.execute(
                    f"WITH wanted (check_id) AS (VALUES {wanted}) "
                    f"SELECT {_COLUMNS} FROM wanted w JOIN observations o "
                    "ON o.environment = ? AND o.check_id = w.check_id AND o.observed_at >= ? "
                    f"UNION ALL SELECT {_COLUMNS} FROM wanted w JOIN observations o "
                    "ON o.environment = ? AND o.check_id = w.check_id AND o.observed_at = (SELECT max(p.observed_at) "
                    "FROM observations p WHERE p.environment = ? AND p.check_id = w.check_id AND p.observed_at < ?) "
                    "ORDER BY 3",
                    (*chunk, self.environment, since, self.environment, self.environment, since),
                )
                self.queries += 1
                for check_id, measure, observed_at, value in rows:
                    stored.setdefault((str(check_id), str(measure)), []).append((str(observed_at), float(value)))
        return stored
