"""Hosts checks over ssh:// and paramiko:// against a real OpenSSH server on this machine.

The server (tests/ssh_servers.py) has its own host key, client key and known_hosts, and
records every command line it is asked to run: what a run did on the host is read on the
server's side, not taken from the probe's own account of it.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers.ssh_servers import SSHD, SshServer, keygen, ssh_server
from test_hosts_checks import ALWAYS, QUIET, hosts_profile

from conftest import Runner

pytestmark = [
    pytest.mark.skipif(SSHD is None, reason="no sshd on this machine (Debian: openssh-server)"),
    pytest.mark.skipif(not shutil.which("ssh"), reason="no ssh client on this machine"),
]
SCHEMES = ("ssh", "paramiko")
# A command that changes anything: a program that writes, or output sent anywhere but /dev/null.
WRITES = re.compile(
    r"(^|[;&|`(]\s*)(rm|mv|cp|tee|touch|mkdir|rmdir|chmod|chown|truncate|dd|kill|ln)\b|>\s*(?!/dev/null|&)"
)


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshServer]:
    with ssh_server(tmp_path_factory.mktemp("sshd")) as server:
        yield server


def _variant(server: SshServer, name: str, old: str, new: str) -> Path:
    """A copy of the server's ssh_config with one path swapped: another key, another known_hosts."""
    path = server.folder / f"{name}_config"
    path.write_text(server.ssh_config.read_text().replace(old, new))
    return path


@pytest.mark.parametrize("scheme", SCHEMES)
def test_a_real_host_over_ssh_passes_and_only_reads(runner: Runner, sshd: SshServer, scheme: str) -> None:
    before = len(sshd.commands())
    item = f"{{name: web, url: '{sshd.url(scheme)}', ports: [{sshd.port}], {QUIET}}}"
    runner.profile(hosts_profile(item, timeout="20s"))
    run = runner.run("-m", "daily")
    assert run.ret == 0, run.output
    checks = {c["check"]: c for c in run.results["checks"]}
    assert set(checks) == {f"hosts.{a}[web]" for a in ALWAYS} | {f"hosts.port[web/tcp:{sshd.port}]"}
    assert all(c["outcome"] == "passed" for c in checks.values()), [c["message"] for c in checks.values()]
    reachable = checks["hosts.reachable[web]"]["observed"]
    assert reachable["url"] == sshd.url(scheme)
    assert checks[f"hosts.port[web/tcp:{sshd.port}]"]["message"] == f"tcp port {sshd.port} listening on 127.0.0.1"
    sent = sshd.commands()[before:]
    assert sent, "the server recorded no command"
    lines = [line for command in sent for line in command.splitlines() if line.strip()]
    assert not [line for line in lines if WRITES.search(line)], lines
    for planned in ("df -P -k", "cat /proc/meminfo", "cat /proc/loadavg", "cat /proc/net/tcp"):
        assert any(planned in line for line in lines), planned


@pytest.mark.parametrize("scheme", SCHEMES)
def test_a_key_the_server_does_not_accept_is_a_refused_login(
    runner: Runner, sshd: SshServer, scheme: str, tmp_path: Path
) -> None:
    other = tmp_path / "other_key"
    keygen(other)
    config = _variant(sshd, f"other-key-{scheme}", str(sshd.identity), str(other))
    runner.profile(hosts_profile(f"{{name: web, url: '{sshd.url(scheme, config=config)}'}}", timeout="20s"))
    run = runner.run("-m", "daily")
    for aspect in ALWAYS:
        record = run.record(f"hosts.{aspect}[web]")
        assert record["outcome"] == "error", record
        assert record["message"].startswith("login refused: "), record["message"]


@pytest.mark.parametrize("scheme", SCHEMES)
def test_a_changed_host_key_fails_and_nothing_runs(
    runner: Runner, sshd: SshServer, scheme: str, tmp_path: Path
) -> None:
    # known_hosts holds another key for this address: the host was reinstalled, or someone is in between.
    impostor = keygen(tmp_path / "impostor").split()[:2]
    known = tmp_path / "known_hosts"
    known.write_text(f"[127.0.0.1]:{sshd.port} {' '.join(impostor)}\n")
    config = _variant(sshd, f"changed-{scheme}", str(sshd.folder / "known_hosts"), str(known))
    before = len(sshd.commands())
    runner.profile(hosts_profile(f"{{name: web, url: '{sshd.url(scheme, config=config)}'}}", timeout="20s"))
    run = runner.run("-m", "daily")
    record = run.record("hosts.reachable[web]")
    assert record["outcome"] == "failed", record
    assert record["message"].startswith("host key verification failed: the host offered another key"), record
    assert sshd.commands()[before:] == []


@pytest.mark.parametrize("scheme", SCHEMES)
def test_an_unknown_host_key_is_refused(runner: Runner, sshd: SshServer, scheme: str, tmp_path: Path) -> None:
    # testinfra's paramiko backend alone would accept any key it does not know, with a warning.
    empty = tmp_path / "empty_known_hosts"
    empty.write_text("")
    config = _variant(sshd, f"unknown-{scheme}", str(sshd.folder / "known_hosts"), str(empty))
    before = len(sshd.commands())
    runner.profile(hosts_profile(f"{{name: web, url: '{sshd.url(scheme, config=config)}'}}", timeout="20s"))
    record = runner.run("-m", "daily").record("hosts.reachable[web]")
    assert record["outcome"] == "error", record
    assert record["message"].startswith("host key verification failed: known_hosts holds no key for this host")
    assert sshd.commands()[before:] == []


@pytest.mark.parametrize("scheme", SCHEMES)
def test_accept_new_in_the_ssh_config_allows_a_first_login(
    runner: Runner, sshd: SshServer, scheme: str, tmp_path: Path
) -> None:
    empty = tmp_path / "empty_known_hosts"
    empty.write_text("")
    config = _variant(sshd, f"accept-new-{scheme}", str(sshd.folder / "known_hosts"), str(empty))
    config.write_text(config.read_text().replace("StrictHostKeyChecking yes", "StrictHostKeyChecking accept-new"))
    runner.profile(hosts_profile(f"{{name: web, url: '{sshd.url(scheme, config=config)}', {QUIET}}}", timeout="20s"))
    record = runner.run("-m", "daily").record("hosts.reachable[web]")
    assert record["outcome"] == "passed", record
