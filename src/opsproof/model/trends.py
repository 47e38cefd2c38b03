"""`increase:` and `trend:`, the two judgements made against a check's own earlier values.

Both read what earlier runs measured from the history (`Check.history`); the profile writes them
beside the aspect they judge::

    postgres:
      - name: primary
        deadlocks: {increase: {warn: 1, fail: 5}}          # growth since the previous run
        database_size:
          trend: {limit: 100GB, window: 14d, full_in: {warn: 30d, fail: 7d}}
"""

from __future__ import annotations

from typing import Annotated, Any, Generic, Protocol, TypeVar

from pydantic import Field, StrictInt, model_validator

from opsproof.model.fields import Duration, PositiveDuration, Strict, Threshold, check_order, default_threshold

T = TypeVar("T")


class Increase(Threshold[T], Generic[T]):
    """`{warn, fail}` on how much a cumulative value grew since the previous run of the same check."""

    @model_validator(mode="after")
    def _in_order(self) -> Increase[T]:
        check_order(self, lower_is_worse=False)
        return self


# The usual case: a count (deadlocks, rejected connections, restarts).
CountIncrease = Increase[Annotated[float, Field(ge=0)]]


class Trend(Strict, Generic[T]):
    """A least-squares line through the stored values of a window, judged on when it reaches `limit`."""

    limit: T = Field(description="the value the measure must not reach: 100%, 100GB, 5000")
    window: PositiveDuration = Field(
        14 * 86400.0,
        description="how far back the fit reaches: 14d (the points of earlier runs in it, and this run's)",
    )
    min_points: StrictInt = Field(
        3, ge=2, le=10000, description="fewer points in the window (this run's included): not judged yet, and says so"
    )
    full_in: Threshold[Duration] = Field(
        default_factory=default_threshold(warn="30d", fail="7d"),
        validate_default=True,
        description="projected time until the line reaches the limit; at or under fail: failed (default warn 30d, "
        "fail 7d)",
    )

    @model_validator(mode="after")
    def _in_order(self) -> Trend[T]:
        check_order(self.full_in, lower_is_worse=True)
        return self


class Past(Protocol):
    """What earlier runs measured, as the run hands it to a check (`Check.history`).

    `problem` is set when the history could not be read (the check says so as an error);
    otherwise `previous` and `series` answer from one read of the store per run.
    """

    @property
    def problem(self) -> str | None: ...

    def previous(self, check_id: str, measure: str) -> tuple[str, float] | None:
        """(when, value) of the newest stored value of a check's measure; None: never stored."""
        ...

    def series(self, check_id: str, measure: str, since: str) -> list[tuple[str, float]]:
        """(when, value) of a check's measure stored at or after `since` (UTC ISO 8601), oldest first."""
        ...


def history_window(model: Any) -> float | None:
    """The widest history a profile model judges against: the largest trend window, 0 for increases only.

    None when it has neither (its checks never read the history). Walks nested models,
    lists and mappings.
    """
    found: float | None = None
    stack = [model]
    while stack:
        value = stack.pop()
        if isinstance(value, Trend):
            found = max(found or 0.0, value.window)
        elif isinstance(value, Increase):
            found = max(found or 0.0, 0.0)
        elif isinstance(value, Strict):
            stack.extend(getattr(value, name) for name in type(value).model_fields)
        elif isinstance(value, list | tuple):
            stack.extend(value)
        elif isinstance(value, dict):
            stack.extend(value.values())
    return found
