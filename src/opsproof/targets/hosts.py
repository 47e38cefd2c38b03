"""Profile model of `hosts` items: a machine reached through a pytest-testinfra backend URL.

The URL is parsed here, at load, so a typo in the scheme or a query parameter testinfra
would silently ignore is a usage error naming its line::

    >>> parse_host_url("ssh://ops:pw@web-1:2222?sudo=true").shown
    'ssh://ops@web-1:2222?sudo=true'

Package constraints are parsed at load too, and compared the way dpkg orders versions::

    >>> parse_constraint(">=3.0.11, <4").accepts("3.0.13-1~deb12u1")
    True
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import PurePosixPath
from typing import Annotated, Any, Literal
from urllib.parse import parse_qsl, quote, unquote

from pydantic import (
    BeforeValidator,
    Field,
    StrictFloat,
    StrictInt,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from opsproof.model.fields import (
    AspectThreshold,
    Item,
    Name,
    OwnCadence,
    OwnSeverity,
    Percent,
    PositiveDuration,
    Strict,
    Threshold,
    check_order,
    default_threshold,
)
from opsproof.model.kind import Kind
from opsproof.model.trends import Trend
from opsproof.targets.tls import Expiry

# Backends whose commands a POSIX shell runs (the probe sends one sh script).
SCHEMES = (
    "local",
    "ssh",
    "safe-ssh",
    "paramiko",
    "docker",
    "podman",
    "kubectl",
    "openshift",
    "lxc",
    "chroot",
    "ansible",
)
# testinfra's own query parameters (testinfra.backend.parse_hostspec), less `timeout`:
# the item's timeout bounds everything, so a second one in the URL would only confuse.
_BOOL_PARAMS = ("sudo", "force_ansible")
_VALUE_PARAMS = (
    "sudo_user",
    "namespace",
    "container",
    "controlpersist",
    "kubeconfig",
    "context",
    "ssh_config",
    "ssh_identity_file",
    "ansible_inventory",
)
# Filesystems of read-only images (snaps, CD images) are always full: never judged by default.
IMAGE_FSTYPES = ("squashfs", "iso9660", "udf", "erofs", "cramfs")


@dataclass(frozen=True)
class HostAddress:
    """The parts of a testinfra backend URL: what the probe connects with, and what reports show."""

    scheme: str
    user: str | None
    password: str | None
    host: str
    port: int | None
    params: tuple[tuple[str, str], ...]

    def _location(self, password: str | None) -> str:
        user = ""
        if self.user is not None:
            user = quote(self.user, safe="") + (f":{password}" if password is not None else "") + "@"
        host = f"[{self.host}]" if ":" in self.host else self.host
        port = f":{self.port}" if self.port is not None else ""
        query = "?" + "&".join(f"{k}={v}" for k, v in self.params) if self.params else ""
        return f"{self.scheme}://{user}{host}{port}{query}"

    @property
    def shown(self) -> str:
        """The URL without its password: what reports show."""
        return self._location(None)

    @property
    def hostspec(self) -> str:
        """The URL testinfra parses: the password percent-encoded (testinfra decodes it)."""
        return self._location(quote(self.password, safe="") if self.password is not None else None)


def parse_host_url(url: str) -> HostAddress:
    """Split a testinfra backend URL; raise ValueError (never quoting the password) when it is malformed.

    The user-info ends at the last `@` before the host, so a password substituted from
    `${SSH_PASSWORD}` may hold `/`, `@`, `?` or `#` as they are.
    """
    match = re.fullmatch(r"([a-z][a-z0-9+.-]*)://(.*)", url, re.DOTALL)
    if match is None:
        raise ValueError(f"URL needs a backend scheme: {_schemes()} (e.g. ssh://ops@web-1)")
    scheme, rest = match.groups()
    if scheme not in SCHEMES:
        raise ValueError(f"unknown backend {scheme}://: use {_schemes()}")
    userinfo, at, location = rest.rpartition("@")
    location, _, query = location.partition("?")
    if "#" in location or "#" in query:
        raise ValueError("URL has a #fragment; backend URLs have none")
    user, password = (None, None)
    if at:
        user_text, colon, password_text = userinfo.partition(":")
        user, password = unquote(user_text) or None, (unquote(password_text) if colon else None)
    params = _params(query)
    if scheme == "local":
        if location or at:
            raise ValueError("local:// takes no host or user: write local:// (this machine)")
        return HostAddress(scheme, None, None, "", None, params)
    host, port = _host_port(location, scheme)
    if password is not None and scheme not in ("ssh", "safe-ssh", "paramiko"):
        raise ValueError(f"{scheme}:// takes no password; only ssh://, safe-ssh:// and paramiko:// do")
    if port is not None and scheme not in ("ssh", "safe-ssh", "paramiko"):
        raise ValueError(f"{scheme}:// takes no port; only ssh://, safe-ssh:// and paramiko:// do")
    return HostAddress(scheme, user, password, host, port, params)


def _schemes() -> str:
    return ", ".join(f"{s}://" for s in SCHEMES)


def _params(query: str) -> tuple[tuple[str, str], ...]:
    if not query:
        return ()
    try:
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=True)
    except ValueError:
        raise ValueError("URL query string is malformed") from None
    for key, value in pairs:
        if key == "timeout":
            raise ValueError("URL ?timeout= is not used: the item's `timeout:` bounds every command")
        if key in _BOOL_PARAMS:
            if value.lower() not in ("true", "false"):
                raise ValueError(f"URL ?{key}= must be true or false")
        elif key not in _VALUE_PARAMS:
            known = ", ".join(_BOOL_PARAMS + _VALUE_PARAMS)
            raise ValueError(f"URL query parameter {key!r} is not a testinfra option ({known})")
    return tuple(pairs)


def _host_port(location: str, scheme: str) -> tuple[str, int | None]:
    if location.startswith("["):
        host, _, after = location[1:].partition("]")
        port_text = after.removeprefix(":") if after.startswith(":") else ""
        if after and not after.startswith(":"):
            raise ValueError("URL has text after the bracketed IPv6 address")
    elif location.count(":") == 1:
        host, port_text = location.split(":")
    else:
        host, port_text = location, ""
    if not host or "/" in host:
        what = "a container or pod name" if scheme not in ("ssh", "safe-ssh", "paramiko") else "a host"
        raise ValueError(f"URL needs {what}: {scheme}://name (no path)")
    if not port_text:
        return host, None
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise ValueError("URL port must be a number from 1 to 65535")
    return host, int(port_text)


def also_accepts(*shorthands: dict[str, Any]) -> Callable[[dict[str, Any]], None]:
    """A field's json_schema_extra: the field (or each item of a list) may also be written in these short forms."""

    def extra(schema: dict[str, Any]) -> None:
        target = schema.get("items", schema)
        if "anyOf" in target:
            target["anyOf"].extend(shorthands)
        else:
            original = dict(target)
            target.clear()
            target["anyOf"] = [original, *shorthands]

    return extra


# -- package versions --------------------------------------------------------------------


def _order(char: str) -> int:
    # dpkg's ordering of one character: ~ before everything (even the end), letters before other signs.
    if char.isdigit():
        return 0
    if char.isalpha():
        return ord(char)
    if char == "~":
        return -1
    return ord(char) + 256 if char else 0


def _compare_part(a: str, b: str) -> int:
    """dpkg's verrevcmp: alternating non-digit and digit runs."""
    i = j = 0
    while i < len(a) or j < len(b):
        while (i < len(a) and not a[i].isdigit()) or (j < len(b) and not b[j].isdigit()):
            ac = _order(a[i]) if i < len(a) else 0
            bc = _order(b[j]) if j < len(b) else 0
            if ac != bc:
                return ac - bc
            i += 1
            j += 1
        start_i, start_j = i, j
        while i < len(a) and a[i].isdigit():
            i += 1
        while j < len(b) and b[j].isdigit():
            j += 1
        number_a, number_b = int(a[start_i:i] or 0), int(b[start_j:j] or 0)
        if number_a != number_b:
            return -1 if number_a < number_b else 1
    return 0


def _split_version(version: str) -> tuple[int, str, str]:
    epoch, colon, rest = version.partition(":")
    if not colon:
        epoch, rest = "0", version
    upstream, dash, revision = rest.rpartition("-")
    if not dash:
        upstream, revision = rest, ""
    return (int(epoch) if epoch.isdigit() else 0), upstream, revision


def compare_versions(a: str, b: str) -> int:
    """Negative, zero or positive as version `a` is older than, equal to or newer than `b` (dpkg's order)."""
    epoch_a, upstream_a, revision_a = _split_version(a)
    epoch_b, upstream_b, revision_b = _split_version(b)
    if epoch_a != epoch_b:
        return epoch_a - epoch_b
    return _compare_part(upstream_a, upstream_b) or _compare_part(revision_a, revision_b)


_OPERATORS = {
    ">=": lambda c: c >= 0,
    "<=": lambda c: c <= 0,
    ">": lambda c: c > 0,
    "<": lambda c: c < 0,
    "==": lambda c: c == 0,
    "!=": lambda c: c != 0,
}
_CLAUSE = re.compile(r"(>=|<=|==|!=|>|<)?\s*([A-Za-z0-9.+:~_-]+)(\*)?")


@dataclass(frozen=True)
class Constraint:
    """What a package must be: installed at versions matching every clause, installed at all, or absent."""

    text: str
    state: Literal["present", "absent"]
    clauses: tuple[tuple[str, str, bool], ...] = ()  # (operator, version, prefix match)

    def accepts(self, version: str) -> bool:
        for operator, wanted, prefix in self.clauses:
            if prefix:
                matched = version.startswith(wanted)
                if matched != (operator == "=="):
                    return False
            elif not _OPERATORS[operator](compare_versions(version, wanted)):
                return False
        return True


def parse_constraint(text: object) -> Constraint:
    """`>=3.0.11, <4`, `3.11.*`, `==1.2.3-1`, `present` or `absent`; ValueError when malformed."""
    if isinstance(text, bool) or not isinstance(text, str | int | float):
        raise ValueError(f"invalid package constraint {text!r}: expected a string such as '>=3.0.11' or 'absent'")
    text = str(text).strip()
    if text in ("present", "absent"):
        return Constraint(text, text)  # type: ignore[arg-type]
    clauses = []
    for clause in text.split(","):
        match = _CLAUSE.fullmatch(clause.strip())
        if match is None or not match.group(2)[0].isalnum():
            raise ValueError(
                f"invalid package constraint {text!r}: each clause is an operator (>=, <=, >, <, ==, !=) and a "
                "version, or a version prefix ending in * (3.11.*); or the words present or absent"
            )
        operator, version, star = match.group(1) or "==", match.group(2), bool(match.group(3))
        if star and operator not in ("==", "!="):
            raise ValueError(f"invalid package constraint {text!r}: a * prefix goes with == or != only")
        clauses.append((operator, version, star))
    return Constraint(text, "present", tuple(clauses))


PackageConstraint = Annotated[
    Constraint,
    BeforeValidator(parse_constraint),
    WithJsonSchema({"type": "string", "description": ">=3.0.11, <4 | 3.11.* | ==1.2.3-1 | present | absent"}),
]
PackageName = Annotated[
    str,
    Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9+._:-]*$", max_length=100, description="a package name (dpkg, rpm, apk)"),
]


# -- services, ports, certificates, clock ------------------------------------------------


def _named(value: Any, key: str) -> Any:
    return {key: value} if isinstance(value, str) else value


class ServiceSpec(Strict):
    """A service that must be running: a systemd unit, else the init script's status; or a process by name."""

    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9@_.:-]*$", max_length=100)] = Field(
        description="the unit or init script name (nginx, postgresql@16-main); the check id's part"
    )
    process: Annotated[str, Field(pattern=r"^[^/\s]{1,15}$")] | None = Field(
        None,
        description="judge by a running process of this name (its comm, at most 15 characters) instead of the "
        "service manager: for containers without systemd or init scripts",
    )


def _service(value: Any) -> Any:
    return _named(value, "name")


def _port(value: Any) -> Any:
    # 443 | "443" | "tcp:443" | "udp:53" | "127.0.0.1:5432" | "tcp:[::1]:8080" | {port: 443, ...}
    if isinstance(value, bool):
        raise ValueError(f"invalid port {value!r}")
    if isinstance(value, int):
        return {"port": value}
    if not isinstance(value, str):
        return value
    text = value.strip()
    protocol = "tcp"
    for prefix in ("tcp:", "udp:"):
        if text.startswith(prefix):
            protocol, text = prefix[:-1], text[len(prefix) :]
    address, _, port = text.rpartition(":")
    if not port.isdigit():
        raise ValueError(f"invalid port {value!r}: expected 443, tcp:443, udp:53, 127.0.0.1:5432 or tcp:[::1]:8080")
    found: dict[str, Any] = {"port": int(port), "protocol": protocol}
    if address:
        found["address"] = address.removeprefix("[").removesuffix("]")
    return found


class PortSpec(Strict):
    """A socket that must be listening (TCP) or bound (UDP) on the host."""

    port: StrictInt = Field(ge=1, le=65535, description="the port number, 1-65535")
    protocol: Literal["tcp", "udp"] = Field("tcp", description="tcp: a socket listens; udp: a socket is bound")
    address: str | None = Field(None, description="a local address; absent: any (a wildcard listener counts too)")
    name: Name | None = Field(None, description="the check id's part; default tcp:443 or tcp:127.0.0.1:5432")

    @field_validator("address")
    @classmethod
    def _ip(cls, address: str | None) -> str | None:
        if address is None:
            return None
        try:
            return str(ipaddress.ip_address(address))
        except ValueError:
            raise ValueError(
                f"address {address!r} is not an IP address (listeners bind addresses, not names)"
            ) from None

    @model_validator(mode="before")
    @classmethod
    def _default_name(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("name") is None and isinstance(data.get("port"), int):
            where = f"{data['address']}:" if data.get("address") else ""
            return {**data, "name": f"{data.get('protocol', 'tcp')}:{where}{data['port']}"}
        return data


class CertificateFile(Strict):
    """A certificate file on the host (PEM; a bundle is judged by its earliest expiry)."""

    path: str = Field(description="absolute path on the host")
    name: Name | None = Field(None, description="the check id's part; default the file name")
    expires: Expiry = Field(
        default_factory=default_threshold(warn="30d", fail="7d"),
        validate_default=True,
        description="time or share of lifetime left: default {warn: 30d, fail: 7d}",
    )

    @field_validator("path")
    @classmethod
    def _absolute(cls, path: str) -> str:
        if not path.startswith("/"):
            raise ValueError(f"path {path!r} must be absolute: it is read on the host, whatever its working directory")
        return path

    @model_validator(mode="before")
    @classmethod
    def _default_name(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("name") is None and isinstance(data.get("path"), str):
            base = PurePosixPath(data["path"]).name
            if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.:-]*", base):
                raise ValueError(f"give certificate {data['path']!r} a name: its file name cannot be a check id part")
            return {**data, "name": base}
        return data


def _certificate(value: Any) -> Any:
    return _named(value, "path")


class ClockSpec(Strict):
    """Clock synchronisation: chrony, ntpd or systemd-timesyncd must say the clock is synchronised."""

    max_offset: Threshold[PositiveDuration] = Field(
        default_factory=default_threshold(warn="100ms", fail="1s"),
        validate_default=True,
        description="|offset| from the time source, where the daemon reports one (chrony, ntpd)",
    )
    unknown: Literal["error", "warn"] = Field(
        "error",
        description="when no time daemon can say (none installed or running): error (the default) or warn",
    )
    severity: OwnSeverity = None
    cadence: OwnCadence = None


def _on_off(default: Any) -> Any:
    # `memory: false` turns a default-on check off; `clock: true` takes the defaults.
    def convert(value: Any) -> Any:
        if value is True:
            return default
        if value is False:
            return None
        return value

    return convert


LoadPerCpu = Annotated[StrictFloat, Field(ge=0)]


def _float(value: Any) -> Any:
    return float(value) if isinstance(value, int) and not isinstance(value, bool) else value


LoadLimit = Annotated[LoadPerCpu, BeforeValidator(_float)]
# An aspect on by default: `false` turns it off, `true` takes the defaults; it may carry its own severity and cadence.
SharePercent = AspectThreshold[Percent] | None


class HostTarget(Item):
    """A host: filesystems, memory, load, services, ports, certificate files, clock, packages."""

    url: str = Field(
        description="a testinfra backend URL: local://, ssh://[user[:password]@]host[:port], paramiko://..., "
        "docker://container, kubectl://pod?namespace=ns, ansible://inventory-host; testinfra options as ?sudo=true"
    )
    filesystems: Annotated[SharePercent, BeforeValidator(_on_off({"warn": "80%", "fail": "90%"}))] = Field(
        default_factory=default_threshold(warn="80%", fail="90%"),
        validate_default=True,
        description="space used on every mounted filesystem (df); false: not checked",
        json_schema_extra=also_accepts({"type": "boolean"}),
    )
    filesystems_trend: Trend[Percent] | None = Field(
        None,
        description="`{limit: 100%, window: 14d, full_in: {warn: 30d, fail: 7d}}`: each judged mount's usage, fitted "
        "over the history; fails when the soonest reaches the limit sooner than full_in (docs/trends.md)",
    )
    inodes: Annotated[SharePercent, BeforeValidator(_on_off({"warn": "80%", "fail": "90%"}))] = Field(
        default_factory=default_threshold(warn="80%", fail="90%"),
        validate_default=True,
        description="inodes used on every filesystem that has a fixed number of them; false: not checked",
        json_schema_extra=also_accepts({"type": "boolean"}),
    )
    mounts: dict[Annotated[str, Field(pattern=r"^/")], Threshold[Percent] | None] = Field(
        default_factory=dict,
        description="mount point -> its own {warn, fail} (null: never judged); a mount listed here must be mounted",
    )
    ignore_mounts: list[str] = Field(
        default_factory=list, description="mount points never judged (shell-style globs: /snap/*, /run/user/*)"
    )
    ignore_fstypes: list[str] = Field(
        default_factory=lambda: list(IMAGE_FSTYPES),
        description="filesystem types never judged (default: read-only images, always full)",
    )
    memory: Annotated[SharePercent, BeforeValidator(_on_off({"warn": "20%", "fail": "10%"}))] = Field(
        default_factory=default_threshold(warn="20%", fail="10%"),
        validate_default=True,
        description="MemAvailable as a share of MemTotal, lower is worse; false: not checked",
        json_schema_extra=also_accepts({"type": "boolean"}),
    )
    load: Annotated[AspectThreshold[LoadLimit] | None, BeforeValidator(_on_off({"warn": 1.0, "fail": 2.0}))] = Field(
        default_factory=default_threshold(warn=1, fail=2),
        validate_default=True,
        description="load average per online CPU; false: not checked",
        json_schema_extra=also_accepts({"type": "boolean"}),
    )
    load_window: Literal["1m", "5m", "15m"] = Field("5m", description="which load average: 1m, 5m or 15m")
    services: list[Annotated[ServiceSpec, BeforeValidator(_service)]] = Field(
        default_factory=list,
        description="services that must be running: names, or {name, process}",
        json_schema_extra=also_accepts({"type": "string"}),
    )
    ports: list[Annotated[PortSpec, BeforeValidator(_port)]] = Field(
        default_factory=list,
        description="sockets that must listen: 443, tcp:443, udp:53, 127.0.0.1:5432",
        json_schema_extra=also_accepts({"type": "integer", "minimum": 1, "maximum": 65535}, {"type": "string"}),
    )
    certificates: list[Annotated[CertificateFile, BeforeValidator(_certificate)]] = Field(
        default_factory=list,
        description="certificate files on the host: paths, or {path, name, expires}",
        json_schema_extra=also_accepts({"type": "string"}),
    )
    clock: Annotated[ClockSpec | None, BeforeValidator(_on_off({}))] = Field(
        None,
        description="true or {max_offset, unknown}: the clock must be synchronised; absent: not checked",
        json_schema_extra=also_accepts({"type": "boolean"}),
    )
    packages: dict[PackageName, PackageConstraint] = Field(
        default_factory=dict, description="package -> '>=3.0.11', '3.11.*', 'present' or 'absent'"
    )

    @field_validator("url")
    @classmethod
    def _valid_url(cls, url: str) -> str:
        parse_host_url(url)
        return url

    @field_validator("filesystems", "inodes")
    @classmethod
    def _higher_is_worse(cls, value: Threshold[float] | None) -> Threshold[float] | None:
        check_order(value, lower_is_worse=False)
        return value

    @field_validator("mounts")
    @classmethod
    def _mount_order(cls, value: dict[str, Threshold[float] | None]) -> dict[str, Threshold[float] | None]:
        for threshold in value.values():
            check_order(threshold, lower_is_worse=False)
        return value

    @field_validator("memory")
    @classmethod
    def _lower_is_worse(cls, value: Threshold[float] | None) -> Threshold[float] | None:
        check_order(value, lower_is_worse=True)
        return value

    @field_validator("load")
    @classmethod
    def _load_order(cls, value: Threshold[float] | None) -> Threshold[float] | None:
        check_order(value, lower_is_worse=False)
        return value

    @model_validator(mode="after")
    def _unique_parts(self) -> HostTarget:
        for what, names in (
            ("service", [s.name for s in self.services]),
            ("port", [str(p.name) for p in self.ports]),
            ("certificate", [str(c.name) for c in self.certificates]),
        ):
            seen: set[str] = set()
            for name in names:
                if name in seen:
                    hint = ": give each a name" if what == "certificate" else ""
                    raise ValueError(f"two {what}s named {name!r}{hint}")
                seen.add(name)
        return self

    @cached_property
    def address(self) -> HostAddress:
        """The parsed URL (validated at load)."""
        return parse_host_url(self.url)


KIND = Kind(
    name="hosts",
    target=HostTarget,
    probe="opsproof.probes.hosts",
    checks="checks/capacity/test_hosts.py",
    cadence="daily",
    areas=("capacity",),
    controls={
        "hosts": ("SOC2:CC7.1", "SOC2:CC7.2", "SOC2:A1.1", "ISO27001:A.8.16", "ISO27001:A.8.6", "SOX-ITGC:OPS"),
        "hosts.certificate": ("SOC2:CC7.1", "SOC2:CC6.7", "ISO27001:A.8.24", "SOX-ITGC:OPS"),
        "hosts.clock": ("SOC2:CC7.1", "ISO27001:A.8.17", "ISO27001:A.8.15", "SOX-ITGC:OPS"),
        "hosts.package": (
            "SOC2:CC7.1",
            "SOC2:CC8.1",
            "ISO27001:A.8.8",
            "ISO27001:A.8.19",
            "SOX-ITGC:CM",
            "SOX-ITGC:OPS",
        ),
    },
)
