"""A real OpenSSH server on a loopback port, for the hosts checks over ssh:// and paramiko://.

Debian's openssh-server (`.ci/run` installs it): its own host key, client key, known_hosts
and config in a temporary folder, so nothing of the machine's ssh setup is read or changed.
The login user is whoever runs the tests (sshd run by an unprivileged user can only log in
as that user). sshd logs no command lines at any level, so a `ForceCommand` records each one
(`$SSH_ORIGINAL_COMMAND`) before running it: the tests read, on the server's side, every
command a run sent.
"""

from __future__ import annotations

import getpass
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from opsproof.testing.servers import free_port, stop_process

SSHD = shutil.which("sshd") or ("/usr/sbin/sshd" if Path("/usr/sbin/sshd").exists() else None)


@dataclass
class SshServer:
    port: int
    user: str
    folder: Path
    log: Path

    @property
    def ssh_config(self) -> Path:
        """An ssh_config that trusts this server's host key and logs in with the client key."""
        return self.folder / "ssh_config"

    @property
    def identity(self) -> Path:
        return self.folder / "client_key"

    def url(self, scheme: str = "ssh", *, config: Path | None = None) -> str:
        return f"{scheme}://{self.user}@127.0.0.1:{self.port}?ssh_config={config or self.ssh_config}"

    def commands(self) -> list[str]:
        """Every command line the server was asked to run so far, in order."""
        recorded = self.folder / "commands.log"
        return recorded.read_text().splitlines() if recorded.exists() else []


def keygen(path: Path) -> str:
    """A new Ed25519 key pair at `path` (private) and `path.pub`; the public key's line."""
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    return path.with_suffix(".pub").read_text().strip()


@contextmanager
def ssh_server(folder: Path) -> Iterator[SshServer]:
    """sshd on 127.0.0.1, key login only; stopped (and its folder left to the caller) afterwards."""
    assert SSHD is not None
    folder.mkdir(parents=True, exist_ok=True)
    os.chmod(folder, 0o700)
    host_key = keygen(folder / "host_key")
    client_key = keygen(folder / "client_key")
    (folder / "authorized_keys").write_text(client_key + "\n")
    port = free_port(0)
    user = getpass.getuser()
    (folder / "known_hosts").write_text(f"[127.0.0.1]:{port} {' '.join(host_key.split()[:2])}\n")
    (folder / "ssh_config").write_text(
        "Host 127.0.0.1\n"
        f"  IdentityFile {folder / 'client_key'}\n"
        "  IdentitiesOnly yes\n"
        f"  UserKnownHostsFile {folder / 'known_hosts'}\n"
        "  StrictHostKeyChecking yes\n"
        "  PasswordAuthentication no\n"
        "  BatchMode yes\n"
    )
    recorder = folder / "record-command"
    recorder.write_text(
        f"#!/bin/sh\nprintf '%s\\n' \"$SSH_ORIGINAL_COMMAND\" >> {folder / 'commands.log'}\n"
        'exec /bin/sh -c "$SSH_ORIGINAL_COMMAND"\n'
    )
    recorder.chmod(0o755)
    config = folder / "sshd_config"
    config.write_text(
        f"Port {port}\n"
        "ListenAddress 127.0.0.1\n"
        f"HostKey {folder / 'host_key'}\n"
        f"AuthorizedKeysFile {folder / 'authorized_keys'}\n"
        f"PidFile {folder / 'sshd.pid'}\n"
        "PasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\n"
        "PubkeyAuthentication yes\n"
        "PermitRootLogin prohibit-password\n"
        "StrictModes no\n"
        "UsePAM no\n"
        f"ForceCommand {recorder}\n"
        "LogLevel VERBOSE\n"
    )
    if os.geteuid() == 0:
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # its privilege-separation folder
    log = folder / "sshd.log"
    process = subprocess.Popen([SSHD, "-D", "-f", str(config), "-E", str(log)])
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1) as conn:
                    if conn.recv(64).startswith(b"SSH-"):
                        break
            except OSError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"sshd did not start (exit {process.poll()}): {log.read_text(errors='replace')}")
            time.sleep(0.05)
        yield SshServer(port=port, user=user, folder=folder, log=log)
    finally:
        stop_process(process)
