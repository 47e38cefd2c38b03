"""Hosts checks through testinfra's local:// backend, for real: every failing state is staged on this machine.

Thresholds are set against the machine's real figures (read here with os.statvfs and
/proc), sockets are really opened, certificate files really written, packages really
queried with dpkg. Two states cannot be staged for real on a test machine, and are
stood in for by programs put first on PATH for the run (local:// runs the host's
programs from PATH): a time daemon's answer (chronyc printing its real output
format, synchronised or not) and a command that hangs (df on a dead NFS mount).
"""

from __future__ import annotations

import datetime
import importlib.util
import os
import re
import shutil
import socket
import stat
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

import opsproof
from conftest import SECRET, Runner, listening_black_hole, profile_error
from opsproof.probes.host_output import parse_net, parse_ntpq, parse_systemd, parse_timedatectl
from opsproof.targets.hosts import compare_versions
from opsproof.testing.servers import free_port

PARAMIKO = importlib.util.find_spec("paramiko") is not None
ALWAYS = ("reachable", "filesystems", "inodes", "memory", "load")  # the checks every item gets
QUIET = "filesystems: {warn: 99%, fail: 100%}, inodes: {warn: 99%, fail: 100%}, memory: {warn: 1%, fail: 0.5%}, load: {warn: 1000, fail: 2000}"


def hosts_profile(*items: str, timeout: str = "5s") -> str:
    body = "\n".join(f"  - {item}" for item in items)
    return f"environment: test\ndefaults: {{timeout: {timeout}}}\nhosts:\n{body}\n"


def local(name: str, more: str = "") -> str:
    return f"{{name: {name}, url: 'local://'{', ' + more if more else ''}}}"


def root_usage() -> tuple[float, float]:
    """(space used %, inodes used %) of / as df computes them: used / (used + available)."""
    fs = os.statvfs("/")
    used = (fs.f_blocks - fs.f_bfree) * fs.f_frsize
    space = used / (used + fs.f_bavail * fs.f_frsize) * 100
    inodes = (fs.f_files - fs.f_ffree) / fs.f_files * 100 if fs.f_files else 0.0
    return space, inodes


def fake_program(folder: Path, name: str, body: str) -> None:
    path = folder / name
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


@pytest.fixture
def fake_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder put first on PATH for this test's run (local:// runs the host's programs from PATH)."""
    folder = tmp_path / "bin"
    folder.mkdir()
    monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ['PATH']}")
    return folder


# -- a healthy host ------------------------------------------------------------------------


def test_local_host_passes_and_lists_its_commands(runner: Runner) -> None:
    runner.profile(hosts_profile(local("self", QUIET)))
    run = runner.run("-m", "daily")
    assert run.ret == 0, run.output
    assert sorted(c["check"] for c in run.results["checks"]) == sorted(f"hosts.{a}[self]" for a in ALWAYS)
    reachable = run.record("hosts.reachable[self]")
    assert reachable["outcome"] == "passed"
    assert reachable["message"].startswith(f"{socket.gethostname()}: ")
    assert reachable["markers"] == ["capacity", "daily"]
    observed = reachable["observed"]
    assert observed["url"] == "local://"
    assert observed["cpus"] == os.cpu_count()
    assert observed["commands"][:3] == ["uname -snrm", "cat /etc/os-release", "getconf _NPROCESSORS_ONLN"]
    assert {"df -P -k", "df -P -i", "cat /proc/meminfo", "cat /proc/loadavg"} <= set(observed["commands"])
    filesystems = run.record("hosts.filesystems[self]")
    assert filesystems["outcome"] == "passed"
    assert "/" in {row["mount"] for row in filesystems["observed"]["filesystems"]}
    assert filesystems["expected"] == {"filesystems": {"warn": "99.0%", "fail": "100.0%"}}
    memory = run.record("hosts.memory[self]")
    assert memory["message"].endswith("%)") and " available (" in memory["message"]
    assert memory["expected"] == {"available memory": {"warn": "1.0%", "fail": "0.5%"}}
    load = run.record("hosts.load[self]")
    assert load["message"].startswith("5m load ") and f"on {os.cpu_count()} CPU(s)" in load["message"]


# -- filesystems, inodes, memory, load -----------------------------------------------------


def test_filesystem_over_its_threshold_and_a_missing_mount_fail(runner: Runner) -> None:
    space, _ = root_usage()
    half, quarter = round(space / 2, 2), round(space / 4, 2)
    runner.profile(
        hosts_profile(
            local("full", f"ignore_mounts: ['*'], mounts: {{'/': {{warn: {quarter}%, fail: {half}%}}}}"),
            local("nearly", f"ignore_mounts: ['*'], mounts: {{'/': {{warn: {half}%, fail: 100%}}}}"),
            local("missing", "ignore_mounts: ['*'], mounts: {'/': {fail: 100%}, '/srv/opsproof-data': {fail: 90%}}"),
            local("ignored", "ignore_mounts: ['*']"),
        )
    )
    run = runner.run("-m", "daily")
    full = run.record("hosts.filesystems[full]")
    assert full["outcome"] == "failed"
    # Other processes write to / meanwhile: the figure may move by a hair since statvfs above.
    shown = re.fullmatch(
        r"1 filesystem\(s\) over the fail threshold: / ([0-9.]+)% used \(.+ of .+\), over (.+)%", full["message"]
    )
    assert shown is not None, full["message"]
    assert abs(float(shown.group(1)) - space) < 0.5 and shown.group(2) == f"{half:.1f}"
    assert full["expected"]["mounts"] == {"/": {"warn": f"{quarter:.1f}%", "fail": f"{half:.1f}%"}}
    root = full["observed"]["filesystems"][0]
    assert root["mount"] == "/" and abs(root["used_pct"] - space) < 1
    nearly = run.record("hosts.filesystems[nearly]")
    assert nearly["outcome"] == "warned"
    assert nearly["message"].startswith("1 filesystem(s) over the warn threshold: / ")
    missing = run.record("hosts.filesystems[missing]")
    assert (missing["outcome"], missing["message"]) == ("failed", "not mounted: /srv/opsproof-data")
    ignored = run.record("hosts.filesystems[ignored]")
    assert ignored["outcome"] == "passed" and ignored["message"].startswith("no filesystem to judge (")


def test_inodes_over_threshold_fail(runner: Runner) -> None:
    _, inodes = root_usage()
    if inodes < 0.02:
        pytest.skip("/ has no fixed inode table (or uses almost none): nothing to stage")
    runner.profile(
        hosts_profile(local("inodes", f"ignore_mounts: ['*'], mounts: {{'/': {{fail: {inodes / 2:.2f}%}}}}"))
    )
    record = runner.run("-m", "daily").record("hosts.inodes[inodes]")
    assert record["outcome"] == "failed"
    assert record["message"].startswith("1 filesystem(s) by inodes over the fail threshold: / ")
    assert "% of inodes used (" in record["message"]


def test_memory_and_load_thresholds(runner: Runner) -> None:
    runner.profile(
        hosts_profile(
            local("tight", "memory: {fail: 100%}, load: {fail: 0}, load_window: 1m"),
            local("watch", "memory: {warn: 100%}"),
            local("bare", "memory: false, load: false, filesystems: false, inodes: false"),
        )
    )
    run = runner.run("-m", "daily")
    tight = run.record("hosts.memory[tight]")
    assert tight["outcome"] == "failed"
    assert tight["message"].startswith("available memory ") and tight["message"].endswith(
        "% is under the fail threshold 100.0%"
    )
    assert tight["observed"]["memory"]["total_kb"] > 0
    # The tests themselves keep a CPU busy: the 1-minute load is above 0.
    load = run.record("hosts.load[tight]")
    assert load["outcome"] == "failed"
    assert load["message"].startswith("1m load per CPU ") and load["message"].endswith(
        " is over the fail threshold 0.00"
    )
    assert run.record("hosts.memory[watch]")["outcome"] == "warned"
    assert {c["check"] for c in run.results["checks"] if c["target"] == "bare"} == {"hosts.reachable[bare]"}


# -- services ------------------------------------------------------------------------------


@pytest.fixture
def running_process(tmp_path: Path) -> Iterator[str]:
    """A process named opsproof-svc (a copy of sleep), running for the test."""
    binary = tmp_path / "opsproof-svc"
    shutil.copy(shutil.which("sleep") or "/bin/sleep", binary)
    process = subprocess.Popen([str(binary), "300"])
    try:
        yield "opsproof-svc"
    finally:
        process.kill()
        process.wait()


def stopped_init_script() -> str | None:
    """An init script whose `service NAME status` says stopped (3) on this machine, where there is no systemd."""
    if Path("/run/systemd/system").is_dir() or not shutil.which("service"):
        return None
    for script in sorted(Path("/etc/init.d").glob("*")):
        if script.name.startswith(("README", "skeleton", "rc")) or not os.access(script, os.X_OK):
            continue
        done = subprocess.run(["service", script.name, "status"], capture_output=True, timeout=10, check=False)
        if done.returncode == 3:
            return script.name
    return None


def test_services_by_manager_and_by_process(runner: Runner, running_process: str) -> None:
    stopped = stopped_init_script()
    services = [
        "opsproof-no-such-service",
        f"{{name: worker, process: {running_process}}}",
        "{name: ghost, process: opsproof-ghost}",
        *([stopped] if stopped else []),
    ]
    runner.profile(hosts_profile(local("svc", f"services: [{', '.join(services)}]")))
    run = runner.run("-m", "daily")
    worker = run.record("hosts.service[svc/worker]")
    assert (worker["outcome"], worker["message"]) == ("passed", "1 process(es) named opsproof-svc running")
    assert worker["expected"] == {"running": True, "process": "opsproof-svc"}
    ghost = run.record("hosts.service[svc/ghost]")
    assert (ghost["outcome"], ghost["message"]) == ("failed", "no process named opsproof-ghost is running")
    missing = run.record("hosts.service[svc/opsproof-no-such-service]")
    if Path("/run/systemd/system").is_dir():
        assert missing["outcome"] == "failed"
        assert missing["message"].startswith("no service opsproof-no-such-service on this host (systemd: no unit")
    elif shutil.which("service"):
        init = Path("/proc/1/comm").read_text().strip()
        assert (missing["outcome"], missing["message"]) == (
            "failed",
            "no service opsproof-no-such-service on this host (init script via `service`; systemd is not running, "
            f"PID 1 is {init}: opsproof-no-such-service: unrecognized service)",
        )
    else:
        assert missing["outcome"] == "error"
        assert missing["message"].startswith(
            "cannot tell whether opsproof-no-such-service runs: systemd is not running"
        )
    if stopped:
        record = run.record(f"hosts.service[svc/{stopped}]")
        assert record["outcome"] == "failed"
        assert record["message"].startswith(f"{stopped} is not running: stopped (init script via `service`")


# -- ports ---------------------------------------------------------------------------------


def test_ports_listening_and_not(runner: Runner) -> None:
    with socket.socket() as tcp, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        tcp.bind(("127.0.0.1", 0))
        tcp.listen()
        udp.bind(("127.0.0.1", 0))
        port, udp_port, closed = tcp.getsockname()[1], udp.getsockname()[1], free_port(0)
        ports = f"[{port}, 'udp:{udp_port}', {closed}, '127.0.0.2:{port}', '127.0.0.1:{port}']"
        runner.profile(hosts_profile(local("net", f"ports: {ports}")))
        run = runner.run("-m", "daily")
    listening = run.record(f"hosts.port[net/tcp:{port}]")
    assert (listening["outcome"], listening["message"]) == ("passed", f"tcp port {port} listening on 127.0.0.1")
    assert listening["observed"]["listeners"] == [{"protocol": "tcp", "address": "127.0.0.1", "port": port}]
    bound = run.record(f"hosts.port[net/udp:{udp_port}]")
    assert (bound["outcome"], bound["message"]) == ("passed", f"udp port {udp_port} bound on 127.0.0.1")
    nothing = run.record(f"hosts.port[net/tcp:{closed}]")
    assert nothing["outcome"] == "failed"
    assert nothing["message"].startswith(f"nothing listens on tcp {closed} (tcp ports in use: ")
    # The ports in use are named, the 30 nearest the one expected when more listen (a busy machine).
    in_use = nothing["message"].split("ports in use: ", 1)[1]
    named = [int(p) for p in re.findall(r"\d+", in_use)]
    assert named == sorted(named) and 0 < len(named) <= 30
    assert port in named or in_use.endswith(" ...)"), in_use
    elsewhere = run.record(f"hosts.port[net/tcp:127.0.0.2:{port}]")
    assert elsewhere["outcome"] == "failed"
    assert elsewhere["message"].startswith(
        f"nothing listens on tcp 127.0.0.2:{port}; port {port} listens on 127.0.0.1 only"
    )
    assert run.record(f"hosts.port[net/tcp:127.0.0.1:{port}]")["outcome"] == "passed"


# -- certificate files ---------------------------------------------------------------------


def write_certificate(
    path: Path, *, cn: str, days_left: float, lifetime_days: float = 90, also: Path | None = None
) -> None:
    """A self-signed certificate expiring in `days_left` days (negative: expired), PEM; `also` appended after it."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    now = datetime.datetime.now(datetime.UTC)
    not_after = now + datetime.timedelta(days=days_left)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_after - datetime.timedelta(days=lifetime_days))
        .not_valid_after(not_after)
        .sign(key, hashes.SHA256())
    )
    pem = certificate.public_bytes(serialization.Encoding.PEM)
    path.write_bytes(pem + (also.read_bytes() if also else b""))


def test_certificate_files_by_expiry(runner: Runner, tmp_path: Path) -> None:
    write_certificate(tmp_path / "soon.pem", cn="soon.example.com", days_left=3)
    write_certificate(tmp_path / "month.pem", cn="month.example.com", days_left=20)
    write_certificate(tmp_path / "fine.pem", cn="fine.example.com", days_left=200, lifetime_days=365)
    write_certificate(tmp_path / "old.pem", cn="old.example.com", days_left=-2)
    write_certificate(tmp_path / "intermediate.pem", cn="Ops Intermediate CA", days_left=5)
    write_certificate(tmp_path / "chain.pem", cn="leaf.example.com", days_left=80, also=tmp_path / "intermediate.pem")
    (tmp_path / "key.pem").write_text("-----BEGIN PRIVATE KEY-----\nnot a certificate\n-----END PRIVATE KEY-----\n")
    files = ", ".join(
        f"'{tmp_path / name}'"
        for name in ("soon.pem", "month.pem", "fine.pem", "old.pem", "chain.pem", "key.pem", "gone.pem")
    )
    runner.profile(
        hosts_profile(
            local(
                "certs",
                f"certificates: [{files}, {{path: '{tmp_path / 'fine.pem'}', name: strict, expires: {{fail: 60%}}}}]",
            )
        )
    )
    run = runner.run("-m", "daily")
    soon = run.record("hosts.certificate[certs/soon.pem]")
    assert soon["outcome"] == "failed"
    assert soon["message"].startswith("certificate expires in 2d 23h (") or soon["message"].startswith(
        "certificate expires in 3d ("
    )
    assert soon["message"].endswith("3.3% of its lifetime left: under the fail threshold 7d")
    assert soon["expected"] == {"path": str(tmp_path / "soon.pem"), "expires": {"warn": "30d", "fail": "7d"}}
    assert 2.9 < soon["observed"]["days_left"] <= 3
    month = run.record("hosts.certificate[certs/month.pem]")
    assert month["outcome"] == "warned" and "under the warn threshold 30d" in month["message"]
    fine = run.record("hosts.certificate[certs/fine.pem]")
    assert fine["outcome"] == "passed"
    assert fine["message"].startswith("CN=fine.example.com expires in 199d 23h (") or fine["message"].startswith(
        "CN=fine.example.com expires in 200d ("
    )
    old = run.record("hosts.certificate[certs/old.pem]")
    assert old["outcome"] == "failed" and old["message"].startswith("certificate expired 2d ago, on ")
    chain = run.record("hosts.certificate[certs/chain.pem]")
    assert chain["outcome"] == "failed"
    assert "(CN=Ops Intermediate CA, the first to expire of 2)" in chain["message"]
    assert chain["observed"]["certificate_count"] == 2
    key = run.record("hosts.certificate[certs/key.pem]")
    assert key["outcome"] == "failed"
    assert key["message"].startswith(f"{tmp_path / 'key.pem'}: no certificate in the file (PEM or DER): ")
    gone = run.record("hosts.certificate[certs/gone.pem]")
    assert (gone["outcome"], gone["message"]) == ("failed", f"{tmp_path / 'gone.pem'}: no such file on the host")
    strict = run.record("hosts.certificate[certs/strict]")
    assert strict["outcome"] == "failed" and strict["message"].endswith("under the fail threshold 60.0%")
    assert f"cat -- {tmp_path / 'soon.pem'}" in run.record("hosts.reachable[certs]")["observed"]["commands"]


# -- clock ---------------------------------------------------------------------------------

CHRONY = """Reference ID    : A9FEA97B (169.254.169.123)
Stratum         : 4
Ref time (UTC)  : Tue Nov 24 10:00:00 2026
System time     : {offset} seconds {side} of NTP time
Last offset     : +0.000003 seconds
RMS offset      : 0.000010 seconds
Leap status     : {leap}"""


def test_clock_from_chrony(runner: Runner, fake_path: Path) -> None:
    # chronyc's real output format; the daemon's state cannot be staged on a test machine.
    fake_program(
        fake_path, "chronyc", f"cat <<'EOF'\n{CHRONY.format(offset='0.350000000', side='fast', leap='Normal')}\nEOF"
    )
    runner.profile(hosts_profile(local("synced", "clock: true"), local("strict", "clock: {max_offset: {fail: 100ms}}")))
    run = runner.run("-m", "daily")
    synced = run.record("hosts.clock[synced]")
    assert synced["outcome"] == "warned"
    assert synced["message"] == "clock offset 350ms is over the warn threshold 100ms"
    assert synced["observed"]["clock"]["source"] == "chronyc"
    assert synced["expected"] == {"synchronised": True, "clock offset": {"warn": "100ms", "fail": "1s"}}
    strict = run.record("hosts.clock[strict]")
    assert (strict["outcome"], strict["message"]) == ("failed", "clock offset 350ms is over the fail threshold 100ms")


def test_clock_not_synchronised_fails(runner: Runner, fake_path: Path) -> None:
    fake_program(
        fake_path, "chronyc", f"cat <<'EOF'\n{CHRONY.format(offset='12.5', side='slow', leap='Not synchronised')}\nEOF"
    )
    runner.profile(hosts_profile(local("drift", "clock: true")))
    record = runner.run("-m", "daily").record("hosts.clock[drift]")
    assert record["outcome"] == "failed"
    assert record["message"] == (
        "the clock is not synchronised (chrony: leap status Not synchronised, reference A9FEA97B (169.254.169.123))"
    )


def test_clock_unknown_is_an_error_or_a_warning(runner: Runner, fake_path: Path) -> None:
    if Path("/run/systemd/system").is_dir():
        pytest.skip("systemd runs here: timedatectl answers, the clock is not unknown")
    # Whatever the machine has, these answer as if chrony and ntpd were installed but not running.
    fake_program(fake_path, "chronyc", "echo '506 Cannot talk to daemon'; exit 1")
    fake_program(fake_path, "ntpq", "echo 'ntpq: read: Connection refused'; exit 1")
    runner.profile(hosts_profile(local("strict", "clock: true"), local("lenient", "clock: {unknown: warn}")))
    run = runner.run("-m", "daily")
    expected = (
        "cannot tell whether the clock is synchronised: no time daemon answered (chronyc: 506 Cannot talk to daemon; "
        "ntpq: ntpq: read: Connection refused; timedatectl: systemd is not running)"
    )
    assert (run.record("hosts.clock[strict]")["outcome"], run.record("hosts.clock[strict]")["message"]) == (
        "error",
        expected,
    )
    assert (run.record("hosts.clock[lenient]")["outcome"], run.record("hosts.clock[lenient]")["message"]) == (
        "warned",
        expected,
    )


# -- packages ------------------------------------------------------------------------------


def test_packages_at_required_versions(runner: Runner) -> None:
    if not shutil.which("dpkg-query"):
        pytest.skip("dpkg-query is not on this machine (the test queries python3 as a Debian package)")
    version = subprocess.run(
        ["dpkg-query", "-W", "-f", "${Version}", "python3"], capture_output=True, text=True, check=False
    ).stdout.strip()
    if not version:
        pytest.skip("python3 is not installed as a Debian package here")
    upstream = version.split("-")[0].rsplit(".", 1)[0]
    runner.profile(
        hosts_profile(
            local("pkgs", "packages: {python3: '>=3.0, <99', opsproof-no-such-package: present, libc6: absent}"),
            local("old", "packages: {python3: '<3'}"),
            local("prefix", f"packages: {{python3: '{upstream}.*'}}"),
        )
    )
    run = runner.run("-m", "daily")
    ok = run.record("hosts.package[pkgs/python3]")
    assert (ok["outcome"], ok["message"]) == ("passed", f"python3 {version} (dpkg)")
    assert ok["expected"] == {"version": ">=3.0, <99"}
    old = run.record("hosts.package[old/python3]")
    assert (old["outcome"], old["message"]) == ("failed", f"python3 {version} is installed; expected <3")
    missing = run.record("hosts.package[pkgs/opsproof-no-such-package]")
    assert (missing["outcome"], missing["message"]) == (
        "failed",
        "opsproof-no-such-package is not installed; expected present",
    )
    libc = run.record("hosts.package[pkgs/libc6]")
    assert libc["outcome"] == "failed" and libc["message"].endswith("is installed; expected absent")
    assert run.record("hosts.package[prefix/python3]")["outcome"] == "passed"


# -- unreachable, hung, refused ------------------------------------------------------------


def test_hung_command_costs_its_section(runner: Runner, fake_path: Path) -> None:
    # df on a dead NFS mount never returns: the host's `timeout` stops it, the other checks go on.
    fake_program(fake_path, "df", "sleep 30.5")
    runner.profile(hosts_profile(local("nfs", QUIET), timeout="3s"))
    started = time.monotonic()
    run = runner.run("-m", "daily")
    elapsed = time.monotonic() - started
    record = run.record("hosts.filesystems[nfs]")
    assert (record["outcome"], record["message"]) == ("failed", "df -P -k did not finish within 1s")
    inodes = run.record("hosts.inodes[nfs]")
    assert (inodes["outcome"], inodes["message"]) == ("failed", "df -P -i did not finish within 1s")
    assert run.record("hosts.memory[nfs]")["outcome"] == "passed"
    assert run.record("hosts.load[nfs]")["outcome"] == "passed"
    assert elapsed < 3 + 3, f"took {elapsed:.1f}s"


def test_without_timeout_program_the_deadline_kills_the_script(runner: Runner, fake_path: Path) -> None:
    fake_program(fake_path, "timeout", "exit 125")  # a host whose `timeout` does not work
    fake_program(fake_path, "df", "sleep 30.5")
    runner.profile(hosts_profile(local("stuck", QUIET), timeout="1s"))
    started = time.monotonic()
    run = runner.run("-m", "daily")
    elapsed = time.monotonic() - started
    reachable = run.record("hosts.reachable[stuck]")
    assert reachable["outcome"] == "warned"
    assert reachable["message"].startswith("the timeout passed before every command ran: df, dfi, ")
    assert run.record("hosts.filesystems[stuck]")["message"] == "timed out running df -P -k"
    memory = run.record("hosts.memory[stuck]")
    assert (memory["outcome"], memory["message"]) == ("failed", "not run: timed out")
    assert run.record("hosts.reachable[stuck]")["observed"]["timed_out"] is True
    assert elapsed < 1 + 3, f"took {elapsed:.1f}s"
    assert not subprocess.run(["pgrep", "-f", "sleep 30.5"], capture_output=True, check=False).stdout, (
        "sleep left running"
    )


@pytest.mark.skipif(not shutil.which("ssh"), reason="no ssh client on this machine")
@pytest.mark.skipif(not PARAMIKO, reason="paramiko is not installed (paramiko:// needs it)")
def test_ssh_refused_and_black_hole(runner: Runner) -> None:
    closed = free_port(0)
    with listening_black_hole() as hole:
        runner.profile(
            hosts_profile(
                f"{{name: refused, url: 'ssh://ops@127.0.0.1:{closed}'}}",
                f"{{name: hole, url: 'ssh://ops@127.0.0.1:{hole}', timeout: 1s}}",
                f"{{name: para-refused, url: 'paramiko://ops@127.0.0.1:{closed}'}}",
                f"{{name: para-hole, url: 'paramiko://ops@127.0.0.1:{hole}', timeout: 1s}}",
            )
        )
        started = time.monotonic()
        run = runner.run("-m", "daily")
        elapsed = time.monotonic() - started
    for aspect in ALWAYS:
        refused = run.record(f"hosts.{aspect}[refused]")
        assert (refused["outcome"], refused["message"]) == (
            "failed",
            f"ssh: connect to host 127.0.0.1 port {closed}: Connection refused",
        )
        hole_record = run.record(f"hosts.{aspect}[hole]")
        assert hole_record["outcome"] == "failed"
        assert hole_record["message"].startswith("timed out after 1.0") and hole_record["message"].endswith(
            "(timeout 1s)"
        )
        para = run.record(f"hosts.{aspect}[para-refused]")
        assert para["outcome"] == "failed" and str(closed) in para["message"], para
        para_hole = run.record(f"hosts.{aspect}[para-hole]")
        assert para_hole["outcome"] == "failed" and para_hole["message"].startswith("timed out after ")
    assert run.record("hosts.reachable[refused]")["observed"]["url"] == f"ssh://ops@127.0.0.1:{closed}"
    assert elapsed < 1 + 3, f"took {elapsed:.1f}s"


def test_backend_missing_on_this_machine_is_an_error(runner: Runner) -> None:
    if shutil.which("podman"):
        pytest.skip("podman is installed here")
    runner.profile(hosts_profile("{name: pod, url: 'podman://web-1'}"))
    record = runner.run("-m", "daily").record("hosts.reachable[pod]")
    assert record["outcome"] == "error"
    assert record["message"].startswith("cannot run the podman backend on this machine: ")
    assert "podman: not found" in record["message"]


def test_container_backends_that_cannot_reach_their_target_fail(runner: Runner) -> None:
    # docker:// and kubectl:// run the docker and kubectl programs of this machine.
    runner.profile(
        hosts_profile(
            "{name: container, url: 'docker://opsproof-no-such-container'}",
            "{name: pod, url: 'kubectl://opsproof-no-such-pod?namespace=default&kubeconfig=/nonexistent'}",
            "{name: inventory, url: 'ansible://web-1'}",
        )
    )
    run = runner.run("-m", "daily")
    if not shutil.which("ansible-inventory"):
        inventory = run.record("hosts.reachable[inventory]")
        assert inventory["outcome"] == "error"
        assert inventory["message"] == (
            "cannot run the ansible backend on this machine: /bin/sh: 1: ansible-inventory: not found"
        )
    for name, program in (("container", "docker"), ("pod", "kubectl")):
        record = run.record(f"hosts.reachable[{name}]")
        if shutil.which(program):
            assert record["outcome"] == "failed", record
            assert record["message"].startswith(f"the {program} backend could not run commands: ")
        else:
            assert record["outcome"] == "error"
            assert record["message"].startswith(f"cannot run the {program} backend on this machine: ")


def test_secret_in_the_url_is_never_shown(runner: Runner, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SSH_PASSWORD", SECRET)
    closed = free_port(0)
    literal = "literal-Passw0rd/with+chars"
    runner.profile(
        hosts_profile(
            f"{{name: ssh, url: 'ssh://ops:${{SSH_PASSWORD}}@127.0.0.1:{closed}'}}",
            f"{{name: para, url: 'paramiko://ops:${{SSH_PASSWORD}}@127.0.0.1:{closed}'}}",
            f"{{name: literal, url: 'paramiko://ops:{literal}@127.0.0.1:{closed}'}}",
        )
    )
    run = runner.run("-m", "daily", "-v")
    ssh = run.record("hosts.reachable[ssh]")
    assert ssh["observed"]["url"] == f"ssh://ops@127.0.0.1:{closed}"
    # Without sshpass a password login cannot be made: the machine lacks a program, the host is not at fault.
    if not shutil.which("sshpass"):
        assert ssh["outcome"] == "error" and "sshpass" in ssh["message"]
    assert run.record("hosts.reachable[para]")["outcome"] == ("failed" if PARAMIKO else "error")
    assert run.record("hosts.reachable[literal]")["observed"]["url"] == f"paramiko://ops@127.0.0.1:{closed}"
    for text in [run.output, *(p.read_text(errors="replace") for p in run.bundle.rglob("*") if p.is_file())]:
        assert SECRET not in text
        assert literal not in text


# -- what other hosts answer -----------------------------------------------------------------
# Parsers fed with the real output of programs this machine does not run (systemd, ntpd,
# timedatectl) or of byte orders it does not have; the local:// tests above run the rest.


def test_systemd_service_states() -> None:
    running = "LoadState=loaded\nActiveState=active\nSubState=running\nMainPID=812"
    assert parse_systemd(running) == {"state": "running", "detail": "active (running), main PID 812"}
    failed = "LoadState=loaded\nActiveState=failed\nSubState=failed\nMainPID=0"
    assert parse_systemd(failed) == {"state": "failed", "detail": "failed (failed)"}
    missing = "LoadState=not-found\nActiveState=inactive\nSubState=dead\nMainPID=0"
    assert parse_systemd(missing)["state"] == "not-found"
    masked = "LoadState=masked\nActiveState=inactive\nSubState=dead\nMainPID=0"
    assert parse_systemd(masked)["state"] == "masked"


def test_ntpd_and_timesyncd_answers() -> None:
    peers = (
        "     remote           refid      st t when poll reach   delay   offset  jitter\n"
        "==============================================================================\n"
        "+10.0.0.2        .GPS.            1 u   33   64  377    0.512    0.101   0.044\n"
        "*10.0.0.1        .PPS.            1 u   21   64  377    0.301  -250.300   0.021\n"
    )
    assert parse_ntpq(0, peers) == {
        "source": "ntpq",
        "synchronised": True,
        "offset_s": -0.2503,
        "detail": "ntpd: system peer 10.0.0.1",
    }
    assert parse_ntpq(0, peers.replace("*10.0.0.1", " 10.0.0.1"))["synchronised"] is False
    assert parse_ntpq(1, "ntpq: read: Connection refused") is None
    show = "Timezone=Etc/UTC\nLocalRTC=no\nCanNTP=yes\nNTP=yes\nNTPSynchronized=no\nTimeUSec=Tue 2026-11-24"
    assert parse_timedatectl(0, show) == {
        "source": "timedatectl",
        "synchronised": False,
        "offset_s": None,
        "detail": "systemd: NTPSynchronized=no, NTP=yes",
    }


def test_socket_tables_of_both_byte_orders() -> None:
    header = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
    little = header + "   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  0 0 1\n"
    big = header + "   0: 7F000001:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  0 0 1\n"
    expected = [{"protocol": "tcp", "address": "127.0.0.1", "port": 8080}]
    assert parse_net(little, "tcp", big_endian=False) == expected
    assert parse_net(big, "tcp", big_endian=True) == expected
    six = header + "   0: 00000000000000000000000001000000:0016 00000000000000000000000000000000:0000 0A 0 0 0\n"
    assert parse_net(six, "tcp", big_endian=False) == [{"protocol": "tcp", "address": "::1", "port": 22}]
    established = header + "   1: 0100007F:1F90 0100007F:D431 01 00000000:00000000 00:00000000 00000000  0 0 2\n"
    assert parse_net(established, "tcp", big_endian=False) == []


@pytest.mark.parametrize(
    ("older", "newer"),
    [
        ("1.0~rc1", "1.0"),
        ("1.0", "1.0-1"),
        ("1.0-1", "1.0-1+b1"),
        ("3.0.11-1~deb12u1", "3.0.11-1"),
        ("2.9", "2.10"),
        ("9.9", "1:0.1"),
        ("3.11.2-1+b1", "3.11.4-1"),
        ("1.2a", "1.2b"),
    ],
)
def test_versions_compare_as_dpkg_does(older: str, newer: str) -> None:
    assert compare_versions(older, newer) < 0 < compare_versions(newer, older)
    assert compare_versions(newer, newer) == 0


# -- profile mistakes ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("{name: h, url: 'web-1'}", "hosts[0].url: URL needs a backend scheme: local://, ssh://"),
        ("{name: h, url: 'winrm://web-1'}", "hosts[0].url: unknown backend winrm://: use local://, ssh://"),
        ("{name: h, url: 'local://web-1'}", "local:// takes no host or user"),
        (
            "{name: h, url: 'ssh://web-1?timeout=5'}",
            "URL ?timeout= is not used: the item's `timeout:` bounds every command",
        ),
        ("{name: h, url: 'ssh://web-1?sudo=yes'}", "URL ?sudo= must be true or false"),
        ("{name: h, url: 'ssh://web-1?identity=x'}", "URL query parameter 'identity' is not a testinfra option"),
        ("{name: h, url: 'docker://ops:pw@web'}", "docker:// takes no password"),
        ("{name: h, url: 'ssh://web-1:70000'}", "URL port must be a number from 1 to 65535"),
        (
            "{name: h, url: 'local://', filesystems: {warn: 95%, fail: 80%}}",
            "hosts[0].filesystems: higher is worse here",
        ),
        ("{name: h, url: 'local://', memory: {warn: 5%, fail: 10%}}", "hosts[0].memory: lower is worse here"),
        ("{name: h, url: 'local://', filesystems: {warn: 80}}", "hosts[0].filesystems.warn: invalid percentage 80"),
        (
            "{name: h, url: 'local://', load: {fail: -1}}",
            "hosts[0].load.fail: input should be greater than or equal to 0",
        ),
        ("{name: h, url: 'local://', load_window: 10m}", "hosts[0].load_window: input should be '1m', '5m' or '15m'"),
        ("{name: h, url: 'local://', mounts: {data: {fail: 90%}}}", "hosts[0].mounts.data"),
        ("{name: h, url: 'local://', ports: [http]}", "invalid port 'http': expected 443, tcp:443"),
        (
            "{name: h, url: 'local://', ports: [70000]}",
            "hosts[0].ports[0].port: input should be less than or equal to 65535",
        ),
        ("{name: h, url: 'local://', ports: ['db.local:5432']}", "address 'db.local' is not an IP address"),
        ("{name: h, url: 'local://', ports: [443, 'tcp:443']}", "two ports named 'tcp:443'"),
        ("{name: h, url: 'local://', certificates: [etc/site.pem]}", "path 'etc/site.pem' must be absolute"),
        (
            "{name: h, url: 'local://', certificates: [/a/fullchain.pem, /b/fullchain.pem]}",
            "two certificates named 'fullchain.pem': give each a name",
        ),
        (
            "{name: h, url: 'local://', certificates: [{path: /a.pem, expires: {warn: 7d, fail: 30d}}]}",
            "warn 7d is less than fail 30d",
        ),
        ("{name: h, url: 'local://', packages: {openssl: '=> 3.0'}}", "invalid package constraint '=> 3.0'"),
        ("{name: h, url: 'local://', packages: {openssl: '>=3.*'}}", "a * prefix goes with == or != only"),
        ("{name: h, url: 'local://', services: [{name: x, process: /usr/bin/x}]}", "hosts[0].services[0].process"),
        (
            "{name: h, url: 'local://', clock: {max_offset: {fail: 1}}}",
            "hosts[0].clock.max_offset.fail: invalid duration 1",
        ),
        (
            "{name: h, url: 'local://', clock: {unknown: ignore}}",
            "hosts[0].clock.unknown: input should be 'error' or 'warn'",
        ),
    ],
)
def test_profile_mistakes_are_usage_errors(tmp_path: Path, entry: str, message: str) -> None:
    error = profile_error(tmp_path, f"environment: test\nhosts:\n  - {entry}\n")
    assert "bad.yaml:3: " in error
    assert message in error


def test_bad_profile_exits_4_without_the_secret(runner: Runner, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SSH_PASSWORD", SECRET)
    runner.profile(hosts_profile("{name: h, url: 'sftp://ops:${SSH_PASSWORD}@web-1'}"))
    run = runner.run("-m", "daily")
    assert run.ret == 4
    assert "profiles/test.yaml:4: hosts[0].url: unknown backend sftp://: use local://" in run.output
    assert SECRET not in run.output


def test_defaults_of_a_minimal_item(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text("environment: t\nhosts:\n  - {name: h, url: 'ssh://ops:pw@web-1', clock: true}\n")
    item = opsproof.load_profile(path).profile.hosts[0]
    assert (item.filesystems.warn, item.filesystems.fail) == (80, 90)  # type: ignore[union-attr]
    assert (item.memory.warn, item.memory.fail) == (20, 10)  # type: ignore[union-attr]
    assert (item.load.warn, item.load.fail, item.load_window) == (1.0, 2.0, "5m")  # type: ignore[union-attr]
    assert item.clock is not None and (item.clock.max_offset.warn, item.clock.unknown) == (0.1, "error")
    assert item.address.shown == "ssh://ops@web-1" and item.address.password == "pw"
    assert item.ignore_fstypes == ["squashfs", "iso9660", "udf", "erofs", "cramfs"]
