"""@applies and @each: which items, and which parts of them, a check runs for."""

from __future__ import annotations

import shutil

from conftest import Runner, http_profile

SCOPED_CHECKS = """
import pytest

from opsproof import Check, Part, applies, each

pytestmark = [pytest.mark.health]


@applies(lambda item: item.name.startswith("a"))
def test_only_a(item, check: Check) -> None:
    assert item.name.startswith("a"), item.name


@each("headers")
def test_header(item, part: Part, check: Check) -> None:
    check.note(f"{part.name}={part.spec}")
    assert part.spec != "bad", f"header {part.name} is bad"


@applies(lambda item: False)
def test_never(item) -> None:
    raise AssertionError("must not be collected")
"""


def test_applies_and_each_shape_the_checks(runner: Runner) -> None:
    shutil.rmtree(runner.pytester.path / "checks")
    (runner.pytester.path / "checks" / "scoped").mkdir(parents=True)
    (runner.pytester.path / "checks" / "scoped" / "test_http.py").write_text(SCOPED_CHECKS)
    runner.profile(
        http_profile(
            "{name: a1, url: 'http://127.0.0.1:9/', headers: {X-One: '1', X-Two: bad}}",
            "{name: b1, url: 'http://127.0.0.1:9/', critical: false}",
        )
    )
    run = runner.run("-m", "daily")
    checks = {c["check"]: c for c in run.results["checks"]}
    assert sorted(checks) == ["http.header[a1/X-One]", "http.header[a1/X-Two]", "http.only_a[a1]"], run.output
    assert checks["http.header[a1/X-One]"]["outcome"] == "passed"
    assert checks["http.header[a1/X-One]"]["message"] == "X-One=1"
    assert checks["http.header[a1/X-One]"]["target"] == "a1"
    assert checks["http.header[a1/X-Two]"]["outcome"] == "failed"
    assert checks["http.header[a1/X-Two]"]["message"] == "header X-Two is bad"
    assert checks["http.header[a1/X-Two]"]["severity"] == "critical"
    assert checks["http.only_a[a1]"]["id"].endswith("test_http.py::test_only_a[a1]")
    assert run.ret == 1


def test_a_check_that_applies_to_nothing_selects_no_checks(runner: Runner) -> None:
    shutil.rmtree(runner.pytester.path / "checks")
    (runner.pytester.path / "checks" / "scoped").mkdir(parents=True)
    (runner.pytester.path / "checks" / "scoped" / "test_http.py").write_text(SCOPED_CHECKS)
    runner.profile(http_profile("{name: b1, url: 'http://127.0.0.1:9/'}"))
    run = runner.run("-m", "daily")
    assert run.ret == 5, run.output
    assert run.results["checks"] == []
