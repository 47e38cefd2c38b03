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

    >>> evaluate("latency", 0.7, 0.1, 0.5, show=lambda v: f"{v}s").message
    'latency 0.7s is over the fail threshold 0.5s'
    """
    word = "under" if lower_is_worse else "over"

    def worse(a: float, b: float) -> bool:
        return a < b if lower_is_worse else a > b

    if fail is not None and worse(value, fail):
        return Verdict("fail", f"{measure} {show(value)} is {word} the fail threshold {show(fail)}")
    if warn is not None and worse(value, warn):
        return Verdict("warn", f"{measure} {show(value)} is {word} the warn threshold {show(warn)}")
    return Verdict("ok", f"{measure} {show(value)}")
