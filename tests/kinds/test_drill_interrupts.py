"""Drills that must stop: a store that never answers, a restore over max_duration, and a run that is
interrupted (SIGTERM, Ctrl-C, SIGKILL) leave no server, no process and no file behind.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers.drill_servers import (
    DrillDumps,
    assert_nothing_left,
    backups_item,
    drill_dumps,
    drills_profile,
    postgres_processes_under,
    work_dir,
    write_backups,
)

from conftest import REPO, Runner, default_sigint, listening_black_hole, wait_for
from opsproof.backup.reaper import processes_under
from opsproof.testing.servers import free_port

__all__ = ["drill_dumps", "work_dir"]  # session fixtures, found here by pytest


# -- timeouts, interrupts ----------------------------------------------------------------------


def test_a_store_that_never_answers_costs_the_timeout(
    runner: Runner, work_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}.items():
        monkeypatch.setenv(key, value)  # credentials, so what is measured is the endpoint not answering
    with listening_black_hole() as port:
        closed = free_port(0)
        runner.profile(
            drills_profile(
                [
                    f"{{name: hole, s3: {{bucket: backups, endpoint_url: 'http://127.0.0.1:{port}', region: us-east-1}}, max_age: 1d}}",
                    f"{{name: closed, s3: {{bucket: backups, endpoint_url: 'http://127.0.0.1:{closed}', region: us-east-1}}, max_age: 1d}}",
                ],
                [
                    f"{{name: hole, backup: hole, timeout: 1s, work_dir: '{work_dir}'}}",
                    f"{{name: closed, backup: closed, timeout: 1s, work_dir: '{work_dir}'}}",
                ],
            )
        )
        started = time.monotonic()
        run = runner.run("-m", "monthly")
        took = time.monotonic() - started
    assert run.ret == 1, run.output
    hole = run.record("drills.restore[hole]")
    assert hole["outcome"] == "failed"
    assert "listing the backups failed: s3://backups/: timed out" in hole["message"]
    assert hole["observed"]["timed_out"] is True and hole["observed"]["reached"] is False
    listing = hole["observed"]["phases"][0]
    assert listing["name"] == "choose"
    assert 1.0 <= listing["listing_s"] < 1.9  # the item's timeout, once: one attempt, no retry
    closed_record = run.record("drills.restore[closed]")
    assert closed_record["outcome"] == "failed" and "cannot connect to" in closed_record["message"]
    assert took < 20
    assert_nothing_left(work_dir)


def test_max_duration_stops_the_restore_and_cleans_up(
    runner: Runner, drill_dumps: DrillDumps, work_dir: Path, tmp_path: Path
) -> None:
    folder = write_backups(tmp_path / "slow", [("app.sql", drill_dumps.slow_plain, 1)])
    runner.profile(
        drills_profile(
            [backups_item("db", folder, "*.sql")],
            [f"{{name: slow, backup: db, max_duration: 4s, work_dir: '{work_dir}', rto: 1h}}"],
        )
    )
    run = runner.run("-m", "monthly")
    assert run.ret == 1, run.output
    restore = run.record("drills.restore[slow]")
    assert restore["outcome"] == "failed"
    assert restore["message"] == "not restored: the restore failed (restore): timed out after 4s (max_duration)"
    observed = restore["observed"]
    assert observed["timed_out"] is True
    assert observed["elapsed_s"] < 10
    assert [p["name"] for p in observed["phases"]][-1] == "restore"
    assert observed["cleanup"]["cluster_stopped"] is True and observed["cleanup"]["work_dir_removed"] is True
    assert run.record("drills.rto[slow]")["outcome"] == "failed"
    assert_nothing_left(work_dir)


@pytest.mark.parametrize("how", ["SIGTERM to the run", "Ctrl-C on the terminal", "SIGKILL to the run"])
def test_an_interrupted_run_leaves_no_server_and_no_file(
    how: str, drill_dumps: DrillDumps, work_dir: Path, tmp_path: Path
) -> None:
    """A real `pytest -m monthly` process, interrupted while psql sleeps inside the restore."""
    folder = write_backups(tmp_path / "slow", [("app.sql", drill_dumps.slow_plain, 1)])
    profile = tmp_path / "interrupted.yaml"
    profile.write_text(
        drills_profile([backups_item("db", folder, "*.sql")], [f"{{name: slow, backup: db, work_dir: '{work_dir}'}}"])
    )
    env = {k: v for k, v in os.environ.items() if k != "OPSPROOF_PROFILE"}
    command = [
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-m",
        "monthly",
        f"--profile={profile}",
        f"--report-dir={tmp_path / 'r'}",
    ]
    run = subprocess.Popen(
        command,
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        preexec_fn=default_sigint,
    )
    try:
        wait_for(lambda: _sleeping_in_restore(work_dir), "psql to sleep inside the restore", timeout=60)
        assert postgres_processes_under(work_dir), "the throwaway PostgreSQL runs in the drill's folder"
        if how == "SIGTERM to the run":
            run.send_signal(signal.SIGTERM)
        elif how == "SIGKILL to the run":  # no handler runs: the probe process and the reaper must notice
            run.send_signal(signal.SIGKILL)
        else:  # the terminal sends SIGINT to the whole foreground process group
            os.killpg(run.pid, signal.SIGINT)
        output, _ = run.communicate(timeout=60)
    except BaseException:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
        output, _ = run.communicate()
        print(output.decode(errors="replace"))
        raise
    expected = -signal.SIGKILL if how == "SIGKILL to the run" else 2  # 2: interrupted (CONTRACT §2)
    assert run.returncode == expected, output.decode(errors="replace")
    assert_nothing_left(work_dir, timeout=30)


def _sleeping_in_restore(work_dir: Path) -> bool:
    psql = [argv for argv in processes_under(str(work_dir)).values() if argv and argv[0].endswith("psql")]
    if not psql:
        return False
    socket_dirs = list(work_dir.glob("opsproof-drill-*/opsproof-pg-*/sock"))
    if not socket_dirs:
        return False
    import psycopg

    ports = [p.name.rsplit(".", 1)[1] for p in socket_dirs[0].glob(".s.PGSQL.*") if not p.name.endswith(".lock")]
    if not ports:
        return False
    port = ports[0]
    try:
        with psycopg.connect(host=str(socket_dirs[0]), port=port, user="postgres", dbname="postgres") as conn:
            rows = conn.execute("select count(*) from pg_stat_activity where wait_event = 'PgSleep'").fetchall()
    except psycopg.Error:
        return False
    return bool(rows[0][0])
