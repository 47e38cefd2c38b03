"""The shipped alerting rules (deploy/prometheus/) against Debian's promtool: valid, and right on synthetic series."""

from __future__ import annotations

import subprocess

from helpers.signal_servers import promtool

from conftest import REPO

RULES = REPO / "deploy" / "prometheus"


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([promtool(), *args], cwd=RULES, capture_output=True, text=True, timeout=60, check=False)


def test_promtool_check_rules() -> None:
    done = _promtool("check", "rules", "opsproof-rules.yml")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS: 6 rules found" in done.stdout


def test_promtool_test_rules() -> None:
    """The unit tests in opsproof-rules.test.yml: the dead-man's switch, blocking failures, certificates, backups."""
    done = _promtool("test", "rules", "opsproof-rules.test.yml")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_promtool_test_rules_can_fail(tmp_path) -> None:
    """A wrong expectation makes promtool fail: the unit tests above really test the rules."""
    broken = (RULES / "opsproof-rules.test.yml").read_text().replace("eval_time: 25h", "eval_time: 28h", 1)
    (tmp_path / "opsproof-rules.yml").write_text((RULES / "opsproof-rules.yml").read_text())
    (tmp_path / "broken.test.yml").write_text(broken)
    done = subprocess.run(
        [promtool(), "test", "rules", "broken.test.yml"], cwd=tmp_path, capture_output=True, text=True, check=False
    )
    assert done.returncode != 0
    assert "OpsproofDailyRunMissing" in done.stdout + done.stderr
