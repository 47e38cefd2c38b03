"""One chain shared by runners on many machines: the head in PostgreSQL, 20 runs at once.

Four runners, each with its own report dir (its own machine), record into one PostgreSQL
history (a real server: opsproof.localpg). With the head there, every run's manifest
names the run sealed just before it, whichever runner sealed that one.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers.history_servers import history_dsn, history_pg

from conftest import REPO, SECRET, HttpServer, Runner, http_profile
from opsproof.cli import main as opsproof
from opsproof.compliance.history import History, locate

__all__ = ["history_dsn", "history_pg"]  # fixtures

RUNNERS, RUNS_EACH = 4, 5


def _runner_root(tmp_path: Path, profile: str) -> Path:
    root = tmp_path / "suite"
    shutil.copytree(REPO / "checks", root / "checks")
    (root / "profiles").mkdir()
    (root / "profiles" / "test.yaml").write_text(profile)
    (root / "pytest.ini").write_text("[pytest]\ntestpaths = checks\naddopts = -p no:cacheprovider\nopsproof = true\n")
    return root


def _run_all_at_once(root: Path, report_dirs: list[Path], dsn: str | None) -> list[subprocess.CompletedProcess[str]]:
    """RUNS_EACH runs per report dir, all started together; each one a `pytest -m daily` of its own."""
    env = dict(os.environ)
    env.pop("OPSPROOF_HISTORY_DSN", None)
    extra = ["--history-dsn", dsn] if dsn else []
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "pytest", "-m", "daily", "--profile", "test", "--report-dir", str(d), *extra],
            cwd=root,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for d in report_dirs
        for _ in range(RUNS_EACH)
    ]
    return [
        subprocess.CompletedProcess(p.args, p.wait(timeout=300), p.stdout.read() if p.stdout else "", "")
        for p in processes
    ]


def _bundles(report_dirs: list[Path]) -> list[Path]:
    return sorted(
        (p for d in report_dirs for p in d.iterdir() if p.is_dir() and not p.name.startswith(".")),
        key=lambda p: p.name,
    )


def test_four_runners_twenty_runs_at_once_make_one_linear_chain(
    tmp_path: Path, http_server: HttpServer, history_dsn: str, capsys: pytest.CaptureFixture[str]
) -> None:
    root = _runner_root(tmp_path, http_profile(f"{{name: api, url: '{http_server.base}/health'}}", environment="prod"))
    report_dirs = [tmp_path / f"runner-{n}" for n in range(RUNNERS)]
    done = _run_all_at_once(root, report_dirs, history_dsn)
    assert all(p.returncode == 0 for p in done), [p.stdout[-2000:] for p in done if p.returncode]
    assert all(SECRET not in p.stdout for p in done)  # the DSN's password never shows
    bundles = _bundles(report_dirs)
    assert len(bundles) == RUNNERS * RUNS_EACH  # no run lost
    # One linear chain: exactly one first bundle, every other names a distinct predecessor.
    previous = {b.name: json.loads((b / "manifest.json").read_text())["previous"] for b in bundles}
    assert sum(1 for p in previous.values() if p is None) == 1
    named = [p["bundle"] for p in previous.values() if p is not None]
    assert len(named) == len(set(named)) == len(bundles) - 1
    assert not (report_dirs[0] / ".chain").exists()  # the head is in PostgreSQL, not in any runner's dir
    with History(locate(tmp_path, history_dsn)) as history:
        assert history.count("runs") == len(bundles)
        head = history.execute("SELECT bundle, links FROM chain_heads WHERE environment = 'prod'")
    assert head[0][1] == len(bundles)
    assert head[0][0] in {b.name for b in bundles} and head[0][0] not in named  # the head is the chain's tip

    capsys.readouterr()
    args = ["verify", *(a for d in report_dirs for a in ("--chain", str(d))), "--history-dsn", history_dsn]
    assert opsproof(args) == 0
    out = capsys.readouterr().out
    assert f"OK chain prod ({len(bundles)} bundles" in out
    assert SECRET not in out
    # A bundle removed from one runner's dir breaks the chain where it was.
    removed = next(b for b in bundles if b.name == named[len(named) // 2])
    shutil.rmtree(removed)
    assert opsproof(args) == 1
    out = capsys.readouterr().out
    assert f"names previous bundle {removed.name}" in out and "which is missing" in out


def test_without_a_shared_head_the_runners_chains_fork(
    tmp_path: Path, http_server: HttpServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """The control: four report dirs with a head each are four chains, and one walk over them says so."""
    root = _runner_root(tmp_path, http_profile(f"{{name: api, url: '{http_server.base}/health'}}", environment="prod"))
    report_dirs = [tmp_path / f"runner-{n}" for n in range(2)]
    done = _run_all_at_once(root, report_dirs, None)
    assert all(p.returncode == 0 for p in done)
    capsys.readouterr()
    assert opsproof(["verify", *(a for d in report_dirs for a in ("--chain", str(d)))]) == 1
    assert "BROKEN chain prod" in capsys.readouterr().out


def test_verify_chain_needs_the_head_row_when_the_history_is_postgresql(
    tmp_path: Path, history_dsn: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from datetime import UTC, datetime

    from helpers.compliance_data import record, results, write

    reports = tmp_path / "reports"
    at = datetime(2026, 7, 1, tzinfo=UTC)
    write(reports, results("prod", at, [record("http.health[api]", at=at)]))  # sealed with a local head only
    assert opsproof(["verify", "--chain", str(reports), "--history-dsn", history_dsn]) == 1
    assert "no chain head for prod" in capsys.readouterr().out
    assert opsproof(["verify", "--history-dsn", history_dsn, str(reports)]) == 4
    assert "--history-dsn and --witness go with --chain DIR" in capsys.readouterr().err


def test_seal_run_appends_the_run_to_the_postgresql_chain_and_never_shows_the_password(
    runner: Runner,
    http_server: HttpServer,
    history_dsn: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Shards on two "machines" (two report dirs), sealed with --history-dsn: one link, one run, the head in PostgreSQL."""
    runner.profile(http_profile(*(f"{{name: svc-{i}, url: '{http_server.base}/health'}}" for i in range(4))))
    root = runner.pytester.path
    for index in range(2):
        reports = str(root / f"machine-{index}")
        args = ["-m", "daily", "--shard", f"{index}/2", "--run-id", "r-pg", "--history-dsn", history_dsn]
        assert runner.pytester.runpytest(*args, "--report-dir", reports, "--profile", "test").ret == 0
    shards = root / "shards"  # what an S3 prefix would hold: both machines' shard bundles
    for index in range(2):
        for bundle in (root / f"machine-{index}").iterdir():
            if bundle.is_dir() and not bundle.name.startswith("."):
                shutil.copytree(bundle, shards / bundle.name)
    monkeypatch.chdir(root)
    capsys.readouterr()
    sealed = root / "sealed"
    code = opsproof(
        ["seal-run", str(shards), "--profile", "test", "--report-dir", str(sealed), "--history-dsn", history_dsn]
    )
    out = capsys.readouterr()
    assert code == 0, out
    assert SECRET not in out.out + out.err
    run_bundle = next(p for p in sealed.iterdir() if p.is_dir() and not p.name.startswith("."))
    for path in run_bundle.iterdir():
        assert SECRET not in path.read_text(), path.name  # results.json records the command, DSN included
    assert "--history-dsn" in json.loads((run_bundle / "results.json").read_text())["run"]["command"]
    with History(locate(sealed, history_dsn)) as history:
        assert history.execute("SELECT run_id, bundle FROM runs") == [("r-pg", run_bundle.name)]
        assert history.execute("SELECT bundle, links FROM chain_heads") == [(run_bundle.name, 1)]
    assert not (sealed / ".chain").exists()
    assert opsproof(["verify", "--chain", str(sealed), "--history-dsn", history_dsn]) == 0
