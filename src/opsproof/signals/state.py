"""What changed since the previous run of each check, from the history: the state notifications need.

For each check of this run, the history gives its earlier records, newest first. Those that
say nothing of the target's state are passed over: skipped records, and failures inside a
maintenance window (so a failure that persists across a window does not page twice, and one
that began inside a window pages when the window ends). Per destination (`when:`):

- **new**: the check is a problem now (outcome and severity in `when`) and was not before;
- **recovered**: it was a problem and now passed, warned or was waived;
- **still**: a problem now and before; with `reminder: 24h` it is notified again each time
  another 24 h since the streak began falls between the previous run and this one. The
  streak's start is the first problem record after the last record that was not one, so the
  reminders come from the history's timestamps alone, with nothing else stored.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from opsproof.compliance.history import History
    from opsproof.model.signals import Notify

RUNS_PER_QUERY = 25  # runs fetched at a time while walking back through a failing streak
Change = Literal["new", "recovered", "still", "reminder"]


@dataclass(frozen=True)
class Past:
    """One earlier record of a check: when its run started, its outcome and severity."""

    at: str
    outcome: str
    severity: str | None


@dataclass
class Timeline:
    """The earlier records of every check of this run that say something of its state, newest first."""

    by_check: dict[str, list[Past]] = field(default_factory=dict)

    def of(self, check_id: str) -> list[Past]:
        return self.by_check.get(check_id, [])


def load_timeline(history: History, environment: str, before: str, check_ids: Iterable[str]) -> Timeline:
    """Walk the environment's runs back from `before` until every check's last passing record is found.

    All-passing checks cost one query of the newest runs; only a check failing for a long
    time makes the walk go further back.
    """
    wanted = set(check_ids)
    timeline = Timeline({check_id: [] for check_id in wanted})
    open_checks = set(wanted)
    cursor = before
    while open_checks:
        runs = history.runs_before(environment, cursor, RUNS_PER_QUERY)
        if not runs:
            break
        started = dict(runs)
        rows = history.outcomes_of_runs([run_id for run_id, _ in runs])
        rows.sort(key=lambda row: (started[row[0]], row[0]), reverse=True)
        for run_id, check_id, outcome, severity, held in rows:
            if check_id not in open_checks or outcome == "skipped" or held:
                continue
            timeline.by_check[check_id].append(Past(started[run_id], outcome, severity))
            if outcome == "passed":  # ends every streak: nothing older matters
                open_checks.discard(check_id)
        cursor = runs[-1][1]
        if len(runs) < RUNS_PER_QUERY:
            break
    return timeline


@dataclass(frozen=True)
class Noted:
    """One record a destination hears about, and why."""

    change: Change
    record: Mapping[str, Any]
    since: str | None  # when the problem began (the streak's first record), for `still` and `reminder`


def changes(rule: Notify, records: Sequence[Mapping[str, Any]], timeline: Timeline, now: str) -> list[Noted]:
    """What `rule` should be told about this run's records (maintenance failures never)."""
    noted: list[Noted] = []
    for record in records:
        if record["outcome"] == "skipped" or record.get("maintenance"):
            continue
        is_problem = rule.when.covers(record["outcome"], record["severity"])
        past = timeline.of(record["check"])
        was_problem = bool(past) and rule.when.covers(past[0].outcome, past[0].severity or "")
        if is_problem and not was_problem:
            noted.append(Noted("new", record, now))
        elif was_problem and not is_problem and record["outcome"] in ("passed", "warned", "waived"):
            noted.append(Noted("recovered", record, past[0].at))
        elif is_problem and was_problem:
            since = _streak_start(rule, past)
            due = rule.reminder is not None and _reminder_due(since, past[0].at, now, rule.reminder)
            noted.append(Noted("reminder" if due else "still", record, since))
    return noted


def _streak_start(rule: Notify, past: list[Past]) -> str:
    start = past[0].at
    for earlier in past:
        if not rule.when.covers(earlier.outcome, earlier.severity or ""):
            break
        start = earlier.at
    return start


def _reminder_due(since: str, previous: str, now: str, every_s: float) -> bool:
    """True when a multiple of `every_s` after `since` falls in (previous, now]."""
    begun = _seconds(since)
    return int((_seconds(now) - begun) // every_s) > int((_seconds(previous) - begun) // every_s)


def _seconds(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def age(since: str | None, now: str) -> float | None:
    """Seconds from `since` to `now`."""
    return None if since is None else max(0.0, _seconds(now) - _seconds(since))
