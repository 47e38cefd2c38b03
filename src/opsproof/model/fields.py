"""The building blocks of profile models: strict models, units as types, thresholds, items.

Every kind's target model (`opsproof.targets.*`) is made of these, so a duration,
a size or a threshold is written, validated and documented the same way everywhere.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import date
from functools import cache
from pathlib import Path
from typing import Annotated, Any, Generic, Literal, Protocol, TypeVar, cast, get_args, get_origin

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    ValidationInfo,
    WithJsonSchema,
    model_validator,
)

from opsproof import units

SEVERITIES = ("critical", "high", "medium", "low")
CADENCES = ("daily", "weekly", "monthly", "quarterly", "yearly")

Severity = Literal["critical", "high", "medium", "low"]
Cadence = Literal["daily", "weekly", "monthly", "quarterly", "yearly"]

Duration = Annotated[
    float,
    BeforeValidator(units.parse_duration),
    WithJsonSchema({"type": "string", "pattern": units.DURATION_PATTERN, "description": units.DURATION_HELP}),
]
Size = Annotated[
    int,
    BeforeValidator(units.parse_size),
    WithJsonSchema({"type": "string", "pattern": units.SIZE_PATTERN, "description": units.SIZE_HELP}),
]
Percent = Annotated[
    float,
    BeforeValidator(units.parse_percent),
    WithJsonSchema({"type": "string", "pattern": units.PERCENT_PATTERN, "description": units.PERCENT_HELP}),
]


def _valid_regex(pattern: str) -> str:
    try:
        re.compile(pattern)
    except re.error as exc:
        raise ValueError(f"invalid regular expression {pattern!r}: {exc}") from exc
    return pattern


Regex = Annotated[str, AfterValidator(_valid_regex)]
PositiveDuration = Annotated[Duration, Field(gt=0)]


def _iso_date(value: object) -> date:
    # Only YYYY-MM-DD: pydantic alone would take 0 (1970-01-01) or a timestamp for a date.
    if isinstance(value, date):
        return value
    if not isinstance(value, str) or not re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
        raise ValueError(f"invalid date {value!r}: expected YYYY-MM-DD")
    try:
        return date.fromisoformat(value)
    except ValueError as exc:
        raise ValueError(f"invalid date {value!r}: {exc}") from None


IsoDate = Annotated[date, BeforeValidator(_iso_date), WithJsonSchema({"type": "string", "format": "date"})]
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$"
Name = Annotated[
    str,
    Field(
        pattern=NAME_PATTERN,
        max_length=100,
        description="letters, digits and _ . : - ; used in check ids",
    ),
]

T = TypeVar("T")


class Strict(BaseModel):
    """Every profile model refuses unknown keys and coercion of wrong types.

    Built on first use (`defer_build`), not on import: a run builds the validators of the kinds
    its profile uses (see `opsproof.profile.profile_model`), not those of all fourteen.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, strict=False, populate_by_name=True, defer_build=True)


class Threshold(Strict, Generic[T]):
    """`{warn: X, fail: Y}`; which side is worse is the check's to say."""

    warn: T | None = None
    fail: T | None = None

    @model_validator(mode="after")
    def _judges_something(self) -> Threshold[T]:
        # `{}` would record `passed` while judging nothing: say so at load instead.
        if self.warn is None and self.fail is None:
            raise ValueError("an empty threshold {} judges nothing: give warn, fail or both (false turns it off)")
        return self


# A part's (a query, a log pattern) or an aspect's (`connections:`) own severity and cadence:
# the check that judges it takes these instead of its item's. One definition, so every part
# and aspect documents them alike; `own_severity_cadence` is the one place that reads them.
OwnSeverity = Annotated[Severity | None, Field(description="this part's own severity (default: the item's)")]
OwnCadence = Annotated[
    Cadence | None,
    Field(description="this part's own cadence marker (default: the item's); the item is still probed once per run"),
]

# A part's own place in the post-deploy gate: the plugin reads `post_deploy` off any part's spec.
OwnPostDeploy = Annotated[
    StrictBool | None,
    Field(
        description="true puts this part's check in `pytest -m post_deploy`, false keeps it out (default: the item's)"
    ),
]


class OwnSeverityCadence(Protocol):
    """A profile model with `severity: OwnSeverity` and `cadence: OwnCadence` (a part, an `AspectThreshold`)."""

    @property
    def severity(self) -> str | None: ...
    @property
    def cadence(self) -> str | None: ...


class AspectThreshold(Threshold[T], Generic[T]):
    """A threshold judged by a check of its own, which may carry that check's severity and cadence::

        connections: {warn: 80%, fail: 95%, severity: critical, cadence: weekly}

    `{severity: critical}` alone is still an empty threshold: it judges nothing, and is refused.
    """

    severity: OwnSeverity = None
    cadence: OwnCadence = None


@cache
def _carries_own(cls: type[BaseModel]) -> bool:
    # By type, once: a profile model with both keys that is not an item (items have their own, of course).
    fields = cls.model_fields
    return "severity" in fields and "cadence" in fields and not issubclass(cls, Item)


def own_severity_cadence(spec: object) -> OwnSeverityCadence | None:
    """`spec` when it may carry its own severity and cadence (a part's or an aspect's profile model), else None."""
    return cast(OwnSeverityCadence, spec) if isinstance(spec, BaseModel) and _carries_own(type(spec)) else None


def own_cadences(model: object, depth: int = 3) -> set[str]:
    """The cadences the parts and aspects of an item set for themselves (`{"weekly"}`), however deep they sit."""
    found: set[str] = set()
    if depth == 0 or not isinstance(model, BaseModel):
        return found
    fields = model.__dict__
    for name in _fields_with_models(type(model)):
        value = fields.get(name)
        values = value.values() if isinstance(value, dict) else value if isinstance(value, list) else (value,)
        for element in values:
            if not isinstance(element, BaseModel):
                continue
            own = own_severity_cadence(element)
            if own is not None and own.cadence is not None:
                found.add(own.cadence)
            found |= own_cadences(element, depth - 1)
    return found


@cache
def _fields_with_models(cls: type[BaseModel]) -> tuple[str, ...]:
    """The fields of `cls` whose values may hold a model, by their types (once per class).

    The run asks `own_cadences` of every item before its probes fork (the early targets):
    walking only these (an HTTP item's `expect`, not its url, headers and flags) took the
    walk over 1,000 items from ~5 ms to ~1 ms.
    """
    return tuple(name for name, field in cls.model_fields.items() if _may_hold_model(field.annotation))


def _may_hold_model(annotation: Any) -> bool:
    """Whether a value of this type may be, or contain, a model; True for what cannot be told (Any, a name)."""
    if annotation is None or annotation is type(None):
        return False
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Literal:
        return False
    if origin is Annotated:  # the type, not its validators
        return _may_hold_model(args[0])
    if args:
        return any(_may_hold_model(arg) for arg in args)
    if isinstance(annotation, type):
        return issubclass(annotation, BaseModel)
    return True  # Any, a TypeVar, a forward reference: it may


class Defaults(Strict):
    """Per-profile defaults for every item."""

    timeout: PositiveDuration = Field(5.0, description="how long a target may take to answer")
    concurrency: StrictInt = Field(256, ge=1, le=10000, description="probes in flight at once")


class Item(Strict):
    """What every check target has: a name, a severity and a timeout."""

    name: Name
    critical: StrictBool = Field(True, description="critical: true -> severity critical; false -> medium")
    severity: Severity | None = Field(None, description="sets the severity explicitly")
    timeout: PositiveDuration | None = Field(None, description="defaults to defaults.timeout (5s)")
    cadence: Cadence | None = Field(None, description="overrides the kind's default cadence")
    post_deploy: StrictBool | None = Field(
        None,
        description="true puts the item's checks in `pytest -m post_deploy` (http items are in it unless false)",
    )
    zone: Name | None = Field(None, description="the network zone it is reachable from: `--zone NAME` runs only these")

    def __repr__(self) -> str:
        # Short on purpose: tracebacks print fixtures, and a truncated repr of headers or a
        # DSN could show part of a secret that redaction (which matches whole values) misses.
        return f"{type(self).__name__}(name={self.name!r})"

    __str__ = __repr__

    def basic_auth_pairs(self) -> list[tuple[str, str]]:
        """The (user, password) pairs this item sends as Basic auth: the redactor learns their base64."""
        return []

    @property
    def effective_severity(self) -> Severity:
        if self.severity is not None:
            return self.severity
        return "critical" if self.critical else "medium"


def existing_file(path: Path | None, info: ValidationInfo) -> Path | None:
    """A file that must exist; relative paths are relative to the profile's folder.

    That is what a reader of the profile expects, whatever directory cron runs in.
    """
    if path is None:
        return None
    base = (info.context or {}).get("profile_dir")
    if not path.is_absolute() and base is not None:
        path = Path(base) / path
    if not path.is_file():
        what = "is not a regular file" if path.exists() else "does not exist"
        raise ValueError(f"{info.field_name} {str(path)!r} {what}")
    return path


# A path to a file that must exist, relative to the profile's folder (a `ca_file`).
ExistingFile = Annotated[Path, AfterValidator(existing_file)]


def default_threshold(**limits: str | int) -> Callable[[], Any]:
    """A default_factory for a `Threshold` field, written as a profile would: `default_threshold(warn="80%")`.

    Give the field `validate_default=True`: the default is then validated like a profile's
    own value, so it can never be of another unit than what the field takes.
    """
    return lambda: dict(limits)


def check_order(threshold: Threshold[Any] | None, *, lower_is_worse: bool) -> None:
    """Refuse an inverted `{warn, fail}` pair at load: it would silently never warn."""
    if threshold is None or threshold.warn is None or threshold.fail is None:
        return
    if lower_is_worse and threshold.warn < threshold.fail:
        raise ValueError("lower is worse here: warn must be at or above fail (the two are inverted)")
    if not lower_is_worse and threshold.warn > threshold.fail:
        raise ValueError("higher is worse here: warn must be at or below fail (the two are inverted)")


def _higher_is_worse(threshold: Any) -> Any:
    check_order(threshold, lower_is_worse=False)
    return threshold


# `Annotated[Threshold[Duration], Rising]`: a threshold where higher is worse, refused inverted at load.
Rising = AfterValidator(_higher_is_worse)


def unique_names(what: str) -> AfterValidator:
    """A validator refusing two parts of an item with one name (the names are check ids): `unique_names("patterns")`."""

    def check(parts: list[Any]) -> list[Any]:
        names = [part.name for part in parts if part.name is not None]  # unnamed parts are no checks
        for name in names:
            if names.count(name) > 1:
                raise ValueError(f"two {what} are named {name!r}: the names are check ids")
        return parts

    return AfterValidator(check)


def glob_to_regex(pattern: str) -> re.Pattern[str]:
    """`*` any run, `?` one character; brackets are literal because check ids contain them."""
    parts = (".*" if ch == "*" else "." if ch == "?" else re.escape(ch) for ch in pattern)
    return re.compile("".join(parts))
