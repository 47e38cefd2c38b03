"""Profile model of `tls` items: a TLS endpoint whose certificate is checked for expiry and trust."""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Literal

from pydantic import (
    BeforeValidator,
    Field,
    StrictBool,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from opsproof import units
from opsproof.model.fields import ExistingFile, Item, Strict, default_threshold
from opsproof.model.kind import Kind

TLS_VERSIONS = ("TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3")
TlsVersion = Literal["TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3"]


def _remaining(value: object) -> tuple[str, float]:
    # Lifetimes are shrinking (47 days by 2029), so a limit may be a share of the lifetime.
    if isinstance(value, str) and value.strip().endswith("%"):
        return ("percent", units.parse_percent(value))
    return ("duration", units.parse_duration(value))


Remaining = Annotated[
    tuple[Literal["duration", "percent"], float],
    BeforeValidator(_remaining),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": f"{units.DURATION_PATTERN}|{units.PERCENT_PATTERN}",
            "description": "time left (30d) or a share of the certificate's lifetime left (33%)",
        }
    ),
]


def show_remaining(limit: tuple[str, float]) -> str:
    kind, value = limit
    return units.format_percent(value) if kind == "percent" else units.format_duration(value)


def _port(value: object) -> object:
    # `port: ${vars.TLS_PORT}` substitutes a string; digits are a port, anything else stays an error.
    if isinstance(value, str) and re.fullmatch(r"[0-9]{1,5}", value, re.ASCII):
        return int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"invalid port {value!r}: expected a number from 1 to 65535")
    return value


Port = Annotated[
    int,
    BeforeValidator(_port),
    Field(ge=1, le=65535),
    WithJsonSchema({"anyOf": [{"type": "integer", "minimum": 1, "maximum": 65535}, {"type": "string"}]}),
]


class Expiry(Strict):
    """`{warn, fail}` on what is left of a certificate: lower is worse. Each limit is a time or a share."""

    warn: Remaining | None = Field(None, description="warn when no more than this is left")
    fail: Remaining | None = Field(None, description="fail when no more than this is left")

    @model_validator(mode="after")
    def _warn_comes_first(self) -> Expiry:
        # A warn limit under the fail limit (of the same unit) would never warn before failing.
        if self.warn and self.fail and self.warn[0] == self.fail[0] and self.warn[1] < self.fail[1]:
            raise ValueError(
                f"warn {show_remaining(self.warn)} is less than fail {show_remaining(self.fail)}: "
                "the warning must come before the failure (warn: 30d, fail: 7d)"
            )
        return self

    def shown(self) -> dict[str, str]:
        """As a profile writes it: {'warn': '30d', 'fail': '7d'}."""
        return {level: show_remaining(limit) for level, limit in (("warn", self.warn), ("fail", self.fail)) if limit}


class TlsTarget(Item):
    """A TLS endpoint: handshake, chain, name, protocol version and certificate dates."""

    host: Annotated[str, Field(min_length=1, description="address to connect to (a name or an IP address)")]
    port: Port = Field(443, description="TCP port (default 443)")
    server_name: str | None = Field(
        None, min_length=1, description="SNI and the name the certificate must match (default: host)"
    )
    ca_file: ExistingFile | None = Field(None, description="extra trust anchors (PEM), added to the system store")
    expires: Expiry = Field(
        default_factory=default_threshold(warn="30d", fail="7d"),
        validate_default=True,
        description="time or share of lifetime left: default {warn: 30d, fail: 7d}",
    )
    min_version: TlsVersion = Field("TLSv1.2", description="lowest acceptable negotiated protocol")
    verify: StrictBool = Field(True, description="verify the chain and the name (on by default)")

    @field_validator("host")
    @classmethod
    def _host_is_an_address(cls, host: str) -> str:
        if "://" in host:
            raise ValueError(f"host {host!r} is an address, not a URL: write the name only (api.example.com)")
        if host.count(":") == 1:
            raise ValueError(f"host {host!r} holds a port: write it as `port:`")
        if ":" in host:
            try:
                ipaddress.IPv6Address(host.strip("[]"))
            except ValueError:
                raise ValueError(f"host {host!r} is neither a name nor an IP address") from None
            return host.strip("[]")
        return host

    @field_validator("server_name")
    @classmethod
    def _name_can_be_sent(cls, name: str | None) -> str | None:
        # What the ssl module would refuse at handshake time is the profile's mistake, said at load.
        if name is None:
            return None
        if name.startswith(".") or any(ch.isspace() for ch in name):
            raise ValueError(f"server_name {name!r} is not a host name (api.example.com)")
        try:
            name.encode("idna")
        except UnicodeError as exc:
            raise ValueError(f"server_name {name!r} is not a valid host name: {exc}") from None
        return name

    @property
    def sni(self) -> str:
        return self.server_name or self.host

    @property
    def address(self) -> str:
        """host:port as a person writes it ([::1]:443 for IPv6)."""
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


KIND = Kind(
    name="tls",
    target=TlsTarget,
    probe="opsproof.probes.tls",
    checks="checks/certs/test_tls.py",
    cadence="daily",
    areas=("certs",),
    controls={
        # Certificates: cryptographic controls kept valid (ISO A.8.24), monitored (CC7.1).
        "tls": ("SOC2:CC7.1", "SOC2:CC6.7", "ISO27001:A.8.24", "SOX-ITGC:OPS"),
    },
)
