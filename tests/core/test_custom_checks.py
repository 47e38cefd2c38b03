"""Checks of one's own (issue 15 item 7): the public API, guarded by its page, and the page's
worked example run as written against a real PostgreSQL."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from helpers import postgres_servers
from helpers.postgres_servers import ROLE, SCHEMA_VERSION, PgServer

import opsproof
from conftest import REPO, SECRET, Run, Runner

pg_main = postgres_servers.pg_main
pg_env = postgres_servers.pg_env
__all__ = ["pg_env", "pg_main"]  # fixtures, for pytest

PAGE = REPO / "docs" / "custom-checks.md"


def documented_names() -> list[str]:
    """The names in the first column of the page's table under "## The public API"."""
    section = PAGE.read_text().split("## The public API", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"^\| `([A-Za-z_]+)` \|", section, re.MULTILINE)


def test_public_api() -> None:
    """`from opsproof import ...` gives exactly the names docs/custom-checks.md documents, each once."""
    names = documented_names()
    assert len(names) == len(set(names)), names
    assert sorted(names) == sorted(opsproof.__all__)
    for name in opsproof.__all__:
        assert getattr(opsproof, name) is not None, name


def example(path: str) -> str:
    """The code block the page marks `<!-- example: PATH -->`, exactly as written there."""
    after = PAGE.read_text().split(f"<!-- example: {path} -->\n", 1)[1]
    match = re.match(r"```python\n(.*?)\n```\n", after, re.DOTALL)
    assert match, f"no python block after the example marker for {path}"
    return match.group(1) + "\n"


def revision(folder: Path, name: str, down: str | None) -> None:
    """An Alembic revision file as `alembic revision` writes it (the fields the example reads)."""
    folder.mkdir(parents=True, exist_ok=True)
    down_text = repr(down) if down is not None else "None"
    (folder / f"{name}_step.py").write_text(
        f'"""step {name}"""\nfrom alembic import op\n\nrevision: str = {name!r}\n'
        f"down_revision: str | None = {down_text}\nbranch_labels = None\n\n\ndef upgrade() -> None:\n    pass\n"
    )


def profile(pg: PgServer, **extra: Any) -> str:
    item = {"name": "app-db", "dsn": pg.dsn(ROLE, "app"), "password": "${PG_PASSWORD}"}
    return yaml.safe_dump({"environment": "test", "defaults": {"timeout": "3s"}, "postgres": [item], **extra})


def newest(run: Run) -> dict[str, Any]:
    bundle = max(run.bundles, key=lambda b: json.loads((b / "results.json").read_text())["run"]["started_at"])
    return dict(json.loads((bundle / "results.json").read_text()))


def test_the_worked_example_runs_as_written(
    runner: Runner, pg_main: PgServer, pg_env: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """At the head: passed. One revision ahead in the code: failed, critical, exit 1. Waived: exit 0."""
    (runner.pytester.path / "checks" / "release").mkdir()
    (runner.pytester.path / "checks" / "release" / "test_migrations.py").write_text(
        example("checks/release/test_migrations.py")
    )
    versions = tmp_path / "versions"
    revision(versions, "r0", None)
    revision(versions, SCHEMA_VERSION, "r0")  # the database's alembic_version (helpers.postgres_servers)
    monkeypatch.setenv("ALEMBIC_VERSIONS", str(versions))
    runner.profile(profile(pg_main))

    at_head = runner.run("-m", "post_deploy")
    assert at_head.ret == 0, at_head.output
    (record,) = at_head.results["checks"]
    assert record["check"] == "migrations.migration_head[app-db]"
    assert (record["kind"], record["target"], record["severity"], record["outcome"]) == (
        "migrations",
        "app-db",
        "critical",
        "passed",
    )
    assert record["message"] == f"the database is at the head, {SCHEMA_VERSION}"
    assert record["controls"] == ["SOX-ITGC:CM", "SOC2:CC8.1"]
    assert record["markers"] == ["daily", "post_deploy"]
    assert record["observed"] == {"current": SCHEMA_VERSION, "head": SCHEMA_VERSION, "revisions_behind": 0}
    assert record["expected"] == {"head": SCHEMA_VERSION, "revisions behind the head": {"fail": "1"}}

    revision(versions, "def456", SCHEMA_VERSION)  # the code moved on; the migration has not run
    behind = runner.run("-m", "post_deploy")
    assert behind.ret == 1, behind.output
    (record,) = newest(behind)["checks"]
    assert (record["outcome"], record["severity"]) == ("failed", "critical")
    assert record["message"] == "revisions behind the head 1 is at the fail threshold 1; head def456"
    assert "BLOCKING" in behind.output

    waiver = {
        "check": "migrations.migration_head[app-db]",
        "reason": "Migration def456 runs in tonight's window",
        "ticket": "CHG-2211",
        "approved_by": "platform-lead",
        "expires": "2099-12-31",
    }
    runner.profile(profile(pg_main, waivers=[waiver]))
    waived = runner.run("-m", "post_deploy")
    assert waived.ret == 0, waived.output
    (record,) = newest(waived)["checks"]
    assert record["outcome"] == "waived" and record["waiver"]["ticket"] == "CHG-2211"
    assert record["message"].startswith("revisions behind the head 1")

    # The daily run has it too, beside the postgres kind's own checks of the same item.
    daily = runner.run("-m", "daily")
    checks = {c["check"] for c in newest(daily)["checks"]}
    assert {"migrations.migration_head[app-db]", "postgres.connections[app-db]"} <= checks


CUSTOM = '''
import pytest
from opsproof import Check, Profile, Threshold, format_size, parse_size


@pytest.mark.weekly
@pytest.mark.capacity
@pytest.mark.parametrize("bucket", ["uploads", "exports"])
def test_bucket_size(check: Check, profile: Profile, bucket: str) -> None:
    size = {"uploads": parse_size("3GB"), "exports": parse_size("10MB")}[bucket]
    check.observe(size=size, environment=profile.environment, token="SECRET_VALUE")
    check.threshold("size", size, Threshold(warn=parse_size("1GB"), fail=parse_size("2GB")), show=format_size)


@pytest.mark.weekly
def test_plain(check: Check) -> None:
    check.warn("SECRET_VALUE seen in a warning")
'''


def test_a_check_of_ones_own_without_the_marker(runner: Runner, monkeypatch: pytest.MonkeyPatch) -> None:
    """Default severity high, ids from the file, function and parameter; secrets redacted everywhere."""
    monkeypatch.setenv("TOKEN", SECRET)
    (runner.pytester.path / "checks" / "capacity" / "test_storage.py").write_text(
        CUSTOM.replace("SECRET_VALUE", SECRET)
    )
    runner.profile("environment: stage\nhttp:\n  - {name: x, url: 'http://127.0.0.1:9/', headers: {A: '${TOKEN}'}}\n")
    run = runner.run("-m", "weekly")
    assert run.ret == 1, run.output
    found = {c["check"]: c for c in run.results["checks"]}
    assert sorted(found) == ["storage.bucket_size[exports]", "storage.bucket_size[uploads]", "storage.plain"]
    uploads = found["storage.bucket_size[uploads]"]
    assert (uploads["outcome"], uploads["severity"], uploads["target"]) == ("failed", "high", "uploads")
    assert uploads["message"] == "size 3.0GB is over the fail threshold 2.0GB"
    assert uploads["markers"] == ["capacity", "weekly"] and uploads["controls"] == []
    assert uploads["observed"]["environment"] == "stage"
    assert found["storage.bucket_size[exports]"]["outcome"] == "passed"
    assert found["storage.plain"]["outcome"] == "warned" and found["storage.plain"]["target"] is None
    for path in run.bundle.rglob("*"):
        if path.is_file():
            assert SECRET not in path.read_text(errors="replace"), path
    assert SECRET not in run.output


@pytest.mark.parametrize(
    ("marker", "message"),
    [
        ("severity='P1'", "severity 'P1' is not one of critical, high, medium, low"),
        ("controls=['CC7.1']", "invalid control id 'CC7.1': expected FRAMEWORK:CONTROL"),
        ("controls='SOC2:CC7.1'", "controls must be a list of control ids"),
        ("owner='me'", "unknown keyword 'owner'"),
        ("target='a b'", "target 'a b' must be a name"),
        ("zone='vpc data'", "zone 'vpc data' must be a name"),
        ("'critical'", "takes keywords only"),
    ],
)
def test_a_bad_marker_is_a_usage_error_naming_the_check(runner: Runner, marker: str, message: str) -> None:
    (runner.pytester.path / "checks" / "release" / "test_mine.py").parent.mkdir()
    (runner.pytester.path / "checks" / "release" / "test_mine.py").write_text(
        f"import pytest\n\n@pytest.mark.daily\n@pytest.mark.opsproof({marker})\ndef test_x(check):\n    pass\n"
    )
    runner.profile("environment: test\n")
    run = runner.run("-m", "daily")
    assert run.ret == 4, run.output
    assert "checks/release/test_mine.py::test_x: @pytest.mark.opsproof(...)" in run.output
    assert message in run.output


def test_the_marker_on_a_kinds_check_is_refused(runner: Runner, pg_main: PgServer, pg_env: None) -> None:
    checks = runner.pytester.path / "checks" / "infra" / "test_postgres.py"
    text = checks.read_text().replace("from typing import Any\n", "from typing import Any\n\nimport pytest\n", 1)
    checks.write_text(
        text.replace("def test_blocked_locks(", "@pytest.mark.opsproof(severity='low')\ndef test_blocked_locks(")
    )
    runner.profile(profile(pg_main))
    run = runner.run("-m", "daily")
    assert run.ret == 4, run.output
    assert "is for checks of your own" in run.output


def test_under_shards_a_check_of_ones_own_runs_in_one_shard(runner: Runner) -> None:
    """It has no item to shard by: the shard its check id hashes to runs it, so a sealed run holds it once."""
    (runner.pytester.path / "checks" / "release" / "test_mine.py").parent.mkdir()
    (runner.pytester.path / "checks" / "release" / "test_mine.py").write_text(
        "import pytest\n\n@pytest.mark.daily\n@pytest.mark.parametrize('n', range(6))\n"
        "def test_x(check, n):\n    check.observe(n=n)\n"
    )
    runner.profile("environment: test\n")
    seen: list[str] = []
    for index in (0, 1):
        run = runner.run("-m", "daily", "--shard", f"{index}/2", "--run-id", "r-custom")
        seen += [c["check"] for c in newest(run)["checks"]]
    assert sorted(seen) == [f"mine.x[{n}]" for n in range(6)]


def test_a_check_marked_with_a_zone_runs_in_that_zones_runner(runner: Runner) -> None:
    """`zone=` puts a check of one's own with the runner inside that network zone (and its shards)."""
    (runner.pytester.path / "checks" / "release" / "test_mine.py").parent.mkdir()
    (runner.pytester.path / "checks" / "release" / "test_mine.py").write_text(
        "import pytest\n\n@pytest.mark.daily\n@pytest.mark.opsproof(zone='vpc-data')\n"
        "@pytest.mark.parametrize('n', range(4))\ndef test_inside(check, n):\n    check.observe(n=n)\n\n"
        "@pytest.mark.daily\ndef test_anywhere(check):\n    check.note('ran')\n"
    )
    runner.profile("environment: test\n")

    def ran(*args: str) -> list[str]:
        run = runner.run("-m", "daily", *args)
        assert run.ret == 0, run.output
        return sorted(c["check"] for c in newest(run)["checks"])

    inside = [f"mine.inside[{n}]" for n in range(4)]
    assert ran() == ["mine.anywhere", *inside]  # one whole run: every check
    assert ran("--zone", "vpc-data", "--run-id", "r-whole") == inside
    shared = ran("--zone", "vpc-data", "--shard", "0/2", "--run-id", "r-zone") + ran(
        "--zone", "vpc-data", "--shard", "1/2", "--run-id", "r-zone"
    )
    assert sorted(shared) == inside  # the zone's shards share them, each once
