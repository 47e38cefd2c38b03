"""ruff and mypy are part of the test suite, so CI holds the code to them."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _tool(name: str) -> str:
    found = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed: pip install -e '.[test]'")
    return found


def test_ruff_is_clean() -> None:
    done = subprocess.run(
        [_tool("ruff"), "check", "src", "checks", "tests", "benchmarks"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_mypy_is_clean() -> None:
    done = subprocess.run([_tool("mypy")], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr


def test_public_api() -> None:
    import opsproof

    assert sorted(opsproof.__all__) == [
        "Check",
        "CheckError",
        "CheckFailed",
        "Part",
        "Profile",
        "ProfileError",
        "__version__",
        "applies",
        "each",
        "load_profile",
    ]
    for name in opsproof.__all__:
        assert hasattr(opsproof, name), name
