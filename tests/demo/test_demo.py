"""The newcomer's first command: `opsproof demo`."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from conftest import REPO, descendants, process_alive, wait_for


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
    # The runner's own load, memory and disks are whatever the machine's are: only their
    # presence and severity are the demo's (non-critical, so never blocking).
    host = {check: outcome for check, outcome in outcomes.items() if check.startswith("hosts.")}
    assert sorted(check.split("[")[0] for check in host) == [
        "hosts.certificate",
        "hosts.filesystems",
        "hosts.inodes",
        "hosts.load",
        "hosts.memory",
        "hosts.port",
        "hosts.reachable",
    ]
    assert {severity for _, severity in host.values()} == {"medium"}
    assert host["hosts.reachable[ops-runner]"][0] == "passed"
    assert host["hosts.certificate[ops-runner/demo-ca]"][0] == "passed"
    prometheus = shutil.which("prometheus") is not None
    expected_prometheus = {
        "prometheus.alerts[scorpius-prometheus]": ("warned", "critical"),
        "prometheus.targets[scorpius-prometheus]": ("warned", "critical"),
        "prometheus.kpi[scorpius-prometheus/api-p95-latency]": ("warned", "critical"),
        "prometheus.kpi[scorpius-prometheus/error-rate]": ("passed", "critical"),
        "prometheus.kpi[scorpius-prometheus/cpu]": ("passed", "critical"),
        "prometheus.kpi[scorpius-prometheus/memory]": ("passed", "critical"),
        # The pool at 80% of its connections is at the warn limit of 80%, which is reached (CONTRACT §3).
        "prometheus.kpi[scorpius-prometheus/db-connections]": ("warned", "critical"),
        "prometheus.kpi[scorpius-prometheus/queue-depth]": ("warned", "critical"),
    }
    others = {check: outcome for check, outcome in outcomes.items() if not check.startswith("hosts.")}
    assert others == (expected_prometheus if prometheus else {}) | {
        "attestations.attested[review-overnight-alerts]": ("failed", "medium"),
        "kubernetes.pods[scorpius-cluster]": ("failed", "medium"),
        "kubernetes.restarts[scorpius-cluster]": ("warned", "medium"),
        "kubernetes.workloads[scorpius-cluster]": ("failed", "medium"),
        "kubernetes.hpa[scorpius-cluster]": ("warned", "medium"),
        "kubernetes.nodes[scorpius-cluster]": ("passed", "medium"),
        "kubernetes.services[scorpius-cluster]": ("failed", "medium"),
        "kubernetes.pvcs[scorpius-cluster]": ("passed", "medium"),
        "kubernetes.cronjob[scorpius-cluster/postgres-backup]": ("passed", "medium"),
        "kubernetes.cronjob[scorpius-cluster/security-scan]": ("failed", "medium"),
        "kubernetes.certificates[scorpius-cluster]": ("warned", "medium"),
        "kubernetes.events[scorpius-cluster]": ("warned", "medium"),
        "logs.count[auth-proxy/auth-failures]": ("warned", "medium"),
        "logs.count[auth-proxy/rate-limited]": ("passed", "medium"),
        "http.health[wallet-guard]": ("passed", "critical"),
        "http.health[auth-proxy]": ("passed", "critical"),
        "http.health[usage-meter]": ("passed", "critical"),
        "http.health[audit-trail]": ("passed", "critical"),
        "http.health[reporting]": ("failed", "medium"),
        "http.health[dashboard]": ("warned", "medium"),
        "http.health[slo-error-budget]": ("warned", "critical"),
        "http.health[slo-status]": ("passed", "critical"),
        "metrics.series[mempool/celery-depth]": ("warned", "critical"),
        "metrics.series[mempool/pg-pool]": ("passed", "critical"),
        "metrics.series[mempool/server-errors]": ("passed", "critical"),
        "dns.resolve[wallet-guard-svc]": ("passed", "critical"),
        "dns.resolve[reporting-svc]": ("failed", "medium"),
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
    # pytest was spawned before the services and sent its arguments once they were up: the bundle
    # records the command the demo shows, and pytest had nothing to warn about (no plugin's
    # package imported before it could rewrite its asserts).
    (shown,) = [line for line in lines if line.startswith("opsproof demo: running ")]
    assert results["run"]["command"].split() == shown.removeprefix("opsproof demo: running ").split()
    assert "warnings summary" not in done.stdout and "Warning" not in done.stdout + done.stderr
    if prometheus and shutil.which("promtool") is not None:
        # Back-filled, it is checked before its first scrape: Reporting's target from the `up` series.
        assert "the last minute back-filled (promtool)" in done.stdout
        targets = next(c for c in results["checks"] if c["check"] == "prometheus.targets[scorpius-prometheus]")
        assert re.fullmatch(
            r"targets not up 1 is over the warn threshold 0; reporting/127\.0\.0\.1:\d+ \(down: up is 0\)",
            targets["message"],
        ), targets["message"]
        assert targets["observed"]["source"] == "the up series"


def test_the_monthly_demo_restores_the_backups_and_counts_rows(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "opsproof.cli",
            "demo",
            "--port",
            "0",
            "--",
            "-m",
            "monthly",
            "--report-dir",
            str(tmp_path),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    # Issue 13 item 17: moto's server logged each S3 request (ANSI-coloured on a terminal)
    # over the demo's lines.
    for line in (done.stdout + done.stderr).splitlines():
        assert not re.search(r'"(GET|PUT|HEAD|POST) /.* HTTP/1\.1"', line), line
    (bundle,) = [p for p in tmp_path.iterdir() if p.is_dir() and not p.name.startswith(".")]
    results = json.loads((bundle / "results.json").read_text())
    outcomes = {c["check"]: c["outcome"] for c in results["checks"]}
    assert {check.split("[")[0] for check in outcomes} == {
        "drills.restore",
        "drills.table",
        "drills.sql",
        "drills.rto",
        "drills.rpo",
    }
    failed = sorted(check for check, outcome in outcomes.items() if outcome != "passed")
    # The newest weekly archive holds the schema only: its restore works, its row counts do not.
    assert failed == ["drills.table[restore-weekly/audit_events]", "drills.table[restore-weekly/projects]"]
    restore = next(c for c in results["checks"] if c["check"] == "drills.restore[restore-latest]")
    assert restore["observed"]["backup"]["name"].startswith("scorpius_")


def test_without_a_prometheus_binary_the_demo_leaves_its_checks_out(monkeypatch: pytest.MonkeyPatch) -> None:
    from opsproof.demo import prometheus
    from opsproof.demo.environment import DemoEnvironment

    monkeypatch.setattr(prometheus, "prometheus_binary", lambda: None)
    with prometheus.serve_demo_prometheus() as served:
        assert served is None
    demo = DemoEnvironment(plain_vars={"DEMO_HTTP": "127.0.0.1:1"}, deselect=["prometheus"])
    assert demo.pytest_args() == ["--var", "DEMO_HTTP=127.0.0.1:1", "-k", "not test_prometheus"]
    assert DemoEnvironment().pytest_args() == []


def test_without_a_prometheus_binary_every_other_service_starts(monkeypatch: pytest.MonkeyPatch) -> None:
    from opsproof.demo import prometheus
    from opsproof.demo.environment import demo_environment

    monkeypatch.setattr(prometheus, "prometheus_binary", lambda: None)
    with demo_environment(0, any_ports=True) as demo:
        assert demo.deselect == ["prometheus"]
        assert "DEMO_PROMETHEUS" not in demo.plain_vars and "DEMO_PG_DSN" in demo.plain_vars
        assert demo.services[-1] == "Prometheus: not installed (apt-get install prometheus): its checks are left out"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_demo_serve_stopped_by_a_signal_cleans_up_like_ctrl_c(tmp_path: Path, sig: signal.Signals) -> None:
    """`opsproof demo --serve` under `timeout` or systemd gets SIGTERM: no server and no temporary folder stays."""
    # Short: PostgreSQL's socket path under it must fit in 107 bytes (pytest's tmp_path under xdist does not).
    scratch = Path(tempfile.mkdtemp(prefix="od-"))
    demo = _demo_process(scratch, "--serve")
    try:
        assert demo.stdout is not None
        seen = []
        for line in demo.stdout:
            seen.append(line)
            if "serving until Ctrl-C" in line:
                break
        else:
            raise AssertionError("the demo never served:\n" + "".join(seen))
        servers = descendants(demo.pid)
        assert servers, "the demo runs its services as processes (PostgreSQL, Redis, the HTTP services...)"
        assert any(scratch.iterdir()), "the demo's services keep their files under TMPDIR"
        demo.send_signal(sig)
        rest, _ = demo.communicate(timeout=60)
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.communicate()
    assert demo.returncode == 0, "".join(seen) + rest
    assert "opsproof demo: stopped; every service was stopped" in rest
    wait_for(lambda: not any(process_alive(pid) for pid in servers), "every demo service to stop", timeout=10)
    left = sorted(p.name for p in scratch.iterdir())
    shutil.rmtree(scratch, ignore_errors=True)
    assert left == []


def _watch_descendants(process: subprocess.Popen[str], seen: set[int], stop: threading.Event) -> threading.Thread:
    """Every process ever seen below `process`, polled until `stop`: servers started late are caught too."""

    def watch() -> None:
        while not stop.is_set():
            seen.update(descendants(process.pid))
            time.sleep(0.02)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def _demo_process(scratch: Path, *options: str, **environ: str) -> subprocess.Popen[str]:
    """`opsproof demo --port 0 OPTIONS`, its folders under `scratch` (short: PostgreSQL's socket path must fit)."""
    env = {**os.environ, "TMPDIR": str(scratch), "PYTHONUNBUFFERED": "1", **environ}
    return subprocess.Popen(
        [sys.executable, "-m", "opsproof.cli", "demo", "--port", "0", *options],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # a process group of its own, as a terminal's foreground job is
    )


def _assert_nothing_left(seen: set[int], scratch: Path) -> None:
    wait_for(lambda: not any(process_alive(pid) for pid in seen), "every demo process to end", timeout=15)
    left = sorted(p.name for p in scratch.iterdir())
    shutil.rmtree(scratch, ignore_errors=True)
    assert left == []


@pytest.mark.skipif(shutil.which("prometheus") is None, reason="the demo starts Prometheus first: needs the binary")
def test_ctrl_c_while_the_services_start_stops_every_one_of_them() -> None:
    """Ctrl-C (SIGINT to the whole process group, as a terminal sends it) while the services start side by side."""
    scratch = Path(tempfile.mkdtemp(prefix="od-"))
    demo = _demo_process(scratch, "--timeline")
    seen: set[int] = set()
    stop = threading.Event()
    watcher = _watch_descendants(demo, seen, stop)
    try:
        # Prometheus is spawned once promtool has back-filled it, the others side by side meanwhile:
        # interrupted now, they are half-started. (A copy: the watcher adds to `seen` meanwhile.)
        wait_for(
            lambda: any(_name(pid) == "prometheus" for pid in seen.copy()), "the demo to start Prometheus", timeout=60
        )
        os.killpg(demo.pid, signal.SIGINT)
        output, _ = demo.communicate(timeout=90)
    finally:
        stop.set()
        watcher.join()
        if demo.poll() is None:
            os.killpg(demo.pid, signal.SIGKILL)
            demo.communicate()
    assert demo.returncode == 2, output
    assert "opsproof demo: stopped; every service was stopped" in output, output
    assert "Traceback" not in output, output
    _assert_nothing_left(seen, scratch)


def test_a_prometheus_that_does_not_start_stops_every_other_service(tmp_path: Path) -> None:
    """The other services and pytest (held at its gate) were started meanwhile: all of them stop, nothing is checked."""
    refusing = tmp_path / "prometheus"
    refusing.write_text("#!/bin/sh\necho 'this prometheus refuses to start' >&2\nexit 1\n")
    refusing.chmod(0o755)
    scratch = Path(tempfile.mkdtemp(prefix="od-"))
    demo = _demo_process(scratch, "--timeline", OPSPROOF_PROMETHEUS=str(refusing))
    seen: set[int] = set()
    stop = threading.Event()
    watcher = _watch_descendants(demo, seen, stop)
    try:
        output, _ = demo.communicate(timeout=120)
    finally:
        stop.set()
        watcher.join()
    assert demo.returncode == 3, output
    assert "a demo service did not start, every other one was stopped: prometheus exited 1" in output
    assert "this prometheus refuses to start" in output
    assert "pytest started (held at the gate)" in output
    assert "test session starts" not in output, "pytest went past its gate"
    assert len(seen) > 3, "the demo ran its other services as processes meanwhile"
    _assert_nothing_left(seen, scratch)


def test_a_wrong_opsproof_prometheus_is_a_usage_error_naming_it() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "opsproof.cli", "demo", "--port", "0"],
        cwd=REPO,
        env={**os.environ, "OPSPROOF_PROMETHEUS": "/nonexistent/prometheus"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 4
    assert (
        done.stderr.strip() == "opsproof demo: OPSPROOF_PROMETHEUS='/nonexistent/prometheus' is not an executable file"
    )


def _name(pid: int) -> str:
    try:
        return (Path("/proc") / str(pid) / "comm").read_text().strip()
    except OSError:
        return ""
