"""What a check function holds while it runs: observed facts, expectations, warnings.

Checks assert plainly; a failed assertion is a `failed` record. Thresholds go
through `Check.threshold`, which fails past `fail` and records a warning past
`warn`::

    def test_health(item, facts, check):
        assert facts.reached, facts.failure
        check.threshold("latency", facts.latency_s, item.expect.latency, show=format_duration)
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NoReturn, Protocol

from opsproof.errors import CheckError, CheckFailed
from opsproof.outcomes import evaluate

if TYPE_CHECKING:
    from opsproof.model.trends import Past

__all__ = ["Check", "CheckError", "CheckFailed"]


class _Threshold(Protocol):
    @property
    def warn(self) -> Any: ...
    @property
    def fail(self) -> Any: ...


@dataclass
class Check:
    """The record-in-progress of one check; the plugin turns it into the evidence record."""

    check_id: str
    kind: str
    target: str | None
    severity: str
    observed: dict[str, Any] = field(default_factory=dict)
    expected: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    summary: str | None = None
    started_at: str | None = None
    duration_s: float | None = None
    # Values kept in the history for later runs' `increase:` and `trend:` (record's `measures`).
    measures: dict[str, float] = field(default_factory=dict)
    # What earlier runs measured (the run hands it; None outside a run with a history store).
    history: Past | None = field(default=None, repr=False)

    def observe(self, **facts: Any) -> None:
        self.observed.update(facts)

    def measure(self, name: str, value: float) -> None:
        """Keep a number in the history under this check's id, for `increase:` and `trend:` of later runs.

        NaN and infinities are not kept: no line goes through them, and no store takes them alike.
        """
        if math.isfinite(value):
            self.measures[name] = float(value)

    def expect(self, **expectations: Any) -> None:
        self.expected.update(expectations)

    def warn(self, message: str) -> None:
        """Record a warning: the check ends `warned` unless it fails (warnings never change the exit status)."""
        self.warnings.append(message)

    def fail(self, message: str) -> NoReturn:
        """Stop here as `failed`: the target is not as expected (as a plain `assert` would, with this message)."""
        raise CheckFailed(message)

    def note(self, summary: str) -> None:
        """The one-line message a passing record carries ("HTTP 200 in 42ms")."""
        self.summary = summary

    def threshold(
        self,
        measure: str,
        value: float | None,
        threshold: _Threshold | None,
        *,
        lower_is_worse: bool = False,
        show: Callable[[float], str] = lambda v: f"{v:g}",
        detail: str | None = None,
    ) -> None:
        """Fail past `threshold.fail`, warn past `threshold.warn`; record both sides.

        `detail` (the worst offender, the counts) follows the message of a warning or a failure.
        """
        if threshold is None:
            return
        self.expect_threshold(measure, threshold, show=show)
        if value is None:
            raise CheckFailed(f"{measure} could not be measured")
        verdict = evaluate(measure, value, threshold.warn, threshold.fail, lower_is_worse=lower_is_worse, show=show)
        message = f"{verdict.message}; {detail}" if detail else verdict.message
        if verdict.level == "fail":
            raise CheckFailed(message)
        if verdict.level == "warn":
            self.warn(message)

    def expect_threshold(
        self, measure: str, threshold: _Threshold | None, *, show: Callable[[float], str] = lambda v: f"{v:g}"
    ) -> None:
        """Record a threshold as expected without judging (a check that ends before it can)."""
        if threshold is None:
            return
        self.expected[measure] = {
            key: show(limit) for key, limit in (("warn", threshold.warn), ("fail", threshold.fail)) if limit is not None
        }
