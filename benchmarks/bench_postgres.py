"""Benchmark: a daily run over N PostgreSQL items, each with Q custom queries, counted from the server.

Target (issue): 20 items use 20 server connections in total (one read-only session per item,
shared by all of its checks), not one per check. The server is a throwaway local cluster
(opsproof.local.postgres) with `log_connections=on` and the application name in every log line;
the benchmark counts the sessions application `opsproof` opened, samples pg_stat_activity
for the most it held at once, and times the run.

Usage, from anywhere (the opsproof run's cwd is the repository root)::

    /work/venv/bin/python benchmarks/bench_postgres.py [--items 20] [--queries 5] [--repeat 3] [--json out.json]

Exit status 0 when every run opened exactly one connection per item, 1 when not, 2 when a run
itself went wrong (non-zero exit, or results.json without every check passed).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import harness
import yaml
from harness import REPO, BenchError

from opsproof.local.postgres import LocalPostgres, local_postgres

APPLICATION = "opsproof"
BUILT_IN_CHECKS = 6  # reachable, connections, blocked_locks, long_running_queries, idle_in_transaction, wraparound
PASSWORD = "bench-Passw0rd"
QUERIES = [
    ("schema-version", "select version_num from alembic_version", {"equals": "abc123"}),
    ("projects", "select count(*) from projects", {"min": 100}),
    ("active-projects", "select id, name from projects where status = 'active'", {"min_rows": 1}),
    ("newest-project", "select now() - max(created_at) from projects", {"max": 86400}),
    ("settings", "show max_connections", {"matches": "^[0-9]+$"}),
    ("owners", "select count(distinct owner_id) from projects", {"min": 1}),
    ("database", "select current_database()", {"matches": "^app"}),
    ("no-orphans", "select count(*) from projects where owner_id is null", {"equals": 0}),
]


def setup_server(pg: LocalPostgres, items: int) -> None:
    pg.create_role("ops", password=PASSWORD, grants=("pg_monitor",))
    for n in range(1, items + 1):
        database = f"app{n:02d}"
        pg.create_database(database)
        with pg.connect(database) as conn:
            conn.execute("create table alembic_version (version_num text primary key)")
            conn.execute("insert into alembic_version values ('abc123')")
            conn.execute(
                "create table projects (id serial primary key, owner_id int, name text, "
                "status text default 'active', created_at timestamptz default now())"
            )
            conn.execute("insert into projects (owner_id, name) select n % 7, 'p' || n from generate_series(1, 500) n")
            conn.execute("grant select on alembic_version, projects to ops")


def write_profile(path: Path, pg: LocalPostgres, items: int, queries: int) -> None:
    chosen = QUERIES[:queries]
    profile = {
        "environment": "bench",
        "defaults": {"timeout": "5s"},
        "postgres": [
            {
                "name": f"db-{n:02d}",
                "dsn": pg.dsn("ops", f"app{n:02d}"),
                "password": "${BENCH_PG_PASSWORD}",
                "queries": [{"name": name, "sql": sql, "expect": expect} for name, sql, expect in chosen],
            }
            for n in range(1, items + 1)
        ],
    }
    path.write_text(yaml.safe_dump(profile, sort_keys=False))


class ActivitySampler:
    """Polls pg_stat_activity for sessions of application opsproof; keeps the most seen at once."""

    def __init__(self, pg: LocalPostgres) -> None:
        self.pg = pg
        self.peak = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> ActivitySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        with self.pg.connect() as conn:
            while not self._stop.is_set():
                row = conn.execute(
                    "select count(*) from pg_stat_activity where application_name = %s", [APPLICATION]
                ).fetchone()
                self.peak = max(self.peak, int(row[0]) if row else 0)
                self.samples += 1
                time.sleep(0.005)


def connections_logged(log_text: str) -> int:
    """Sessions application opsproof opened: log_connections' `connection authorized` lines."""
    return len(re.findall(rf"connection authorized: .*application_name={APPLICATION}\b", log_text))


def run_once(pg: LocalPostgres, profile: Path, work: Path, index: int, expected_checks: int) -> dict[str, Any]:
    report_dir = work / f"reports-{index}"
    log = work / f"run-{index}.log"
    cmd = [sys.executable, "-m", "pytest", "-q", "-m", "daily", f"--profile={profile}", f"--report-dir={report_dir}"]
    env = {**os.environ, "BENCH_PG_PASSWORD": PASSWORD}
    mark = len(pg.log_text())
    with ActivitySampler(pg) as sampler, open(log, "wb") as out:
        started = time.perf_counter()
        code = subprocess.run(cmd, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, check=False).returncode
        wall = time.perf_counter() - started
    if code != 0:
        raise BenchError(f"the opsproof run exited {code}; see {log}")
    results = _results(log)
    checks = results["checks"]
    passed = sum(1 for c in checks if c["outcome"] == "passed")
    if len(checks) != expected_checks or passed != expected_checks:
        raise BenchError(f"expected {expected_checks} passed checks; got {results['summary']['by_outcome']}")
    shutil.rmtree(report_dir, ignore_errors=True)
    return {
        "wall_s": round(wall, 3),
        "checks": len(checks),
        "connections": connections_logged(pg.log_text()[mark:]),
        "peak_concurrent_sessions": sampler.peak,
        "activity_samples": sampler.samples,
    }


def _results(log: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((harness.bundle_of(log) / "results.json").read_text())
    return data


def bench(items: int, queries: int, repeat: int) -> dict[str, Any]:
    settings = {"log_connections": True}
    expected_checks = items * (BUILT_IN_CHECKS + queries)
    with (
        harness.workdir(keep=False, prefix="opsproof-bench-pg-") as work,
        local_postgres(max_connections=items + 20, settings=settings) as pg,
    ):
        setup_server(pg, items)
        profile = work / "bench.yaml"
        write_profile(profile, pg, items, queries)
        runs = []
        for index in range(repeat):
            runs.append(run_once(pg, profile, work, index, expected_checks))
            r = runs[-1]
            print(
                f"  run {index + 1}/{repeat}: wall {r['wall_s']:.2f} s, {r['checks']} checks, "
                f"{r['connections']} connections, peak {r['peak_concurrent_sessions']} at once",
                file=sys.stderr,
            )
        version = pg.binaries.version()
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "postgresql": version,
        "items": items,
        "queries_per_item": queries,
        "checks": expected_checks,
        "repeat": repeat,
        "wall_s_median": round(statistics.median(r["wall_s"] for r in runs), 3),
        "connections": [r["connections"] for r in runs],
        "peak_concurrent_sessions": [r["peak_concurrent_sessions"] for r in runs],
        "one_per_item": all(r["connections"] == items for r in runs),
        "runs": runs,
    }


def print_table(figures: dict[str, Any]) -> None:
    items, checks = figures["items"], figures["checks"]
    print(
        f"opsproof PostgreSQL benchmark: {items} items x {figures['queries_per_item']} custom queries "
        f"= {checks} checks, PostgreSQL {figures['postgresql']}, median of {figures['repeat']}, "
        f"{figures['machine']['cpus']} CPUs"
    )
    print(f"server connections from application {APPLICATION} per run: {figures['connections']} (target {items})")
    print(f"most {APPLICATION} sessions at once (pg_stat_activity): {figures['peak_concurrent_sessions']}")
    print(f"wall time of the run: {figures['wall_s_median']:.2f} s")
    verdict = "PASS" if figures["one_per_item"] else "FAIL"
    print(f"one connection per item (not one per check: {checks} would be): {verdict}")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--items", type=int, default=20, help="PostgreSQL items in the profile (default 20)")
    parser.add_argument("--queries", type=int, default=5, help=f"custom queries per item, 1-{len(QUERIES)} (default 5)")
    parser.add_argument("--repeat", type=int, default=3, help="runs; the wall time is their median (default 3)")
    parser.add_argument("--json", type=Path, default=None, metavar="PATH", help="also write the figures here")
    args = parser.parse_args(argv)
    if args.items < 1 or args.repeat < 1 or not 1 <= args.queries <= len(QUERIES):
        parser.error(f"--items and --repeat must be at least 1, --queries between 1 and {len(QUERIES)}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        figures = bench(args.items, args.queries, args.repeat)
    except BenchError as exc:
        print(f"bench_postgres: {exc}", file=sys.stderr)
        return 2
    print_table(figures)
    if args.json is not None:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0 if figures["one_per_item"] else 1


if __name__ == "__main__":
    sys.exit(main())
