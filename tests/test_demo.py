"""The newcomer's first command: `opsproof demo`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from conftest import REPO


def test_demo_runs_the_daily_checks_and_shows_a_non_blocking_failure(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "opsproof.cli", "demo", "--port", "0", "--", "--report-dir", str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.strip().splitlines()
    assert lines[-2].startswith("opsproof: passed (exit 0); evidence bundle: ")
    assert lines[-1].startswith("opsproof demo: open ") and lines[-1].endswith("report.html in a browser (exit 0)")
    (bundle,) = [p for p in tmp_path.iterdir() if p.is_dir() and not p.name.startswith(".")]
    results = json.loads((bundle / "results.json").read_text())
    outcomes = {c["check"]: (c["outcome"], c["severity"]) for c in results["checks"]}
    assert outcomes == {
        "http.health[wallet-guard]": ("passed", "critical"),
        "http.health[auth-proxy]": ("passed", "critical"),
        "http.health[usage-meter]": ("passed", "critical"),
        "http.health[audit-trail]": ("passed", "critical"),
        "http.health[reporting]": ("failed", "medium"),
        "http.health[dashboard]": ("warned", "medium"),
        "redis.reachable[redis-0]": ("passed", "critical"),
        "redis.memory[redis-0]": ("passed", "critical"),
        "redis.clients[redis-0]": ("passed", "critical"),
        "redis.eviction_policy[redis-0]": ("passed", "critical"),
        "redis.hit_ratio[redis-0]": ("passed", "critical"),
        "redis.persistence[redis-0]": ("passed", "critical"),
        "redis.queue[redis-0/background_jobs]": ("warned", "critical"),
        "postgres.reachable[scorpius-db]": ("passed", "critical"),
        "postgres.connections[scorpius-db]": ("warned", "critical"),
        "postgres.blocked_locks[scorpius-db]": ("passed", "critical"),
        "postgres.long_running_queries[scorpius-db]": ("passed", "critical"),
        "postgres.idle_in_transaction[scorpius-db]": ("passed", "critical"),
        "postgres.wraparound[scorpius-db]": ("passed", "critical"),
        "postgres.query[scorpius-db/schema-version]": ("passed", "critical"),
        "postgres.query[scorpius-db/active-projects]": ("passed", "critical"),
        "tls.expiry[api]": ("passed", "critical"),
        "tls.trust[api]": ("passed", "critical"),
        "tls.hostname[api]": ("passed", "critical"),
        "tls.protocol[api]": ("passed", "critical"),
        "tls.expiry[auth-proxy]": ("warned", "critical"),
        "tls.trust[auth-proxy]": ("passed", "critical"),
        "tls.hostname[auth-proxy]": ("passed", "critical"),
        "tls.protocol[auth-proxy]": ("passed", "critical"),
        "backups.freshness[postgres-daily]": ("passed", "critical"),
        "backups.size[postgres-daily]": ("passed", "critical"),
        "backups.retention[postgres-daily]": ("passed", "critical"),
        "backups.integrity[postgres-daily]": ("passed", "critical"),
        "backups.protection[postgres-daily]": ("passed", "critical"),
        "backups.freshness[postgres-weekly]": ("passed", "critical"),
        "backups.size[postgres-weekly]": ("warned", "critical"),
        "backups.retention[postgres-weekly]": ("passed", "critical"),
        "backups.integrity[postgres-weekly]": ("passed", "critical"),
    }
    assert results["run"]["environment"] == "demo"
    assert "reporting" in (bundle / "report.html").read_text()
