"""Profile model of `http` items: an HTTP(S) endpoint answering a read-only request."""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import BeforeValidator, Field, StrictBool, StrictInt, WithJsonSchema, field_validator

from opsproof.model.fields import Duration, ExistingFile, Item, Regex, Rising, Strict, Threshold
from opsproof.model.kind import Kind


def _status_list(value: Any) -> Any:
    return [value] if isinstance(value, int) and not isinstance(value, bool) else value


_STATUS_SCHEMA = {"type": "integer", "minimum": 100, "maximum": 599}


class HttpExpect(Strict):
    status: Annotated[
        Annotated[list[Annotated[StrictInt, Field(ge=100, le=599)]], Field(min_length=1)],
        BeforeValidator(_status_list),
        WithJsonSchema({"anyOf": [_STATUS_SCHEMA, {"type": "array", "items": _STATUS_SCHEMA, "minItems": 1}]}),
    ] = Field(default_factory=lambda: [200], description="an HTTP status or a list of them")
    json_body: Any = Field(None, alias="json", description="subset match of the JSON body")
    body: Regex | None = Field(None, description="a regular expression searched in the body")
    latency: Annotated[Threshold[Duration], Rising] | None = None


class HttpTarget(Item):
    """An HTTP(S) endpoint answering a read-only request."""

    url: str
    method: str = Field(
        "GET",
        description="GET, HEAD or OPTIONS: checks never write, so read-only methods only",
        json_schema_extra={"enum": ["GET", "HEAD", "OPTIONS"]},
    )
    headers: dict[str, str] = Field(default_factory=dict)
    ca_file: ExistingFile | None = Field(None, description="extra trust anchors (PEM) for HTTPS")
    verify_tls: StrictBool = Field(True, description="verify the server certificate (on by default)")
    follow_redirects: StrictBool = False
    expect: HttpExpect = Field(default_factory=HttpExpect)

    @field_validator("url")
    @classmethod
    def _url_has_scheme(cls, url: str) -> str:
        if not re.match(r"^https?://[^/\s]+", url):
            raise ValueError(f"URL {url!r} needs an http:// or https:// scheme and a host")
        return url

    @field_validator("method")
    @classmethod
    def _read_only_method(cls, method: str) -> str:
        if method not in ("GET", "HEAD", "OPTIONS"):
            raise ValueError(f"method {method!r} is not allowed: checks never write, use GET, HEAD or OPTIONS")
        return method


KIND = Kind(
    name="http",
    target=HttpTarget,
    probe="opsproof.probes.http",
    checks="checks/health/test_http.py",
    cadence="daily",
    areas=("health",),
    controls={
        # Availability monitoring of service health: SOC 2 monitoring and availability,
        # ISO 27001 monitoring activities, SOX ITGC computer operations.
        "http": ("SOC2:CC7.1", "SOC2:CC7.2", "SOC2:A1.1", "ISO27001:A.8.16", "SOX-ITGC:OPS"),
    },
)
