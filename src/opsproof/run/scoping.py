"""Which profile items, and which parts of them, a check function is parametrized over.

By default a check in `checks/<area>/test_<kind>.py` runs once per item of its kind.
Two decorators narrow or widen that::

    @applies(lambda item: item.replication is not None)   # only where configured
    def test_replication_lag(item, facts, check): ...

    @each("queries")                                       # once per query of each item
    def test_query(item, part, facts, check): ...         # check id postgres.query[primary/version]

A check of one aspect judges the item's key of its name (`test_connections` judges
`connections:`); that key may carry the check's own `severity:` and `cadence:`.

A check that applies to no item of the profile is not collected at all: "not
configured" is not a result, and a skipped record per item would only be noise.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])

_APPLIES = "_opsproof_applies"
_EACH = "_opsproof_each"


@dataclass(frozen=True)
class Part:
    """One part of an item a check runs once for: a query, a queue. `spec` is its profile model."""

    name: str
    spec: Any


def applies(predicate: Callable[[Any], bool]) -> Callable[[F], F]:
    """Run this check only for the items `predicate(item)` is true for."""

    def mark(function: F) -> F:
        setattr(function, _APPLIES, predicate)
        return function

    return mark


def each(attribute: str) -> Callable[[F], F]:
    """Run this check once per element of `item.<attribute>` (a list of named models, or a mapping)."""

    def mark(function: F) -> F:
        setattr(function, _EACH, attribute)
        return function

    return mark


def item_applies(function: Callable[..., Any], item: Any) -> bool:
    predicate = getattr(function, _APPLIES, None)
    return predicate is None or bool(predicate(item))


def parts_of(function: Callable[..., Any], item: Any) -> Iterator[Part] | None:
    """The parts this check runs for on `item`, or None when it runs once per item."""
    attribute = getattr(function, _EACH, None)
    if attribute is None:
        return None
    value = getattr(item, attribute)
    if isinstance(value, dict):
        return (Part(str(key), spec) for key, spec in value.items())
    return (Part(element.name, element) for element in value)


def aspect_of(function: Callable[..., Any], item: Any) -> Any:
    """The item's key a check of one aspect judges, named as the check (`test_connections`: `item.connections`)."""
    return getattr(item, function.__name__.removeprefix("test_"), None)
