"""Bounds on a YAML document before anything is built from it: nesting depth and alias expansion.

Two profiles that would otherwise crash or exhaust the machine instead of being refused:

- `x: [[[[...]]]]` 100,000 levels deep overflows libyaml's composer (a segfault), and a
  few thousand levels overflow Python's recursion (`RecursionError`) in any later walk;
- a "billion laughs" (`b: [*a, *a, ...]`, `c: [*b, *b, ...]`...) is a 500-byte file whose
  aliases expand to a billion values: building it grows the process by tens of MiB a second.

`check_nesting` looks at the text (the C composer must never see a deep document);
`check_expansion` at the composed nodes when the text has anchors (aliases are shared
nodes there, so it costs only the distinct nodes). A deep document with no anchors and
no compact nesting (indented blocks: n levels take n²/2 bytes) is bounded by `MAX_DEPTH`
as profile.Document walks it.
"""

from __future__ import annotations

import re
from itertools import accumulate
from operator import sub
from typing import Any

import yaml

from opsproof.errors import OpsproofError

MAX_DEPTH = 100  # a profile is ~6 levels deep; a JSON expectation may add a few
MAX_VALUES = 1_000_000  # values once aliases are expanded: a 5,000-item profile has ~150,000

# What could nest deeply on few bytes: flow brackets, and compact block entries (`- - - x`, `? ? x`).
_ANCHOR = re.compile(r"&[^\s,\[\]{}]")  # may also match inside a string: then the walk is merely not skipped
_DASH_PAIR = re.compile(r"-[ \t]+[-?][ \t]")
_QUESTION_PAIR = re.compile(r"\?[ \t]+[-?][ \t]")
_COMPACT = re.compile(rf"(?:[-?][ \t]+){{{MAX_DEPTH}}}")
_OPENS = (
    yaml.BlockSequenceStartToken,
    yaml.BlockMappingStartToken,
    yaml.FlowSequenceStartToken,
    yaml.FlowMappingStartToken,
)
_CLOSES = (yaml.BlockEndToken, yaml.FlowSequenceEndToken, yaml.FlowMappingEndToken)


# Every byte but the four brackets (UTF-8 never has an ASCII byte inside a longer character).
_NOT_BRACKET_BYTES = bytes(b for b in range(256) if b not in b"[]{}")
_STEP = bytes.maketrans(b"[]{}", b"\x02\x00\x02\x00")  # an opening bracket's step + 1, a closing one's


class TooLarge(OpsproofError):
    """A document past a bound; the message names the line where it was seen."""


def _may_be_deep(text: str) -> bool:
    """A cheap look that never misses a deep document (quoted brackets may make it cry wolf)."""
    if text.count("[") + text.count("{") > MAX_DEPTH and _bracket_depth(text) > MAX_DEPTH:
        return True
    # The literal-led patterns cost a millisecond over 1 MB where _COMPACT alone costs ~100 ms.
    if _DASH_PAIR.search(text) is None and _QUESTION_PAIR.search(text) is None:
        return False
    return _COMPACT.search(text) is not None


def check_nesting(text: str, loader: type[Any]) -> None:
    """TooLarge when the document nests deeper than MAX_DEPTH, found by libyaml's scanner (no recursion)."""
    if not _may_be_deep(text):
        return
    scanner = loader(text)
    try:
        depth = 0
        while scanner.check_token():
            token = scanner.get_token()
            if isinstance(token, _OPENS):
                depth += 1
                if depth > MAX_DEPTH:
                    raise TooLarge(f"{token.start_mark.line + 1}: nested more than {MAX_DEPTH} levels deep")
            elif isinstance(token, _CLOSES):
                depth -= 1
    except yaml.YAMLError:
        return  # the parse that follows names the syntax error and its line
    finally:
        scanner.dispose()


def may_have_aliases(text: str) -> bool:
    """Without an anchor (`&name`) there is no alias to expand: the walk below is skipped (most profiles)."""
    return _ANCHOR.search(text) is not None


def check_expansion(root: yaml.Node | None) -> None:
    """TooLarge when the document, its aliases expanded, holds more than MAX_VALUES values or nests too deep."""
    if root is None:
        return
    sizes: dict[int, tuple[int, int]] = {}  # id(node) -> (values once expanded, depth)
    open_: set[int] = set()  # nodes whose children are being sized: an alias inside its own anchor
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        if id(node) in sizes or (not children_done and id(node) in open_):
            continue  # sized already, or a loop (Document names a recursive alias; here it is not followed)
        children = _children(node)
        if not children_done:
            open_.add(id(node))
            stack.append((node, True))
            stack.extend((child, False) for child in children if id(child) not in sizes and id(child) not in open_)
            continue
        open_.discard(id(node))
        known = [sizes.get(id(child), (1, 1)) for child in children]
        size = 1 + sum(s for s, _ in known)
        depth = 1 + max((d for _, d in known), default=0)
        line = node.start_mark.line + 1
        if size > MAX_VALUES:
            raise TooLarge(f"{line}: aliases expand to more than {MAX_VALUES:,} values (a YAML bomb?)")
        if depth > MAX_DEPTH:
            raise TooLarge(f"{line}: nested more than {MAX_DEPTH} levels deep")
        sizes[id(node)] = (size, depth)


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def safe_load_bounded(text: str) -> Any:
    """`yaml.safe_load` of a file someone else wrote (a kubeconfig), within the same bounds; TooLarge past them."""
    check_nesting(text, yaml.SafeLoader)
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if may_have_aliases(text):
            check_expansion(node)
        return loader.construct_document(node) if node is not None else None
    finally:
        loader.dispose()


def _bracket_depth(text: str) -> int:
    """The deepest the brackets nest, a close with none open counting as nothing (a bracket in a string).

    The walk is `depth = depth + 1` on an opening bracket and `max(depth - 1, 0)` on a closing one;
    that clamped depth is the running sum less the lowest the sum has been so far (zero included),
    worked out by C-level iterators: a 1,000-item profile of flow mappings has 6,000 brackets.
    """
    brackets = text.encode("utf-8", "surrogatepass").translate(None, _NOT_BRACKET_BYTES)
    steps = brackets.translate(_STEP)
    sums = list(map(sub, accumulate(steps), range(1, len(steps) + 1)))  # the running sum of +1 and -1
    lowest = accumulate(sums, min, initial=0)
    next(lowest)  # zero, before the first bracket
    return max(map(sub, sums, lowest), default=0)
