"""MkDocs hook: generated reference in the pages, so it cannot drift from the code.

- `<!-- opsproof:keys http -->`: the table of a profile section's keys (a kind,
  `defaults` or `waivers`), read from its pydantic model;
- `<!-- opsproof:controls -->`: the controls catalogue, kind or aspect -> control ids;
- `<!-- opsproof:control-titles -->`: every control id with what it asks.

All come from opsproof.profile_reference. An unknown marker fails the build.
"""

from __future__ import annotations

import re
from typing import Any

from opsproof.profile_reference import control_titles_table, controls_table, keys_table

_MARKER = re.compile(r"<!--\s*opsproof:([a-z-]+)(?:\s+([A-Za-z_]+))?\s*-->")


def on_page_markdown(markdown: str, page: Any, **_: Any) -> str:
    def generated(match: re.Match[str]) -> str:
        what, argument = match.group(1), match.group(2)
        try:
            if what == "keys" and argument:
                return keys_table(argument)
            if what == "controls" and not argument:
                return controls_table()
            if what == "control-titles" and not argument:
                return control_titles_table()
        except KeyError as exc:
            raise ValueError(f"{page.file.src_path}: {match.group(0)}: {exc.args[0]}") from None
        raise ValueError(f"{page.file.src_path}: unknown marker {match.group(0)}")

    return _MARKER.sub(generated, markdown)
