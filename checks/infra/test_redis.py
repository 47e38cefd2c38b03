"""Redis servers (runbook 000's infrastructure checks and KPIs; 003 scenario 6 and queue-based scaling).

Each profile `redis` item is checked through one connection that sends read commands
only (see opsproof.probes.redis):

- `redis.reachable[<name>]`  PING answers (runbook 000: `redis-cli ping`)
- `redis.memory[<name>]`  used_memory as a share of maxmemory (000: memory < 80%, > 95% critical)
- `redis.eviction_policy[<name>]`  maxmemory-policy, where the item names one
- `redis.clients[<name>]`  connected clients as a share of maxclients; rejected connections warn (003)
- `redis.hit_ratio[<name>]`  keyspace hits / lookups, lower is worse, where configured (000)
- `redis.queue[<name>/<key>]`  each queue's length (000: queue depth < 1000, > 5000 critical; 003: `LLEN celery`),
  and its trend where configured (against the history)
- `redis.rejected_connections[<name>]`  connections rejected since the previous run, where configured
- `redis.persistence[<name>]`  last RDB save and AOF, where configured
- `redis.replication[<name>]`  role, replica link or replicas online, where configured

A server that cannot be reached fails every check with the reason; one that refuses the
credentials or a command (auth, ACL, a database out of range) is an `error`: the
check could not run, and the operator must fix the profile or the grant.
"""

from __future__ import annotations

from opsproof import Check, CheckError, Part, Threshold, applies, each, format_duration, format_percent, format_size
from opsproof.judging.over_time import judge_increase, judge_trend
from opsproof.probes import utc_iso
from opsproof.probes.redis import RedisFacts
from opsproof.targets.redis import QueueLimits, RedisTarget

QUEUE_TYPES = {"list": "list", "stream": "stream", "zset": "sorted set", "set": "set"}


def _answered(facts: RedisFacts) -> None:
    """Every check starts here: a refusal is an error, an unreachable server a failure."""
    if facts.denied:
        raise CheckError(facts.denied)
    assert facts.reached, facts.failure


def _uptime(facts: RedisFacts) -> str:
    return format_duration(facts.uptime_s) if facts.uptime_s is not None else "an unknown time"


def _seconds(value: float) -> str:
    # INFO counts link ages in whole seconds; "0ms ago" would claim a precision it lacks.
    return f"{value:g}s" if value < 60 else format_duration(value)


def _unknown(what: str, facts: RedisFacts) -> CheckError:
    why = f"; {facts.config_error}" if facts.config_error else ""
    return CheckError(f"the server reported no {what} (INFO lacks it{why})")


def test_reachable(item: RedisTarget, facts: RedisFacts, check: Check) -> None:
    _answered(facts)
    assert facts.ping_refused is None, (
        f"PING refused: {facts.ping_refused}; the server refuses writes until a save succeeds"
    )
    check.observe(uptime_s=facts.uptime_s)
    check.note(f"PONG from Redis {facts.version} ({facts.role_word}, up {_uptime(facts)})")


def test_memory(item: RedisTarget, facts: RedisFacts, check: Check) -> None:
    _answered(facts)
    used, limit = facts.used_memory, facts.maxmemory
    check.observe(
        used_memory=used,
        maxmemory=limit,
        used_memory_peak=facts.used_memory_peak,
        maxmemory_policy=facts.maxmemory_policy,
        evicted_keys=facts.evicted_keys,
    )
    if used is None:
        raise _unknown("used_memory", facts)
    if limit is None:
        raise _unknown("maxmemory", facts)
    if limit == 0:
        # No limit is a choice (a queue broker that must never evict), not a fault: say it plainly.
        check.expect_threshold("memory", item.memory, show=format_percent)
        check.note(f"{format_size(used)} used; maxmemory is not set (unlimited): no share to judge")
        return
    percent = used / limit * 100
    check.observe(memory_percent=round(percent, 1))
    check.note(f"{format_size(used)} of {format_size(limit)} maxmemory ({format_percent(percent)})")
    check.threshold("memory", percent, item.memory, show=format_percent)


@applies(lambda item: item.eviction_policy is not None)
def test_eviction_policy(item: RedisTarget, facts: RedisFacts, check: Check) -> None:
    expected = item.eviction_policy or []
    check.expect(eviction_policy=expected[0] if len(expected) == 1 else expected)
    _answered(facts)
    policy = facts.maxmemory_policy
    check.observe(maxmemory_policy=policy, maxmemory=facts.maxmemory)
    if policy is None:
        raise _unknown("maxmemory-policy", facts)
    assert policy in expected, f"maxmemory-policy is {policy}, expected {' or '.join(expected)}"
    check.note(f"maxmemory-policy {policy}")
    if facts.maxmemory == 0 and policy != "noeviction":
        check.warn(f"maxmemory-policy is {policy} but maxmemory is not set: the policy never applies")


def test_clients(item: RedisTarget, facts: RedisFacts, check: Check) -> None:
    _answered(facts)
    connected, limit, rejected = facts.connected_clients, facts.maxclients, facts.rejected_connections
    check.observe(
        connected_clients=connected,
        maxclients=limit,
        blocked_clients=facts.blocked_clients,
        rejected_connections=rejected,
    )
    if connected is None:
        raise _unknown("connected_clients", facts)
    if not limit:
        raise _unknown("maxclients", facts)
    percent = connected / limit * 100
    check.observe(clients_percent=round(percent, 1))
    check.note(f"{connected} of {limit} clients ({format_percent(percent)}), this check's connection included")
    if rejected:
        # A counter since the server started: it cannot say when. Warn, never fail; a
        # restart or CONFIG RESETSTAT zeroes it.
        check.warn(
            f"{rejected} connection(s) rejected at maxclients since the server started {_uptime(facts)} ago "
            "(a cumulative counter: CONFIG RESETSTAT or a restart zeroes it)"
        )
    check.threshold("clients", percent, item.clients, show=format_percent)


@applies(lambda item: item.hit_ratio is not None)
def test_hit_ratio(item: RedisTarget, facts: RedisFacts, check: Check) -> None:
    _answered(facts)
    hits, misses = facts.keyspace_hits, facts.keyspace_misses
    check.observe(keyspace_hits=hits, keyspace_misses=misses)
    if hits is None or misses is None:
        raise _unknown("keyspace_hits/keyspace_misses", facts)
    lookups = hits + misses
    if lookups == 0:
        check.expect_threshold("hit_ratio", item.hit_ratio, show=format_percent)
        check.note(f"no key lookups since the server started {_uptime(facts)} ago: no ratio to judge")
        return
    ratio = hits / lookups * 100
    check.observe(hit_ratio=round(ratio, 1))
    check.note(f"hit ratio {format_percent(ratio)}: {hits} hits in {lookups} lookups since the server started")
    check.threshold("hit_ratio", ratio, item.hit_ratio, lower_is_worse=True, show=format_percent)


@each("queues")
def test_queue(item: RedisTarget, part: Part, facts: RedisFacts, check: Check) -> None:
    key = part.name
    _answered(facts)
    entry = facts.queues.get(key)
    if entry is None:
        raise CheckError(f"the probe did not measure key {key}")
    if "error" in entry:
        raise CheckError(entry["error"])
    kind = entry["type"]
    check.observe(key=key, type=kind)
    if kind == "none":
        # An idle queue is often deleted when drained (Celery, RQ): absent is empty, not wrong.
        check.observe(exists=False, length=0)
        check.note(f"key {key} does not exist: length 0")
    elif kind not in QUEUE_TYPES:
        raise CheckError(f"key {key} holds a {kind}, not a queue (a list, stream, sorted set or set)")
    else:
        check.observe(length=entry["length"])
        check.note(f"{key} ({QUEUE_TYPES[kind]}) length {entry['length']}")
    spec: QueueLimits = part.spec
    check.measure("length", entry["length"])  # kept whatever the verdict, for a trend: added later
    if spec.warn is not None or spec.fail is not None:
        check.threshold("length", entry["length"], spec, show=lambda v: f"{v:g}")
    judge_trend(check, "length", entry["length"], spec.trend, what=f"{key} length")


@applies(lambda item: item.rejected_connections is not None)
def test_rejected_connections(item: RedisTarget, facts: RedisFacts, check: Check) -> None:
    _answered(facts)
    rejected = facts.rejected_connections
    if rejected is None:
        raise _unknown("rejected_connections", facts)
    assert item.rejected_connections is not None
    check.observe(rejected_connections=rejected, uptime_s=facts.uptime_s)
    judge_increase(
        check, "rejected_connections", rejected, item.rejected_connections.increase, what="rejected connections"
    )


@applies(lambda item: item.persistence is not None)
def test_persistence(item: RedisTarget, facts: RedisFacts, check: Check) -> None:
    spec = item.persistence
    assert spec is not None
    if spec.aof is not None:
        check.expect(aof=spec.aof)
    _answered(facts)
    check.observe(
        rdb_last_bgsave_status=facts.rdb_last_bgsave_status,
        rdb_last_save_at=utc_iso(facts.rdb_last_save_time) if facts.rdb_last_save_time is not None else None,
        rdb_bgsave_since_start=facts.rdb_bgsave_since_start,
        rdb_changes_since_last_save=facts.rdb_changes_since_last_save,
        rdb_bgsave_in_progress=facts.rdb_bgsave_in_progress,
        aof_enabled=facts.aof_enabled,
        aof_last_write_status=facts.aof_last_write_status,
        aof_last_bgrewrite_status=facts.aof_last_bgrewrite_status,
    )
    problems = []
    if facts.rdb_last_bgsave_status not in (None, "ok"):
        problems.append(
            f"the last RDB background save failed (rdb_last_bgsave_status {facts.rdb_last_bgsave_status}); "
            f"{facts.rdb_changes_since_last_save} changes since the last good save"
        )
    if spec.aof and not facts.aof_enabled:
        problems.append("AOF is off (appendonly no), expected on")
    if facts.aof_enabled and facts.aof_last_write_status not in (None, "ok"):
        problems.append(f"the last AOF write failed (aof_last_write_status {facts.aof_last_write_status})")
    if facts.aof_enabled and facts.aof_last_bgrewrite_status not in (None, "ok"):
        problems.append(f"the last AOF rewrite failed (aof_last_bgrewrite_status {facts.aof_last_bgrewrite_status})")
    assert not problems, "; ".join(problems)
    summary = [f"AOF {'on, last write ok' if facts.aof_enabled else 'off'}"]
    if facts.rdb_last_save_time is not None and facts.server_time is not None:
        age = max(0.0, facts.server_time - facts.rdb_last_save_time)
        check.observe(rdb_age_s=round(age))
        saved = "last RDB save" if facts.rdb_bgsave_since_start else "no RDB save since the server started"
        summary.insert(0, f"{saved} {format_duration(age)} ago")
        check.note("; ".join(summary))
        check.threshold("rdb_age", age, spec.rdb_max_age, show=format_duration)
    elif spec.rdb_max_age is not None:
        raise _unknown("rdb_last_save_time", facts)
    else:
        check.note("; ".join(summary))


@applies(lambda item: item.replication is not None)
def test_replication(item: RedisTarget, facts: RedisFacts, check: Check) -> None:
    spec = item.replication
    assert spec is not None
    if spec.role is not None:
        check.expect(role=spec.role)
    if spec.min_replicas is not None:
        check.expect(min_replicas=spec.min_replicas)
    _answered(facts)
    check.observe(role=facts.role)
    if spec.role is not None:
        of = f" (replica of {facts.master})" if facts.master else ""
        assert facts.role == spec.role, f"role is {facts.role}{of}, expected {spec.role}"
    if facts.role == "replica":
        _replica_link(spec.link_age, facts, check)
    else:
        _master_replicas(spec.min_replicas, spec.link_age, facts, check)


def _replica_link(link_age: Threshold[float], facts: RedisFacts, check: Check) -> None:
    check.observe(
        master=facts.master,
        master_link_status=facts.master_link_status,
        master_last_io_s=facts.master_last_io_s,
        master_link_down_s=facts.master_link_down_s,
        master_sync_in_progress=facts.master_sync_in_progress,
    )
    if facts.master_link_status != "up":
        down = facts.master_link_down_s
        for_how_long = f" for {format_duration(down)}" if down is not None and 0 <= down < 10**9 else ""
        syncing = "; a full sync is in progress" if facts.master_sync_in_progress else ""
        raise AssertionError(
            f"replication link to master {facts.master} is {facts.master_link_status}{for_how_long}{syncing}"
        )
    io = facts.master_last_io_s
    check.note(f"replica of {facts.master}, link up, last I/O {_seconds(io or 0)} ago")
    check.threshold("link_age", io, link_age, show=_seconds)


def _master_replicas(min_replicas: int | None, link_age: Threshold[float], facts: RedisFacts, check: Check) -> None:
    online = [r for r in facts.replicas if r.get("state") == "online"]
    check.observe(connected_replicas=facts.connected_replicas, replicas=facts.replicas)
    if min_replicas is not None:
        others = [f"{r['address']} {r['state']}" for r in facts.replicas if r.get("state") != "online"]
        also = f" (not online: {', '.join(others)})" if others else ""
        assert len(online) >= min_replicas, f"{len(online)} replica(s) online, expected at least {min_replicas}{also}"
    shown = ", ".join(f"{r['address']} lag {r['lag_s']}s" for r in online)
    check.note(f"{facts.role_word} with {len(online)} replica(s) online" + (f": {shown}" if shown else ""))
    lags = [int(r["lag_s"]) for r in online if r.get("lag_s") is not None]
    if lags:
        check.threshold("link_age", max(lags), link_age, show=_seconds)
