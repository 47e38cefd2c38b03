"""A plain profile document's values and where its `${...}` references are, with nothing but PyYAML.

`read_plain` is the whole of the fast reading (`yaml_events`, bounded by `yaml_limits`): the
values as written, and the path and line of every text with a `$` in it, which
`opsproof.profile` then substitutes in the document's order. It needs only PyYAML and these
light modules (no pydantic).

`None` means the document is not a plain one, or has a mistake: the node walk
(`profile.Document`) reads it again, and names the mistake and its line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, ClassVar

import yaml

from opsproof.model.yaml_events import Unsupported, read_mapping
from opsproof.model.yaml_limits import MAX_DEPTH, TooLarge, check_nesting

Path = tuple[Any, ...]  # ("http", 2, "url")


def _no_sexagesimal(tag: str, regexp: re.Pattern[str]) -> tuple[str, re.Pattern[str]]:
    # YAML 1.1 reads `1:30` as 90 (base 60): a port or a time written so must stay text, and be refused.
    if tag in ("tag:yaml.org,2002:int", "tag:yaml.org,2002:float"):
        return tag, re.compile("(?=[^:]*$)" + regexp.pattern, regexp.flags)
    return tag, regexp


class ProfileLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """One pass (libyaml where built in), keeping nodes for line numbers.

    Dates stay strings: pydantic parses them and names the key and line of a bad one,
    where PyYAML would raise a bare ValueError for `expires: 2026-13-01`. Numbers with a
    colon (YAML 1.1's base 60: `port: 1:30` is 90) stay strings too.
    """

    yaml_implicit_resolvers: ClassVar[dict[Any, Any]] = {
        first: [_no_sexagesimal(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }


@dataclass
class Plain:
    """A plain document's values, its texts as written, and each text to substitute: (path, line), in document order."""

    data: dict[Any, Any]
    references: list[tuple[Path, int]]


def read_plain(text: str) -> Plain | None:
    """The document's values read from libyaml's events, or None: the node walk must read it."""
    references: list[tuple[Path, int]] = []
    loader = ProfileLoader(text)

    def string(value: str, mark: Any, path: Path) -> str:
        references.append((path, mark.line + 1))
        return value

    def other(node: yaml.ScalarNode, path: Path) -> Any:
        return loader.construct_object(node, deep=True)

    try:
        check_nesting(text, ProfileLoader)
        data = read_mapping(loader, string, other, MAX_DEPTH)
    except (Unsupported, TooLarge, yaml.YAMLError, ValueError, TypeError, OverflowError):
        return None  # the node walk reads it again, and names the mistake if there is one
    finally:
        loader.dispose()
    return Plain(data, references)
