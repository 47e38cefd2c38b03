"""ruff and mypy are part of the test suite, so CI holds the code to them."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _tool(name: str) -> str:
    found = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed: pip install -e '.[test]'")
    return found


def test_ruff_is_clean() -> None:
    done = subprocess.run(
        [_tool("ruff"), "check", "src", "checks", "tests", "benchmarks", "docs/hooks"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_mypy_is_clean() -> None:
    done = subprocess.run([_tool("mypy")], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr


# -- the layout: layers, cycles, sizes ----------------------------------------------------------

SRC = REPO / "src" / "opsproof"
# Lowest first. A module may import from its own layer and the layers below it, never above.
# docs/architecture.md draws the same table; change both together.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("base", ("opsproof.errors", "opsproof.version", "opsproof.outcomes", "opsproof.units", "opsproof.heap",
              "opsproof.redaction")),
    ("model", ("opsproof.model",)),
    ("targets", ("opsproof.targets",)),
    ("profile", ("opsproof.profile",)),
    ("local", ("opsproof.local",)),
    ("testing", ("opsproof.testing",)),
    ("evidence", ("opsproof.evidence",)),
    ("compliance", ("opsproof.compliance",)),
    ("backup", ("opsproof.backup",)),
    ("probes", ("opsproof.probes",)),
    ("judging", ("opsproof.judging",)),
    ("signals", ("opsproof.signals",)),
    ("run", ("opsproof.run",)),
    ("demo", ("opsproof.demo",)),
    ("entry points", ("opsproof.cli", "opsproof.plugin", "opsproof")),
)
MAX_LINES = 700
MAX_ROOT_MODULES = 10


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(path): path for path in SRC.rglob("*.py")}


def import_graph() -> dict[str, set[str]]:
    """Every import between opsproof's modules, late ones and TYPE_CHECKING ones included."""
    import ast

    modules = _modules()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*anchor, *([node.module] if node.module else [])])
                # `from opsproof.x import y` imports the module opsproof.x.y when there is one.
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
            for target in targets:
                while target and target not in modules:  # `import opsproof.x.y` names opsproof.x.y
                    target = target.rpartition(".")[0]
                if target.startswith("opsproof") and target != name:
                    found.add(target)
        graph[name] = found
    return graph


def layer_of(module: str) -> int:
    best, rank = -1, -1
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best:
                best, rank = len(prefix), index
    assert rank >= 0, f"{module} is in no layer: add it to LAYERS (and to docs/architecture.md)"
    return rank


def test_no_import_cycles() -> None:
    graph = import_graph()
    cycles: list[list[str]] = []
    state: dict[str, int] = {}  # 1 on the path, 2 done

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append([*path[path.index(nxt):], nxt])
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for start in sorted(graph):
        if start not in state:
            visit(start, [start])
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_imports_go_down_the_layers() -> None:
    upward = [
        f"{module} ({LAYERS[layer_of(module)][0]}) imports {target} ({LAYERS[layer_of(target)][0]})"
        for module, targets in sorted(import_graph().items())
        for target in sorted(targets)
        if layer_of(target) > layer_of(module)
    ]
    assert not upward, "imports up a layer:\n" + "\n".join(upward)


def test_no_module_is_too_long() -> None:
    long = {name: n for name, path in _modules().items() if (n := len(path.read_text().splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines (split them by job): {long}"


def test_few_modules_at_the_root() -> None:
    root = sorted(path.name for path in SRC.glob("*.py"))
    assert len(root) <= MAX_ROOT_MODULES, f"{len(root)} modules at the root of src/opsproof: {root}"


def test_one_exception_tree() -> None:
    """Every exception class opsproof defines descends from OpsproofError and is drawn in its docstring."""
    import ast
    import importlib

    from opsproof import errors

    missing, outside = [], []
    for name, path in _modules().items():
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.ClassDef):
                continue
            cls = getattr(importlib.import_module(name), node.name, None)
            if isinstance(cls, type) and issubclass(cls, BaseException):
                if not issubclass(cls, errors.OpsproofError):
                    outside.append(f"{name}.{node.name}")
                if not re.search(rf"(^|\s){node.name}(\s|$)", errors.__doc__ or "", re.M):
                    missing.append(f"{name}.{node.name}")
    assert not outside, f"exceptions outside the OpsproofError tree: {outside}"
    assert not missing, f"exceptions not drawn in opsproof.errors' docstring: {missing}"
