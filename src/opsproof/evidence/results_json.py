"""results.json: the machine-readable record of the run.

One check per line: readable and diffable, and written by json's C encoder (an
indented dump of 1,000 checks goes through the pure-Python one, ten times slower).
Made in pieces (`json_chunks`: the head, then one piece per check), so the bundle
writes a 10,000-check file without holding it, or a dump of every record, whole.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from opsproof.model.results import CheckRecord, Results

if TYPE_CHECKING:
    from opsproof.evidence.premade import Premade

# `json.dumps(value, default=str)`, without making an encoder for each of 10,000 lines.
_LINE = json.JSONEncoder(default=str)
# How `json_chunks` lays the checks out: after the head, a line opening them, one check a line, a line closing them.
_CHECKS_LINE = '  "checks": [\n'
_CHECKS_END = "  ]\n"
# What a reader made ahead of a check's line (`read_streamed`'s `known`).
Made = TypeVar("Made")


def json_chunks(results: Results, premade: Premade | None = None) -> Iterator[str]:
    """results.json in pieces; joined, they are `render_json`'s text.

    `premade`: the checks' lines made ahead (`evidence.premade`), used for the records they were made of.
    """
    head = {"schema": results.schema_, **results.model_dump(exclude_unset=True, exclude={"schema_", "checks"})}
    body = json.dumps(head, indent=2, default=str)
    if not results.checks:
        yield body[:-2] + ',\n  "checks": []\n}\n'
        return
    yield body[:-2] + ',\n  "checks": [\n    '
    last = len(results.checks) - 1
    for index, check in enumerate(results.checks):
        piece = premade.get(check) if premade is not None else None
        line = piece.json if piece is not None else check_line(check)
        yield line + (",\n    " if index < last else "\n  ]\n}\n")


def check_line(check: CheckRecord) -> str:
    """One check's line of results.json, without the separator after it."""
    return _LINE.encode(check.model_dump(exclude_unset=True))


def render_json(results: Results) -> str:
    return "".join(json_chunks(results))


def read_streamed(path: Path, known: Mapping[str, Made] | None = None) -> tuple[Results, Iterator[CheckRecord | Made]]:
    """results.json as its head (the document with no checks) and its checks, read one line at a time.

    For readers that pass over the checks once (the history): a 10,000-check document is
    ~9 MB of text and ~20 MiB as models. Only the layout `json_chunks` writes is read this
    way: a document with no such line is read whole; ValueError (pydantic's ValidationError
    is one) is raised for a head that is not one, and by the iterator for a line that is not a
    whole check or anything but the document's end past the checks. A caller that gets it
    reads the file with `Results.model_validate_json` instead.
    `known`: what the reader made ahead of a check's line (its text, as `check_line` writes it),
    given instead of the model for a line of exactly that text.
    """
    with path.open(encoding="utf-8", newline="\n") as lines:
        head: list[str] = []
        for line in lines:
            if line == _CHECKS_LINE:
                break
            head.append(line)
        else:
            whole = Results.model_validate_json("".join(head))
            return whole, iter(whole.checks)
    # The head ends with the summary's "  },": the document without checks is that, and an empty list.
    document = Results.model_validate_json("".join(head).rstrip().removesuffix(",") + ',\n  "checks": []\n}')
    return document, _checks(path, len(head) + 1, known or {})


def _checks(path: Path, skip: int, known: Mapping[str, Made]) -> Iterator[CheckRecord | Made]:
    with path.open(encoding="utf-8", newline="\n") as lines:
        for _ in range(skip):
            next(lines)
        for line in lines:
            if line == _CHECKS_END:
                if lines.read() != "}\n":
                    raise ValueError(f"{path}: something after the checks")
                return
            text = line.removesuffix("\n").removesuffix(",")
            made = known.get(text.lstrip(" ")) if known else None
            yield CheckRecord.model_validate_json(text) if made is None else made
        raise ValueError(f"{path}: the checks do not end")
