"""Outcomes, severities and thresholds: the vocabulary of CONTRACT §2.

- passed   the target is as expected
- warned   a warn threshold was crossed; never changes the exit status
- failed   the target is not as expected: down, timed out, over a fail threshold, wrong content
- error    the check itself could not run (a bug or a misconfiguration, not the target's state)
- skipped  not run
- waived   failed or error, but an unexpired waiver covers it
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

Outcome = Literal["passed", "warned", "failed", "error", "skipped", "waived"]
OUTCOMES: tuple[Outcome, ...] = ("failed", "error", "warned", "waived", "skipped", "passed")
SEVERITY_RANK = {"critical": 4, "high": 3, "medium": 2, "low": 1}
FAIL_ON_CHOICES = ("critical", "high", "medium", "low", "never")

EXIT_OK = 0
EXIT_BLOCKING = 1
EXIT_INTERRUPTED = 2
EXIT_INTERNAL = 3
EXIT_USAGE = 4
EXIT_NO_CHECKS = 5

RUN_STATUS = {
    EXIT_OK: "passed",
    EXIT_BLOCKING: "failed",
    EXIT_INTERRUPTED: "interrupted",
    EXIT_INTERNAL: "internal_error",
    EXIT_USAGE: "usage_error",
    EXIT_NO_CHECKS: "no_checks",
}


def is_blocking(outcome: str, severity: str, fail_on: str, *, held: bool = False) -> bool:
    """A failed/error record at or above `--fail-on` makes the run exit 1, unless `held` inside a maintenance window."""
    if held or outcome not in ("failed", "error") or fail_on == "never":
        return False
    return SEVERITY_RANK.get(severity, 4) >= SEVERITY_RANK[fail_on]


Level = Literal["ok", "warn", "fail"]


@dataclass(frozen=True)
class Verdict:
    level: Level
    message: str


def reaches(value: float, limit: float, *, lower_is_worse: bool = False) -> bool:
    """Whether `value` reaches `limit` (CONTRACT §3): at or beyond it; a zero limit where higher is worse means none."""
    if lower_is_worse:
        return value <= limit
    return value > 0 if limit == 0 else value >= limit


def evaluate(
    measure: str,
    value: float,
    warn: float | None,
    fail: float | None,
    *,
    lower_is_worse: bool = False,
    show: Callable[[float], str] = lambda v: f"{v:g}",
) -> Verdict:
    """Compare a measured value with `{warn, fail}`; "higher is worse" unless told otherwise.

    A limit is reached at or beyond it (CONTRACT §3), so `fail: 100%` fails a pool at its limit.
    A limit of 0 on a "higher is worse" measure means none is allowed: 0 is within it, anything
    more reaches it (`blocked_locks: {fail: 0}` fails on the first waiting lock, not always).

    >>> evaluate("latency", 0.7, 0.1, 0.5, show=lambda v: f"{v}s").message
    'latency 0.7s is over the fail threshold 0.5s'
    >>> evaluate("connections", 30, None, 30).message
    'connections 30 is at the fail threshold 30'
    """

    def reached(limit: float) -> bool:
        return reaches(value, limit, lower_is_worse=lower_is_worse)

    def verdict(level: Level, name: str, limit: float) -> Verdict:
        where = "at" if value == limit else ("under" if lower_is_worse else "over")
        return Verdict(level, f"{measure} {show(value)} is {where} the {name} threshold {show(limit)}")

    if fail is not None and reached(fail):
        return verdict("fail", "fail", fail)
    if warn is not None and reached(warn):
        return verdict("warn", "warn", warn)
    return Verdict("ok", f"{measure} {show(value)}")
