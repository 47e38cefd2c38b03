"""MkDocs hook: generated reference in the pages, so it cannot drift from the code.

- `<!-- opsproof:keys http -->`: the table of a profile section's keys (a kind,
  `defaults`, `waivers` or `item`), read from its pydantic model by key_tables.py beside this hook;
- `<!-- opsproof:controls -->`: the controls catalogue, kind or aspect -> control ids;
- `<!-- opsproof:control-titles -->`: every control id with what it asks;
- `<!-- opsproof:markers -->`: every marker the plugin registers;
- `<!-- opsproof:kinds -->`: every registered kind with its check ids, cadence and markers;
- `<!-- opsproof:results -->`: results.json field by field, from its typed model;
- `<!-- opsproof:help history rebuild -->`: `opsproof history rebuild --help`, as printed;
- `<!-- opsproof:pytest-options -->`: the options the plugin adds to pytest, as `pytest --help` prints them.

An unknown marker, or one naming nothing the code has, fails the build.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import subprocess
import sys
from typing import Any

from key_tables import (
    control_titles_table,
    controls_table,
    keys_table,
    kinds_table,
    markers_table,
    results_table,
)

_MARKER = re.compile(r"<!--\s*opsproof:([a-z-]+)((?:\s+[A-Za-z_][A-Za-z0-9_-]*)*)\s*-->")
# argparse wraps its help to the terminal's width: a fixed one keeps the pages the same everywhere.
_HELP_COLUMNS = "100"


def command_help(words: list[str]) -> str:
    """What `opsproof WORDS --help` prints, as a code block."""
    from opsproof.cli import main

    printed = io.StringIO()
    columns = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = _HELP_COLUMNS
    try:
        with contextlib.redirect_stdout(printed), contextlib.redirect_stderr(io.StringIO()):
            main([*words, "--help"])
    except SystemExit as exc:
        if exc.code not in (0, None):
            raise KeyError(f"`opsproof {' '.join(words)} --help` failed: no such command") from None
    finally:
        if columns is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = columns
    return "```\n" + printed.getvalue().rstrip() + "\n```\n"


def pytest_options() -> str:
    """The opsproof groups of `pytest --help`, as a code block."""
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": _HELP_COLUMNS},
        check=True,
    )
    groups = [group for group in done.stdout.split("\n\n") if group.startswith("opsproof")]
    if not groups:
        raise KeyError("pytest --help shows no opsproof options: is the plugin installed?")
    return "```\n" + "\n\n".join(group.rstrip() for group in groups) + "\n```\n"


def on_page_markdown(markdown: str, page: Any, **_: Any) -> str:
    def generated(match: re.Match[str]) -> str:
        what, words = match.group(1), match.group(2).split()
        try:
            if what == "keys" and len(words) == 1:
                return keys_table(words[0])
            if what == "controls" and not words:
                return controls_table()
            if what == "control-titles" and not words:
                return control_titles_table()
            if what == "markers" and not words:
                return markers_table()
            if what == "kinds" and not words:
                return kinds_table()
            if what == "results" and not words:
                return results_table()
            if what == "help" and words:
                return command_help(words)
            if what == "pytest-options" and not words:
                return pytest_options()
        except KeyError as exc:
            raise ValueError(f"{page.file.src_path}: {match.group(0)}: {exc.args[0]}") from None
        raise ValueError(f"{page.file.src_path}: unknown marker {match.group(0)}")

    return _MARKER.sub(generated, markdown)
