"""Redis checks against real redis-servers: every outcome comes from a staged state."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from helpers.redis_servers import (
    MAIN_QUEUES,
    CrowdedRedis,
    TlsRedis,
    broken_replication,
    command_stats,
    error_stats,
    failed_bgsave,
    redis_black_hole,
    redis_closed_port,
    redis_cold_cache,
    redis_crowded,
    redis_full_memory,
    redis_main,
    redis_profile,
    redis_replication,
    redis_saved,
    redis_tls,
    wait_for,
)

import opsproof
from conftest import SECRET, Runner, profile_error
from opsproof.demo.redis import QUEUE_LENGTH, serve_demo_redis
from opsproof.local.redis import LocalRedis, local_redis
from opsproof.probes.redis import READ_COMMANDS, config_fallback

__all__ = [  # session fixtures, imported so pytest finds them here
    "redis_black_hole",
    "redis_closed_port",
    "redis_cold_cache",
    "redis_crowded",
    "redis_full_memory",
    "redis_main",
    "redis_replication",
    "redis_saved",
    "redis_tls",
]

ASPECTS = ("reachable", "memory", "clients")  # the checks every item gets


@pytest.fixture
def secret_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_PASSWORD", SECRET)


def main_url(server: LocalRedis, db: int = 0) -> str:
    return f"redis://:${{REDIS_PASSWORD}}@{server.address}/{db}"


# -- a healthy server --------------------------------------------------------------------


def test_healthy_server_passes_every_check(runner: Runner, redis_main: LocalRedis, secret_env: None) -> None:
    runner.profile(
        redis_profile(
            f"{{name: cache, url: '{main_url(redis_main)}', eviction_policy: allkeys-lru, "
            "queues: {celery: {warn: 100, fail: 1000}}}"
        )
    )
    run = runner.run("-m", "daily")
    assert run.ret == 0, run.output
    checks = sorted(c["check"] for c in run.results["checks"])
    assert checks == [
        "redis.clients[cache]",
        "redis.eviction_policy[cache]",
        "redis.memory[cache]",
        "redis.queue[cache/celery]",
        "redis.reachable[cache]",
    ]
    reachable = run.record("redis.reachable[cache]")
    assert reachable["outcome"] == "passed"
    assert reachable["message"].startswith("PONG from Redis 6.2.")
    assert "(master, up " in reachable["message"]
    assert reachable["markers"] == ["daily", "infra"]
    assert reachable["severity"] == "critical"
    assert reachable["observed"]["url"] == f"redis://{redis_main.address}/0"
    memory = run.record("redis.memory[cache]")
    assert memory["outcome"] == "passed"
    assert memory["observed"]["maxmemory"] == 256 * 1024 * 1024
    assert " of 256.0MB maxmemory (" in memory["message"]
    assert memory["expected"] == {"memory": {"warn": "80.0%", "fail": "95.0%"}}
    assert run.record("redis.eviction_policy[cache]")["message"] == "maxmemory-policy allkeys-lru"
    queue = run.record("redis.queue[cache/celery]")
    assert queue["message"] == "celery (list) length 7"
    assert queue["observed"]["length"] == 7
    assert "SOC2:CC7.1" in queue["controls"]


# -- queues ------------------------------------------------------------------------------


def test_queue_lengths_of_every_type_against_their_thresholds(
    runner: Runner, redis_main: LocalRedis, secret_env: None
) -> None:
    queues = (
        "{celery: {warn: 5}, events: {warn: 1000, fail: 5000}, scheduled: {warn: 1000, fail: 5000}, "
        "workers: {fail: 10}, drained: {fail: 1}, settings: {fail: 1}}"
    )
    runner.profile(redis_profile(f"{{name: jobs, url: '{main_url(redis_main)}', queues: {queues}}}"))
    run = runner.run("-m", "daily")
    outcomes = {c["check"]: (c["outcome"], c["message"]) for c in run.results["checks"] if "queue" in c["check"]}
    assert outcomes == {
        "redis.queue[jobs/celery]": ("warned", "length 7 is over the warn threshold 5"),
        "redis.queue[jobs/events]": ("failed", "length 6000 is over the fail threshold 5000"),
        "redis.queue[jobs/scheduled]": ("warned", "length 1500 is over the warn threshold 1000"),
        "redis.queue[jobs/workers]": ("passed", "workers (set) length 3"),
        "redis.queue[jobs/drained]": ("passed", "key drained does not exist: length 0"),
        "redis.queue[jobs/settings]": (
            "error",
            "key settings holds a string, not a queue (a list, stream, sorted set or set)",
        ),
    }
    events = run.record("redis.queue[jobs/events]")
    assert events["observed"].items() >= {"key": "events", "type": "stream", "length": MAIN_QUEUES["events"]}.items()
    assert run.record("redis.queue[jobs/scheduled]")["observed"]["type"] == "zset"
    assert run.record("redis.queue[jobs/drained]")["observed"]["exists"] is False
    assert run.ret == 1


# -- memory ------------------------------------------------------------------------------


def test_memory_near_maxmemory_warns_then_fails(runner: Runner, redis_full_memory: LocalRedis) -> None:
    url = redis_full_memory.url()
    runner.profile(
        redis_profile(
            f"{{name: tight, url: '{url}', memory: {{warn: 50%, fail: 80%}}}}",
            f"{{name: loose, url: '{url}', memory: {{warn: 50%, fail: 99%}}}}",
        )
    )
    run = runner.run("-m", "daily")
    tight = run.record("redis.memory[tight]")
    assert tight["outcome"] == "failed"
    assert tight["message"].startswith("memory 9") and "is over the fail threshold 80.0%" in tight["message"]
    assert 90 <= tight["observed"]["memory_percent"] < 99
    assert tight["observed"]["maxmemory"] == 4 * 1024 * 1024
    assert tight["observed"]["maxmemory_policy"] == "noeviction"
    loose = run.record("redis.memory[loose]")
    assert loose["outcome"] == "warned"
    assert "is over the warn threshold 50.0%" in loose["message"]


def test_unlimited_maxmemory_is_reported_not_failed(runner: Runner, redis_cold_cache: LocalRedis) -> None:
    runner.profile(redis_profile(f"{{name: cold, url: '{redis_cold_cache.url()}', memory: {{fail: 1%}}}}"))
    run = runner.run("-m", "daily")
    memory = run.record("redis.memory[cold]")
    assert memory["outcome"] == "passed"
    assert memory["message"].endswith("used; maxmemory is not set (unlimited): no share to judge")
    assert memory["observed"]["maxmemory"] == 0
    assert memory["expected"] == {"memory": {"fail": "1.0%"}}


def test_eviction_policy(
    runner: Runner, redis_main: LocalRedis, redis_cold_cache: LocalRedis, secret_env: None
) -> None:
    runner.profile(
        redis_profile(
            f"{{name: strict, url: '{main_url(redis_main)}', eviction_policy: noeviction}}",
            f"{{name: either, url: '{main_url(redis_main)}', eviction_policy: [volatile-lru, allkeys-lru]}}",
            f"{{name: unbounded, url: '{redis_cold_cache.url()}', eviction_policy: allkeys-lru}}",
        )
    )
    run = runner.run("-m", "daily")
    strict = run.record("redis.eviction_policy[strict]")
    assert (strict["outcome"], strict["message"]) == ("failed", "maxmemory-policy is allkeys-lru, expected noeviction")
    assert strict["expected"] == {"eviction_policy": "noeviction"}
    either = run.record("redis.eviction_policy[either]")
    assert either["outcome"] == "passed"
    assert either["expected"] == {"eviction_policy": ["volatile-lru", "allkeys-lru"]}
    unbounded = run.record("redis.eviction_policy[unbounded]")
    assert unbounded["outcome"] == "warned"
    assert unbounded["message"] == "maxmemory-policy is allkeys-lru but maxmemory is not set: the policy never applies"


# -- clients -----------------------------------------------------------------------------


def test_clients_near_maxclients_and_rejected_connections(runner: Runner, redis_crowded: CrowdedRedis) -> None:
    url = redis_crowded.server.url()
    runner.profile(
        redis_profile(
            f"{{name: default, url: '{url}'}}",
            f"{{name: strict, url: '{url}', clients: {{fail: 80%}}}}",
            f"{{name: roomy, url: '{url}', clients: {{warn: 99%}}}}",
        )
    )
    run = runner.run("-m", "daily")
    rejected = f"{redis_crowded.rejected} connection(s) rejected at maxclients since the server started"
    default = run.record("redis.clients[default]")
    # The three items connect at once: each sees the 16 idle clients, itself, and maybe the others.
    assert 17 <= default["observed"]["connected_clients"] <= 19
    assert default["observed"]["maxclients"] == 20
    assert default["observed"]["rejected_connections"] == redis_crowded.rejected
    if default["observed"]["connected_clients"] == 19:  # 95%: at the default fail limit, which is reached
        assert default["outcome"] == "failed"
        assert "is at the fail threshold 95.0%" in default["message"]
    else:
        assert default["outcome"] == "warned"
        assert "is over the warn threshold 80.0%" in default["message"] and rejected in default["message"]
        assert "(a cumulative counter: CONFIG RESETSTAT or a restart zeroes it)" in default["message"]
    strict = run.record("redis.clients[strict]")
    assert strict["outcome"] == "failed"
    assert "is over the fail threshold 80.0%" in strict["message"]
    roomy = run.record("redis.clients[roomy]")
    assert roomy["outcome"] == "warned"
    assert roomy["message"].startswith(rejected)


def test_server_at_maxclients_turns_the_probe_away(runner: Runner, redis_crowded: CrowdedRedis) -> None:
    more = redis_crowded.hold(redis_crowded.maxclients - redis_crowded.idle)
    try:
        wait_for(redis_crowded.turned_away, "the server to be full")
        redis_crowded.rejected += 1
        runner.profile(redis_profile(f"{{name: full, url: '{redis_crowded.server.url()}'}}"))
        run = runner.run("-m", "daily")
        redis_crowded.rejected += 1  # the probe's own connection
    finally:
        redis_crowded.release(more)
    for aspect in ASPECTS:
        record = run.record(f"redis.{aspect}[full]")
        assert record["outcome"] == "failed"
        assert record["message"] == "the server refused the connection: max number of clients reached (maxclients)"
    wait_for(lambda: redis_crowded.connected() == redis_crowded.idle, "the extra clients to go")


# -- hit ratio ---------------------------------------------------------------------------


def test_low_hit_ratio_warns_or_fails(runner: Runner, redis_cold_cache: LocalRedis) -> None:
    url = redis_cold_cache.url()
    runner.profile(
        redis_profile(
            f"{{name: lenient, url: '{url}', hit_ratio: {{fail: 5%}}}}",
            f"{{name: watchful, url: '{url}', hit_ratio: {{warn: 20%, fail: 5%}}}}",
            f"{{name: strict, url: '{url}', hit_ratio: {{warn: 90%, fail: 50%}}}}",
        )
    )
    run = runner.run("-m", "daily")
    lenient = run.record("redis.hit_ratio[lenient]")
    assert lenient["outcome"] == "passed"
    assert lenient["message"] == "hit ratio 10.0%: 2 hits in 20 lookups since the server started"
    assert lenient["observed"].items() >= {"keyspace_hits": 2, "keyspace_misses": 18, "hit_ratio": 10.0}.items()
    watchful = run.record("redis.hit_ratio[watchful]")
    assert (watchful["outcome"], watchful["message"]) == ("warned", "hit_ratio 10.0% is under the warn threshold 20.0%")
    strict = run.record("redis.hit_ratio[strict]")
    assert (strict["outcome"], strict["message"]) == ("failed", "hit_ratio 10.0% is under the fail threshold 50.0%")
    assert strict["expected"] == {"hit_ratio": {"warn": "90.0%", "fail": "50.0%"}}


def test_no_lookups_is_no_hit_ratio(runner: Runner, redis_full_memory: LocalRedis) -> None:
    runner.profile(redis_profile(f"{{name: fresh, url: '{redis_full_memory.url()}', hit_ratio: {{fail: 50%}}}}"))
    record = runner.run("-m", "daily").record("redis.hit_ratio[fresh]")
    assert record["outcome"] == "passed"
    assert record["message"].startswith("no key lookups since the server started ")


def test_hit_ratio_applies_only_where_configured(runner: Runner, redis_cold_cache: LocalRedis) -> None:
    runner.profile(redis_profile(f"{{name: plain, url: '{redis_cold_cache.url()}'}}"))
    checks = {c["check"] for c in runner.run("-m", "daily").results["checks"]}
    assert checks == {"redis.reachable[plain]", "redis.memory[plain]", "redis.clients[plain]"}


# -- persistence -------------------------------------------------------------------------


def test_recent_save_and_aof_pass(runner: Runner, redis_saved: LocalRedis) -> None:
    runner.profile(
        redis_profile(
            f"{{name: durable, url: '{redis_saved.url()}', "
            "persistence: {rdb_max_age: {warn: 1h, fail: 26h}, aof: true}}"
        )
    )
    run = runner.run("-m", "daily")
    record = run.record("redis.persistence[durable]")
    assert record["outcome"] == "passed", record
    assert record["message"].startswith("last RDB save ") and record["message"].endswith("ago; AOF on, last write ok")
    assert record["observed"]["rdb_last_bgsave_status"] == "ok"
    assert record["observed"]["aof_enabled"] is True
    assert record["expected"] == {"aof": True, "rdb_age": {"warn": "1h", "fail": "1d 2h"}}
    assert "ISO27001:A.8.13" in record["controls"]


def test_rdb_save_too_old_fails(runner: Runner, redis_saved: LocalRedis) -> None:
    with redis_saved.client() as client:
        wait_for(lambda: client.time()[0] - client.lastsave().timestamp() >= 2, "the last save to be 2s old")
    runner.profile(
        redis_profile(f"{{name: stale, url: '{redis_saved.url()}', persistence: {{rdb_max_age: {{fail: 1s}}}}}}")
    )
    record = runner.run("-m", "daily").record("redis.persistence[stale]")
    assert record["outcome"] == "failed"
    assert record["message"].startswith("rdb_age ") and record["message"].endswith("is over the fail threshold 1s")
    assert record["observed"]["rdb_age_s"] >= 2


def test_failed_background_save_fails(runner: Runner) -> None:
    with failed_bgsave() as server:
        runner.profile(redis_profile(f"{{name: broken, url: '{server.url()}', persistence: {{}}}}"))
        run = runner.run("-m", "daily")
    record = run.record("redis.persistence[broken]")
    assert record["outcome"] == "failed"
    assert record["message"].startswith("the last RDB background save failed (rdb_last_bgsave_status err); 1 changes")
    assert record["observed"]["rdb_last_bgsave_status"] == "err"
    # stop-writes-on-bgsave-error (the default) makes the server refuse writes, and PING.
    reachable = run.record("redis.reachable[broken]")
    assert reachable["outcome"] == "failed"
    assert reachable["message"] == (
        "PING refused: MISCONF Redis is configured to save RDB snapshots, but it is currently not able to "
        "persist on disk; the server refuses writes until a save succeeds"
    )
    assert run.record("redis.memory[broken]")["outcome"] == "passed"


def test_aof_off_when_required_fails(runner: Runner, redis_main: LocalRedis, secret_env: None) -> None:
    runner.profile(redis_profile(f"{{name: volatile, url: '{main_url(redis_main)}', persistence: {{aof: true}}}}"))
    record = runner.run("-m", "daily").record("redis.persistence[volatile]")
    assert (record["outcome"], record["message"]) == ("failed", "AOF is off (appendonly no), expected on")
    assert record["expected"] == {"aof": True}


# -- replication -------------------------------------------------------------------------


def test_replication_roles_and_replicas(runner: Runner, redis_replication: tuple[LocalRedis, LocalRedis]) -> None:
    master, replica = redis_replication
    runner.profile(
        redis_profile(
            f"{{name: primary, url: '{master.url()}', replication: {{role: master, min_replicas: 1}}}}",
            f"{{name: wanting, url: '{master.url()}', replication: {{min_replicas: 2}}}}",
            f"{{name: follower, url: '{replica.url()}', replication: {{role: replica}}}}",
            f"{{name: confused, url: '{replica.url()}', replication: {{role: master}}}}",
        )
    )
    run = runner.run("-m", "daily")
    primary = run.record("redis.replication[primary]")
    assert primary["outcome"] == "passed", primary
    assert primary["message"].startswith(f"master with 1 replica(s) online: 127.0.0.1:{replica.port} lag ")
    assert primary["observed"]["replicas"][0]["state"] == "online"
    wanting = run.record("redis.replication[wanting]")
    assert (wanting["outcome"], wanting["message"]) == ("failed", "1 replica(s) online, expected at least 2")
    follower = run.record("redis.replication[follower]")
    assert follower["outcome"] == "passed", follower
    assert follower["message"].startswith(f"replica of 127.0.0.1:{master.port}, link up, last I/O ")
    assert follower["observed"]["master_link_status"] == "up"
    confused = run.record("redis.replication[confused]")
    assert confused["outcome"] == "failed"
    assert confused["message"] == f"role is replica (replica of 127.0.0.1:{master.port}), expected master"
    assert run.record("redis.reachable[follower]")["message"].startswith("PONG from Redis 6.2.14 (replica, up ")


def test_broken_replication_link_fails(runner: Runner) -> None:
    with broken_replication() as replica:
        runner.profile(redis_profile(f"{{name: orphan, url: '{replica.url()}', replication: {{role: replica}}}}"))
        record = runner.run("-m", "daily").record("redis.replication[orphan]")
    assert record["outcome"] == "failed"
    assert record["message"].startswith("replication link to master 127.0.0.1:")
    assert " is down" in record["message"]
    assert record["observed"]["master_link_status"] == "down"


# -- unreachable, refused, misconfigured -------------------------------------------------


def test_black_hole_times_out_and_the_run_goes_on(
    runner: Runner, redis_black_hole: str, redis_cold_cache: LocalRedis
) -> None:
    runner.profile(
        redis_profile(
            f"{{name: hole, url: '{redis_black_hole}', timeout: 1s}}",
            f"{{name: fine, url: '{redis_cold_cache.url()}'}}",
        )
    )
    started = time.monotonic()
    run = runner.run("-m", "daily")
    elapsed = time.monotonic() - started
    for aspect in ASPECTS:
        hole = run.record(f"redis.{aspect}[hole]")
        assert hole["outcome"] == "failed"
        assert hole["message"].startswith("timed out after 1.0") and hole["message"].endswith("(timeout 1s)")
        assert hole["observed"]["timed_out"] is True
        assert run.record(f"redis.{aspect}[fine]")["outcome"] == "passed"
    assert elapsed < 1 + 2.5, f"a 1s black hole took the run {elapsed:.1f}s"


def test_closed_port_is_refused(runner: Runner, redis_closed_port: str) -> None:
    runner.profile(redis_profile(f"{{name: gone, url: '{redis_closed_port}'}}"))
    record = runner.run("-m", "daily").record("redis.reachable[gone]")
    address = redis_closed_port.removeprefix("redis://").removesuffix("/0")
    assert (record["outcome"], record["message"]) == ("failed", f"cannot connect to {address}: connection refused")


def test_unresolvable_host_fails(runner: Runner) -> None:
    runner.profile(redis_profile("{name: nowhere, url: 'redis://no-such-host.invalid:6379/0'}"))
    record = runner.run("-m", "daily").record("redis.reachable[nowhere]")
    assert record["outcome"] == "failed"
    assert record["message"].startswith("cannot resolve no-such-host.invalid: ")


def test_wrong_password_is_an_error_and_the_run_goes_on(
    runner: Runner, redis_main: LocalRedis, secret_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WRONG_PASSWORD", "not-" + SECRET)
    runner.profile(
        redis_profile(
            f"{{name: wrong, url: 'redis://:${{WRONG_PASSWORD}}@{redis_main.address}/0'}}",
            f"{{name: anonymous, url: '{redis_main.url()}'}}",
            f"{{name: good, url: '{main_url(redis_main)}'}}",
        )
    )
    run = runner.run("-m", "daily")
    assert run.ret == 1
    for aspect in ASPECTS:
        wrong = run.record(f"redis.{aspect}[wrong]")
        assert wrong["outcome"] == "error"
        assert wrong["message"] == "authentication failed: invalid username-password pair or user is disabled"
        anonymous = run.record(f"redis.{aspect}[anonymous]")
        assert anonymous["outcome"] == "error"
        assert anonymous["message"] == "authentication required: the server has a password and the URL gives none"
        assert run.record(f"redis.{aspect}[good]")["outcome"] == "passed"
    assert run.record("redis.reachable[wrong]")["observed"]["denied"].startswith("authentication failed")


def test_database_out_of_range_is_an_error(runner: Runner, redis_main: LocalRedis, secret_env: None) -> None:
    runner.profile(redis_profile(f"{{name: far, url: '{main_url(redis_main, db=99)}'}}"))
    record = runner.run("-m", "daily").record("redis.reachable[far]")
    assert record["outcome"] == "error"
    assert record["message"] == "the server refused a command: DB index is out of range"


def test_unix_socket_and_database_number(runner: Runner, redis_main: LocalRedis, secret_env: None) -> None:
    assert redis_main.unix_socket is not None
    runner.profile(
        redis_profile(
            f"{{name: local, url: 'unix://:${{REDIS_PASSWORD}}@{redis_main.unix_socket}?db=2'}}",
            f"{{name: db3, url: '{main_url(redis_main, db=3)}', queues: {{celery: {{fail: 1}}}}}}",
        )
    )
    run = runner.run("-m", "daily")
    local = run.record("redis.reachable[local]")
    assert local["outcome"] == "passed", local
    assert local["observed"]["url"] == f"unix://{redis_main.unix_socket}?db=2"
    # Database 3 has no celery key: the queue lives in database 0.
    assert run.record("redis.queue[db3/celery]")["message"] == "key celery does not exist: length 0"


def test_tls_verified_against_ca_file(runner: Runner, redis_tls: TlsRedis, secret_env: None) -> None:
    url = redis_tls.url.replace("rediss://", "rediss://:${REDIS_PASSWORD}@")
    runner.profile(
        redis_profile(
            f"{{name: trusted, url: '{url}', ca_file: '{redis_tls.ca_file}'}}",
            f"{{name: untrusted, url: '{url}'}}",
        )
    )
    run = runner.run("-m", "daily")
    trusted = run.record("redis.reachable[trusted]")
    assert trusted["outcome"] == "passed", trusted
    assert trusted["observed"]["url"] == redis_tls.url
    untrusted = run.record("redis.reachable[untrusted]")
    assert untrusted["outcome"] == "failed"
    assert untrusted["message"].startswith("TLS certificate verification failed: ")


# -- secrets and read-only ---------------------------------------------------------------


def test_secrets_never_reach_any_output(
    runner: Runner, redis_main: LocalRedis, redis_closed_port: str, secret_env: None
) -> None:
    literal = "literal-Passw0rd/with+chars"
    runner.profile(
        redis_profile(
            f"{{name: good, url: '{main_url(redis_main)}', queues: {{celery: {{warn: 1}}}}}}",
            f"{{name: literal, url: 'redis://:{literal}@{redis_main.address}/0'}}",
            f"{{name: gone, url: '{redis_closed_port.replace('redis://', 'redis://:${REDIS_PASSWORD}@')}'}}",
        )
    )
    run = runner.run("-m", "daily", "-v")
    assert run.record("redis.queue[good/celery]")["outcome"] == "warned"
    assert run.record("redis.reachable[literal]")["outcome"] == "error"
    assert run.record("redis.reachable[gone]")["outcome"] == "failed"
    for text in [run.output, *(p.read_text(errors="replace") for p in run.bundle.rglob("*") if p.is_file())]:
        assert SECRET not in text
        assert literal not in text
    assert run.record("redis.reachable[literal]")["observed"]["url"] == f"redis://{redis_main.address}/0"


def test_checks_send_only_read_commands(runner: Runner, redis_main: LocalRedis, secret_env: None) -> None:
    # Every aspect at once, every queue type, a missing key and a wrong type.
    queues = ", ".join(f"{key}: {{warn: 1}}" for key in [*MAIN_QUEUES, "drained", "settings"])
    runner.profile(
        redis_profile(
            f"{{name: all, url: '{main_url(redis_main)}', eviction_policy: allkeys-lru, hit_ratio: {{warn: 1%}}, "
            f"queues: {{{queues}}}, persistence: {{rdb_max_age: {{warn: 1d}}}}, replication: {{min_replicas: 0}}}}"
        )
    )
    # One connection for all of this test's own reads, so the server's counters show the probe's.
    with redis_main.client() as client:
        digest = client.execute_command("DEBUG", "DIGEST")
        changes = client.info("persistence")["rdb_changes_since_last_save"]
        connections = client.info("stats")["total_connections_received"]
        before, errors_before = command_stats(client), error_stats(client)
        run = runner.run("-m", "daily")
        after, errors_after = command_stats(client), error_stats(client)
        assert len(run.results["checks"]) == 3 + 4 + len(MAIN_QUEUES) + 2

        sent = {name: after[name] - before.get(name, 0) for name in after if after[name] != before.get(name, 0)}
        # This test's own INFO calls are in the window too; everything else is the probe's.
        assert set(sent) <= READ_COMMANDS, sent
        assert set(sent) == {"auth", "ping", "info", "type", "llen", "xlen", "zcard", "scard"}, sent
        assert sent["auth"] == 1 and sent["ping"] == 1 and sent["type"] == len(MAIN_QUEUES) + 2
        described = client.execute_command("COMMAND", "INFO", *sent)
        for name in sent:
            assert "write" not in described[name]["flags"], (name, described[name]["flags"])
            assert "admin" not in described[name]["flags"], (name, described[name]["flags"])
        assert client.execute_command("DEBUG", "DIGEST") == digest
        assert client.info("persistence")["rdb_changes_since_last_save"] == changes
        # One connection for the item.
        assert client.info("stats")["total_connections_received"] - connections == 1
    # No error replies: no CLIENT SETINFO or HELLO refused, no WRONGTYPE.
    assert errors_after == errors_before


# -- profiles ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ("{name: a, url: 'http://cache:6379'}", "redis[0].url: URL needs a redis://, rediss:// or unix:// scheme"),
        ("{name: a, url: 'redis://cache:99999/0'}", "redis[0].url: URL port must be a number from 1 to 65535"),
        (
            "{name: a, url: 'redis://cache:6379/zero'}",
            "redis[0].url: URL path must be a database number (/0, /1...), not /zero",
        ),
        ("{name: a, url: 'redis://:pw@'}", "redis[0].url: URL has no host: redis://host:port/db"),
        (
            "{name: a, url: 'redis://cache/0?socket_timeout=1'}",
            "redis[0].url: URL query parameter 'socket_timeout' is not supported; only ?db=N (timeouts come from timeout:)",
        ),
        ("{name: a, url: 'unix://redis.sock'}", "redis[0].url: unix:// URL needs an absolute socket path"),
        (
            "{name: a, url: 'redis://cache', hit_ratio: {warn: 70%, fail: 80%}}",
            "redis[0].hit_ratio: lower is worse here: warn must be at or above fail",
        ),
        (
            "{name: a, url: 'redis://cache', memory: {warn: 95%, fail: 80%}}",
            "redis[0].memory: higher is worse here: warn must be at or below fail",
        ),
        (
            "{name: a, url: 'redis://cache', eviction_policy: lru}",
            "redis[0].eviction_policy[0]: input should be 'noeviction'",
        ),
        (
            "{name: a, url: 'redis://cache', queues: {jobs: {warn: -1}}}",
            "redis[0].queues.jobs.warn: input should be greater than or equal to 0",
        ),
        (
            "{name: a, url: 'redis://cache', queues: {jobs: {warn: lots}}}",
            "redis[0].queues.jobs.warn: input should be a valid integer",
        ),
        (
            "{name: a, url: 'redis://cache', persistence: {rdb_max_age: 1d}}",
            "redis[0].persistence.rdb_max_age: expected a mapping",
        ),
        (
            "{name: a, url: 'redis://cache', replication: {role: slave}}",
            "redis[0].replication.role: input should be 'master' or 'replica'",
        ),
        ("{name: a, url: 'redis://cache', max_memory: 80%}", "redis[0].max_memory: unknown key"),
        (
            "{name: a, url: 'redis://cache', ca_file: ca.pem}",
            "redis[0].ca_file: ca_file 'PROFILE_DIR/ca.pem' does not exist",
        ),
    ],
)
def test_bad_profile_values_are_usage_errors(item: str, message: str, tmp_path: Path) -> None:
    assert f"bad.yaml:4: {message.replace('PROFILE_DIR', str(tmp_path))}" in profile_error(
        tmp_path, redis_profile(item)
    )


def test_ca_file_needs_rediss(tmp_path: Path) -> None:
    (tmp_path / "ca.pem").write_text("not used")
    path = tmp_path / "bad.yaml"
    path.write_text(redis_profile("{name: a, url: 'redis://cache', ca_file: ca.pem}"))
    with pytest.raises(opsproof.ProfileError, match=r"redis\[0\]: ca_file is only used with rediss:// \(TLS\) URLs"):
        opsproof.load_profile(path)


def test_malformed_url_is_exit_4_without_the_password(runner: Runner, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_PASSWORD", SECRET)
    runner.profile(redis_profile("{name: cache, url: 'redis://:${REDIS_PASSWORD}@cache:port/0'}"))
    run = runner.run("-m", "daily")
    assert run.ret == 4
    assert "profiles/test.yaml:4: redis[0].url: URL port must be a number from 1 to 65535" in run.output
    assert SECRET not in run.output


def test_defaults_of_a_minimal_item(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(redis_profile("{name: cache, url: 'redis://:pw@cache'}"))
    item = opsproof.load_profile(path).profile.redis[0]
    assert (item.memory.warn, item.memory.fail, item.clients.warn, item.clients.fail) == (80, 95, 80, 95)
    assert item.hit_ratio is None and item.persistence is None and item.replication is None
    assert item.address.shown == "redis://cache:6379/0" and item.address.password == "pw"


# -- the demo ----------------------------------------------------------------------------

DEMO_ITEM = (
    "{name: redis-0, url: 'redis://:${DEMO_REDIS_PASSWORD}@${vars.DEMO_REDIS:-127.0.0.1:16379}/0', "
    "eviction_policy: allkeys-lru, hit_ratio: {warn: 90%, fail: 80%}, "
    "queues: {background_jobs: {warn: 1000, fail: 5000}}, persistence: {rdb_max_age: {warn: 2h, fail: 26h}}}"
)


def test_demo_redis_is_green_but_for_its_queue(runner: Runner, monkeypatch: pytest.MonkeyPatch) -> None:
    with serve_demo_redis(port=0) as demo:
        for name, value in demo.environ.items():
            monkeypatch.setenv(name, value)
        runner.profile(redis_profile(DEMO_ITEM))
        run = runner.run("-m", "daily", "--var", f"DEMO_REDIS={demo.address}")
        password, address = demo.password, demo.address
    outcomes = {c["check"]: c["outcome"] for c in run.results["checks"]}
    assert outcomes == {
        "redis.reachable[redis-0]": "passed",
        "redis.memory[redis-0]": "passed",
        "redis.eviction_policy[redis-0]": "passed",
        "redis.clients[redis-0]": "passed",
        "redis.hit_ratio[redis-0]": "passed",
        "redis.queue[redis-0/background_jobs]": "warned",
        "redis.persistence[redis-0]": "passed",
    }, run.output
    assert run.record("redis.queue[redis-0/background_jobs]")["observed"]["length"] == QUEUE_LENGTH
    assert run.ret == 0
    assert password not in run.output
    assert run.record("redis.reachable[redis-0]")["observed"]["url"] == f"redis://{address}/0"


# -- ACLs and renamed commands -----------------------------------------------------------


def test_acl_refusals_are_errors_not_failures(runner: Runner) -> None:
    users = {
        # May read INFO and measure the celery key only.
        "user": ["ops", "on", ">ops-pw", "~celery", "+ping", "+info", "+type", "+llen"],
    }
    with local_redis(users) as server:
        with server.client() as client:
            client.rpush("celery", "a", "b")
            client.execute_command("ACL", "SETUSER", "blind", "on", ">blind-pw", "~*", "+ping", "-info")
        runner.profile(
            redis_profile(
                f"{{name: ops, url: 'redis://ops:ops-pw@{server.address}/0', queues: {{celery: {{warn: 100}}, events: {{warn: 100}}}}}}",
                f"{{name: blind, url: 'redis://blind:blind-pw@{server.address}/0'}}",
            )
        )
        run = runner.run("-m", "daily")
    assert run.record("redis.queue[ops/celery]")["message"] == "celery (list) length 2"
    events = run.record("redis.queue[ops/events]")
    assert events["outcome"] == "error"
    assert events["message"].startswith("TYPE events refused: ")
    assert "permission" in events["message"]
    assert run.record("redis.reachable[ops]")["observed"]["url"] == f"redis://ops@{server.address}/0"
    blind = run.record("redis.reachable[blind]")
    assert blind["outcome"] == "error"
    assert blind["message"].startswith("permission denied: ") and "'info' command" in blind["message"]


def test_config_get_fills_what_info_lacks_and_a_renamed_config_is_reported() -> None:
    # INFO of this Redis has maxclients; older ones do not: the fallback is asked directly.
    with local_redis({"maxclients": "123"}) as plain, local_redis({"rename-command": ["CONFIG", ""]}) as locked:
        filled = asyncio.run(_fallback(plain))
        refused = asyncio.run(_fallback(locked))
    assert filled == {"config_get": ["maxclients"], "maxclients": 123}
    assert refused["config_get"] == []
    assert refused["config_error"].startswith("CONFIG GET maxclients refused: unknown command")


async def _fallback(server: LocalRedis) -> dict[str, Any]:
    client = aioredis.Redis(host=server.host, port=server.port, protocol=2, driver_info=None, decode_responses=True)
    try:
        return await config_fallback(client, {"maxclients": None, "maxmemory": 0, "maxmemory_policy": "noeviction"})
    finally:
        await client.aclose()


def test_a_limit_is_reached_at_it_and_an_empty_threshold_is_refused(runner: Runner, tmp_path: Path) -> None:
    """CONTRACT §3: a queue of 30 with `fail: 30` is at its limit and fails; `{}` judges nothing and is refused."""
    with local_redis() as server:
        with server.client() as client:
            client.rpush("pool", *range(30))
            client.rpush("spare", *range(29))
        runner.profile(
            redis_profile(
                f"{{name: r, url: 'redis://{server.address}/0', queues: {{pool: {{fail: 30}}, spare: {{warn: 29, fail: 30}}}}}}"
            )
        )
        run = runner.run("-m", "daily")
    pool = run.record("redis.queue[r/pool]")
    assert pool["outcome"] == "failed" and "length 30 is at the fail threshold 30" in pool["message"]
    spare = run.record("redis.queue[r/spare]")
    assert spare["outcome"] == "warned" and "length 29 is at the warn threshold 29" in spare["message"]
    message = profile_error(tmp_path, "redis:\n  - {name: r, url: 'redis://127.0.0.1:1/0', queues: {pool: {}}}\n")
    assert "redis[0].queues.pool: an empty threshold {} judges nothing: give warn, fail or both" in message
