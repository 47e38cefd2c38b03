"""Restore drills (runbook 003's DR drill with row counts, RTO < 4 h / RPO < 15 min; 000's monthly
"test backup and recovery procedures", RTO 4 h / RPO 1 h; 004's disaster recovery test).

Each profile `drills` item restores one backup of a `backups` item (see opsproof.probes.drills)
and is judged by:

- `drills.restore[<name>]`  a backup was chosen, fetched and restored: which one (key, size,
  time, sha256), every phase with its timestamps, and the cleanup
- `drills.table[<name>/<table>]`  the table exists after the restore with at least its minimum
  rows (an exact count(*))
- `drills.sql[<name>/<query>]`  each read-only assertion on the restored database
- `drills.rto[<name>]`  the drill's wall-clock time (choose to verify) against `rto`, where set
- `drills.rpo[<name>]`  the age of the newest data against `rpo`, where `recency` is set

A restore that failed fails every check of its drill with the reason: no table count, no
assertion and no RTO can pass on a restore that did not happen. A drill stopped by its
set-up (no PostgreSQL binaries, access denied, a scratch database that is not empty, a
login refused) is an `error` in each: the operator must fix the set-up, and the record
must not blame the backup.
"""

from __future__ import annotations

from opsproof import Check, CheckError, Part, applies, each, format_duration, format_size
from opsproof.judging.query_expect import judge_query, raise_for
from opsproof.probes.drills import DrillFacts
from opsproof.targets.drills import DrillTarget
from opsproof.targets.postgres import PostgresQuery


def _restored(facts: DrillFacts, what: str) -> None:
    """Stop here unless the backup was restored: the set-up's fault is an error, anything else a failure."""
    if facts.misconfigured:
        raise CheckError(f"{what}: the drill could not run: {facts.failure}")
    assert facts.restored, f"{what}: the restore failed ({facts.stage}): {facts.failure}"


def _verified(facts: DrillFacts, what: str) -> None:
    _restored(facts, what)
    if facts.verify_error is not None:
        raise_for(facts.verify_error, f"{what}: the restored database could not be read")


def _present(facts: DrillFacts) -> str:
    if not facts.present_table_count:
        return "the restored database has no tables"
    more = facts.present_table_count - len(facts.present_tables)
    listed = ", ".join(facts.present_tables) + (f" and {more} more" if more > 0 else "")
    return f"the restored database has {facts.present_table_count} table(s): {listed}"


def _timeline(facts: DrillFacts) -> str:
    return ", ".join(
        f"{p['name']} {format_duration(p['seconds'])}" for p in facts.phases if p.get("seconds") is not None
    )


def _backup(facts: DrillFacts) -> str:
    backup = facts.backup or {}
    return (
        f"{backup.get('name')} ({format_size(backup.get('size') or 0)}, "
        f"{format_duration(backup.get('age_s') or 0)} old, {backup.get('rank')})"
    )


def _cleanup(facts: DrillFacts, check: Check) -> None:
    cleanup = facts.cleanup
    check.observe(cleanup=cleanup)
    if cleanup.get("cluster_stopped") is False or cleanup.get("cluster_removed") is False:
        check.warn("the throwaway PostgreSQL was not stopped and removed; the reaper will remove it at exit")
    if cleanup.get("work_dir_removed") is False:
        check.warn(f"the drill's folder {cleanup.get('work_dir')} was not removed")


def test_restore(item: DrillTarget, facts: DrillFacts, check: Check) -> None:
    check.expect(backup=f"{item.choose} of backups item {item.backup}", into=facts.into.get("kind"))
    check.observe(
        store=facts.store, candidates=facts.candidates, into=facts.into, phases=facts.phases, restore=facts.restore
    )
    _cleanup(facts, check)
    _restored(facts, "not restored")
    restore = facts.restore
    dropped = restore.get("statements_dropped") or 0
    left_out = f"; {dropped} ownership/privilege statement(s) left out" if dropped else ""
    phase = facts.phase("restore") or {}
    check.note(
        f"restored {_backup(facts)} as {restore.get('format')} into {facts.into.get('shown')} "
        f"with {restore.get('tool')} in {format_duration(phase.get('seconds') or 0)}{left_out}"
    )


@each("tables")
def test_table(item: DrillTarget, part: Part, facts: DrillFacts, check: Check) -> None:
    minimum: int = part.spec
    check.expect(min_rows=minimum)
    _verified(facts, f"{part.name} not counted")
    error = facts.table_errors.get(part.name)
    if error is not None:
        if error.missing_object:
            raise AssertionError(f"table {part.name} does not exist in the restored database ({_present(facts)})")
        raise_for(error, f"counting {part.name} failed")
    count = facts.tables[part.name]
    check.observe(table=part.name, rows=count)
    assert count >= minimum, f"{part.name} has {count:,} row(s) after the restore, expected at least {minimum:,}"
    check.note(f"{count:,} row(s) in {part.name} (at least {minimum:,} expected)")


@each("sql")
def test_sql(item: DrillTarget, part: Part, facts: DrillFacts, check: Check) -> None:
    spec: PostgresQuery = part.spec
    check.expect(**spec.expect.model_dump(exclude_unset=True))
    _verified(facts, "not run")
    judge_query(spec, facts.queries.get(part.name), check)


@applies(lambda item: item.rto is not None)
def test_rto(item: DrillTarget, facts: DrillFacts, check: Check) -> None:
    check.expect_threshold("RTO", item.rto, show=format_duration)
    check.observe(phases=facts.phases)
    _restored(facts, "no RTO")
    assert facts.rto_s is not None, f"no RTO: the drill did not finish ({facts.failure})"
    timeline = _timeline(facts)
    check.note(f"RTO {format_duration(facts.rto_s)}: {timeline}")
    check.threshold("RTO", facts.rto_s, item.rto, show=format_duration, detail=timeline)


@applies(lambda item: item.recency is not None)
def test_rpo(item: DrillTarget, facts: DrillFacts, check: Check) -> None:
    recency_spec = item.recency
    assert recency_spec is not None
    check.expect_threshold("RPO", item.rpo, show=format_duration)
    check.expect(recency=f"max({recency_spec.table}.{recency_spec.column}) against {item.recency_against}")
    _verified(facts, "no RPO")
    check.observe(recency=facts.recency)
    if facts.recency_error is not None:
        raise_for(facts.recency_error, "no RPO")
    recency = facts.recency or {}
    assert recency.get("lag_s") is not None, (
        f"no RPO: {recency_spec.table} is empty after the restore, so {recency_spec.column} has no newest value"
    )
    lag = float(recency["lag_s"])
    since = "now" if item.recency_against == "now" else "the backup was written"
    newest = f"newest {recency_spec.table}.{recency_spec.column} {recency.get('newest')}"
    check.note(f"RPO {format_duration(lag)}: {newest}, {format_duration(lag)} before {since}")
    check.threshold("RPO", lag, item.rpo, show=format_duration, detail=newest)
