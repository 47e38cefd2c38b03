"""The report templates turned into Python by Jinja once, when they change, not on every run.

Before Python can compile a template, Jinja lexes, parses and generates its Python source:
~35 ms of every run for report.html and its macros (benchmarks/README.md). That source is
kept beside each template, `templates/<name>.compiled`, written by

    python -m opsproof.evidence.precompile

and held current by tests/evidence/test_precompiled.py. The environment's loader
(`PrecompiledLoader`) compiles the kept source instead of asking Jinja to make it again, as
Jinja's own `BaseLoader.load` would compile the source it makes. Each file starts with a
signature of everything the source depends on (Jinja's version, the environment's options,
the template's text): a file whose signature does not match (a template edited and not
compiled again, another Jinja) is not used, and the template compiles as it always did.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, MutableMapping
from pathlib import Path
from typing import Any

import jinja2

__all__ = ["PRECOMPILED", "PrecompiledLoader", "compiled_source", "signature"]

# The templates of report.html, which every run renders; the period report's compile as they are.
PRECOMPILED = ("macros.html.j2", "report.html.j2")
SUFFIX = ".compiled"
HEADER = "# Made by `python -m opsproof.evidence.precompile` from {name}; do not edit. Signature: "


def signature(environment: jinja2.Environment, source: str) -> str:
    """What the Python source Jinja makes of `source` depends on, hashed."""
    options = (
        jinja2.__version__,
        environment.block_start_string,
        environment.block_end_string,
        environment.variable_start_string,
        environment.variable_end_string,
        environment.comment_start_string,
        environment.comment_end_string,
        environment.line_statement_prefix,
        environment.line_comment_prefix,
        environment.trim_blocks,
        environment.lstrip_blocks,
        environment.newline_sequence,
        environment.keep_trailing_newline,
        environment.autoescape,
        environment.optimized,
        environment.is_async,
        sorted(environment.extensions),
    )
    return hashlib.sha256(f"{options!r}\0{source}".encode()).hexdigest()


def compiled_source(environment: jinja2.Environment, name: str) -> str:
    """The text of `<name>.compiled`: the signature line, then the Python source Jinja makes of the template."""
    assert environment.loader is not None
    source, filename, _ = environment.loader.get_source(environment, name)
    python = environment.compile(source, name, filename, raw=True)
    return HEADER.format(name=name) + signature(environment, source) + "\n" + python


class PrecompiledLoader(jinja2.BaseLoader):
    """`loader`'s templates, compiled from their kept Python source where it matches (see the module docstring).

    The outermost loader: Jinja's ChoiceLoader asks the loaders inside it for sources only.
    """

    def __init__(self, loader: jinja2.BaseLoader) -> None:
        self.loader = loader

    def get_source(
        self, environment: jinja2.Environment, template: str
    ) -> tuple[str, str | None, Callable[[], bool] | None]:
        return self.loader.get_source(environment, template)

    def list_templates(self) -> list[str]:
        return self.loader.list_templates()

    def load(
        self, environment: jinja2.Environment, name: str, globals: MutableMapping[str, Any] | None = None
    ) -> jinja2.Template:
        source, filename, uptodate = self.get_source(environment, name)
        python = _kept(environment, source, filename)
        if python is None:
            return super().load(environment, name, globals)
        code = compile(python, filename or "<template>", "exec")
        return environment.template_class.from_code(environment, code, globals or {}, uptodate)


def _kept(environment: jinja2.Environment, source: str, filename: str | None) -> str | None:
    """The kept Python source of a template, when there is one and its signature matches."""
    if filename is None or environment.bytecode_cache is not None:
        return None
    try:
        text = Path(filename + SUFFIX).read_text(encoding="utf-8")
    except OSError:  # none kept (the period report's templates), or not a file (a zipped package)
        return None
    first, _, python = text.partition("\n")
    return python if first.endswith(": " + signature(environment, source)) else None
