"""The history's cost of `increase:` and `trend:`: recording measures, and the one read per run.

    python benchmarks/bench_observations.py [--checks 1000] [--runs 60]

Records `--runs` daily runs of `--checks` records into a fresh SQLite history twice, without
measures (the floor) and with one measure per record, and prints the median time of recording
one run and the ratio; then times `Observations`' one read for every check (the newest value
only, and a 14-day window).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from opsproof.compliance.history import History, locate
from opsproof.compliance.observations import Observations
from opsproof.model.results import Results


def _stamp(at: datetime) -> str:
    return at.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _results(at: datetime, checks: int, measures: bool) -> Results:
    records: list[dict[str, Any]] = []
    for n in range(checks):
        record: dict[str, Any] = {
            "id": f"checks/infra/test_postgres.py::test_deadlocks[db{n}]",
            "check": f"postgres.deadlocks[db{n}]",
            "kind": "postgres",
            "target": f"db{n}",
            "markers": ["daily", "infra"],
            "controls": ["SOC2:CC7.1"],
            "severity": "critical",
            "outcome": "passed",
            "message": "deadlocks 0, up 0 since the previous run",
            "observed": {},
            "expected": {},
            "started_at": _stamp(at),
            "duration_s": 0.01,
            "phase": "call",
        }
        if measures:
            record["measures"] = {"deadlocks": float(n)}
        records.append(record)
    run = {
        "id": uuid.uuid4().hex,
        "environment": "prod",
        "profile": {"path": "prod.yaml", "sha256": "ab" * 32},
        "started_at": _stamp(at),
        "finished_at": _stamp(at),
        "selection": {"markers": "daily", "keywords": None, "paths": []},
        "suite": {"version": "0", "commit": None},
        "host": "h",
        "user": "u",
        "command": "pytest",
        "status": "passed",
        "exit_code": 0,
        "fail_on": "high",
        "vars": {},
        "change": None,
    }
    summary = {"total": checks, "by_outcome": {}, "by_severity": {}, "blocking": [], "waivers": {}}
    summary["waivers"] = {"applied": [], "expired": [], "unmatched": []}
    return Results.model_validate({"schema": "opsproof/results/v1", "run": run, "checks": records, "summary": summary})


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--checks", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=60)
    args = parser.parse_args()
    now = datetime.now(UTC)
    medians = {}
    for measures in (False, True):
        location = locate(Path(tempfile.mkdtemp(prefix="bench-observations-")), None)
        times = []
        with History(location) as history:
            for day in range(args.runs, 0, -1):
                results = _results(now - timedelta(days=day), args.checks, measures)
                started = time.perf_counter()
                with history.transaction():
                    history.insert_run(results, f"bundle-{day}", "0" * 64, {}, None)
                times.append(time.perf_counter() - started)
        medians[measures] = statistics.median(times)
    print(
        f"record a {args.checks}-check run: {medians[False] * 1000:.1f} ms without measures (floor), "
        f"{medians[True] * 1000:.1f} ms with one each: ratio {medians[True] / medians[False]:.2f}"
    )
    ids = [f"postgres.deadlocks[db{n}]" for n in range(args.checks)]
    for window in (0.0, 14 * 86400.0):
        reads = []
        for _ in range(5):
            past = Observations(location, "prod", needs=lambda w=window: dict.fromkeys(ids, w))
            started = time.perf_counter()
            past.previous(ids[0], "deadlocks")
            reads.append(time.perf_counter() - started)
        print(
            f"one read for {args.checks} checks over {args.runs} runs, window {window / 86400:g}d: "
            f"{statistics.median(reads) * 1000:.1f} ms ({past.queries} statement)"
        )


if __name__ == "__main__":
    main()
