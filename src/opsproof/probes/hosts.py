"""Hosts through pytest-testinfra backends: read-only commands, every host in its own thread.

testinfra is synchronous, so each host is probed in a worker thread (at most
`defaults.concurrency` at once) and every command it runs is bounded by the item's
deadline: backends that run a local program (local://, ssh://, docker://, kubectl://,
ansible://...) go through a `run_local` that kills the program's whole process group when
the deadline passes, and paramiko:// channels get the remaining time as their socket
timeout. A hung `df` on a dead NFS mount costs its own section (each command also runs
under the host's `timeout` program, at half the item's timeout, where it has one), not the host.

Per host, the probe sends ONE POSIX sh script whose sections each run one read-only
command (see `SECTION_COMMANDS`); then, only where configured, `cat -- <path>` per
certificate file (testinfra's file API) and testinfra's package module per package
(`uname -s`, `cat /etc/os-release` to find the package manager, then `dpkg-query -W`,
`rpm -q`, `apk info` or `pacman -Q`). Every command sent is listed in the facts.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import shlex
import time
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from pydantic import Field

from opsproof.probes import Facts, ProbeContext, ProbeKind, describe_connect_error, each_as_done, utc_iso
from opsproof.probes.host_output import (
    clock_facts,
    excerpt,
    parse_df,
    parse_loadavg,
    parse_meminfo,
    parse_mounts,
    parse_net,
    parse_service_status,
    parse_systemd,
)
from opsproof.probes.hosts_session import (
    CommandTimeout,
    install_deadlines,
    remaining,
    testinfra_host,
    thread_deadline,
)
from opsproof.redaction import Redactor, mask
from opsproof.targets.hosts import HostAddress, HostTarget

MARK = "@@opsproof"
NOT_AVAILABLE = 127  # a section's exit status when its program is not on the host
KEPT_SOCKETS = 2000

# What each section of the script runs (the `service:` and `clock:` sections are shell
# conditionals around the same commands; see `_script`). Nothing here writes.
SECTION_COMMANDS = {
    "uname": "uname -snrm",
    "os": "cat /etc/os-release",
    "cpus": "getconf _NPROCESSORS_ONLN",
    "pid1": "cat /proc/1/comm",
    "systemd": "test -d /run/systemd/system",
    "df": "df -P -k",
    "dfi": "df -P -i",
    "mounts": "cat /proc/mounts",
    "meminfo": "cat /proc/meminfo",
    "loadavg": "cat /proc/loadavg",
    "net:tcp": "cat /proc/net/tcp",
    "net:tcp6": "cat /proc/net/tcp6",
    "net:udp": "cat /proc/net/udp",
    "net:udp6": "cat /proc/net/udp6",
    "comm": "cat /proc/[0-9]*/comm",
}
BIG_ENDIAN = ("s390", "s390x", "ppc", "ppc64", "sparc", "sparc64", "mips", "mips64", "m68k", "hppa")


class HostFacts(Facts):
    url: str = Field(description="the backend URL without its password")
    backend: str
    denied: str | None = Field(None, description="the host refused us (login, sudo) or the backend is unusable")
    hostname: str | None = None
    os: str | None = None
    kernel: str | None = None
    arch: str | None = None
    cpus: int | None = None
    init: str | None = Field(None, description="PID 1's name (systemd, init, tini...)")
    systemd: bool | None = Field(None, description="systemd is the running service manager")
    filesystems: list[dict[str, Any]] | None = None
    inodes: list[dict[str, Any]] | None = None
    filesystems_unreadable: list[str] = Field(
        default_factory=list, description="df's complaints: mounts it could not read"
    )
    inodes_unreadable: list[str] = Field(default_factory=list)
    fstypes: dict[str, str] = Field(default_factory=dict, description="mount point -> filesystem type")
    memory: dict[str, Any] | None = None
    load: dict[str, Any] | None = None
    listening: list[dict[str, Any]] | None = None
    processes: dict[str, int] | None = Field(None, description="process name -> how many run")
    services: dict[str, dict[str, Any]] = Field(default_factory=dict)
    clock: dict[str, Any] | None = None
    certificates: dict[str, dict[str, Any]] = Field(default_factory=dict)
    packages: dict[str, dict[str, Any]] = Field(default_factory=dict)
    section_errors: dict[str, str] = Field(default_factory=dict, description="section -> why it gave nothing")
    commands: list[str] = Field(default_factory=list, description="every command sent to the host, in order")

    def observed(self) -> dict[str, Any]:
        # What every hosts check's record carries; each check adds the measures it judged.
        shown: dict[str, Any] = {"url": self.url, "reached": self.reached}
        for name in ("timed_out", "failure", "denied", "hostname"):
            value = getattr(self, name)
            if value:
                shown[name] = value
        shown["elapsed_s"] = round(self.elapsed_s, 4)
        return shown


# -- the script ----------------------------------------------------------------------------


def _section(name: str, body: str) -> str:
    return f"printf '\\n{MARK} %s\\n' {shlex.quote(name)}; {body}; printf '\\n{MARK}-rc %s\\n' $?"


def _optional(program: str, command: str) -> str:
    """Run `command` when `program` is on the host; else say so with status 127."""
    return (
        f"if command -v {program} >/dev/null 2>&1; then $T {command} 2>&1; "
        f"else echo 'not installed'; (exit {NOT_AVAILABLE}); fi"
    )


def _service_body(name: str) -> str:
    quoted = shlex.quote(name)
    return (
        "if [ -d /run/systemd/system ]; then echo manager=systemd; "
        f"$T systemctl show --no-pager --property=LoadState,ActiveState,SubState,MainPID -- {quoted} 2>&1; "
        "elif command -v service >/dev/null 2>&1; then echo manager=service; "
        f"$T service {quoted} status 2>&1; "
        f"else echo manager=none; (exit {NOT_AVAILABLE}); fi"
    )


def script(target: HostTarget, command_timeout: float) -> tuple[str, dict[str, str]]:
    """The one sh script of the host's read-only commands, and section -> its command as the record lists it."""
    sections: list[tuple[str, str, str]] = []  # (section, body, command as listed)

    def plain(name: str) -> None:
        command = SECTION_COMMANDS[name]
        sections.append((name, f"$T {command} 2>&1", command))

    for name in ("uname", "os", "cpus", "pid1"):
        plain(name)
    sections.append(("systemd", "test -d /run/systemd/system", SECTION_COMMANDS["systemd"]))
    if target.filesystems is not None or target.mounts:
        plain("df")
    if target.inodes is not None:
        plain("dfi")
    if target.filesystems is not None or target.inodes is not None or target.mounts:
        plain("mounts")
    if target.memory is not None:
        plain("meminfo")
    if target.load is not None:
        plain("loadavg")
    if target.ports:
        for name in ("net:tcp", "net:tcp6", "net:udp", "net:udp6"):
            plain(name)
    if any(s.process for s in target.services):
        # Processes vanish between the glob and the read: those errors are noise.
        sections.append(("comm", "cat /proc/[0-9]*/comm 2>/dev/null; true", SECTION_COMMANDS["comm"]))
    for service in target.services:
        if service.process is None:
            listed = f"systemctl show ... -- {service.name} (systemd) or service {service.name} status"
            sections.append((f"service:{service.name}", _service_body(service.name), listed))
    if target.clock is not None:
        sections.append(("clock:chronyc", _optional("chronyc", "chronyc -n tracking"), "chronyc -n tracking"))
        sections.append(("clock:ntpq", _optional("ntpq", "ntpq -pn"), "ntpq -pn"))
        timedatectl = (
            "if [ -d /run/systemd/system ]; then $T timedatectl show 2>&1; "
            f"else echo 'systemd is not running'; (exit {NOT_AVAILABLE}); fi"
        )
        sections.append(("clock:timedatectl", timedatectl, "timedatectl show"))
    seconds = max(1, int(command_timeout))
    # `timeout` bounds each command on the host, where it exists (GNU and recent busybox).
    prelude = f'T=""; if timeout 1 true >/dev/null 2>&1; then T="timeout {seconds}"; fi'
    text = "\n".join([prelude, *(_section(name, body) for name, body, _ in sections)])
    return text, {name: command for name, _, command in sections}


def split_sections(output: str) -> dict[str, tuple[int | None, str]]:
    """Section name -> (exit status, output); a section cut off by the deadline has status None."""
    found: dict[str, tuple[int | None, str]] = {}
    name: str | None = None
    lines: list[str] = []
    for line in output.splitlines():
        if line.startswith(f"{MARK}-rc "):
            if name is not None:
                status = line.removeprefix(f"{MARK}-rc ").strip()
                found[name] = (int(status) if status.isdigit() else None, "\n".join(lines).strip("\n"))
            name, lines = None, []
        elif line.startswith(f"{MARK} "):
            name, lines = line.removeprefix(f"{MARK} ").strip(), []
        elif name is not None:
            lines.append(line)
    if name is not None:
        found[name] = (None, "\n".join(lines).strip("\n"))
    return found


# -- certificates and packages ----------------------------------------------------------------


def certificate_facts(data: bytes) -> list[dict[str, Any]]:
    """Every certificate in a PEM file (or one DER certificate), earliest expiry first."""
    from cryptography import x509

    certificates = (
        x509.load_pem_x509_certificates(data)
        if b"-----BEGIN CERTIFICATE-----" in data
        else [x509.load_der_x509_certificate(data)]
    )
    found = [
        {
            "subject": certificate.subject.rfc4514_string() or "(empty subject)",
            "issuer": certificate.issuer.rfc4514_string(),
            "not_before": utc_iso(certificate.not_valid_before_utc.timestamp()),
            "not_after": utc_iso(certificate.not_valid_after_utc.timestamp()),
            "serial": format(certificate.serial_number, "x"),
        }
        for certificate in certificates
    ]
    return sorted(found, key=lambda c: str(c["not_after"]))


def _read_certificate(host: Any, path: str) -> dict[str, Any]:
    try:
        data = host.file(path).content
    except (RuntimeError, AssertionError) as exc:
        text = str(exc)
        for needle, why in (
            ("No such file", "no such file on the host"),
            ("Is a directory", "it is a directory"),
        ):
            if needle in text:
                return {"path": path, "outcome": "failed", "error": why}
        if "Permission denied" in text:
            return {"path": path, "outcome": "error", "error": "permission denied (use ?sudo=true in the URL)"}
        return {"path": path, "outcome": "error", "error": f"cannot read it: {_command_error(exc)}"}
    try:
        return {"path": path, "bytes": len(data), "certificates": certificate_facts(data)}
    except ValueError as exc:
        return {"path": path, "outcome": "failed", "error": f"no certificate in the file (PEM or DER): {exc}"}


_PACKAGE_MANAGERS = {
    "DebianPackage": "dpkg",
    "RpmPackage": "rpm",
    "AlpinePackage": "apk",
    "ArchPackage": "pacman",
    "FreeBSDPackage": "pkg",
    "OpenBSDPackage": "pkg_info",
}


def _read_package(host: Any, name: str) -> dict[str, Any]:
    try:
        package = host.package(name)
        manager = _PACKAGE_MANAGERS.get(type(package).__name__, type(package).__name__)
        if not package.is_installed:
            return {"installed": False, "manager": manager}
        return {"installed": True, "version": str(package.version), "manager": manager}
    except NotImplementedError:
        return {"outcome": "error", "error": "testinfra knows no package manager on this host (dpkg, rpm, apk, pacman)"}
    except (RuntimeError, AssertionError, ValueError, IndexError) as exc:
        return {"outcome": "error", "error": f"the package query failed: {_command_error(exc)}"}


def _command_error(exc: BaseException) -> str:
    """testinfra's errors carry a whole CommandResult: keep its stderr (or stdout), not the command."""
    result = exc.args[0] if exc.args else None
    for attribute in ("_stderr", "_stdout"):
        value = getattr(result, attribute, None)
        if isinstance(value, bytes):
            value = value.decode("utf-8", errors="replace")
        if value and str(value).strip():
            return excerpt(str(value))
    match = re.search(r"_stderr=b?'([^']*)'", str(exc))
    return excerpt(match.group(1).replace("\\n", " ")) if match and match.group(1) else excerpt(str(exc))


# -- one host ---------------------------------------------------------------------------------


class HostProbe:
    """What one host said, gathered in a worker thread under the item's deadline."""

    def __init__(self, target: HostTarget, timeout: float) -> None:
        self.target = target
        self.timeout = timeout
        self.found: dict[str, Any] = {}
        self.commands: list[str] = []
        self.errors: dict[str, str] = {}  # section -> why it gave nothing
        self.planned: dict[str, str] = {}  # section -> its command

    def run(self) -> dict[str, Any]:
        with thread_deadline(self.target.address, self.timeout):
            return self._run()

    def _run(self) -> dict[str, Any]:
        try:
            host = testinfra_host(self.target.address, self.timeout)
        except Exception as exc:  # testinfra raises RuntimeError, ImportError... for an unusable backend
            return {
                "reached": False,
                "denied": f"cannot use the {self.target.address.scheme} backend: {_exc_text(exc)}",
            }
        text, self.planned = script(self.target, self.timeout / 2)
        self.commands.extend(self.planned.values())
        try:
            result = host.backend.run(text)
            output, status, errors = (
                result.stdout_bytes.decode("utf-8", "replace"),
                result.rc,
                result.stderr_bytes.decode("utf-8", "replace"),
            )
            timed_out = False
        except CommandTimeout as exc:
            output, status, errors, timed_out = exc.output.decode("utf-8", "replace"), None, "", True
        except Exception as exc:  # ssh's exit status 255 and the paramiko, ansible errors
            return self._unreached(exc)
        sections = split_sections(output)
        if not sections:
            if timed_out:
                return {"reached": False, "timed_out": True}
            return self._transport_failed(status, errors or output)
        self.found["reached"] = True
        self._read(sections, timed_out)
        if timed_out:
            self.found["timed_out"] = True  # reached, but some sections did not run: section_errors says which
        self._files_and_packages(host)
        self.commands.extend(host.commands)
        return self.found

    def _unreached(self, exc: BaseException) -> dict[str, Any]:
        errors = getattr(exc, "errors", None)  # paramiko's NoValidConnectionsError: (host, port) -> OSError
        if isinstance(errors, dict) and errors:
            (host, port, *_), error = next(iter(errors.items()))
            return {"reached": False, "failure": describe_connect_error(error, host, f"{host}:{port}")}
        text = _command_error(exc) if isinstance(exc, RuntimeError | AssertionError) else _exc_text(exc)
        if _MISSING_PROGRAM.search(text):  # ansible's inventory lookup runs ansible-inventory here
            return {
                "reached": False,
                "denied": f"cannot run the {self.target.address.scheme} backend on this machine: {text}",
            }
        left = remaining()
        # After the deadline, paramiko fails in several ways ("No existing session", a banner
        # error): all of them mean the host did not answer in time.
        if isinstance(exc, TimeoutError) or "timed out" in text.lower() or (left is not None and left <= 0):
            return {"reached": False, "timed_out": True, "why": text}
        key_problem = _host_key_problem(text, exc)
        if key_problem is not None:
            return key_problem
        if _is_refusal(text, exc):
            return {"reached": True, "denied": f"login refused: {text}"}
        return {"reached": False, "failure": text}

    def _transport_failed(self, status: int | None, text: str) -> dict[str, Any]:
        key_problem = _host_key_problem(text, None)
        if key_problem is not None:
            return key_problem
        text = excerpt(text) or f"exit status {status}"
        scheme = self.target.address.scheme
        if status == NOT_AVAILABLE or _MISSING_PROGRAM.search(text):
            return {"reached": False, "denied": f"cannot run the {scheme} backend on this machine: {text}"}
        if "sudo:" in text:
            return {
                "reached": True,
                "denied": f"sudo refused: {text} (the checks need passwordless sudo for ?sudo=true)",
            }
        if _is_refusal(text, None):
            return {"reached": True, "denied": f"login refused: {text}"}
        return {"reached": False, "failure": f"the {scheme} backend could not run commands: {text}"}

    def _read(self, sections: dict[str, tuple[int | None, str]], timed_out: bool) -> None:
        found = self.found
        errors = self.errors

        def text(name: str) -> str | None:
            if name not in sections:
                if name in self.planned:
                    errors[name] = "not run: timed out" if timed_out else "not run"
                return None
            status, output = sections[name]
            if status is None:
                errors[name] = f"timed out running {self.planned.get(name, name)}"
                return None
            if status == 124:  # the host's `timeout` stopped it
                errors[name] = f"{self.planned.get(name, name)} did not finish within {max(1, int(self.timeout / 2))}s"
                return None
            # df exits 1 when one mount cannot be read (a stale NFS handle) and still lists the others.
            if status != 0 and name in SECTION_COMMANDS and name not in ("systemd", "comm", "df", "dfi"):
                errors[name] = f"{SECTION_COMMANDS[name]} failed (exit status {status}): {excerpt(output)}"
                return None
            return output

        uname = (text("uname") or "").split()
        if len(uname) >= 4:
            found |= {"hostname": uname[1], "kernel": f"{uname[0]} {uname[2]}", "arch": uname[-1]}
        os_release = dict(
            line.split("=", 1) for line in (text("os") or "").splitlines() if "=" in line and not line.startswith("#")
        )
        found["os"] = os_release.get("PRETTY_NAME", "").strip('"') or None
        cpus = (text("cpus") or "").strip()
        found["cpus"] = int(cpus) if cpus.isdigit() else None
        found["init"] = (text("pid1") or "").strip() or None
        if "systemd" in sections:
            found["systemd"] = sections["systemd"][0] == 0
        self._resources(text)
        self._network_and_services(text, sections)
        if self.target.clock is not None:
            found["clock"] = clock_facts(sections)
        found["section_errors"] = errors

    def _resources(self, text: Callable[[str], str | None]) -> None:
        found = self.found
        for name, key in (("df", "filesystems"), ("dfi", "inodes")):
            output = text(name)
            if output is None:
                continue
            rows = parse_df(output, inodes=name == "dfi")
            complaints = [line.removeprefix("df: ") for line in output.splitlines() if line.startswith("df: ")]
            if not rows and complaints:
                self.errors[name] = f"{SECTION_COMMANDS[name]} failed: {excerpt('; '.join(complaints))}"
                continue
            found[key] = rows
            if complaints:
                found[f"{key}_unreadable"] = complaints[:20]
        if (mounts := text("mounts")) is not None:
            # Only the mounts df listed: a Kubernetes node has thousands of others (pod secrets, overlays).
            listed = {row["mount"] for key in ("filesystems", "inodes") for row in found.get(key) or []}
            found["fstypes"] = {mount: kind for mount, kind in parse_mounts(mounts).items() if mount in listed}
        if (meminfo := text("meminfo")) is not None:
            with contextlib.suppress(ValueError):
                found["memory"] = parse_meminfo(meminfo)
        if (loadavg := text("loadavg")) is not None:
            with contextlib.suppress(ValueError):
                found["load"] = parse_loadavg(loadavg)

    def _network_and_services(self, text: Callable[[str], str | None], sections: dict[str, Any]) -> None:
        found = self.found
        if self.target.ports:
            big_endian = found.get("arch") in BIG_ENDIAN
            sockets: list[dict[str, Any]] = []
            read_any = False
            for name in ("tcp", "tcp6", "udp", "udp6"):
                table = text(f"net:{name}")
                if table is not None:
                    read_any = True
                    sockets.extend(parse_net(table, name.rstrip("6"), big_endian))
            unique = {(s["protocol"], s["address"], s["port"]): s for s in sockets}
            found["listening"] = (
                sorted(unique.values(), key=lambda s: (s["protocol"], s["port"], s["address"]))[:KEPT_SOCKETS]
                if read_any
                else None
            )
        if (comm := text("comm")) is not None:
            counts: dict[str, int] = {}
            for line in comm.splitlines():
                if line.strip():
                    counts[line.strip()] = counts.get(line.strip(), 0) + 1
            found["processes"] = counts
        services: dict[str, dict[str, Any]] = {}
        for service in self.target.services:
            if service.process is not None:
                continue
            entry = sections.get(f"service:{service.name}")
            if entry is None or entry[0] is None:
                services[service.name] = {"state": "unknown", "detail": "not run: the deadline passed"}
                continue
            status, output = entry
            manager, _, rest = output.partition("\n")
            manager = manager.removeprefix("manager=")
            if manager == "systemd":
                services[service.name] = {"manager": "systemd", **parse_systemd(rest)}
            elif manager == "service":
                services[service.name] = {"manager": "service", **parse_service_status(status, rest)}
            else:
                services[service.name] = {"manager": "none", "state": "unknown", "detail": "no service manager"}
        found["services"] = services

    def _files_and_packages(self, host: Any) -> None:
        certificates: dict[str, dict[str, Any]] = {}
        for certificate in self.target.certificates:
            try:
                certificates[str(certificate.name)] = _read_certificate(host, certificate.path)
            except CommandTimeout:
                certificates[str(certificate.name)] = _timed_out_part(certificate.path, self.timeout)
        packages: dict[str, dict[str, Any]] = {}
        for name in self.target.packages:
            try:
                packages[name] = _read_package(host, name)
            except CommandTimeout:
                packages[name] = _timed_out_part(name, self.timeout)
        self.found["certificates"] = certificates
        self.found["packages"] = packages


# The shell's words for a program that is not installed (dash, bash): ssh, docker, kubectl, sshpass, sudo...
_MISSING_PROGRAM = re.compile(r"sh: (?:line )?(?:\d+: )?\S+: (?:command )?not found")


def _timed_out_part(what: str, timeout: float) -> dict[str, Any]:
    return {"outcome": "failed", "error": f"timed out reading {what} (timeout {timeout:g}s)", "timed_out": True}


def _exc_text(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text and not isinstance(exc, RuntimeError) else text or type(exc).__name__


_UNKNOWN_HOST_KEY = re.compile(r"host key verification failed|no \S+ host key is known|not found in known_hosts", re.I)


def _host_key_problem(text: str, exc: BaseException | None) -> dict[str, Any] | None:
    """The host's key refused (ssh's words or paramiko's exceptions), said plainly; None for anything else.

    A key that differs from the one known_hosts holds is a finding about the host (it was
    reinstalled, or someone sits in between): `failed`. A host known_hosts has no key for
    is a setup left to do: the check could not run (`error`). Either way nothing was run
    on it, and no password was sent.
    """
    if type(exc).__name__ == "BadHostKeyException" or "REMOTE HOST IDENTIFICATION HAS CHANGED" in text:
        return {
            "reached": False,
            "failure": "host key verification failed: the host offered another key than the one known_hosts "
            "holds for it (reinstalled, or someone in between); nothing was run",
        }
    if _UNKNOWN_HOST_KEY.search(text):
        return {
            "reached": False,
            "denied": "host key verification failed: known_hosts holds no key for this host; add it "
            "(ssh-keyscan, then compare the fingerprint) or set StrictHostKeyChecking in the ssh_config",
        }
    return None


def _is_refusal(text: str, exc: BaseException | None) -> bool:
    name = type(exc).__name__ if exc is not None else ""
    lowered = text.lower()
    return (
        name in ("AuthenticationException", "BadAuthenticationType")
        or "permission denied" in lowered
        or "authentication failed" in lowered
    )


def _scrub(value: Any, address: HostAddress, redactor: Redactor) -> Any:
    """Redact ${SECRET}s, and a password written literally in the URL, from any text of the facts."""
    if isinstance(value, str):
        value = redactor.redact(value)
        return mask(value, address.password)
    if isinstance(value, dict):
        return {k: _scrub(v, address, redactor) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrub(v, address, redactor) for v in value]
    return value


def probe_host(target: HostTarget, timeout: float, redactor: Redactor) -> HostFacts:
    """Probe one host (blocking: a worker thread's work); never raises for the host's state."""
    install_deadlines()
    started = time.perf_counter()
    probe = HostProbe(target, timeout)
    found = probe.run()
    elapsed = time.perf_counter() - started
    base = {"target": target.name, "url": target.address.shown, "backend": target.address.scheme}
    why = found.pop("why", None)
    if found.get("timed_out") and not found.get("reached"):
        found["failure"] = f"timed out after {elapsed:.2f}s (timeout {timeout:g}s)"
    found.setdefault("reached", False)
    if not found["reached"] and not found.get("failure") and not found.get("denied"):
        found["failure"] = why or "the host gave no answer"
    found["commands"] = probe.commands
    return HostFacts(**base, elapsed_s=elapsed, **_scrub(found, target.address, redactor))


async def gather_hosts(targets: Sequence[HostTarget], ctx: ProbeContext) -> AsyncIterator[HostFacts]:
    """Probe every host in a worker thread (bounded by the run's concurrency); yield each one's facts as it is done."""
    if not targets:
        return
    loop = asyncio.get_running_loop()
    workers = max(1, min(len(targets), ctx.profile.defaults.concurrency, 64))
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="opsproof-hosts")

    async def one(target: HostTarget) -> HostFacts:
        timeout = ctx.profile.timeout_of(target)
        async with ctx.limit:
            started = time.perf_counter()
            try:
                # The thread bounds its own commands; this is the net under it (a backend stuck
                # where no deadline reaches, such as ansible's own inventory lookup).
                async with asyncio.timeout(timeout + 5):
                    return await loop.run_in_executor(pool, probe_host, target, timeout, ctx.redactor)
            except TimeoutError:
                elapsed = time.perf_counter() - started
                return HostFacts(
                    target=target.name,
                    url=target.address.shown,
                    backend=target.address.scheme,
                    reached=False,
                    timed_out=True,
                    failure=f"timed out after {elapsed:.2f}s (timeout {timeout:g}s)",
                    elapsed_s=elapsed,
                )

    try:
        async for facts in each_as_done(one(t) for t in targets):
            yield facts
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


PROBE: ProbeKind[HostTarget, HostFacts] = ProbeKind(
    name="hosts",
    facts=HostFacts,
    gather=gather_hosts,
    imports=("testinfra.host", "testinfra.backend.local", "cryptography.x509"),
)
