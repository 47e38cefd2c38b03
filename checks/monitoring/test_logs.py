"""Log patterns (runbooks 000-004: `grep "authentication failed"`, `grep THREAT`, "Training completed").

Each profile `logs` item's source is read once (see opsproof.probes.logs) and every
pattern is its own check, so a waiver covers exactly one:

- `logs.count[<item>/<pattern>]`  lines matching the pattern within the window, against
  `threshold: {warn, fail}` (higher is worse) or `min:` (the line must appear).

A source that cannot be reached or timed out fails; one that refuses the credentials or
a permission (403 on pods/log), or whose settings cannot be used, is an `error`. No pod
matching the selector fails: there is nothing to count in. A stream longer than
`limit_bytes` was cut: its count is a lower bound, which warns unless it already fails.
"""

from __future__ import annotations

from opsproof import Check, CheckError, Part, each, format_duration, format_size
from opsproof.probes.logs import LogsFacts
from opsproof.targets.logs import LogPattern, LogsTarget


def _count(value: float) -> str:
    return f"{value:g}"


@each("patterns")
def test_count(item: LogsTarget, part: Part, facts: LogsFacts, check: Check) -> None:
    pattern: LogPattern = part.spec
    check.expect(pattern=pattern.match, within_s=item.within)
    if pattern.min is not None:
        check.expect(min=pattern.min)
    check.expect_threshold("matching lines", pattern.threshold, show=_count)
    if facts.config_error:
        raise CheckError(facts.config_error)
    if facts.denied:
        raise CheckError(facts.denied)
    assert facts.reached, facts.failure
    count = facts.counts.get(pattern.name, 0)
    check.observe(count=count, examples=facts.examples.get(pattern.name, []))
    assert not facts.timed_out, f"{facts.failure}: {count} matching lines in what was read before the deadline"
    if facts.empty_reason and not facts.streams:
        raise AssertionError(f"{facts.empty_reason}: nothing to count {pattern.name!r} in")
    if facts.stream_errors and not facts.streams:
        first = next(iter(facts.stream_errors.items()))
        raise AssertionError(f"no log could be read ({len(facts.stream_errors)} failed; {first[0]}: {first[1]})")
    lower_bound = " (a lower bound: the log was cut)" if facts.cut else ""
    if pattern.min is not None:
        assert count >= pattern.min, (
            f"{pattern.name!r}: {count} matching lines in the last {_window(item)}, expected at least {pattern.min}"
            + lower_bound
        )
    check.threshold(
        f"lines matching {pattern.name!r}", count, pattern.threshold, show=_count, detail=_first(facts, pattern)
    )
    for stream, why in list(facts.stream_errors.items())[:3]:
        check.warn(f"{stream} could not be read: {why}")
    if facts.cut and pattern.threshold is not None:  # a `min` met in what was read is met
        cut = ", ".join(facts.cut[:3]) + (f" and {len(facts.cut) - 3} more" if len(facts.cut) > 3 else "")
        check.warn(
            f"{cut} held more than limit_bytes {format_size(item.limit_bytes)} in the window: {count} is a lower bound"
        )
    check.note(f"{count} lines match {pattern.name!r} in the last {_window(item)}{lower_bound}")


def _window(item: LogsTarget) -> str:
    return format_duration(item.within)


def _first(facts: LogsFacts, pattern: LogPattern) -> str | None:
    examples = facts.examples.get(pattern.name) or []
    return f"e.g. {examples[0]}" if examples else None
