"""Backups (runbook 000: daily backup to S3, keep 30 days, "verify backup completion and
integrity" daily, RPO 1 h; 003: daily gzipped pg_dump; 004: daily and weekly backups to S3).

Each profile `backups` item is one listing of its bucket prefix or directory, and one
streamed read of its newest backup when `verify` asks (see opsproof.probes.backups):

- `backups.freshness[<name>]`  the newest backup's age against `max_age` (the RPO)
- `backups.size[<name>]`  the newest at least `min_size`; under half the median of the
  previous seven (`size_drop`) warns: a dump that shrank overnight lost data or failed early
- `backups.retention[<name>]`  `min_count` kept, no gap over `max_gap`, oldest within bounds
- `backups.integrity[<name>]`  the newest is whole, per `verify` (gzip, pg_dump, sha256)
- `backups.protection[<name>]`  the bucket enforces versioning, encryption, Object Lock

A store that cannot be read fails every check with the reason; refused credentials
are an `error` (the grant or the credentials must be fixed, not the backups).
"""

from __future__ import annotations

import itertools
import statistics
from typing import Any

from opsproof import Check, CheckError, applies, format_duration, format_percent, format_size
from opsproof.probes import utc_iso
from opsproof.probes.backups import BackupsFacts
from opsproof.targets.backups import BackupsTarget

GAPS_SHOWN = 5


def _listed(facts: BackupsFacts) -> None:
    """Every check starts here: refused credentials are an error, an unreadable store a failure."""
    if facts.denied:
        raise CheckError(facts.denied)
    assert facts.reached, f"cannot list {facts.location}: {facts.failure}"


def _newest(item: BackupsTarget, facts: BackupsFacts) -> dict[str, Any]:
    _listed(facts)
    newest = facts.newest
    assert newest is not None, f"no backup matches {item.pattern!r} under {facts.location}"
    return newest


def _age(facts: BackupsFacts, when: float) -> float:
    assert facts.listed_at is not None
    return facts.listed_at - when


def test_freshness(item: BackupsTarget, facts: BackupsFacts, check: Check) -> None:
    check.expect_threshold("age", item.max_age, show=format_duration)
    newest = _newest(item, facts)
    age = _age(facts, newest["modified"])
    check.observe(newest=newest["name"], newest_at=utc_iso(newest["modified"]), age_s=round(age))
    if age < -300:
        # A backup from the future: a skewed clock on the writer, which also skews every age here.
        check.warn(f"the newest backup is dated {format_duration(-age)} in the future: check the writer's clock")
    check.note(f"newest {newest['name']} written {format_duration(max(age, 0))} ago")
    check.threshold("age", max(age, 0), item.max_age, show=format_duration, detail=f"newest: {newest['name']}")


@applies(lambda item: item.min_size is not None or item.size_drop is not None)
def test_size(item: BackupsTarget, facts: BackupsFacts, check: Check) -> None:
    if item.min_size is not None:
        check.expect(min_size=format_size(item.min_size))
    newest = _newest(item, facts)
    size = newest["size"]
    check.observe(newest=newest["name"], size=size)
    assert size > 0, f"the newest backup {newest['name']} is empty (0 bytes)"
    if item.min_size is not None:
        assert size >= item.min_size, (
            f"the newest backup {newest['name']} is {format_size(size)}, under min_size {format_size(item.min_size)}"
        )
    check.observe(recent=[{**entry, "modified": utc_iso(entry["modified"])} for entry in facts.recent])
    previous = [entry["size"] for entry in facts.recent[:-1]]
    summary = f"newest {newest['name']} is {format_size(size)}"
    if item.size_drop is not None and previous:
        median = statistics.median(previous)
        check.expect(size_drop=f"under {format_percent(item.size_drop)} of the median of the previous {len(previous)}")
        check.observe(previous_median=median)
        summary += f"; median of the previous {len(previous)}: {format_size(median)}"
        if median > 0 and size < median * item.size_drop / 100:
            check.warn(
                f"the newest backup is {format_size(size)}, {format_percent(size / median * 100)} of the median "
                f"{format_size(median)} of the previous {len(previous)}: data lost, or the dump stopped early?"
            )
    check.note(summary)


@applies(lambda item: item.retention is not None)
def test_retention(item: BackupsTarget, facts: BackupsFacts, check: Check) -> None:
    spec = item.retention
    assert spec is not None
    check.expect(**spec.model_dump(exclude_none=True, mode="json"))
    _listed(facts)
    problems: list[str] = []
    times = facts.modified
    check.observe(count=facts.count)
    if spec.min_count is not None and facts.count < spec.min_count:
        problems.append(f"{facts.count} backup(s) kept, expected at least {spec.min_count}")
    if spec.max_gap is not None:
        gaps = _gaps(times, spec.max_gap, facts.listed_at, spec.gap_window)
        if gaps:
            shown = ", ".join(_gap(a, b) for a, b in gaps[:GAPS_SHOWN])
            more = f" and {len(gaps) - GAPS_SHOWN} more" if len(gaps) > GAPS_SHOWN else ""
            check.observe(gaps=[{"from": utc_iso(a), "to": utc_iso(b), "gap_s": round(b - a)} for a, b in gaps])
            problems.append(f"{len(gaps)} gap(s) over max_gap {format_duration(spec.max_gap)}: {shown}{more}")
    if facts.oldest is not None:
        oldest_age = _age(facts, facts.oldest["modified"])
        check.observe(oldest=facts.oldest["name"], oldest_at=utc_iso(facts.oldest["modified"]))
        bound = spec.oldest
        if bound is not None and bound.min_age is not None and oldest_age < bound.min_age:
            problems.append(
                f"the oldest backup is {format_duration(oldest_age)} old: history does not reach back "
                f"{format_duration(bound.min_age)}"
            )
        if bound is not None and bound.max_age is not None and oldest_age > bound.max_age:
            problems.append(
                f"the oldest backup {facts.oldest['name']} is {format_duration(oldest_age)} old, over "
                f"{format_duration(bound.max_age)}: old backups are not being pruned"
            )
    elif spec.oldest is not None and spec.oldest.min_age is not None:
        problems.append("no backups kept")
    assert not problems, "; ".join(problems)
    span = f", reaching back {format_duration(_age(facts, times[0]))}" if times else ""
    check.note(f"{facts.count} backup(s) kept{span}")


def _gaps(times: list[float], max_gap: float, now: float | None, window: float | None) -> list[tuple[float, float]]:
    """Consecutive backups further apart than max_gap (a missed day), within the window if given."""
    since = (now - window) if (now is not None and window is not None) else None
    kept = [t for t in times if since is None or t >= since]
    return [(a, b) for a, b in itertools.pairwise(kept) if b - a > max_gap]


def _gap(start: float, end: float) -> str:
    return f"{format_duration(end - start)} between {utc_iso(start)} and {utc_iso(end)}"


@applies(lambda item: bool(item.verify))
def test_integrity(item: BackupsTarget, facts: BackupsFacts, check: Check) -> None:
    check.expect(verify=list(item.verify))
    newest = _newest(item, facts)
    if facts.integrity_error:
        raise CheckError(f"could not verify {newest['name']}: {facts.integrity_error}")
    verdict = facts.integrity
    assert verdict is not None, "the probe did not read the newest backup"
    check.observe(integrity=verdict)
    failed = [f"{method}: {result['detail']}" for method, result in verdict["methods"].items() if not result["ok"]]
    assert not failed, f"{verdict['name']} is not whole: " + "; ".join(failed)
    speed = verdict["bytes_read"] / verdict["seconds"] if verdict["seconds"] else 0.0
    check.note(
        f"{verdict['name']} ({format_size(verdict['bytes_read'])}, {verdict['format']}) verified by "
        f"{', '.join(item.verify)} in {format_duration(verdict['seconds'])}"
        + (f" ({format_size(speed)}/s)" if speed else "")
        + f"; sha256 {verdict['sha256'][:16]}…"
    )


@applies(lambda item: item.protection is not None)
def test_protection(item: BackupsTarget, facts: BackupsFacts, check: Check) -> None:
    spec = item.protection
    assert spec is not None
    asked = {key: True for key, value in spec.model_dump().items() if value}
    check.expect(**asked)
    _listed(facts)
    if facts.protection_error:
        raise CheckError(f"cannot read the bucket's settings: {facts.protection_error}")
    seen = facts.protection
    assert seen is not None, "the probe did not read the bucket's settings"
    check.observe(bucket=seen)
    missing = spec.unmet(seen)
    assert not missing, f"bucket {item.s3.bucket if item.s3 else ''}: " + "; ".join(missing)
    check.note(spec.describe(seen))
