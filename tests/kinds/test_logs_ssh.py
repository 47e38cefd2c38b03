"""`logs` items reading a file on a host over ssh:// and paramiko://, against a real OpenSSH server.

The server (tests/ssh_servers.py) records every command line it is asked to run: the one
read each item sends is read on the server's side, and none writes.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers.log_servers import AUTH_FAILED, LEAKED, logs_profile, write_log
from helpers.ssh_servers import SSHD, SshServer, ssh_server
from test_hosts_ssh import WRITES

from conftest import Runner, listening_black_hole

pytestmark = [
    pytest.mark.skipif(SSHD is None, reason="no sshd on this machine (Debian: openssh-server)"),
    pytest.mark.skipif(not shutil.which("ssh"), reason="no ssh client on this machine"),
]
AUTH = "{name: auth-failures, match: 'authentication failed', threshold: {warn: 2, fail: 5}}"


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshServer]:
    with ssh_server(tmp_path_factory.mktemp("sshd-logs")) as server:
        yield server


@pytest.mark.parametrize("scheme", ["ssh", "paramiko"])
def test_a_file_over_ssh_is_read_once_and_only_read(
    runner: Runner, sshd: SshServer, scheme: str, tmp_path: Path
) -> None:
    log = write_log(tmp_path / "auth.log", [AUTH_FAILED] * 3 + ["INFO fine"] * 5)
    missing = tmp_path / "gone.log"
    before = len(sshd.commands())
    runner.profile(
        logs_profile(
            f"{{name: remote, host: {{url: '{sshd.url(scheme)}', path: '{log}'}}, patterns: [{AUTH}]}}",
            f"{{name: remote-missing, host: {{url: '{sshd.url(scheme)}', path: '{missing}'}}, patterns: [{AUTH}]}}",
            timeout="20s",
        )
    )
    run = runner.run("-m", "daily")
    record = run.record("logs.count[remote/auth-failures]")
    assert record["outcome"] == "warned" and record["observed"]["count"] == 3, record["message"]
    assert all(LEAKED not in example for example in record["observed"]["examples"])
    gone = run.record("logs.count[remote-missing/auth-failures]")
    assert gone["outcome"] == "failed" and gone["message"] == f"{missing} does not exist"
    sent = sshd.commands()[before:]
    # One command per item (plus what paramiko's backend sends first, if anything), none writing.
    reads = [command for command in sent if "tail -c" in command]
    assert len(reads) == 2, sent
    assert not [command for command in sent if WRITES.search(command)], sent


@pytest.mark.parametrize("scheme", ["ssh", "paramiko"])
def test_a_silent_host_costs_its_timeout(runner: Runner, scheme: str) -> None:
    with listening_black_hole() as port:
        runner.profile(
            logs_profile(
                f"{{name: hole, host: {{url: '{scheme}://ops@127.0.0.1:{port}', path: /var/log/auth.log}}, patterns: [{AUTH}]}}",
                timeout="1s",
            )
        )
        run = runner.run("-m", "daily")
    record = run.record("logs.count[hole/auth-failures]")
    assert record["outcome"] == "failed" and record["message"].startswith("timed out after "), record["message"]
    # The host's deadline (the command's process group killed, paramiko's socket timeouts), not a retry.
    assert 1.0 <= record["observed"]["elapsed_s"] < 1.6, record["observed"]["elapsed_s"]
