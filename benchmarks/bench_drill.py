"""Benchmark: a restore drill of a ~100 MB pg_dump into an ephemeral PostgreSQL, against plain psql.

Target (issue): report the restore seconds of a drill of a 100 MB dump into an ephemeral target
against `psql` loading the same dump into a fresh database of the same kind of cluster (the
floor), as a ratio, and the peak RSS of the process running the drill.

Usage, from anywhere::

    /work/venv/bin/python benchmarks/bench_drill.py [--size-mb 100] [--repeat 3] [--gzip] [--json out.json] [--keep]

What is measured, each repeat alternating floor and drill:

- **floor**: a fresh cluster from `opsproof.local.postgres` with the drill's own settings
  (`opsproof.backup.restore.EPHEMERAL_SETTINGS`), one empty database, then
  `psql -X -q -v ON_ERROR_STOP=1 -d <db> -f dump.sql` timed from spawn to exit (cluster start
  not included). With `--gzip`, `gzip -dc dump.sql.gz | psql ...` through a shell pipe.
- **drill**: a child process (`--drill-once`) runs one drill (`opsproof.probes.drills.drill_one`,
  the code a `pytest -m monthly` run uses) of a `backups` item holding the dump, with
  `expect.tables` on the big table; it reports the drill's facts and its own peak RSS
  (`RUSAGE_SELF`: psql and the server are other processes). The figures: the `restore` phase
  (psql fed by the stream: the part the floor does), the whole drill (RTO: choose, prepare =
  cluster start, fetch, restore, verify with an exact count(*)), and the cleanup.

Exit status: 0 when every drill passed its checks' facts (restored, exact row count), 2 when a
run went wrong. There is no pass/fail target on the ratio: the issue asks for the figure.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import os
import platform
import resource
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import harness
from harness import BenchError

from opsproof.backup.restore import EPHEMERAL_DATABASE, EPHEMERAL_SETTINGS
from opsproof.local.postgres import LocalPostgres, local_postgres

ROW_BYTES = 120  # about what one row of the table takes in a plain dump's COPY data


def make_dump(work: Path, size_mb: int) -> tuple[Path, int, str]:
    """A plain pg_dump of one table of about `size_mb` MB (plus its primary key), its row count, PG version."""
    rows = size_mb * 1024 * 1024 // ROW_BYTES
    dump = work / "dump.sql"
    with local_postgres(max_connections=10) as pg:
        pg.create_database("app")
        pg.execute(
            "create table events (id bigint primary key, account int not null, kind text not null, "
            "payload text not null, at timestamptz not null);"
            "insert into events select g, g % 5000, 'kind-' || (g % 17), md5(g::text) || md5((g * 7)::text), "
            f"now() - (g || ' seconds')::interval from generate_series(1, {rows}) g",
            dbname="app",
        )
        with open(dump, "wb") as out:
            subprocess.run([pg.binaries.pg_dump, "-d", pg.socket_conninfo(dbname="app")], stdout=out, check=True)
        version = pg.binaries.version()
    return dump, rows, version


def floor_once(pg_dump: Path, gzipped: bool) -> dict[str, Any]:
    """psql loading the dump into a fresh database of a fresh cluster with the drill's settings."""
    with local_postgres(max_connections=20, settings=EPHEMERAL_SETTINGS) as pg:
        pg.create_database(EPHEMERAL_DATABASE)
        psql = [str(pg.binaries.psql), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", _conninfo(pg)]
        if gzipped:
            command = ["sh", "-c", f"gzip -dc {shlex.quote(str(pg_dump))} | {shlex.join(psql)}"]
        else:
            command = [*psql, "-f", str(pg_dump)]
        started = time.perf_counter()
        _, status, _ = os.wait4(subprocess.Popen(command, stdout=subprocess.DEVNULL).pid, 0)
        wall = time.perf_counter() - started
        if os.waitstatus_to_exitcode(status) != 0:
            raise BenchError(f"the floor's psql exited {os.waitstatus_to_exitcode(status)}")
        ((count,),) = pg.execute("select count(*) from events", dbname=EPHEMERAL_DATABASE)
    return {"psql_s": round(wall, 3), "rows": int(count)}


def _conninfo(pg: LocalPostgres) -> str:
    return pg.socket_conninfo(dbname=EPHEMERAL_DATABASE)


def drill_once(dump: Path, rows: int, work: Path) -> dict[str, Any]:
    """One drill in a child process: its facts, and the peak RSS of that process alone."""
    command = [sys.executable, __file__, "--drill-once", str(dump), str(rows), str(work)]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise BenchError(f"the drill process exited {done.returncode}: {done.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    result["process_s"] = round(wall, 3)
    return result


def run_drill_here(dump: Path, rows: int, work: Path) -> None:
    """--drill-once: run the drill in this process, print one JSON line."""
    from opsproof.probes import ProbeContext
    from opsproof.probes.drills import drill_one
    from opsproof.profile import Profile

    profile = Profile.model_validate(
        {
            "environment": "bench",
            "backups": [{"name": "db", "path": str(dump.parent), "pattern": dump.name, "max_age": "30d"}],
            "drills": [
                {
                    "name": "bench",
                    "backup": "db",
                    "work_dir": str(work),
                    "expect": {"tables": {"events": rows}},
                    "rto": "1h",
                }
            ],
        }
    )

    async def go() -> Any:
        ctx = ProbeContext(profile=profile, limit=asyncio.Semaphore(1))
        return await drill_one(profile.drills[0], ctx, asyncio.Lock())

    facts = asyncio.run(go())
    if not facts.restored or facts.tables.get("events") != rows:
        raise SystemExit(f"the drill did not restore every row: {facts.failure or facts.tables}")
    phases = {p["name"]: p["seconds"] for p in facts.phases}
    peak = _peak_rss_mib()
    print(
        json.dumps(
            {
                "restore_s": phases["restore"],
                "fetch_s": phases["fetch"],
                "prepare_s": phases["prepare"],
                "verify_s": phases["verify"],
                "rto_s": facts.rto_s,
                "cleanup_s": facts.cleanup.get("seconds"),
                "bytes_restored": facts.restore.get("bytes_restored"),
                "statements_dropped": facts.restore.get("statements_dropped"),
                "maxrss_mib": round(peak, 1),
            }
        )
    )


def _peak_rss_mib() -> float:
    """This process's peak RSS since it started (VmHWM).

    Not getrusage's ru_maxrss: Linux carries the RSS of the process that forked us across
    exec into it, so a child of a 50 MiB parent never reports less than 50 MiB.
    """
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def bench(size_mb: int, repeat: int, gzipped: bool, keep: bool) -> dict[str, Any]:
    with harness.workdir(keep, prefix="opsproof-bench-drill-") as work:
        print(f"  making a ~{size_mb} MB dump ...", file=sys.stderr)
        dump, rows, version = make_dump(work, size_mb)
        dump_bytes = stored_bytes = dump.stat().st_size
        if gzipped:
            packed = dump.with_suffix(".sql.gz")
            with open(dump, "rb") as src, gzip.open(packed, "wb", compresslevel=1) as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
            dump.unlink()
            dump = packed
            stored_bytes = dump.stat().st_size
        drill_dir = work / "drills"
        drill_dir.mkdir()
        floors, drills = [], []
        for index in range(repeat):
            floors.append(floor_once(dump, gzipped))
            print(f"  run {index + 1}/{repeat}  floor  psql {floors[-1]['psql_s']:6.2f} s", file=sys.stderr)
            drills.append(drill_once(dump, rows, drill_dir))
            d = drills[-1]
            print(
                f"  run {index + 1}/{repeat}  drill  restore {d['restore_s']:6.2f} s  RTO {d['rto_s']:6.2f} s  "
                f"peak RSS {d['maxrss_mib']:5.1f} MiB",
                file=sys.stderr,
            )
            if any(drill_dir.iterdir()):
                raise BenchError(f"the drill left files in {drill_dir}: {sorted(drill_dir.iterdir())}")
    floor_s = statistics.median(f["psql_s"] for f in floors)
    restore_s = statistics.median(d["restore_s"] for d in drills)
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "postgresql": version,
        "dump": {"rows": rows, "plain_bytes": dump_bytes, "gzip": gzipped, "stored_bytes": stored_bytes},
        "repeat": repeat,
        "floor_psql_s": round(floor_s, 3),
        "drill_restore_s": round(restore_s, 3),
        "ratio_restore_to_floor": round(restore_s / floor_s, 3),
        "drill_rto_s": round(statistics.median(d["rto_s"] for d in drills), 3),
        "drill_prepare_s": round(statistics.median(d["prepare_s"] for d in drills), 3),
        "drill_verify_s": round(statistics.median(d["verify_s"] for d in drills), 3),
        "drill_cleanup_s": round(statistics.median(d["cleanup_s"] for d in drills), 3),
        "drill_maxrss_mib": round(max(d["maxrss_mib"] for d in drills), 1),
        "runs": {"floor": floors, "drill": drills},
    }


def print_table(figures: dict[str, Any]) -> None:
    dump = figures["dump"]
    kind = "plain SQL, gzip -1" if dump["gzip"] else "plain SQL"
    print(
        f"drill of a {dump['plain_bytes'] / 2**20:.0f} MiB pg_dump ({kind}, {dump['rows']:,} rows) into an ephemeral "
        f"PostgreSQL {figures['postgresql']}, median of {figures['repeat']}, {figures['machine']['cpus']} CPUs"
    )
    rows = [
        (
            "floor: gzip -dc | psql into a fresh db" if dump["gzip"] else "floor: psql -f into a fresh database",
            figures["floor_psql_s"],
        ),
        ("drill: restore phase (stream -> psql)", figures["drill_restore_s"]),
        ("drill: whole drill (RTO)", figures["drill_rto_s"]),
        ("  of which prepare (cluster start)", figures["drill_prepare_s"]),
        ("  of which verify (exact count(*))", figures["drill_verify_s"]),
        ("drill: cleanup (not in the RTO)", figures["drill_cleanup_s"]),
    ]
    for name, seconds in rows:
        print(f"{name:42}{seconds:8.2f} s")
    print(f"ratio restore / floor: {figures['ratio_restore_to_floor']:.2f}")
    print(f"peak RSS of the process running the drill (VmHWM): {figures['drill_maxrss_mib']:.0f} MiB")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--size-mb", type=int, default=100, help="size of the plain dump (default 100)")
    parser.add_argument("--repeat", type=int, default=3, help="floor and drill runs, alternating; medians")
    parser.add_argument("--gzip", action="store_true", help="store the dump gzipped (-1) and stream it through gunzip")
    parser.add_argument("--json", type=Path, default=None, metavar="PATH", help="also write the figures here")
    parser.add_argument("--keep", action="store_true", help="keep the temp folder (the dump)")
    parser.add_argument("--drill-once", nargs=3, metavar=("DUMP", "ROWS", "WORK"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.drill_once:
        dump, rows, work = args.drill_once
        run_drill_here(Path(dump), int(rows), Path(work))
        return 0
    if args.size_mb < 1 or args.repeat < 1:
        parser.error("--size-mb and --repeat must be at least 1")
    try:
        figures = bench(args.size_mb, args.repeat, args.gzip, args.keep)
    except BenchError as exc:
        print(f"bench_drill: {exc}", file=sys.stderr)
        return 2
    print_table(figures)
    if args.json is not None:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
