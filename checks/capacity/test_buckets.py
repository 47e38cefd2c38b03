"""Buckets (runbook 003's MinIO storage: `mc du s3/apex-uploads` with an alert at 80%, `mc ilm ls`).

Each profile `buckets` item is read with LIST and GET requests only (see opsproof.probes.buckets):

- `buckets.usage[<name>]`  total size (against sizes, or shares of `quota`) and object count, and the
  size's trend where `size_trend:` is set (against the history);
  a listing stopped at `max_keys` or `list_timeout` is never judged as the whole bucket
- `buckets.lifecycle[<name>]`  at least one lifecycle rule is enabled
- `buckets.protection[<name>]`  versioning, Object Lock, default encryption as asked

Refused credentials are an `error` (the grant must be fixed, not the bucket).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from opsproof import Check, CheckError, applies, format_size
from opsproof.judging.over_time import judge_trend
from opsproof.probes.buckets import BucketsFacts
from opsproof.targets.buckets import BucketsTarget


def _read(facts: BucketsFacts, aspect: str) -> Any:
    """The aspect's facts; its refusal raised as an error, anything else that kept it unread as a failure."""
    error = facts.errors.get(aspect)
    if error is not None:
        if error["denied"]:
            raise CheckError(error["message"])
        raise AssertionError(f"cannot read {facts.location}: {error['message']}")
    found = getattr(facts, aspect)
    if found is None:
        raise CheckError(f"the probe did not read the bucket's {aspect}")
    return found


def _show_size(quota: int | None) -> Callable[[float], str]:
    def show(value: float) -> str:
        if not quota:
            return format_size(value)
        return f"{format_size(value)} ({value / quota:.1%} of quota {format_size(quota)})"

    return show


@applies(lambda item: item.judges_usage)
def test_usage(item: BucketsTarget, facts: BucketsFacts, check: Check) -> None:
    show = _show_size(item.quota)
    check.expect_threshold("size", item.size, show=show)
    check.expect_threshold("objects", item.objects)
    usage = _read(facts, "usage")
    size, count = usage["bytes"], usage["objects"]
    check.observe(
        bytes=size, objects=count, complete=usage["complete"], largest=usage["largest"], size=format_size(size)
    )
    if item.quota:
        check.observe(quota_share_percent=round(size / item.quota * 100, 2))
    if not usage["complete"]:
        _partial(item, usage, check)
        return
    check.note(f"{show(size)} in {count:,} objects under {facts.location}")
    check.measure("bytes", size)  # the whole bucket's size, kept whatever the verdict (a trend's points)
    largest = usage["largest"][0] if usage["largest"] else None
    detail = f"largest: {largest['key']} ({format_size(largest['size'])})" if largest else None
    check.threshold("size", size, item.size, show=show, detail=detail)
    check.threshold("objects", count, item.objects, show=lambda v: f"{v:,.0f}")
    judge_trend(check, "bytes", size, item.size_trend, what="size", show=show)


def _partial(item: BucketsTarget, usage: dict[str, Any], check: Check) -> None:
    """A listing that stopped: over a fail limit already is a finding; anything else is not known."""
    show = _show_size(item.quota)
    size, count = usage["bytes"], usage["objects"]
    seen = f"at least {show(size)} in at least {count:,} objects (the listing stopped: {usage['stopped']})"
    over = []
    if item.size is not None and item.size.fail is not None and size > item.size.fail:
        over.append(f"size at least {show(size)} is over the fail threshold {show(item.size.fail)}")
    if item.objects is not None and item.objects.fail is not None and count > item.objects.fail:
        over.append(f"objects at least {count:,} is over the fail threshold {item.objects.fail:,}")
    if over:
        raise AssertionError("; ".join(over) + f" (the listing stopped: {usage['stopped']})")
    raise CheckError(f"{seen}: the whole is not known; raise max_keys or list_timeout")


@applies(lambda item: bool(item.lifecycle))
def test_lifecycle(item: BucketsTarget, facts: BucketsFacts, check: Check) -> None:
    check.expect(lifecycle="at least one rule enabled")
    rules = _read(facts, "lifecycle")
    check.observe(rules=rules)
    enabled = [rule for rule in rules if rule.get("status") == "Enabled"]
    assert rules, f"{facts.location}: no lifecycle rules (nothing expires or moves to another tier)"
    names = ", ".join(rule["id"] for rule in rules)
    assert enabled, f"{facts.location}: {len(rules)} lifecycle rule(s), none enabled ({names})"
    check.note(f"{len(enabled)} of {len(rules)} lifecycle rule(s) enabled: {', '.join(r['id'] for r in enabled)}")


@applies(lambda item: item.protection is not None)
def test_protection(item: BucketsTarget, facts: BucketsFacts, check: Check) -> None:
    spec = item.protection
    assert spec is not None
    check.expect(**{key: True for key, value in spec.model_dump().items() if value})
    seen = _read(facts, "protection")
    check.observe(bucket=seen)
    missing = spec.unmet(seen)
    assert not missing, f"bucket {item.s3.bucket}: " + "; ".join(missing)
    check.note(spec.describe(seen))
