"""The docs site builds strictly, its reference tables come from the models, and the README stays short."""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Annotated, Literal

import pytest
import yaml
from pydantic import Field

from conftest import REPO
from opsproof.model.fields import Duration, Item, Percent, Strict, Threshold

# The docs' generators live beside the MkDocs hook (docs/hooks/), which imports them as MkDocs does.
sys.path.insert(0, str(REPO / "docs" / "hooks"))
key_tables = importlib.import_module("key_tables")
controls_table, key_rows, keys_table, kind_models = (
    key_tables.controls_table,
    key_tables.key_rows,
    key_tables.keys_table,
    key_tables.kind_models,
)
DEMO_COMMAND = "python3 -m venv .venv && . .venv/bin/activate && pip install -e . && opsproof demo"
TEST_COMMAND = "python3 -m venv .venv && . .venv/bin/activate && pip install -e '.[test]' && pytest tests"


def _mkdocs() -> str:
    found = shutil.which("mkdocs", path=str(Path(sys.executable).parent)) or shutil.which("mkdocs")
    if found is None:
        pytest.fail("mkdocs is not installed: pip install -e '.[test]'")
    return found


def _build(config: Path, site: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [_mkdocs(), "build", "--strict", "--config-file", str(config), "--site-dir", str(site)],
        cwd=config.parent,
        capture_output=True,
        text=True,
        timeout=300,
        env={**_environ(), "NO_MKDOCS_2_WARNING": "1"},
    )


def _environ() -> dict[str, str]:
    import os

    return dict(os.environ)


def test_the_site_builds_strictly_with_generated_key_tables(tmp_path: Path) -> None:
    done = _build(REPO / "mkdocs.yml", tmp_path / "site")
    assert done.returncode == 0, done.stdout + done.stderr
    http = (tmp_path / "site" / "kinds" / "http" / "index.html").read_text()
    assert "opsproof:keys" not in http
    # The table rows come from HttpTarget/HttpExpect: a key, its type and its default.
    assert re.search(r"<code>expect\.latency</code></td>\s*<td><code>\{warn, fail\}</code> of duration", http)
    assert re.search(r"<code>method</code></td>\s*<td>string</td>\s*<td><code>GET</code>", http)
    assert not (tmp_path / "site" / "hooks").exists(), "the hook is not a page of the site"


def test_a_page_left_out_of_the_nav_or_a_broken_link_fails_the_build(tmp_path: Path) -> None:
    copy = tmp_path / "repo"
    shutil.copytree(REPO / "docs", copy / "docs")
    shutil.copy(REPO / "mkdocs.yml", copy / "mkdocs.yml")
    (copy / "checks").symlink_to(REPO / "checks")  # the kinds table reads the checks files
    (copy / "docs" / "orphan.md").write_text("# Orphan\n\nIn no nav.\n")
    (copy / "docs" / "kinds" / "tls.md").write_text(
        (copy / "docs" / "kinds" / "tls.md").read_text() + "\nSee [nowhere](../nowhere.md) and [x](http.md#no-such-anchor).\n"
    )
    done = _build(copy / "mkdocs.yml", tmp_path / "site")
    assert done.returncode != 0
    assert "orphan.md" in done.stderr and "not included in the \"nav\"" in done.stderr, done.stderr
    assert "nowhere.md" in done.stderr, done.stderr
    assert "#no-such-anchor" in done.stderr, done.stderr


def _nav_pages(nav: object) -> list[str]:
    if isinstance(nav, str):
        return [nav]
    if isinstance(nav, list):
        return [page for entry in nav for page in _nav_pages(entry)]
    if isinstance(nav, dict):
        return [page for value in nav.values() for page in _nav_pages(value)]
    return []


def test_every_kind_has_a_page_in_the_nav_with_its_generated_key_table() -> None:
    config = yaml.safe_load((REPO / "mkdocs.yml").read_text())
    nav = _nav_pages(config["nav"])
    for kind in kind_models():
        page = REPO / "docs" / "kinds" / f"{kind}.md"
        assert page.is_file(), f"kind {kind!r} has no page docs/kinds/{kind}.md"
        assert f"kinds/{kind}.md" in nav, f"docs/kinds/{kind}.md is not in mkdocs.yml's nav"
        assert f"<!-- opsproof:keys {kind} -->" in page.read_text(), (
            f"docs/kinds/{kind}.md lacks its generated key table: add <!-- opsproof:keys {kind} -->"
        )


def test_key_tables_list_every_field_of_every_kind_model() -> None:
    for kind, model in kind_models().items():
        table = keys_table(kind)
        for name, field in model.model_fields.items():
            assert re.search(rf"^\| `{re.escape(field.alias or name)}`( or `[a-z_]+`)* \|", table, re.M), (kind, name)


class _Window(Strict):
    """How far back to look."""

    within: Duration = Field(86400.0, description="how far back")


class _Part(Strict):
    name: str
    share: Annotated[Threshold[Percent], Field(description="a share")] = Field(
        default_factory=lambda: Threshold[Percent](warn="80%", fail="95%")
    )


class _Made(Item):
    mode: Literal["fast", "slow"] = "fast"
    latency: Threshold[Duration] | None = None
    window: _Window = Field(default_factory=_Window)
    parts: list[_Part] = Field(default_factory=list, description="one check each")


def test_key_rows_say_types_defaults_and_nested_keys_as_a_profile_writes_them() -> None:
    rows = {row.key: row for row in key_rows(_Made)}
    assert rows["name"].default == "**required**"
    assert rows["timeout"].type == "duration"
    assert rows["mode"].type == "one of `fast`, `slow`" and rows["mode"].default == "`fast`"
    assert rows["latency"].type == "`{warn, fail}` of duration" and rows["latency"].default == "none"
    assert rows["window"].type == "mapping (`window.*` below)"
    assert rows["window"].description == "How far back to look."
    assert rows["window.within"].default == "`1d`" and rows["window.within"].description == "how far back"
    assert rows["parts"].type == "list of mapping (`parts[].*` below)"
    assert rows["parts[].share"].type == "`{warn, fail}` of percentage"
    assert rows["parts[].share"].default == "`{warn: 80%, fail: 95%}`"


def test_the_controls_table_has_every_catalogue_entry() -> None:
    from opsproof.targets import catalogue

    table = controls_table()
    for key, ids in catalogue().items():
        row = next(line for line in table.splitlines() if line.startswith(f"| `{key}` |"))
        assert all(f"`{control}`" in row for control in ids), row


def _hook() -> ModuleType:
    spec = importlib.util.spec_from_file_location("opsproof_docs_hook", REPO / "docs" / "hooks" / "reference.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_an_unknown_marker_fails_the_build_naming_the_page() -> None:
    page = SimpleNamespace(file=SimpleNamespace(src_path="kinds/x.md"))
    hook = _hook()
    assert "| `url` |" in hook.on_page_markdown("<!-- opsproof:keys http -->", page=page)
    with pytest.raises(ValueError, match=r"kinds/x\.md: .*no profile section 'htp'"):
        hook.on_page_markdown("<!-- opsproof:keys htp -->", page=page)
    assert "usage: opsproof history rebuild" in hook.on_page_markdown("<!-- opsproof:help history rebuild -->", page=page)
    with pytest.raises(ValueError, match=r"kinds/x\.md: .*no such command"):
        hook.on_page_markdown("<!-- opsproof:help histroy -->", page=page)
    with pytest.raises(ValueError, match=r"kinds/x\.md: unknown marker"):
        hook.on_page_markdown("<!-- opsproof:tables -->", page=page)


def test_the_readme_is_short_and_keeps_the_two_setup_commands() -> None:
    readme = (REPO / "README.md").read_text()
    assert len(readme.encode()) <= 20 * 1024, f"README.md is {len(readme.encode())} bytes; the reference is in docs/"
    assert DEMO_COMMAND in readme
    assert TEST_COMMAND in readme
    # CI runs the README's test command, exactly.
    assert (REPO / ".ci" / "run").read_text().rstrip().splitlines()[-1] == TEST_COMMAND


def _unknown_keys(value: object, rows: dict[str, str], prefix: str = "") -> list[str]:
    """Key paths of an example item that its model does not have (mappings of user data are not walked)."""
    if not isinstance(value, dict):
        return []
    unknown = []
    for key, inner in value.items():
        path = f"{prefix}{key}"
        if path not in rows:
            unknown.append(path)
        elif rows[path].startswith("mapping (`"):
            unknown += _unknown_keys(inner, rows, path + ".")
        elif rows[path].startswith("list of ") and "[].*` below" in rows[path] and isinstance(inner, list):
            for element in inner:
                unknown += _unknown_keys(element, rows, path + "[].")
    return unknown


def test_every_key_in_the_docs_yaml_examples_is_a_key_of_its_model() -> None:
    models = kind_models()
    checked = 0
    for page in sorted((REPO / "docs").rglob("*.md")):
        for block in re.findall(r"```yaml\n(.*?)```", page.read_text(), re.S):
            try:
                data = yaml.safe_load(block)
            except yaml.YAMLError:
                continue  # not a profile (a Kubernetes manifest with several documents...)
            if not isinstance(data, dict):
                continue
            for section in set(data) & set(models):
                rows = {key: row.type for row in key_rows(models[section]) for key in (row.key, *row.also)}
                for index, item in enumerate(data[section] or []):
                    checked += 1
                    unknown = _unknown_keys(item, rows)
                    assert not unknown, f"{page.relative_to(REPO)}: {section}[{index}] uses unknown keys {unknown}"
    assert checked >= len(models), f"only {checked} example items found in docs/"


def test_every_opsproof_command_has_its_generated_help_on_the_cli_page() -> None:
    usage = _hook().command_help([])
    commands = re.search(r"\{([a-z,-]+)\}", usage)
    assert commands is not None, usage
    page = (REPO / "docs" / "cli.md").read_text()
    for command in commands.group(1).split(","):
        assert re.search(rf"<!-- opsproof:help {command}( [a-z-]+)? -->", page), (
            f"docs/cli.md lacks `opsproof {command}`: add <!-- opsproof:help {command} -->"
        )


def test_the_markers_table_has_every_registered_marker() -> None:
    from opsproof.model.markers import ALL_MARKERS

    table = key_tables.markers_table()
    assert all(f"| `{marker}` |" in table for marker in ALL_MARKERS), table


def test_the_kinds_table_reads_check_ids_from_the_checks_files() -> None:
    table = key_tables.kinds_table()
    for kind in kind_models():
        assert f"| [`{kind}`]({kind}.md) |" in table, kind
    row = next(line for line in table.splitlines() if line.startswith("| [`postgres`]"))
    assert "`postgres.reachable[<name>]`," in row  # collected for every item
    assert "`postgres.replication_lag[<name>]`\\*" in row  # @applies: only where configured
    assert "`postgres.query[<name>/<part>]`" in row  # @each: once per query
    assert row.endswith("| `daily` | `infra` |")
    assert "| `health`, `post_deploy` |" in table  # http's KIND: areas=("health",), post_deploy=True


def test_the_results_table_has_every_field_of_a_check_record() -> None:
    from opsproof.model.results import CheckRecord

    table = key_tables.results_table()
    for name in CheckRecord.model_fields:
        assert f"| `checks[].{name}` |" in table, name
    assert "| `run.interrupted_by` | string | when set |" in table  # left out of the document unless set
    assert "| `checks[].target` | string or null | always |" in table
