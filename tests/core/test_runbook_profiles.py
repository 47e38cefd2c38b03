"""The example profiles in profiles/examples/, one per runbook in ../shared/runbooks/ (issue 15, item 8).

Each profile must load and validate (with fake values for the variables and secrets it names),
and every item, and every part of an item (a query, KPI, log pattern, CronJob...), must carry a
comment naming the runbook line it covers: `# 003:849 alembic current`. The lines a profile leaves
out are listed in it as `# left-out 003:871 ...: reason`; a line is either covered or left out,
never both. Where the runbooks themselves are at hand, every cited line must exist and not be blank.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from opsproof.profile import ITEM_SECTIONS, load_profile

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "profiles" / "examples"
PROFILES = sorted(EXAMPLES.glob("*.yaml"))

# `# 000:180` or `# 000:54-59`: a runbook (its three-digit prefix) and a line or a range of lines.
CITATION = re.compile(r"\b(\d{3}):(\d+)(?:-(\d+))?\b")
HEADER = re.compile(r"^# Runbook (\d{3}):", re.MULTILINE)
REFERENCE = re.compile(r"\$\{(vars\.)?([A-Za-z_][A-Za-z0-9_]*)(:-[^}]*)?\}")


def runbooks_dir() -> Path | None:
    """The runbooks the profiles cite: ../shared/runbooks beside the checkout (or its worktree folder)."""
    for base in (ROOT.parent, ROOT.parent.parent):
        candidate = base / "shared" / "runbooks"
        if candidate.is_dir():
            return candidate
    return None


@dataclass
class Coverage:
    """What one example profile says about its runbook."""

    runbook: str
    # (line, check or attestation id) for every line an item's or a part's comment cites
    covered: list[tuple[int, str]] = field(default_factory=list)
    left_out: dict[int, str] = field(default_factory=dict)
    uncommented: list[str] = field(default_factory=list)
    # the first and last line of every citation (a range may span blank lines, its ends may not)
    ends: set[int] = field(default_factory=set)


def _lines(first: str, last: str | None) -> range:
    return range(int(first), int(last or first) + 1)


def _comment_above(text_lines: list[str], start: int) -> str:
    """The comment lines right above line `start` (0-based), and the node's own first line."""
    found = [text_lines[start]]
    index = start - 1
    while index >= 0 and text_lines[index].lstrip().startswith("#"):
        found.append(text_lines[index])
        index -= 1
    return "\n".join(found)


def _entries(node: yaml.Node) -> list[yaml.MappingNode]:
    if isinstance(node, yaml.SequenceNode):
        return [entry for entry in node.value if isinstance(entry, yaml.MappingNode)]
    return []


def _name(entry: yaml.MappingNode) -> str:
    for key, value in entry.value:
        if key.value in ("name", "id") and isinstance(value, yaml.ScalarNode):
            return str(value.value)
    return "?"


def coverage_of(path: Path) -> Coverage:
    """Read the citations of one example profile: per item and part, and its left-out lines."""
    text = path.read_text(encoding="utf-8")
    header = HEADER.search(text)
    assert header, f"{path.name}: the first lines must say `# Runbook NNN: ...`"
    result = Coverage(runbook=header.group(1))
    text_lines = text.splitlines()
    root = yaml.compose(text)
    assert isinstance(root, yaml.MappingNode)

    def cite(comment: str, who: str) -> None:
        found = [m for m in CITATION.finditer(comment) if m.group(1) == result.runbook]
        if not found:
            result.uncommented.append(who)
        for match in found:
            result.ends.update({int(match.group(2)), int(match.group(3) or match.group(2))})
            result.covered.extend((line, who) for line in _lines(match.group(2), match.group(3)))

    for key, section in root.value:
        if key.value not in ITEM_SECTIONS:
            continue
        for item in _entries(section):
            item_id = f"{key.value} {_name(item)}"
            cite(_comment_above(text_lines, item.start_mark.line), item_id)
            # Parts: the item's lists of named mappings (queries, kpis, patterns, cronjobs, hpa_specs...).
            for part_key, value in item.value:
                for part in _entries(value):
                    where = f"{item_id} / {part_key.value} {_name(part)}"
                    cite(_comment_above(text_lines, part.start_mark.line), where)
    for raw in text_lines:
        if raw.startswith("# left-out "):
            # `# left-out 000:154 kubectl scale: remediation (a write)`: what, then the reason after ": "
            head, _, reason = raw[len("# left-out ") :].partition(": ")
            for match in CITATION.finditer(head):
                if match.group(1) == result.runbook:
                    result.ends.update({int(match.group(2)), int(match.group(3) or match.group(2))})
                    for line in _lines(match.group(2), match.group(3)):
                        result.left_out[line] = reason.strip()
    return result


def _yaml_only(text: str) -> str:
    """The profile without its comment lines (the references comments mention are not substituted)."""
    return "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))


def fake_environment(text: str) -> dict[str, str]:
    """A value for every ${SECRET} and every ${vars.NAME} without a default; KUBECONFIG is the demo's."""
    found = REFERENCE.finditer(_yaml_only(text))
    env = {m.group(2): f"fake-{m.group(2).lower()}" for m in found if m.group(3) is None}
    if "KUBECONFIG" in env:
        env["KUBECONFIG"] = str(ROOT / "profiles" / "demo.kubeconfig")
    return env


def test_there_is_one_profile_per_runbook() -> None:
    assert sorted(coverage_of(path).runbook for path in PROFILES) == ["000", "001", "002", "003", "004"]


@pytest.mark.parametrize("path", PROFILES, ids=lambda p: p.stem)
def test_example_profile_loads_and_validates(path: Path) -> None:
    env = fake_environment(path.read_text(encoding="utf-8"))
    loaded = load_profile(path, environ=env)
    profile = loaded.profile
    assert profile.environment
    # Every ${SECRET} reached the redactor, so no output can show it.
    text = _yaml_only(path.read_text(encoding="utf-8"))
    secrets = [value for name, value in env.items() if f"${{{name}}}" in text]
    assert secrets, f"{path.name}: names no secret (a password or token is always a ${{SECRET}})"
    for value in secrets:
        assert value not in loaded.redactor.redact(f"at {value}."), f"{path.name}: {value} is not redacted"
    assert sum(len(getattr(profile, section)) for section in ITEM_SECTIONS) > 10


@pytest.mark.parametrize("path", PROFILES, ids=lambda p: p.stem)
def test_every_item_and_part_cites_its_runbook_line(path: Path) -> None:
    coverage = coverage_of(path)
    assert coverage.uncommented == [], f"{path.name}: items without a `# {coverage.runbook}:LINE` comment"
    assert coverage.covered
    assert coverage.left_out, f"{path.name}: list the lines left out (`# left-out NNN:LINE what: reason`)"
    both = sorted({line for line, _ in coverage.covered} & set(coverage.left_out))
    assert both == [], f"{path.name}: lines both covered and left out: {both}"
    assert all(reason for reason in coverage.left_out.values()), f"{path.name}: a left-out line without a reason"


@pytest.mark.parametrize("path", PROFILES, ids=lambda p: p.stem)
def test_cited_lines_exist_in_the_runbook(path: Path) -> None:
    folder = runbooks_dir()
    if folder is None:
        pytest.skip("the runbooks (../shared/runbooks) are not beside this checkout")
    coverage = coverage_of(path)
    [runbook] = list(folder.glob(f"{coverage.runbook}_*.md"))
    lines = runbook.read_text(encoding="utf-8").splitlines()
    cited = {line for line, _ in coverage.covered} | set(coverage.left_out)
    missing = sorted(line for line in cited if line > len(lines))
    assert missing == [], f"{path.name}: lines past the end of {runbook.name}: {missing}"
    blank = sorted(line for line in coverage.ends if not lines[line - 1].strip())
    assert blank == [], f"{path.name}: cites blank lines of {runbook.name}: {blank}"


def test_a_profile_missing_a_citation_is_caught(tmp_path: Path) -> None:
    """The citation check itself fails on an item with no runbook line (it is not vacuous)."""
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "# Runbook 003: test\nenvironment: t\nhttp:\n  # 003:61 health\n  - {name: a, url: http://a/health}\n"
        "  - {name: b, url: http://b/health}\n# left-out 003:79: a write\n",
        encoding="utf-8",
    )
    coverage = coverage_of(bad)
    assert coverage.uncommented == ["http b"]
    assert coverage.covered == [(61, "http a")]
    assert coverage.left_out == {79: "a write"}


def _every_field(model: object, depth: int = 3) -> set[str]:
    """The reference for `own_cadences`: every field of every model walked, whatever its type."""
    from pydantic import BaseModel

    from opsproof.model.fields import own_severity_cadence

    found: set[str] = set()
    if depth == 0 or not isinstance(model, BaseModel):
        return found
    for value in model.__dict__.values():
        values = value.values() if isinstance(value, dict) else value if isinstance(value, list) else (value,)
        for element in values:
            own = own_severity_cadence(element)
            if own is not None and own.cadence is not None:
                found.add(own.cadence)
            found |= _every_field(element, depth - 1)
    return found


def test_own_cadences_walks_only_the_fields_that_can_hold_parts_and_misses_none() -> None:
    """`own_cadences` skips fields whose types hold no model (issue 18): over every item of the example
    profiles, it finds exactly what a walk of every field finds, and they have parts of their own
    cadence for it to find."""
    from opsproof.model.fields import own_cadences

    found_any = 0
    for path in PROFILES:
        env = fake_environment(path.read_text(encoding="utf-8"))
        profile = load_profile(path, environ=env).profile
        for section in ITEM_SECTIONS:
            for item in getattr(profile, section):
                assert own_cadences(item) == _every_field(item), (path.name, section, item.name)
                found_any += bool(own_cadences(item))
    assert found_any >= 3
