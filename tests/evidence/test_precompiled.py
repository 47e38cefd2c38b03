"""report.html's templates compiled from the Python source kept beside them (opsproof.evidence.precompiled).

The kept source must be what Jinja makes of the templates today, a page rendered from it must be
the page Jinja's own compilation renders, and a kept source that no longer matches its template
must never be used.
"""

from __future__ import annotations

from pathlib import Path

import jinja2
import pytest
from helpers.pages import make_results

from opsproof.evidence import html, page
from opsproof.evidence.precompiled import PRECOMPILED, SUFFIX, PrecompiledLoader, compiled_source

TEMPLATES = Path(html.__file__).parent / "templates"


def _fresh() -> jinja2.Environment:
    return page.environment.__wrapped__()  # type: ignore[attr-defined,no-any-return]


@pytest.mark.parametrize("name", PRECOMPILED)
def test_the_kept_sources_are_what_jinja_makes_of_the_templates_today(name: str) -> None:
    kept = (TEMPLATES / f"{name}{SUFFIX}").read_text(encoding="utf-8")
    assert kept == compiled_source(_fresh(), name), (
        f"templates/{name}{SUFFIX} is stale: run `python -m opsproof.evidence.precompile` and commit it"
    )


def test_report_html_renders_from_the_kept_sources_without_jinja_compiling(monkeypatch: pytest.MonkeyPatch) -> None:
    precompiled = _fresh()
    assert isinstance(precompiled.loader, PrecompiledLoader)

    def no_compiling(*args: object, **kwargs: object) -> None:
        raise AssertionError("Jinja compiled a template that has a kept source")

    monkeypatch.setattr(precompiled, "compile", no_compiling)
    monkeypatch.setattr(html, "environment", lambda: precompiled)
    document = make_results(40)
    from_kept = html.render_html(document)
    monkeypatch.undo()

    compiled_here = _fresh()
    assert isinstance(compiled_here.loader, PrecompiledLoader)
    compiled_here.loader = compiled_here.loader.loader  # Jinja's own compilation, as before
    monkeypatch.setattr(html, "environment", lambda: compiled_here)
    assert html.render_html(document) == from_kept
    assert "svc-39" in from_kept


def _environment(folder: Path) -> jinja2.Environment:
    return jinja2.Environment(loader=PrecompiledLoader(jinja2.FileSystemLoader(folder)), autoescape=True)


def test_a_kept_source_is_used_only_while_its_signature_matches(tmp_path: Path) -> None:
    template = tmp_path / "page.j2"
    template.write_text("before {{ x }}")
    kept = tmp_path / f"page.j2{SUFFIX}"
    kept.write_text(compiled_source(_environment(tmp_path), "page.j2"))
    # Altered on purpose, signature untouched: what renders proves the kept source is the one used.
    kept.write_text(kept.read_text().replace("'before '", "'KEPT '"))
    assert _environment(tmp_path).get_template("page.j2").render(x=1) == "KEPT 1"
    # The template edited, the kept source not made again: Jinja compiles the template as it is.
    template.write_text("after {{ x }}")
    assert _environment(tmp_path).get_template("page.j2").render(x=1) == "after 1"
    # Another environment's options (no autoescaping): the signature differs, the kept source is ignored.
    template.write_text("before {{ x }}")
    plain = jinja2.Environment(loader=PrecompiledLoader(jinja2.FileSystemLoader(tmp_path)))
    assert plain.get_template("page.j2").render(x="<b>") == "before <b>"
    assert _environment(tmp_path).get_template("page.j2").render(x="<b>") == "KEPT &lt;b&gt;"
