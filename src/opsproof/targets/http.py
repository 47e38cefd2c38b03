"""Profile model of `http` items: an HTTP(S) endpoint answering a read-only request."""

from __future__ import annotations

import re
from typing import Annotated, Any
from urllib.parse import unquote, urlsplit, urlunsplit

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    StrictBool,
    StrictInt,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from opsproof.model.fields import (
    Duration,
    ExistingFile,
    Item,
    Name,
    OwnCadence,
    OwnPostDeploy,
    OwnSeverity,
    Regex,
    Rising,
    Size,
    Strict,
    Threshold,
    check_order,
    unique_names,
)
from opsproof.model.json_path import parse_path
from opsproof.model.kind import Kind
from opsproof.targets.valued import Unit, UnitLimit, limits_in_unit, unit_of_text

# Whole bodies are read and judged, up to this much; past it the check says so rather than judge a part.
MAX_BODY_DEFAULT = 10 * 1024 * 1024


def _status_list(value: Any) -> Any:
    return [value] if isinstance(value, int) and not isinstance(value, bool) else value


_STATUS_SCHEMA = {"type": "integer", "minimum": 100, "maximum": 599}


def _path(text: str) -> str:
    parse_path(text)
    return text


JsonPathText = Annotated[
    str, AfterValidator(_path), Field(description="a JSONPath-style path to one value: $.status, $.items[0].name")
]
_LIMIT_KEYS = ("min", "max", "threshold")
_ASSERTIONS = ("equals", "in_", "min", "max", "threshold")


def _inferred_unit(data: Any) -> Any:
    """`unit` from the limits when not given: 80% is percent, 2s seconds, 1GB bytes; then the limits in it."""
    if not isinstance(data, dict):
        return data
    if "unit" not in data:
        written = [data.get("min"), data.get("max")]
        if isinstance(data.get("threshold"), dict):
            written += [data["threshold"].get("warn"), data["threshold"].get("fail")]
        found = {unit_of_text(limit) for limit in written if isinstance(limit, str)} - {None}
        if len(found) > 1:
            raise ValueError(f"the limits are written in different units ({', '.join(sorted(map(str, found)))})")
        if found:
            data = {**data, "unit": found.pop()}
    return limits_in_unit(data, _LIMIT_KEYS)


class ValueExpect(Strict):
    """One value of the JSON body, at `path`, and what it must be: equals, in, min/max or threshold."""

    path: JsonPathText
    name: Name | None = Field(
        None,
        description="makes the value a check of its own, http.value[<item>/<name>], judged on the item's one answer "
        "(it may then have its own severity and cadence); without a name it is judged in http.health[<item>]",
    )
    equals: Any = Field(None, description="the value, exactly (any JSON value, null included)")
    in_: Annotated[list[Any], Field(min_length=1)] | None = Field(
        None, alias="in", description="one of these values ([green, yellow])"
    )
    min: UnitLimit | None = Field(None, description="the value is at least this (a number, or 80%, 2s, 1GB)")
    max: UnitLimit | None = Field(None, description="the value is at most this (a number, or 80%, 2s, 1GB)")
    threshold: Threshold[UnitLimit] | None = Field(
        None, description="{warn, fail}: past warn warns, past fail fails (higher is worse unless lower_is_worse)"
    )
    lower_is_worse: StrictBool = Field(False, description="with threshold: less is worse (an error budget left)")
    unit: Unit = Field(
        "number",
        description="how the value and its limits read: number, seconds, percent (0-100), ratio (0-1), bytes; "
        "inferred from limits written 80%, 2s or 1GB",
    )

    @model_validator(mode="before")
    @classmethod
    def _limits_in_unit(cls, data: Any) -> Any:
        return _inferred_unit(data)

    severity: OwnSeverity = None
    cadence: OwnCadence = None
    post_deploy: OwnPostDeploy = None

    @model_validator(mode="after")
    def _one_assertion(self) -> ValueExpect:
        if self.name is None and (self.severity, self.cadence, self.post_deploy) != (None, None, None):
            raise ValueError(
                f"the value at {self.path} has its own severity, cadence or post_deploy: give it a `name:` (it is "
                "then its own check, http.value[<item>/<name>])"
            )
        given = [key for key in _ASSERTIONS if key in self.model_fields_set]
        kinds = {"min" if key == "max" else key for key in given}
        if len(kinds) != 1:
            raise ValueError("give one of equals, in, min/max or threshold")
        if self.threshold is not None:
            check_order(self.threshold, lower_is_worse=self.lower_is_worse)
        elif self.lower_is_worse:
            raise ValueError("lower_is_worse goes with threshold")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError("min is above max: no value can pass")
        return self

    @property
    def assertion(self) -> str:
        """Which assertion this is: equals, in, range or threshold."""
        if "equals" in self.model_fields_set:
            return "equals"
        if self.in_ is not None:
            return "in"
        return "threshold" if self.threshold is not None else "range"


class HttpExpect(Strict):
    """What the answer must be; every key given must hold."""

    status: Annotated[
        Annotated[list[Annotated[StrictInt, Field(ge=100, le=599)]], Field(min_length=1)],
        BeforeValidator(_status_list),
        WithJsonSchema({"anyOf": [_STATUS_SCHEMA, {"type": "array", "items": _STATUS_SCHEMA, "minItems": 1}]}),
    ] = Field(default_factory=lambda: [200], description="an HTTP status or a list of them")
    json_body: Any = Field(None, alias="json", description="subset match of the JSON body")
    body: Regex | None = Field(None, description="a regular expression searched in the body")
    latency: Annotated[Threshold[Duration], Rising] | None = Field(
        None, description="request sent to last body byte; over a limit it is measured again and the faster judged"
    )
    values: Annotated[list[ValueExpect], unique_names("values")] = Field(
        default_factory=list, description="values of the JSON body at JSONPath-style paths, each with its assertion"
    )


class HttpTarget(Item):
    """An HTTP(S) endpoint answering a read-only request."""

    url: str = Field(description="the endpoint: http:// or https://, a host, any path and query")
    method: str = Field(
        "GET",
        description="GET, HEAD or OPTIONS: checks never write, so read-only methods only",
        json_schema_extra={"enum": ["GET", "HEAD", "OPTIONS"]},
    )
    headers: dict[str, str] = Field(default_factory=dict, description="request headers; put credentials in a ${SECRET}")
    ca_file: ExistingFile | None = Field(None, description="extra trust anchors (PEM) for HTTPS")
    verify_tls: StrictBool = Field(True, description="verify the server certificate (on by default)")
    follow_redirects: StrictBool = Field(
        False, description="follow redirects and judge the final answer; otherwise a redirect is its own status"
    )
    max_body: Size = Field(
        MAX_BODY_DEFAULT,
        gt=0,
        description="the largest body read and judged (default 10MB); a larger one fails a body or JSON expectation",
    )
    expect: HttpExpect = Field(default_factory=HttpExpect, description="what the answer must be (default: HTTP 200)")

    @field_validator("url")
    @classmethod
    def _url_has_scheme(cls, url: str) -> str:
        if not re.match(r"^https?://[^/\s]+", url):
            raise ValueError(f"URL {url!r} needs an http:// or https:// scheme and a host")
        return url

    @property
    def named_values(self) -> list[ValueExpect]:
        """The JSON values that are checks of their own (`name:`): one `http.value[<item>/<name>]` each."""
        return [value for value in self.expect.values if value.name is not None]

    @property
    def request_url(self) -> str:
        """The URL without `user:password@`: the credentials travel in the client's auth parameter instead."""
        parts = urlsplit(self.url)
        return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))

    @property
    def credentials(self) -> tuple[str, str] | None:
        """`user:password@` of the URL, decoded (the profile URL-encodes a password that needs it)."""
        if "@" not in self.url:  # most URLs: no parse (the profile's load asks this of every item)
            return None
        parts = urlsplit(self.url)
        if "@" not in parts.netloc:
            return None
        return unquote(parts.username or ""), unquote(parts.password or "")

    def basic_auth_pairs(self) -> list[tuple[str, str]]:
        return [self.credentials] if self.credentials else []

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
    post_deploy=True,
    controls={
        # Availability monitoring of service health: SOC 2 monitoring and availability,
        # ISO 27001 monitoring activities, SOX ITGC computer operations.
        "http": ("SOC2:CC7.1", "SOC2:CC7.2", "SOC2:A1.1", "ISO27001:A.8.16", "SOX-ITGC:OPS"),
    },
)
