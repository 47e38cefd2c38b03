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

# (the scalar's text, its start mark, its path) -> its value, for `str` scalars with a `$` in them
# (the others are taken as written: nothing to substitute)
StringValue = Callable[[str, Any, tuple[Any, ...]], Any]
# (a scalar node of another tag, its path) -> its value: PyYAML's constructors
OtherValue = Callable[[yaml.ScalarNode, tuple[Any, ...]], Any]

_ScalarEvent = yaml.ScalarEvent
_MappingStart = yaml.MappingStartEvent
_MappingEnd = yaml.MappingEndEvent
_SequenceStart = yaml.SequenceStartEvent
_SequenceEnd = yaml.SequenceEndEvent
# Tags whose values are immutable (numbers, booleans, null): one value for each text, made once.
_IMMUTABLE = frozenset(
    {"tag:yaml.org,2002:int", "tag:yaml.org,2002:float", "tag:yaml.org,2002:bool", "tag:yaml.org,2002:null"}
)


class Unsupported(OpsproofError):
    """The document needs the node walk (see the module docstring)."""


def read_mapping(loader: Any, string: StringValue, other: OtherValue, max_depth: int) -> dict[Any, Any]:
    """The one mapping document `loader` (a libyaml loader over the text) holds, as Python values."""
    return _Reader(loader, string, other, max_depth).document()


class _Reader:
    """The events' values; a 1,000-item profile is ~23,000 events, so the common ones take the short way.

    A plain scalar's tag depends on its text alone (the resolver's regular expressions), and
    a profile repeats the same texts (`200`, `1s`, `healthy`) thousands of times: each text is
    resolved once (`_tags`), and a number's or boolean's value made once (`_made`). Paths are
    built only for what needs one: a `$` to substitute, a value of another tag, a nested collection.
    """

    def __init__(self, loader: Any, string: StringValue, other: OtherValue, max_depth: int) -> None:
        self._next = loader.get_event
        self._resolve = loader.resolve
        resolvers = loader.yaml_implicit_resolvers
        # A plain scalar whose first character starts no implicit type (a name, a URL) is a string:
        # known without the resolver's call (most of a profile's scalars).
        self._typed_firsts = frozenset(resolvers) if None not in resolvers else None
        self._tags: dict[str, str] = {}
        self._made: dict[tuple[str, str], Any] = {}
        self._string = string
        self._other = other
        self._max_depth = max_depth

    def document(self) -> dict[Any, Any]:
        next_event = self._next
        if not isinstance(next_event(), yaml.StreamStartEvent) or not isinstance(next_event(), yaml.DocumentStartEvent):
            raise Unsupported("no document")
        root = next_event()
        if type(root) is not _MappingStart:
            raise Unsupported("not a mapping")
        data = self._mapping(root, ())
        if not isinstance(next_event(), yaml.DocumentEndEvent) or not isinstance(next_event(), yaml.StreamEndEvent):
            raise Unsupported("more than one document")
        return data

    def _tag(self, event: Any) -> str:
        """The scalar's tag: `str` when quoted or when its first character starts no implicit type."""
        if event.anchor is not None or event.tag is not None:
            raise Unsupported("an anchor or a tag")
        value: str = event.value
        if not event.implicit[0]:
            return _STR
        firsts = self._typed_firsts
        if firsts is not None and value and value[0] not in firsts:
            return _STR
        tag = self._tags.get(value)
        if tag is None:
            tag = self._tags[value] = self._resolve(yaml.ScalarNode, value, event.implicit)
        return tag

    def _scalar(self, event: Any, path: tuple[Any, ...], key: Any) -> Any:
        """A value's scalar; `key`: where it sits in the collection at `path` (a mapping's key, a sequence's index)."""
        tag = self._tag(event)
        value: str = event.value
        if tag == _STR:
            return self._string(value, event.start_mark, (*path, key)) if "$" in value else value
        if tag == _MERGE:
            raise Unsupported("a merge key")
        if tag in _IMMUTABLE:
            made = self._made.get((tag, value), self)
            if made is not self:
                return made
        made = self._other(_node(event, tag), (*path, key))
        if tag in _IMMUTABLE:
            self._made[(tag, value)] = made
        return made

    def _collection(self, event: Any, path: tuple[Any, ...]) -> Any:
        """A nested mapping or sequence at `path`; Unsupported for an alias."""
        if len(path) > self._max_depth:
            raise Unsupported("too deep")
        if type(event) is _MappingStart:
            return self._mapping(event, path)
        if type(event) is _SequenceStart:
            if event.anchor is not None or event.tag is not None:
                raise Unsupported("an anchor or a tag")
            items: list[Any] = []
            next_event = self._next
            while (event := next_event()).__class__ is not _SequenceEnd:
                index = len(items)
                if type(event) is _ScalarEvent:
                    items.append(self._scalar(event, path, index))
                else:
                    items.append(self._collection(event, (*path, index)))
            return items
        raise Unsupported("an alias")

    def _mapping(self, start: Any, path: tuple[Any, ...]) -> dict[Any, Any]:
        if start.anchor is not None or start.tag is not None:
            raise Unsupported("an anchor or a tag")
        built: dict[Any, Any] = {}
        next_event = self._next
        while (event := next_event()).__class__ is not _MappingEnd:
            if type(event) is not _ScalarEvent:
                raise Unsupported("a key that is not a scalar")
            # A key is structure: taken as written, never substituted.
            tag = self._tag(event)
            if tag == _STR:
                key = event.value
            elif tag == _MERGE:
                raise Unsupported("a merge key")
            else:  # a number, a boolean, null: PyYAML's constructors, as the node walk makes it
                key = self._other(_node(event, tag), path)
            if key in built:
                raise Unsupported("a duplicate key")
            event = next_event()
            if type(event) is _ScalarEvent:
                built[key] = self._scalar(event, path, key)
            else:
                built[key] = self._collection(event, (*path, key))
        return built


def _node(event: Any, tag: str) -> yaml.ScalarNode:
    return yaml.ScalarNode(tag, event.value, event.start_mark, event.end_mark, event.style)
