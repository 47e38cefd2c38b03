"""A profile's values built straight from libyaml's events, with no node tree.

Composing a 10,000-item profile into PyYAML nodes (each with two marks) took ~0.5 s
and ~70 MiB, all held until the values were built from it; the events make the same
values as they stream, and each is freed at once. Line numbers are not lost: a message
that needs one comes from the node walk (`profile.Document`), which reads the text again.

Only the plain documents most profiles are take this path. Anything else raises
`Unsupported` and is read by the node walk, which knows it and names every mistake:
anchors and aliases, explicit tags, merge keys (`<<`), a key that is not a scalar, a
duplicate key, more than `max_depth` levels, not one mapping document, and any error.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import yaml

from opsproof.errors import OpsproofError

_STR = "tag:yaml.org,2002:str"
_MERGE = "tag:yaml.org,2002:merge"

# (the scalar's text, its start mark, its path) -> its value, for `str` scalars
StringValue = Callable[[str, Any, tuple[Any, ...]], Any]
# (a scalar node of another tag, its path) -> its value: PyYAML's constructors
OtherValue = Callable[[yaml.ScalarNode, tuple[Any, ...]], Any]


class Unsupported(OpsproofError):
    """The document needs the node walk (see the module docstring)."""


def read_mapping(loader: Any, string: StringValue, other: OtherValue, max_depth: int) -> dict[Any, Any]:
    """The one mapping document `loader` (a libyaml loader over the text) holds, as Python values."""
    return _Reader(loader, string, other, max_depth).document()


class _Reader:
    def __init__(self, loader: Any, string: StringValue, other: OtherValue, max_depth: int) -> None:
        self._next = loader.get_event
        self._resolve = loader.resolve
        resolvers = loader.yaml_implicit_resolvers
        # A plain scalar whose first character starts no implicit type (a name, a URL) is a string:
        # known without the resolver's call (most of a profile's scalars).
        self._typed_firsts = frozenset(resolvers) if None not in resolvers else None
        self._string = string
        self._other = other
        self._max_depth = max_depth

    def document(self) -> dict[Any, Any]:
        next_event = self._next
        if not isinstance(next_event(), yaml.StreamStartEvent) or not isinstance(next_event(), yaml.DocumentStartEvent):
            raise Unsupported("no document")
        root = next_event()
        if not isinstance(root, yaml.MappingStartEvent):
            raise Unsupported("not a mapping")
        data = self._mapping(root, ())
        if not isinstance(next_event(), yaml.DocumentEndEvent) or not isinstance(next_event(), yaml.StreamEndEvent):
            raise Unsupported("more than one document")
        return data

    def _scalar(self, event: Any, path: tuple[Any, ...], *, key: bool = False) -> Any:
        if event.anchor is not None or event.tag is not None:
            raise Unsupported("an anchor or a tag")
        value: str = event.value
        firsts = self._typed_firsts
        if not event.implicit[0] or (firsts is not None and value and value[0] not in firsts):
            tag = _STR  # quoted, or plain and starting no implicit type
        else:
            tag = self._resolve(yaml.ScalarNode, value, event.implicit)
        if tag == _STR:  # a key is structure: taken as written, never substituted
            return event.value if key else self._string(event.value, event.start_mark, path)
        if tag == _MERGE:
            raise Unsupported("a merge key")
        return self._other(yaml.ScalarNode(tag, event.value, event.start_mark, event.end_mark, event.style), path)

    def _value(self, event: Any, path: tuple[Any, ...]) -> Any:
        if isinstance(event, yaml.ScalarEvent):
            return self._scalar(event, path)
        if len(path) > self._max_depth:
            raise Unsupported("too deep")
        if isinstance(event, yaml.MappingStartEvent):
            return self._mapping(event, path)
        if isinstance(event, yaml.SequenceStartEvent):
            if event.anchor is not None or event.tag is not None:
                raise Unsupported("an anchor or a tag")
            items: list[Any] = []
            while not isinstance(event := self._next(), yaml.SequenceEndEvent):
                items.append(self._value(event, (*path, len(items))))
            return items
        raise Unsupported("an alias")

    def _mapping(self, start: yaml.MappingStartEvent, path: tuple[Any, ...]) -> dict[Any, Any]:
        if start.anchor is not None or start.tag is not None:
            raise Unsupported("an anchor or a tag")
        built: dict[Any, Any] = {}
        while not isinstance(event := self._next(), yaml.MappingEndEvent):
            if not isinstance(event, yaml.ScalarEvent):
                raise Unsupported("a key that is not a scalar")
            key = self._scalar(event, path, key=True)
            if key in built:
                raise Unsupported("a duplicate key")
            built[key] = self._value(self._next(), (*path, key))
        return built
