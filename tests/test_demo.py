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
    outcomes = {c["target"]: (c["outcome"], c["severity"]) for c in results["checks"]}
    assert outcomes == {
        "wallet-guard": ("passed", "critical"),
        "auth-proxy": ("passed", "critical"),
        "usage-meter": ("passed", "critical"),
        "audit-trail": ("passed", "critical"),
        "reporting": ("failed", "medium"),
        "dashboard": ("warned", "medium"),
    }
    assert results["run"]["environment"] == "demo"
    assert "reporting" in (bundle / "report.html").read_text()
