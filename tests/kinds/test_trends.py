"""`increase:` and `trend:` against real servers and a real history (docs/trends.md).

The current values always come from the real server (deadlocks provoked on a real
PostgreSQL, its real database size, a real Redis); earlier runs come from real runs, except
where a test needs days of history: those points are written into the history with
backdated timestamps through the history's own insert API (`History.insert_run`), exactly
as a recorded run's rows are.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from helpers import compliance_data, history_servers, postgres_servers
from helpers.backup_servers import S3Server, s3_server
from helpers.postgres_servers import ROLE, PgServer, deadlocks_of, provoke_deadlock
from helpers.prometheus_servers import Scraping, exporter, prom

from conftest import SECRET, Run, Runner, profile_error, wait_for
from opsproof.cli import main as opsproof
from opsproof.compliance.history import History, Location, locate
from opsproof.compliance.observations import Observations
from opsproof.model.results import Results
from opsproof.testing.kube_objects import namespace, pod
from opsproof.testing.kubernetes import KubeApiEmulator, serve_kube_api, write_kubeconfig

pg_main = postgres_servers.pg_main
pg_env = postgres_servers.pg_env
history_pg = history_servers.history_pg
history_dsn = history_servers.history_dsn
pytestmark = pytest.mark.usefixtures("pg_env")
__all__ = ["exporter", "prom", "s3_server"]  # session fixtures, imported so pytest finds them

DAY = 86400.0
MIB = 1024 * 1024


def fresh_database(server: PgServer, prefix: str) -> str:
    """A database of its own (its counters and size are this test's alone), with a table `pair` of rows 1 and 2."""
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    server.pg.create_database(name)
    with server.pg.connect(name) as conn:
        conn.execute("create table pair (id int primary key, n int not null)")
        conn.execute("insert into pair values (1, 0), (2, 0)")
        conn.execute(f"grant select on pair to {ROLE}")
    return name


def pg_item(server: PgServer, dbname: str, **extra: Any) -> dict[str, Any]:
    return {"name": "db", "dsn": server.dsn(ROLE, dbname), "password": "${PG_PASSWORD}", **extra}


def write_profile(runner: Runner, *items: dict[str, Any], section: str = "postgres") -> None:
    runner.profile(yaml.safe_dump({"environment": "test", "defaults": {"timeout": "5s"}, section: list(items)}))


def newest(run: Run) -> dict[str, Any]:
    """The results of the run just made (the report dir holds every earlier run's bundle too)."""
    documents = [json.loads((bundle / "results.json").read_text()) for bundle in run.bundles]
    return max(documents, key=lambda d: d["run"]["started_at"])


def record_of(run: Run, check: str) -> dict[str, Any]:
    found = [c for c in newest(run)["checks"] if c["check"] == check]
    assert found, run.output
    return found[0]


def about_days(n: int) -> str:
    """`n` days as the message writes a projection made from points backdated a moment before the run: the
    run's own point comes seconds after "now", so the fit may fall just short (`{n-1}d 23h`)."""
    return rf"(?:{n}d|{n - 1}d 23h)"


# -- increase: deadlocks ---------------------------------------------------------------------


def test_deadlocks_fail_once_then_pass_and_a_reset_says_so(runner: Runner, pg_main: PgServer) -> None:
    """Run 1 has nothing to compare; a real deadlock before run 2 fails it; run 3 (none new) passes; a reset passes."""
    dbname = fresh_database(pg_main, "deadlocks")
    write_profile(runner, pg_item(pg_main, dbname, deadlocks={"increase": {"fail": 1}}))

    first = runner.run("-m", "daily", "-k", "deadlocks")
    assert first.ret == 0, first.output
    record = record_of(first, "postgres.deadlocks[db]")
    assert record["outcome"] == "passed"
    assert record["message"] == "deadlocks 0: first observation; nothing to compare"
    assert record["measures"] == {"deadlocks": 0.0}
    assert record["expected"] == {"increase of deadlocks": {"fail": "1"}}

    provoke_deadlock(pg_main.pg, dbname)
    second = runner.run("-m", "daily", "-k", "deadlocks")
    assert second.ret == 1, second.output
    record = record_of(second, "postgres.deadlocks[db]")
    assert record["outcome"] == "failed"
    assert record["message"].startswith("increase of deadlocks 1 is at the fail threshold 1; 0 at ")
    assert record["message"].endswith(" UTC (previous run), 1 now")
    assert record["observed"]["increase"] == 1
    assert record["observed"]["previous"] == 0

    third = runner.run("-m", "daily", "-k", "deadlocks")
    assert third.ret == 0, third.output
    record = record_of(third, "postgres.deadlocks[db]")
    assert record["outcome"] == "passed"
    assert record["message"].startswith("deadlocks 1, up 0 since the previous run (")

    # A statistics reset (by the test, as a DBA would; opsproof never writes) zeroes the counter.
    with pg_main.pg.connect(dbname) as conn:
        conn.execute("select pg_stat_reset()")
    wait_for(lambda: deadlocks_of(pg_main.pg, dbname) == 0, "the reset to show")
    fourth = runner.run("-m", "daily", "-k", "deadlocks")
    assert fourth.ret == 0, fourth.output
    record = record_of(fourth, "postgres.deadlocks[db]")
    assert record["outcome"] == "passed"
    assert "deadlocks 0, down from 1 at " in record["message"]
    assert "the counter was reset" in record["message"]
    assert record["observed"]["counter_reset"] is True


# -- increase: a query's cumulative value ----------------------------------------------------


def test_query_increase_judges_growth_of_any_cumulative_value(runner: Runner, pg_main: PgServer) -> None:
    """pgserver has no pg_stat_statements: `sum(calls)` is judged the same way as this counter the test moves."""
    dbname = fresh_database(pg_main, "calls")
    query = {"name": "calls", "sql": "select n from pair where id = 1", "expect": {"increase": {"warn": 2, "fail": 5}}}
    write_profile(runner, pg_item(pg_main, dbname, queries=[query]))

    def move_to(value: int) -> dict[str, Any]:
        pg_main.pg.execute("update pair set n = %s where id = 1", [value], dbname=dbname)
        return record_of(runner.run("-m", "daily", "-k", "query"), "postgres.query[db/calls]")

    assert move_to(10)["message"] == "calls 10: first observation; nothing to compare"
    warned = move_to(13)
    assert warned["outcome"] == "warned", warned
    assert warned["message"].startswith("increase of calls 3 is over the warn threshold 2; 10 at ")
    failed = move_to(20)
    assert failed["outcome"] == "failed"
    assert failed["message"].startswith("increase of calls 7 is over the fail threshold 5; 13 at ")
    reset = move_to(4)
    assert reset["outcome"] == "passed"
    assert "calls 4, down from 20 at " in reset["message"] and "the counter was reset" in reset["message"]


def test_an_edited_or_forged_observation_is_a_history_verify_finding(
    runner: Runner, pg_main: PgServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two real runs keep `calls`; then the store is edited in SQLite as someone with write access would.

    Lowering the newest value hides the growth from the next run's `increase:`; a row for a run
    that was never recorded would feed a trend from nowhere. Both are findings.
    """
    dbname = fresh_database(pg_main, "forged")
    query = {"name": "calls", "sql": "select n from pair where id = 1", "expect": {"increase": {"fail": 5}}}
    write_profile(runner, pg_item(pg_main, dbname, queries=[query]))
    for value in (10, 30):
        pg_main.pg.execute("update pair set n = %s where id = 1", [value], dbname=dbname)
        runner.run("-m", "daily", "-k", "query")
    verify = ["history", "verify", "--report-dir", str(runner.report_dir)]
    assert opsproof(verify) == 0, capsys.readouterr().out
    capsys.readouterr()
    with sqlite3.connect(runner.report_dir / "history.sqlite") as conn:
        (observed_at,) = conn.execute("SELECT observed_at FROM observations WHERE value = 30").fetchone()
        conn.execute("UPDATE observations SET value = 29 WHERE value = 30")
        conn.execute(  # sqlite3 leaves foreign keys off unless asked: the row needs no run
            "INSERT INTO observations VALUES ('forged-run', 'test', 'postgres.query[db/calls]', 'value', 0, ?)",
            ("2026-01-01T00:00:00Z",),
        )
    assert opsproof(verify) == 1
    out = capsys.readouterr().out
    assert (
        f"observation value of postgres.query[db/calls] (test) at {observed_at}: the history says 29.0, "
        "its bundle says 30.0" in out
    )
    assert "observations of run forged-run (test): 1 row(s) in the history, but no such run is recorded" in out
    # The bundles are the evidence: rebuilt from them, the history holds the true value again.
    assert opsproof(["history", "rebuild", "--report-dir", str(runner.report_dir)]) == 0
    assert opsproof(verify) == 0


# -- trend: database size ----------------------------------------------------------------------


def backdated_run(environment: str, check: str, measure: str, value: float, at: datetime) -> Results:
    record = compliance_data.record(check, at=at)
    record["measures"] = {measure: value}
    return Results.model_validate(compliance_data.results(environment, at, [record]))


def insert_history(store: History, runs: list[Results]) -> None:
    with store.transaction():
        for run in runs:
            store.insert_run(run, f"backdated-{run.run.id}", "0" * 64, {}, None)


def daily_points(location: Location, check: str, measure: str, now_value: float, per_day: float, days: int) -> None:
    """`days` backdated daily values of a measure, growing `per_day` toward `now_value` (not stored: the run measures it)."""
    now = datetime.now(UTC)
    runs = [
        backdated_run("test", check, measure, now_value - per_day * day, now - timedelta(days=day))
        for day in range(1, days + 1)
    ]
    with History(location) as store:
        insert_history(store, runs)


def test_database_size_projected_full_in_five_days_fails(runner: Runner, pg_main: PgServer, history_dsn: str) -> None:
    """Ten daily sizes growing 1 MiB a day (backdated, written through History.insert_run), the real size today.

    The limit is 5 MiB above today's real size: the fitted line reaches it in 5 days, under
    `fail: 7d`. The history is a PostgreSQL store (`--history-dsn`).
    """
    dbname = fresh_database(pg_main, "size")
    ((size,),) = pg_main.pg.execute("select pg_database_size(current_database())", dbname=dbname)
    check = "postgres.database_size[db]"
    daily_points(locate(Path("."), history_dsn), check, "bytes", size, MIB, days=10)
    trend = {"limit": f"{size + 5 * MIB}B", "window": "14d", "full_in": {"warn": "30d", "fail": "7d"}}
    write_profile(runner, pg_item(pg_main, dbname, database_size={"trend": trend}))

    run = runner.run("-m", "daily", "-k", "database_size", "--history-dsn", history_dsn)
    assert run.ret == 1, run.output
    record = record_of(run, check)
    assert record["outcome"] == "failed"
    assert record["message"].startswith("projected time until database size reaches ")
    assert " is under the fail threshold 7d; database size " in record["message"]
    assert "/day over 11 points in 14d; projected " in record["message"]
    assert abs(record["observed"]["projected_full_s"] - 5 * DAY) < 3600, record["observed"]
    assert abs(record["observed"]["growth_per_day"] - MIB) < 0.01 * MIB
    assert record["observed"]["points"] == 11
    assert record["measures"] == {"bytes": float(size)}
    assert record["expected"]["trend"] == {
        "limit": record["expected"]["trend"]["limit"],
        "window": "14d",
        "min_points": 3,
        "full_in": {"warn": "30d", "fail": "7d"},
    }
    # The run itself is now in the history: its size is the newest point.
    past = Observations(locate(Path("."), history_dsn), "test", needs=lambda: {check: 0.0})
    assert past.previous(check, "bytes") == (record["started_at"], float(size))


def test_trend_first_run_and_too_few_points_say_so_and_pass(runner: Runner, pg_main: PgServer) -> None:
    dbname = fresh_database(pg_main, "young")
    write_profile(runner, pg_item(pg_main, dbname, database_size={"trend": {"limit": "100GB"}}))
    first = record_of(runner.run("-m", "daily", "-k", "database_size"), "postgres.database_size[db]")
    assert first["outcome"] == "passed"
    assert first["message"].endswith(": first observation; nothing to compare; not judged yet")
    second = record_of(runner.run("-m", "daily", "-k", "database_size"), "postgres.database_size[db]")
    assert second["outcome"] == "passed"
    assert second["message"].endswith(": 2 points in the last 14d, 3 needed; not judged yet")
    third = record_of(runner.run("-m", "daily", "-k", "database_size"), "postgres.database_size[db]")
    assert third["outcome"] == "passed"
    assert "not growing" in third["message"] or "projected to reach 100.0GB in " in third["message"]
    assert third["observed"]["points"] == 3


def test_a_history_that_cannot_be_read_is_an_error_that_says_so(runner: Runner, pg_main: PgServer) -> None:
    dbname = fresh_database(pg_main, "nohistory")
    write_profile(runner, pg_item(pg_main, dbname, deadlocks={"increase": {"fail": 1}}))
    runner.report_dir.mkdir()
    (runner.report_dir / "history.sqlite").write_text("not a database")
    run = runner.run("-m", "daily", "-k", "deadlocks")
    record = record_of(run, "postgres.deadlocks[db]")
    assert record["outcome"] == "error"
    assert record["message"].startswith("the history could not be read: history ")


# -- one read per run --------------------------------------------------------------------------


def test_observations_are_read_once_for_every_check(tmp_path: Path) -> None:
    location = locate(tmp_path, None)
    now = datetime.now(UTC)
    checks = [f"postgres.deadlocks[db{n}]" for n in range(3)]
    old = [backdated_run("test", check, "deadlocks", 1, now - timedelta(days=40)) for check in checks]
    recent = [backdated_run("test", check, "deadlocks", 2, now - timedelta(days=1)) for check in checks]
    other = [backdated_run("staging", checks[0], "deadlocks", 99, now - timedelta(hours=1))]
    with History(location) as store:
        insert_history(store, old + recent + other)
    past = Observations(location, "test", needs=lambda: dict.fromkeys(checks, 7 * DAY))
    for check in checks:
        assert past.previous(check, "deadlocks") is not None
        assert past.previous(check, "deadlocks")[1] == 2.0  # type: ignore[index]  # newest, of this environment
        week_ago = (now - timedelta(days=7)).isoformat().replace("+00:00", "Z")
        assert [value for _, value in past.series(check, "deadlocks", week_ago)] == [2.0]  # not the 40-day-old one
    assert past.previous("postgres.deadlocks[elsewhere]", "deadlocks") is None
    assert past.queries == 1
    assert past.problem is None


# -- redis: rejected connections ---------------------------------------------------------------


def test_redis_rejected_connections_increase(runner: Runner, tmp_path: Path) -> None:
    """A real redis-server with maxclients 1: each connection past the first is rejected and counted."""
    redis = pytest.importorskip("redis")
    from opsproof.local.redis import local_redis

    with local_redis({"maxclients": "1"}) as server:
        write_profile(
            runner,
            {"name": "cache", "url": server.url(), "rejected_connections": {"increase": {"fail": 2}}},
            section="redis",
        )
        first = record_of(runner.run("-m", "daily", "-k", "rejected"), "redis.rejected_connections[cache]")
        assert first["outcome"] == "passed", first
        assert first["message"].endswith(": first observation; nothing to compare")
        holder = redis.Redis.from_url(server.url())
        holder.ping()
        try:
            for _ in range(3):
                with pytest.raises(redis.exceptions.ConnectionError):
                    redis.Redis.from_url(server.url()).ping()
        finally:
            holder.close()
        second = record_of(runner.run("-m", "daily", "-k", "rejected"), "redis.rejected_connections[cache]")
        assert second["outcome"] == "failed", second
        assert second["message"].startswith("increase of rejected connections 3 is over the fail threshold 2")


# -- trend: disk usage on a host, a Prometheus KPI --------------------------------------------


def test_disk_trend_projecting_full_in_five_days_fails(runner: Runner, tmp_path: Path) -> None:
    """This machine's real / (testinfra's local:// backend, df), with ten backdated daily points 2% apart below it.

    The limit is 10 points above today's usage: growing 2%/day, the line reaches it in 5 days.
    Other mounts have no stored points: they say so and are not judged.
    """
    fs = os.statvfs("/")
    used = (fs.f_blocks - fs.f_bfree) * fs.f_frsize
    today = used / (used + fs.f_bavail * fs.f_frsize) * 100
    if today > 89:
        pytest.skip(f"/ is {today:.1f}% full: no room for a limit 10 points above it")
    check = "hosts.filesystems_trend[box]"
    daily_points(locate(runner.report_dir, None), check, "used /", today, 2, days=10)
    trend = {"limit": f"{today + 10:.2f}%", "full_in": {"warn": "30d", "fail": "7d"}}
    write_profile(runner, {"name": "box", "url": "local://", "filesystems_trend": trend}, section="hosts")

    run = runner.run("-m", "daily", "-k", "filesystems_trend")
    assert run.ret == 1, run.output
    record = record_of(run, check)
    assert record["outcome"] == "failed", record
    assert record["message"].startswith("projected time until / reaches ")
    assert " is under the fail threshold 7d; / " in record["message"]
    assert "/day over 11 points in 14d; projected " in record["message"]
    projected = record["observed"]["trends"]["/"]["projected_full_s"]
    assert abs(projected - 5 * DAY) < 0.2 * DAY, record["observed"]
    assert record["measures"]["used /"] == pytest.approx(today, abs=0.5)


def test_kpi_trend_projects_a_prometheus_value(runner: Runner, prom: Scraping) -> None:
    """A KPI's value from a real Prometheus (vector(42)); nine backdated daily values rising 2 a day to it."""
    check = "prometheus.kpi[prom/queue-depth]"
    daily_points(locate(runner.report_dir, None), check, "value", 42, 2, days=9)
    kpi = {
        "name": "queue-depth",
        "query": "vector(42)",
        "trend": {"limit": 100, "full_in": {"warn": "60d", "fail": "7d"}},
    }
    write_profile(
        runner,
        {"name": "prom", "url": prom.url, "alerts": False, "targets": False, "kpis": [kpi]},
        section="prometheus",
    )
    run = runner.run("-m", "daily", "-k", "kpi")
    record = record_of(run, check)
    assert record["outcome"] == "warned", record  # 58 to go at 2 a day: 29 days, under warn 60d, over fail 7d
    assert re.match(rf"projected time until queue-depth reaches 100 {about_days(29)}\b", record["message"]), record
    assert record["measures"] == {"value": 42.0}


# -- increase: kubernetes restarts -------------------------------------------------------------


def test_kubernetes_restarts_increase(runner: Runner, tmp_path: Path) -> None:
    """The project's Kubernetes API emulator (no real API server can be had here): a pod restarts between runs."""
    api = KubeApiEmulator(token=SECRET)
    api.add(namespace("jobs"), pod("jobs", "worker-1", restarts=2, last_terminated="Error"))
    with serve_kube_api(api) as served:
        kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", served, token=SECRET, context="main")
        settings = {"restarts": {"fail": 50, "increase": {"warn": 1, "fail": 3}}, "window": None}
        write_profile(
            runner,
            {"name": "k", "kubeconfig": str(kubeconfig), "context": "main", "namespaces": ["jobs"], "pods": settings},
            section="kubernetes",
        )
        first = record_of(runner.run("-m", "daily", "-k", "restarts"), "kubernetes.restarts[k]")
        assert first["outcome"] == "passed", first
        assert first["message"] == "container restarts 2: first observation; nothing to compare"
        api.add(pod("jobs", "worker-1", restarts=5, last_terminated="Error"))
        second = record_of(runner.run("-m", "daily", "-k", "restarts"), "kubernetes.restarts[k]")
        assert second["outcome"] == "failed", second
        assert second["message"].startswith("increase of container restarts 3 is at the fail threshold 3; 2 at ")
        api.add(pod("jobs", "worker-1", restarts=0))  # replaced by a new pod: the sum went down
        third = record_of(runner.run("-m", "daily", "-k", "restarts"), "kubernetes.restarts[k]")
        assert third["outcome"] == "passed", third
        assert "container restarts 0, down from 5 at " in third["message"]


# -- bad input ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "names"),
    [
        ({"deadlocks": {}}, "postgres[0].deadlocks.increase"),
        ({"deadlocks": {"increase": {}}}, "postgres[0].deadlocks.increase"),
        ({"database_size": {"trend": {"window": "14d"}}}, "postgres[0].database_size.trend.limit"),
        ({"database_size": {"trend": {"limit": "10GB", "window": "banana"}}}, "postgres[0].database_size.trend.window"),
        (
            {"database_size": {"trend": {"limit": "10GB", "min_points": 1}}},
            "postgres[0].database_size.trend.min_points",
        ),
        (
            {"database_size": {"trend": {"limit": "10GB", "full_in": {"warn": "1d", "fail": "7d"}}}},
            "postgres[0].database_size.trend",
        ),
        (
            {"queries": [{"name": "q", "sql": "select 1", "expect": {"increase": {}}}]},
            "postgres[0].queries[0].expect.increase",
        ),
        (
            {"queries": [{"name": "q", "sql": "select 1", "unit": "bytes", "expect": {"trend": {"limit": "lots"}}}]},
            "postgres[0].queries[0]",
        ),
    ],
)
def test_bad_increase_and_trend_are_usage_errors_naming_the_key(
    tmp_path: Path, extra: dict[str, Any], names: str
) -> None:
    text = yaml.safe_dump({"postgres": [{"name": "db", "dsn": "postgresql://ops@db/app", **extra}]})
    message = profile_error(tmp_path, text)
    assert names in message, message


def test_bad_trend_exits_4(runner: Runner) -> None:
    write_profile(runner, {"name": "db", "dsn": "postgresql://ops@db/app", "database_size": {"trend": {}}})
    run = runner.run("-m", "daily")
    assert run.ret == 4, run.output
    assert "database_size.trend.limit" in run.output


def test_bucket_size_trend_against_a_share_of_quota(runner: Runner, s3_server: S3Server) -> None:
    """moto's S3 server holds 100KB now; six backdated daily sizes grew 10KB a day to 90KB; the limit is 90% of 200KB."""
    s3_server.bucket("trend-uploads")
    for index in range(10):
        s3_server.put("trend-uploads", f"blobs/{index}.bin", b"x" * 10 * 1024)
    check = "buckets.usage[uploads]"
    daily_points(locate(runner.report_dir, None), check, "bytes", 100 * 1024, 10 * 1024, days=6)
    s3 = {"bucket": "trend-uploads", "prefix": "", "endpoint_url": s3_server.url}
    trend = {"limit": "90%", "full_in": {"warn": "30d", "fail": "7d"}}
    write_profile(runner, {"name": "uploads", "s3": s3, "quota": "200KB", "size_trend": trend}, section="buckets")
    record = record_of(runner.run("-m", "daily", "-k", "usage"), check)
    assert record["outcome"] == "warned", record  # 80KB to go at 10KB a day: 8 days, under warn 30d, over fail 7d
    assert re.match(
        rf"projected time until size reaches 180\.0KB \(90\.0% of quota 200\.0KB\) {about_days(8)} ", record["message"]
    ), record["message"]
    assert record["measures"] == {"bytes": 100.0 * 1024}


def test_a_store_from_before_trends_is_a_first_observation(tmp_path: Path) -> None:
    """A history written by an opsproof without the observations table: read as empty, never created by a reader."""
    location = locate(tmp_path, None)
    with History(location) as store:
        insert_history(store, [backdated_run("test", "postgres.deadlocks[db]", "deadlocks", 1, datetime.now(UTC))])
        store.execute("DROP TABLE observations")
    past = Observations(location, "test", needs=lambda: {"postgres.deadlocks[db]": 0.0})
    assert past.previous("postgres.deadlocks[db]", "deadlocks") is None
    assert past.problem is None
    with History(location, create=False) as reader:
        assert not reader.has_column("observations", "value")


def test_the_schema_describes_increase_and_trend() -> None:
    """Editors see the new keys: `opsproof schema` is generated from the same models."""
    from opsproof.profile import profile_json_schema

    text = json.dumps(profile_json_schema())
    for key in ("deadlocks", "database_size", "rejected_connections", "filesystems_trend", "size_trend", "full_in"):
        assert f'"{key}"' in text, key
    assert "new deadlocks since the previous run" in text


def test_increase_under_xdist_reads_the_history_in_each_worker(runner: Runner, pg_main: PgServer) -> None:
    """`-n 2`: the workers judge against the same history the controller records into."""
    dbname = fresh_database(pg_main, "xdist")
    query = {"name": "n", "sql": "select n from pair where id = 1", "expect": {"increase": {"fail": 5}}}
    write_profile(runner, pg_item(pg_main, dbname, deadlocks={"increase": {"fail": 1}}, queries=[query]))
    first = runner.run("-m", "daily", "-n", "2", "--use-workers", subprocess=True)
    assert first.ret == 0, first.output
    assert record_of(first, "postgres.query[db/n]")["message"] == "n 0: first observation; nothing to compare"
    pg_main.pg.execute("update pair set n = 9 where id = 1", dbname=dbname)
    second = runner.run("-m", "daily", "-n", "2", "--use-workers", subprocess=True)
    assert second.ret == 1, second.output
    assert record_of(second, "postgres.query[db/n]")["message"].startswith(
        "increase of n 9 is over the fail threshold 5"
    )
    assert record_of(second, "postgres.deadlocks[db]")["message"].startswith("deadlocks 0, up 0 since the previous run")


def test_a_check_without_a_history_says_so() -> None:
    """A Check made outside a run (a custom runner) has no history: judging says so as an error, never a pass."""
    from opsproof.judging.over_time import judge_increase, judge_trend
    from opsproof.model.check import Check, CheckError
    from opsproof.model.trends import Increase, Trend

    check = Check(check_id="postgres.deadlocks[db]", kind="postgres", target="db", severity="high")
    with pytest.raises(CheckError, match="this run has no history store to read earlier values from"):
        judge_increase(check, "deadlocks", 3, Increase[float](fail=1), what="deadlocks")
    with pytest.raises(CheckError, match="no history store"):
        judge_trend(check, "bytes", 3, Trend[float](limit=10), what="size")
    assert check.measures == {"deadlocks": 3.0, "bytes": 3.0}  # kept for the history all the same
    judge_increase(check, "other", 1, None, what="other")  # nothing to judge: no history needed


def test_nan_is_not_kept_and_fails_saying_so(runner: Runner, pg_main: PgServer) -> None:
    """A query answering NaN (real: 'NaN'::float8) has no number to compare; the history is not broken by it."""
    dbname = fresh_database(pg_main, "nan")
    query = {"name": "ratio", "sql": "select 'NaN'::float8", "expect": {"increase": {"fail": 1}}}
    write_profile(runner, pg_item(pg_main, dbname, queries=[query]))
    run = runner.run("-m", "daily", "-k", "query")
    record = record_of(run, "postgres.query[db/ratio]")
    assert record["outcome"] == "failed", record
    assert record["message"] == "ratio is nan: no number to compare with earlier runs"
    assert "measures" not in record
    assert "recorded in the history" in run.output


def test_redis_queue_trend(runner: Runner) -> None:
    """A real redis-server's list of 50 jobs; ten backdated daily lengths 4 apart below it; the limit 70 is 5 days off."""
    from opsproof.local.redis import local_redis

    with local_redis() as server:
        with server.client() as client:
            client.rpush("jobs", *range(50))
        check = "redis.queue[cache/jobs]"
        daily_points(locate(runner.report_dir, None), check, "length", 50, 4, days=10)
        queue = {"warn": 1000, "trend": {"limit": 70, "full_in": {"warn": "30d", "fail": "7d"}}}
        write_profile(runner, {"name": "cache", "url": server.url(), "queues": {"jobs": queue}}, section="redis")
        record = record_of(runner.run("-m", "daily", "-k", "queue"), check)
    assert record["outcome"] == "failed", record
    assert re.match(
        rf"projected time until jobs length reaches 70 {about_days(5)} is under the fail threshold 7d",
        record["message"],
    ), record["message"]
    assert record["measures"] == {"length": 50.0}
    assert record["expected"]["length"] == {"warn": "1000"}
