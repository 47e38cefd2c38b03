"""Per-part and per-aspect severity and cadence (issue 15 item 3), against real servers.

A query, queue, KPI, log pattern, JSON value, CronJob or an aspect (`connections:`, `memory:`,
`filesystems:`) may carry its own `severity:` and `cadence:`; its check takes them instead of its
item's, and the item is still probed once per run: one session per database, whichever of its
parts a run selects.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from helpers import postgres_servers
from helpers.kubernetes_servers import KubeCluster, kube_cluster, kube_profile
from helpers.log_servers import logs_profile, write_log
from helpers.metrics_servers import Exporter, exporter, metrics_profile
from helpers.postgres_servers import ROLE, PgServer
from helpers.redis_servers import redis_main, redis_profile

from conftest import SECRET, HttpServer, Run, Runner, http_profile, profile_error
from opsproof.local.redis import LocalRedis

pg_main = postgres_servers.pg_main
pg_env = postgres_servers.pg_env
__all__ = ["exporter", "kube_cluster", "pg_env", "pg_main", "redis_main"]  # fixtures, for pytest


def records(run: Run, since: set[Path]) -> dict[str, dict[str, Any]]:
    """The records of the one bundle `run` wrote (bundles made before it are in `since`)."""
    (bundle,) = set(run.bundles) - since
    return {c["check"]: c for c in json.loads((bundle / "results.json").read_text())["checks"]}


def pg_item(server: PgServer, **extra: Any) -> str:
    item = {"name": "db", "dsn": server.dsn(ROLE, "app"), "password": "${PG_PASSWORD}", "critical": False, **extra}
    return yaml.safe_dump({"environment": "test", "defaults": {"timeout": "3s"}, "postgres": [item]})


def test_a_weekly_aspect_runs_only_weekly_with_its_severity_and_one_session_per_run(
    runner: Runner, pg_main: PgServer, pg_env: None
) -> None:
    """`connections: {fail: 0%, severity: critical, cadence: weekly}` on a `medium` daily item.

    The limit 0% fails on the first session, so the record shows the aspect's severity and
    blocks the run (critical >= --fail-on high), while the item's daily checks stay medium.
    """
    weekly_query = {"name": "one", "sql": "select 1", "expect": {"equals": 1}, "cadence": "weekly"}
    connections = {"fail": "0%", "severity": "critical", "cadence": "weekly"}
    runner.profile(pg_item(pg_main, connections=connections, queries=[weekly_query]))

    mark = pg_main.log_mark()
    day = runner.run("-m", "daily")
    assert day.ret == 0, day.output
    daily = records(day, set())
    assert "postgres.connections[db]" not in daily and "postgres.query[db/one]" not in daily
    assert {"postgres.reachable[db]", "postgres.blocked_locks[db]"} <= set(daily)
    assert {r["severity"] for r in daily.values()} == {"medium"}
    assert len({e.pid for e in pg_main.log_since(mark) if e.user == ROLE}) == 1

    before, mark = set(day.bundles), pg_main.log_mark()
    week = runner.run("-m", "weekly")
    assert week.ret == 1, week.output  # the critical aspect failed
    weekly = records(week, before)
    assert sorted(weekly) == ["postgres.connections[db]", "postgres.query[db/one]"]
    record = weekly["postgres.connections[db]"]
    assert (record["outcome"], record["severity"]) == ("failed", "critical"), record
    assert "weekly" in record["markers"] and "daily" not in record["markers"]
    assert record["expected"]["connections"] == {"fail": "0.0%"}
    assert weekly["postgres.query[db/one]"]["severity"] == "medium"
    assert len({e.pid for e in pg_main.log_since(mark) if e.user == ROLE}) == 1

    # Daily and weekly parts in one run: still one session for the database.
    before, mark = set(week.bundles), pg_main.log_mark()
    both = runner.run("-m", "daily or weekly")
    assert {"postgres.connections[db]", "postgres.query[db/one]", "postgres.reachable[db]"} <= set(
        records(both, before)
    )
    assert len({e.pid for e in pg_main.log_since(mark) if e.user == ROLE}) == 1


def test_an_aspect_with_only_severity_or_cadence_is_an_empty_threshold_and_refused(
    runner: Runner, tmp_path: Path, pg_main: PgServer, pg_env: None
) -> None:
    text = pg_item(pg_main, connections={"severity": "critical", "cadence": "weekly"})
    assert "an empty threshold {} judges nothing" in profile_error(tmp_path, text)
    assert "connections" in profile_error(tmp_path, text)
    runner.profile(text)
    assert runner.run("-m", "daily").ret == 4
    wrong = pg_item(pg_main, connections={"warn": "80%", "severity": "P1"})
    assert "connections.severity" in profile_error(tmp_path, wrong)
    wrong = pg_item(pg_main, connections={"warn": "80%", "cadence": "hourly"})
    assert "connections.cadence" in profile_error(tmp_path, wrong)


def test_a_log_pattern_has_its_own_severity_and_cadence(runner: Runner, tmp_path: Path) -> None:
    log = write_log(tmp_path / "auth.log", ["authentication failed"] * 4 + ["INFO ok"] * 3)
    patterns = (
        "{name: auth-failures, match: 'authentication failed', threshold: {fail: 3}, severity: low}, "
        "{name: ok, match: 'INFO ok', min: 1}, "
        "{name: weekly-ok, match: 'INFO ok', threshold: {fail: 1}, severity: critical, cadence: weekly}"
    )
    runner.profile(logs_profile(f"{{name: auth, host: {{url: 'local://', path: '{log}'}}, patterns: [{patterns}]}}"))
    day = runner.run("-m", "daily")
    assert day.ret == 0, day.output  # a failed `low` pattern does not block at --fail-on high
    daily = records(day, set())
    assert sorted(daily) == ["logs.count[auth/auth-failures]", "logs.count[auth/ok]"]
    failures = daily["logs.count[auth/auth-failures]"]
    assert (failures["outcome"], failures["severity"]) == ("failed", "low"), failures
    assert (daily["logs.count[auth/ok]"]["outcome"], daily["logs.count[auth/ok]"]["severity"]) == ("passed", "critical")
    before = set(day.bundles)
    week = runner.run("-m", "weekly")
    assert week.ret == 1, week.output
    (record,) = records(week, before).values()
    assert (record["check"], record["outcome"], record["severity"]) == ("logs.count[auth/weekly-ok]", "failed", "critical")


def test_a_json_value_with_a_name_is_its_own_check_with_its_severity(
    runner: Runner, http_server: HttpServer, tmp_path: Path
) -> None:
    """The value of /health's `version` is judged as `http.value[api/version]`, on the item's one request."""
    values = (
        "[{path: $.status, equals: healthy}, "
        "{name: version, path: $.version, equals: '9.9.9', severity: low}, "
        "{name: weekly-version, path: $.version, equals: '1.4.2', cadence: weekly}]"
    )
    runner.profile(http_profile(f"{{name: api, url: '{http_server.base}/health', expect: {{values: {values}}}}}"))
    asked = len(http_server.requests)
    day = runner.run("-m", "daily")
    assert day.ret == 0, day.output
    daily = records(day, set())
    assert sorted(daily) == ["http.health[api]", "http.value[api/version]"]
    assert daily["http.health[api]"]["outcome"] == "passed"
    version = daily["http.value[api/version]"]
    assert (version["outcome"], version["severity"]) == ("failed", "low"), version
    assert version["message"] == "$.version is '1.4.2', expected '9.9.9'"
    assert version["observed"]["values"] == {"$.version": "1.4.2"}
    assert "post_deploy" in version["markers"]  # an http item's parts join its post-deploy gate
    assert len([r for r in http_server.requests[asked:] if r[1] == "/health"]) == 1  # one request, two checks
    before = set(day.bundles)
    week = runner.run("-m", "weekly")
    (record,) = records(week, before).values()
    assert (record["check"], record["outcome"], record["severity"]) == (
        "http.value[api/weekly-version]",
        "passed",
        "critical",
    )
    assert record["message"] == "$.version is '1.4.2'"
    unnamed = "[{path: $.version, equals: '1', severity: low}]"
    error = profile_error(tmp_path, http_profile(f"{{name: api, url: 'http://x/', expect: {{values: {unnamed}}}}}"))
    assert "give it a `name:`" in error and "expect.values[0]" in error
    twice = "[{name: v, path: $.a, equals: 1}, {name: v, path: $.b, equals: 1}]"
    error = profile_error(tmp_path, http_profile(f"{{name: api, url: 'http://x/', expect: {{values: {twice}}}}}"))
    assert "two values are named 'v'" in error


def test_a_cronjob_has_its_own_cadence_and_severity(runner: Runner, kube_cluster: KubeCluster) -> None:
    cronjobs = (
        "cronjobs: [{name: backups, match: '*-backup', last_success: {fail: 26h}}, "
        "{name: monthly-backups, match: '*-backup', last_success: {fail: 1h}, severity: low, cadence: monthly}]"
    )
    item = f"{{name: jobs, kubeconfig: '{kube_cluster.kubeconfig}', context: main, namespaces: [shop], {cronjobs}}}"
    runner.profile(kube_profile(item))
    day = runner.run("-m", "daily", "-k", "cronjob")
    assert sorted(records(day, set())) == ["kubernetes.cronjob[jobs/backups]"]
    before = set(day.bundles)
    month = runner.run("-m", "monthly")
    assert month.ret == 0, month.output  # low
    (record,) = records(month, before).values()
    assert (record["check"], record["outcome"], record["severity"]) == (
        "kubernetes.cronjob[jobs/monthly-backups]",
        "failed",
        "low",
    )


def test_a_redis_queue_and_memory_have_their_own_severity_and_cadence(
    runner: Runner, redis_main: LocalRedis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REDIS_PASSWORD", SECRET)
    url = f"redis://:${{REDIS_PASSWORD}}@{redis_main.address}/0"
    queues = "{celery: {fail: 5, severity: low}, events: {fail: 10, cadence: weekly}}"
    memory = "{warn: 80%, fail: 95%, severity: low, cadence: monthly}"
    runner.profile(redis_profile(f"{{name: cache, url: '{url}', queues: {queues}, memory: {memory}}}"))
    day = runner.run("-m", "daily")
    daily = records(day, set())
    assert "redis.memory[cache]" not in daily and "redis.queue[cache/events]" not in daily
    celery = daily["redis.queue[cache/celery]"]
    assert (celery["outcome"], celery["severity"]) == ("failed", "low"), celery
    assert day.ret == 0, day.output
    before = set(day.bundles)
    week = runner.run("-m", "weekly")
    (record,) = records(week, before).values()
    assert (record["check"], record["outcome"], record["severity"]) == ("redis.queue[cache/events]", "failed", "critical")
    before = set(week.bundles)
    month = runner.run("-m", "monthly")
    (record,) = records(month, before).values()
    assert (record["check"], record["severity"]) == ("redis.memory[cache]", "low")
    assert "monthly" in record["markers"]


def test_a_host_filesystems_aspect_has_its_own_severity(runner: Runner) -> None:
    """hosts `filesystems:` (disk space) as `low`: a 0% limit fails on any used disk, and does not block."""
    item = "{name: me, url: 'local://', filesystems: {fail: 0%, severity: low}, memory: false, load: false}"
    runner.profile(f"environment: test\ndefaults: {{timeout: 10s}}\nhosts:\n  - {item}\n")
    run = runner.run("-m", "daily", "-k", "filesystems")
    record = run.record("hosts.filesystems[me]")
    assert (record["outcome"], record["severity"]) == ("failed", "low"), record
    assert run.ret == 0, run.output


def test_the_schema_and_the_key_tables_carry_the_new_keys() -> None:
    schema = json.loads(
        subprocess.run([sys.executable, "-m", "opsproof.cli", "schema"], capture_output=True, text=True, check=True).stdout
    )
    defs = schema["$defs"]

    def properties(ref: dict[str, Any]) -> dict[str, Any]:
        for choice in ref.get("anyOf", [ref]):
            if "$ref" in choice:
                return dict(defs[choice["$ref"].rsplit("/", 1)[1]]["properties"])
        return dict(ref.get("properties", {}))

    postgres = defs["PostgresTarget"]["properties"]
    for aspect in ("connections", "long_running_queries", "blocked_locks", "idle_in_transaction", "wraparound"):
        assert {"warn", "fail", "severity", "cadence"} <= set(properties(postgres[aspect])), aspect
    for model in ("LogPattern", "CronJobExpectation", "ValueExpect", "PostgresQuery", "Kpi", "Series"):
        assert {"severity", "cadence"} <= set(defs[model]["properties"]), model
    assert "name" in defs["ValueExpect"]["properties"]
    for aspect in ("memory", "clients", "hit_ratio"):
        assert {"severity", "cadence"} <= set(properties(defs["RedisTarget"]["properties"][aspect])), aspect

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "docs" / "hooks"))
    from key_tables import keys_table

    postgres_table = keys_table("postgres")
    assert "`{warn, fail, severity, cadence}` of percentage" in postgres_table
    assert "`queries[].severity`" in postgres_table and "`queries[].cadence`" in postgres_table
    assert "`patterns[].severity`" in keys_table("logs") and "`cronjobs[].cadence`" in keys_table("kubernetes")
    assert "`expect.values[].name`" in keys_table("http")


def test_an_item_whose_parts_are_all_weekly_is_not_contacted_by_a_daily_run(runner: Runner, exporter: Exporter) -> None:
    """`pytest -m daily` probes a daily item's targets while pytest collects, unless its parts say otherwise.

    A `metrics` item has no check but its series: with its one series weekly, a daily run selects
    nothing of it and must not scrape it; the weekly run scrapes it once.
    """
    series = "{name: depth, metric: queue_depth, labels: {queue: celery}, threshold: {fail: 100}, cadence: weekly}"
    runner.profile(metrics_profile(f"{{name: exporter, url: '{exporter.url}', series: [{series}]}}"))
    since = len(exporter.requests)
    day = runner.run("-m", "daily")
    assert day.ret == 5, day.output  # no checks selected
    assert exporter.scrapes(since) == []
    before = set(day.bundles)
    week = runner.run("-m", "weekly")
    assert week.ret == 1, week.output
    assert len(exporter.scrapes(since)) == 1
    assert records(week, before)["metrics.series[exporter/depth]"]["outcome"] == "failed"


def test_a_settings_aspect_has_its_own_severity_and_cadence(runner: Runner, kube_cluster: KubeCluster) -> None:
    """Aspects that are settings rather than thresholds (`workloads:`, `events:`) take them too; `{}` stays "on"."""
    aspects = "workloads: {severity: low, cadence: weekly}, events: {}, nodes: false"
    item = f"{{name: prod, kubeconfig: '{kube_cluster.kubeconfig}', context: main, namespaces: [shop], {aspects}}}"
    runner.profile(kube_profile(item))
    day = runner.run("-m", "daily")
    daily = records(day, set())
    assert "kubernetes.workloads[prod]" not in daily and "kubernetes.events[prod]" in daily
    assert daily["kubernetes.events[prod]"]["severity"] == "critical"
    before = set(day.bundles)
    week = runner.run("-m", "weekly")
    (record,) = records(week, before).values()
    assert (record["check"], record["severity"]) == ("kubernetes.workloads[prod]", "low")
    assert "weekly" in record["markers"]
