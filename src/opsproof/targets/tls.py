"""Profile model of `tls` items: a TLS endpoint whose certificate is checked for expiry and trust."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import BeforeValidator, Field, StrictBool, StrictInt, ValidationInfo, WithJsonSchema, field_validator

from opsproof import units
from opsproof.fields import Item, Strict, default_threshold, existing_file

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


class Expiry(Strict):
    """`{warn, fail}` on what is left of a certificate: lower is worse."""

    warn: Remaining | None = None
    fail: Remaining | None = None


class TlsTarget(Item):
    """A TLS endpoint: handshake, chain, name, protocol version and certificate dates."""

    host: Annotated[str, Field(min_length=1, description="address to connect to")]
    port: StrictInt = Field(443, ge=1, le=65535)
    server_name: str | None = Field(None, description="SNI and the name the certificate must match (default: host)")
    ca_file: Path | None = Field(None, description="extra trust anchors (PEM), added to the system store")
    expires: Expiry = Field(
        default_factory=default_threshold(warn="30d", fail="7d"),
        validate_default=True,
        description="time or share of lifetime left: default {warn: 30d, fail: 7d}",
    )
    min_version: TlsVersion = Field("TLSv1.2", description="lowest acceptable negotiated protocol")
    verify: StrictBool = Field(True, description="verify the chain and the name (on by default)")

    @field_validator("ca_file")
    @classmethod
    def _ca_file_exists(cls, path: Path | None, info: ValidationInfo) -> Path | None:
        return existing_file(path, info)

    @property
    def sni(self) -> str:
        return self.server_name or self.host
