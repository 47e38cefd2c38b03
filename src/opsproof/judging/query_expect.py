"""Does a custom query's result meet its `expect`? Shared by the postgres checks and the drills' `sql`.

The value compared is the first column of the first row (`QueryResult.value`, JSON-friendly,
and `value_text`, how PostgreSQL spells it); `rows`, `min_rows` and `max_rows` compare the
row count. Every operator given must hold; the first that does not is the failure message::

    assert_expected(spec.expect, result)   # AssertionError("value is '41', expected 42")
"""

from __future__ import annotations

import re
from typing import Any

from opsproof.judging.over_time import judge_increase, judge_trend
from opsproof.judging.series import show_value
from opsproof.model.check import Check, CheckError
from opsproof.probes.postgres_describe import QueryResult, SectionError
from opsproof.targets.postgres import PostgresQuery, QueryExpect


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _as_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def equal(result: QueryResult, expected: Any) -> bool:
    """Numbers as numbers, booleans as booleans, anything else as PostgreSQL's text of the value."""
    if expected is None or result.value is None:
        return expected is None and result.value is None
    if isinstance(expected, bool) or isinstance(result.value, bool):
        return isinstance(expected, bool) and isinstance(result.value, bool) and expected == result.value
    if _is_number(expected) and _is_number(result.value):
        return float(expected) == float(result.value)
    return _as_text(expected) == result.value_text


def number(result: QueryResult) -> float:
    if _is_number(result.value):
        return float(result.value)
    try:
        return float(result.value_text or "")
    except ValueError:
        raise AssertionError(f"value {result.value_text!r} ({result.value_type}) is not a number") from None


def shown(result: QueryResult) -> str:
    """The value as a message shows it: NULL, or its text quoted."""
    return "NULL" if result.value is None else repr(result.value_text)


def assert_expected(expect: QueryExpect, result: QueryResult) -> None:
    """Assert every operator of `expect` on the result; the first that does not hold is the message."""
    given = expect.model_fields_set
    rows = result.row_count or 0
    if "rows" in given:
        assert rows == expect.rows, f"{rows} row(s), expected {expect.rows}"
    if "min_rows" in given and expect.min_rows is not None:
        assert rows >= expect.min_rows, f"{rows} row(s), expected at least {expect.min_rows}"
    if "max_rows" in given and expect.max_rows is not None:
        assert rows <= expect.max_rows, f"{rows} row(s), expected at most {expect.max_rows}"
    value_ops = given & {"equals", "one_of", "min", "max", "matches"}
    if value_ops:
        assert rows > 0, f"no rows; expected a value ({', '.join(sorted(value_ops))})"
    if "equals" in given:
        assert equal(result, expect.equals), f"value is {shown(result)}, expected {expect.equals!r}"
    if "one_of" in given and expect.one_of is not None:
        assert any(equal(result, option) for option in expect.one_of), (
            f"value is {shown(result)}, expected one of {expect.one_of!r}"
        )
    show = show_value(expect.unit)
    if "min" in given and expect.min is not None:
        assert result.value is not None, f"value is NULL, expected at least {show(expect.min)}"
        assert number(result) >= expect.min, f"value {show(number(result))} is below the minimum {show(expect.min)}"
    if "max" in given and expect.max is not None:
        assert result.value is not None, f"value is NULL, expected at most {show(expect.max)}"
        assert number(result) <= expect.max, f"value {show(number(result))} is above the maximum {show(expect.max)}"
    if "matches" in given and expect.matches is not None:
        assert result.value_text is not None and re.search(expect.matches, result.value_text), (
            f"value {shown(result)} does not match /{expect.matches}/"
        )


def raise_for(error: SectionError, what: str) -> None:
    """A timeout, a lost session or a missing object is the database's state (failed); anything else is not (error)."""
    if error.timed_out or error.session_lost or error.missing_object:
        raise AssertionError(f"{what}: {error.message}")
    raise CheckError(f"{what}: {error.message}" + (f" (SQLSTATE {error.sqlstate})" if error.sqlstate else ""))


def judge_query(spec: PostgresQuery, result: QueryResult | None, check: Check) -> None:
    """Record what one custom query returned and assert its `expect` (a postgres query, a drill's sql)."""
    assert result is not None, "the query did not run"
    observed: dict[str, Any] = {"sql": result.sql, "row_count": result.row_count, "query_ms": result.elapsed_s * 1000}
    if result.columns:
        observed.update(columns=result.columns, value=result.value, value_type=result.value_type, sample=result.sample)
    if result.value_truncated:
        observed["value_truncated"] = True
    check.observe(**observed)
    if result.error is not None:
        check.observe(error=result.error.message, sqlstate=result.error.sqlstate)
        raise_for(result.error, "the query failed")
    expect = spec.expect
    over_time = expect.increase is not None or expect.trend is not None
    if over_time and result.value is not None:
        check.measure("value", number(result))  # kept even when an operator below fails
    assert_expected(spec.expect, result)
    if expect.threshold is not None:
        assert result.value is not None, "value is NULL, expected a number to judge against the threshold"
        check.threshold(
            spec.name,
            number(result),
            expect.threshold,
            lower_is_worse=expect.lower_is_worse,
            show=show_value(expect.unit),
        )
    check.note(f"value {shown(result)}, {result.row_count} row(s)" if result.columns else "as expected")
    if over_time:
        # Against the values earlier runs kept (docs/trends.md); these say whether they could judge.
        assert result.value is not None, "value is NULL, expected a number to compare with earlier runs"
        value, show = number(result), show_value(expect.unit)
        judge_increase(check, "value", value, expect.increase, what=spec.name, show=show)
        judge_trend(check, "value", value, expect.trend, what=spec.name, show=show)
