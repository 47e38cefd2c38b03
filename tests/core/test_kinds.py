"""The registry of kinds: a kind registered somewhere is registered everywhere.

A kind is declared once (`KIND = Kind(...)` in opsproof/targets/<kind>.py); these tests
fail when its probe, checks file, profile section, JSON Schema, controls or docs page is
missing, and when a probe module or checks file exists for a kind nobody declared. A
kind's area markers are its declaration's `areas` (the plugin adds them to its checks);
a checks file does not repeat them.
"""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from conftest import HttpServer, Runner, http_profile
from opsproof.model.kind import Kind
from opsproof.model.markers import AREA_MARKERS
from opsproof.probes import ProbeKind, kind_named
from opsproof.profile import ITEM_SECTIONS, Profile, profile_json_schema
from opsproof.targets import HELPERS, catalogue, kind, kinds, names

REPO = Path(__file__).resolve().parents[2]
KINDS = sorted(kinds())


def test_the_known_kinds_are_registered() -> None:
    assert {"http", "tls", "postgres", "redis", "backups", "drills", "kubernetes", "prometheus", "hosts"} <= set(KINDS)
    assert tuple(ITEM_SECTIONS) == tuple(kinds())


@pytest.mark.parametrize("name", KINDS)
def test_a_registered_kind_is_wired_everywhere(name: str) -> None:
    kind = kinds()[name]
    assert name in Profile.model_fields, "no profile section"
    assert name in profile_json_schema()["properties"], "not in the profile's JSON Schema"
    probe = kind_named(name)
    assert isinstance(probe, ProbeKind) and probe.name == name
    assert probe.cadence == kind.cadence
    checks = REPO / kind.checks
    assert checks.is_file(), f"no checks file {kind.checks}"
    assert checks.parent.name in AREA_MARKERS, f"{kind.checks}: checks/<area>/ names no area marker"
    # The plugin marks a kind's checks with the kind's `areas`; a checks file that said them too could disagree.
    assert _area_markers(checks) == set(), f"{kind.checks}: area markers belong in its KIND's areas, not pytestmark"
    assert catalogue()[name], "no controls"


def test_a_kinds_checks_carry_the_area_markers_of_its_declaration(runner: Runner, http_server: HttpServer) -> None:
    assert kinds()["http"].areas == ("health",)
    runner.profile(http_profile(f"{{name: api, url: '{http_server.base}/health'}}"))
    selected = runner.run("-m", "health", "--collect-only", "-q")
    assert selected.ret == 0
    selected.result.stdout.fnmatch_lines(["*checks/health/test_http.py::test_health[[]api[]]*"])
    other = runner.run("-m", "infra", "--collect-only", "-q")
    assert other.ret == 5  # no check of the http kind is an infra check
    ran = runner.run("-m", "health")
    assert ran.record("http.health[api]")["markers"] == ["daily", "health", "post_deploy"]


@pytest.mark.parametrize("name", KINDS)
def test_a_registered_kind_has_its_docs_page(name: str) -> None:
    pages = REPO / "docs" / "kinds"
    if not pages.is_dir():
        pytest.skip("docs/kinds/ is not written yet")
    assert (pages / f"{name}.md").is_file(), f"docs/kinds/{name}.md is missing"


def test_every_probe_module_belongs_to_a_kind() -> None:
    probes = REPO / "src" / "opsproof" / "probes"
    declared = {kind.probe for kind in kinds().values()}
    for path in sorted(probes.glob("*.py")):
        module = importlib.import_module(f"opsproof.probes.{path.stem}") if path.stem != "__init__" else None
        if module is not None and isinstance(getattr(module, "PROBE", None), ProbeKind):
            assert module.__name__ in declared, f"{path.name} declares a PROBE no KIND names"


def test_every_checks_file_belongs_to_a_kind() -> None:
    declared = {kind.checks for kind in kinds().values()}
    for path in sorted((REPO / "checks").glob("*/test_*.py")):
        assert path.relative_to(REPO).as_posix() in declared, f"{path.relative_to(REPO)} is not any kind's checks file"


def test_a_module_of_the_registry_is_a_kind_or_a_named_helper() -> None:
    """A kind's name is its module's: a module that declares none must be named in HELPERS, or kinds() fails."""
    modules = {path.stem for path in (REPO / "src" / "opsproof" / "targets").glob("*.py")} - {"__init__"}
    declaring = {m for m in modules if isinstance(getattr(importlib.import_module(f"opsproof.targets.{m}"), "KIND", None), Kind)}
    assert set(names()) == declaring, "a kind's module is missing from names(), or a helper is not in HELPERS"
    assert modules - declaring == HELPERS
    with pytest.raises(KeyError):
        kind("valued")


def test_a_run_imports_only_its_own_kinds_modules(tmp_path: Path, http_server: HttpServer) -> None:
    """In a fresh interpreter: an http profile loads, validates and is a `Profile` with no other kind imported."""
    path = tmp_path / "p.yaml"
    path.write_text(http_profile(f"{{name: api, url: '{http_server.base}/health'}}"))
    script = f"""
import sys
from pathlib import Path
from opsproof import Profile, load_profile
from opsproof.targets import controls_for
profile = load_profile(Path({str(path)!r})).profile
assert isinstance(profile, Profile), type(profile)
assert type(profile.http[0]).__name__ == "HttpTarget"
assert controls_for("http", "health")
print(sorted(m for m in sys.modules if m.startswith("opsproof.targets.")))
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["['opsproof.targets.http',", "'opsproof.targets.valued']"]


def test_profile_validated_directly_is_typed_by_its_sections() -> None:
    profile = Profile.model_validate({"environment": "x", "http": [{"name": "a", "url": "http://127.0.0.1:1/"}]})
    assert isinstance(profile, Profile) and type(profile.http[0]).__name__ == "HttpTarget"
    with pytest.raises(ValidationError, match=r"http\.0\.url"):
        Profile.model_validate({"environment": "x", "http": [{"name": "a"}]})
    with pytest.raises(ValidationError, match="htp"):
        Profile.model_validate({"environment": "x", "htp": []})


def test_profile_validated_directly_keeps_its_context(tmp_path: Path) -> None:
    """The context (the profile's folder, which relative paths are read from) reaches the typed model."""
    (tmp_path / "ca.pem").write_text("-----BEGIN CERTIFICATE-----\n")
    data = {"environment": "x", "http": [{"name": "a", "url": "https://127.0.0.1:1/", "ca_file": "ca.pem"}]}
    profile = Profile.model_validate(data, context={"profile_dir": str(tmp_path)})
    assert profile.http[0].ca_file == tmp_path / "ca.pem"


def test_every_controls_key_names_a_kind() -> None:
    for key in catalogue():
        assert key.split(".", 1)[0] in kinds(), key


@pytest.mark.parametrize(
    ("keys", "words"),
    [
        ({"cadence": "hourly"}, "cadence 'hourly'"),
        ({"areas": ("web",)}, "area 'web'"),
        ({"checks": "checks/health/test_web.py"}, "is not checks/<area>/test_demo.py"),
        ({"controls": {}}, "no 'demo' entry"),
        ({"controls": {"demo": ("SOC2:CC7.1",), "other.x": ("SOC2:CC7.1",)}}, "'other.x'"),
    ],
)
def test_a_declaration_that_cannot_work_fails_naming_the_kind(keys: dict[str, object], words: str) -> None:
    declared = {
        "name": "demo",
        "target": object,
        "probe": "opsproof.probes.demo",
        "checks": "checks/health/test_demo.py",
        "cadence": "daily",
        "areas": ("health",),
        "controls": {"demo": ("SOC2:CC7.1",)},
    }
    with pytest.raises(ValueError, match="kind 'demo'") as caught:
        Kind(**{**declared, **keys})  # type: ignore[arg-type]
    assert words in str(caught.value)


def _area_markers(path: Path) -> set[str]:
    """The area markers a checks file's `pytestmark` names."""
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "pytestmark" for t in node.targets):
            return {
                n.attr for n in ast.walk(node.value) if isinstance(n, ast.Attribute) and n.attr in AREA_MARKERS
            }
    return set()
