"""What a check costs the run (issue 18): capture left out for own checks, facts released, profiles read from events.

The figures themselves are measured by benchmarks/bench_http.py, not here; these tests
hold the behaviour the savings must not change.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pytest
import yaml

from conftest import REPO, HttpServer, Runner, http_profile
from opsproof.model.yaml_events import Unsupported, read_mapping
from opsproof.model.yaml_limits import MAX_DEPTH
from opsproof.model.yaml_plain import ProfileLoader as _Loader
from opsproof.profile import Substitution, load_profile, read_document
from opsproof.redaction import Redactor
from opsproof.run.gather import Gatherer


def test_a_team_check_keeps_pytest_capture_and_an_own_check_skips_it(runner: Runner, http_server: HttpServer) -> None:
    runner.profile(http_profile(f"{{name: up, url: '{http_server.base}/health'}}"))
    runner.pytester.makepyfile(
        **{
            # A team's own module (no kind of that name): pytest captures its output and logs as usual.
            "checks/health/test_team_smoke.py": (
                "import logging\n"
                "import pytest\n"
                "pytestmark = [pytest.mark.daily]\n"
                "def test_smoke():\n"
                "    print('TEAM-STDOUT')\n"
                "    logging.getLogger('team').warning('TEAM-LOG')\n"
                "    assert False, 'the team smoke test failed'\n"
            ),
            # A kind's own module: run without capture, so what it prints is not a captured section.
            "checks/health/test_http.py": (
                "import pytest\n"
                "pytestmark = [pytest.mark.health]\n"
                "def test_health(item, facts, check):\n"
                "    print('OWN-STDOUT')\n"
                "    assert facts.status == 500, 'the own check failed'\n"
            ),
        }
    )
    run = runner.run("-m", "daily", "-rA")
    assert run.record("http.health[up]")["outcome"] == "failed"
    output = run.output
    assert "TEAM-STDOUT" in output and "OWN-STDOUT" in output
    # Exactly one captured stdout and one captured log section: the team check's.
    assert output.count("Captured stdout call") == 1, output
    assert output.count("Captured log call") == 1, output
    captured = output.split("Captured stdout call", 1)[1]
    assert captured.lstrip("- \n").startswith("TEAM-STDOUT"), output
    assert "TEAM-LOG" in output.split("Captured log call", 1)[1]


def test_live_logging_keeps_the_logging_plugin_for_own_checks(runner: Runner, http_server: HttpServer) -> None:
    runner.profile(http_profile(f"{{name: up, url: '{http_server.base}/health'}}"))
    runner.pytester.makepyfile(
        **{
            "checks/health/test_http.py": (
                "import logging\n"
                "import pytest\n"
                "pytestmark = [pytest.mark.health]\n"
                "def test_health(item, facts, check):\n"
                "    logging.getLogger('own').warning('OWN-LIVE-LOG')\n"
            ),
        }
    )
    run = runner.run("-m", "daily", "-o", "log_cli=true")
    assert run.record("http.health[up]")["outcome"] == "passed"
    run.result.stdout.fnmatch_lines(["*live log call*", "*WARNING*OWN-LIVE-LOG*"])


def _gatherer(tmp_path: Path, base: str) -> Gatherer:
    path = tmp_path / "p.yaml"
    path.write_text(http_profile(f"{{name: a, url: '{base}/health'}}", f"{{name: b, url: '{base}/health'}}"))
    return Gatherer(load_profile(path).profile, in_child=False)


def test_facts_are_released_after_the_last_check_that_uses_them(tmp_path: Path, http_server: HttpServer) -> None:
    gatherer = _gatherer(tmp_path, http_server.base).start({"http": {"a", "b"}}, {("http", "a"): 2, ("http", "b"): 1})
    first = gatherer.facts("http", "a")
    assert first.status == 200
    assert gatherer.facts("http", "a") is first  # the second check of `a` gets the same facts
    assert gatherer.facts("http", "b").status == 200
    with pytest.raises(RuntimeError, match="returned no facts for 'a'"):
        gatherer.facts("http", "a")  # no third check was counted: they are gone


def test_without_counts_facts_are_kept_for_every_caller(tmp_path: Path, http_server: HttpServer) -> None:
    gatherer = _gatherer(tmp_path, http_server.base).start({"http": {"a", "b"}})
    first = gatherer.facts("http", "a")
    assert all(gatherer.facts("http", "a") is first for _ in range(3))
    assert gatherer.facts("http", "b").status == 200


def _profiles() -> list[Path]:
    return sorted((REPO / "profiles").rglob("*.yaml"))


@pytest.mark.parametrize("path", _profiles(), ids=lambda p: str(p.relative_to(REPO / "profiles")))
def test_the_event_reader_gives_what_the_node_walk_gives(path: Path) -> None:
    text = path.read_text()
    env = {**os.environ, **dict.fromkeys(re.findall(r"\$\{(?:vars\.)?([A-Za-z_][A-Za-z0-9_]*)", text), "x-secret-1")}
    walked = read_document(text, path.name).data(Substitution(Redactor(), {}, {}, env))
    loader = _Loader(text)
    try:
        streamed = read_mapping(
            loader,
            lambda value, mark, where: Substitution(Redactor(), {}, {}, env).apply(value, lambda: "here"),
            lambda node, where: loader.construct_object(node, deep=True),
            MAX_DEPTH,
        )
    except Unsupported:
        pytest.skip(f"{path.name} needs the node walk")
    finally:
        loader.dispose()
    assert streamed == walked


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("base: &b {timeout: 2s}\nother: *b\n", "an anchor"),
        ("defaults:\n  <<: {timeout: 2s}\n", "a merge key"),
        ("n: !!str 5\n", "a tag"),
        ("a: 1\na: 2\n", "a duplicate key"),
        ("? [a]\n: 1\n", "a key that is not a scalar"),
        ("a: 1\n---\nb: 2\n", "more than one document"),
        ("- a\n", "not a mapping"),
    ],
)
def test_documents_the_event_reader_leaves_to_the_node_walk(text: str, why: str) -> None:
    loader = _Loader(text)
    try:
        with pytest.raises(Unsupported, match=why):
            read_mapping(loader, lambda value, mark, where: value, lambda node, where: node.value, MAX_DEPTH)
    finally:
        loader.dispose()


def test_a_plain_profile_is_read_from_events_with_types_as_the_node_walk_reads_them() -> None:
    text = "environment: e\nn: 5\nyes_: true\nnull_: ~\nport: '80'\nsexagesimal: 1:30\nwhen: 2026-01-01\nf: 1.5\n"
    # The same texts again, where the reader takes their tags and values from what it read before.
    text += "again: [5, '5', true, 'true', ~, 1.5, 1:30, 5, {5: five, true: yes, n: [5, 1.5]}]\n"
    loader = _Loader(text)
    try:
        data = read_mapping(
            loader, lambda value, mark, where: value, lambda node, where: loader.construct_object(node), MAX_DEPTH
        )
    finally:
        loader.dispose()
    assert data == yaml.load(text, Loader=_Loader)
    assert data["sexagesimal"] == "1:30" and data["when"] == "2026-01-01" and data["n"] == 5


def test_a_timeout_still_applies_to_own_checks(runner: Runner, http_server: HttpServer) -> None:
    runner.profile(http_profile(f"{{name: up, url: '{http_server.base}/health'}}"))
    runner.pytester.makepyfile(
        **{
            "checks/health/test_http.py": (
                "import time\n"
                "import pytest\n"
                "pytestmark = [pytest.mark.health]\n"
                "def test_health(item, facts, check):\n"
                "    time.sleep(5)\n"
            ),
        }
    )
    run = runner.run("-m", "daily", "--timeout=1", subprocess=True)
    record = run.record("http.health[up]")
    assert record["outcome"] == "error" and "Timeout" in record["message"], record


def test_library_modules_are_not_assertion_rewritten_and_checks_still_are(
    runner: Runner, http_server: HttpServer
) -> None:
    from _pytest.assertion.rewrite import AssertionRewritingHook

    import opsproof.judging.query_expect
    import opsproof.run.gather

    for module in (opsproof.run.gather, opsproof.judging.query_expect):
        assert not isinstance(module.__loader__, AssertionRewritingHook), module.__name__
    runner.profile(http_profile(f"{{name: up, url: '{http_server.base}/health'}}"))
    runner.pytester.makepyfile(
        **{
            "checks/health/test_http.py": (
                "import pytest\n"
                "pytestmark = [pytest.mark.health]\n"
                "def test_health(item, facts, check):\n"
                "    assert facts.status == 500\n"
            ),
        }
    )
    record = runner.run("-m", "daily").record("http.health[up]")
    # pytest's explanation of a bare assert, which only a rewritten module gives.
    assert record["outcome"] == "failed" and "200 == 500" in record["message"], record


# A plugin of the test's own, last at the terminal summary: what the run still holds of each record.
_HELD = '''
import json
import pytest
from opsproof.run.state import state_of

@pytest.hookimpl(trylast=True)
def pytest_terminal_summary(terminalreporter, config):
    state = state_of(config)
    on_reports = [dict(r.opsproof) for reports in terminalreporter.stats.values() for r in reports
                  if getattr(r, "opsproof", None)]
    (config.rootpath / "held.json").write_text(json.dumps({
        "records_left": len(state.records),
        "checks": [c.check for c in state.results.checks],
        "on_reports": on_reports,
    }))
'''


def test_a_record_is_held_once_by_the_results_document(runner: Runner, http_server: HttpServer) -> None:
    """Each record leaves `state.records` for the results document, and a report keeps only its status.

    pytest's terminal keeps every report to the end, so a record left on its report could not be let
    go (~20 MiB at 10,000 checks). The terminal's letters, which read that status, stay as they were.
    """
    runner.profile(
        http_profile(
            f"{{name: up, url: '{http_server.base}/health'}}",
            f"{{name: slow, url: '{http_server.base}/health', expect: {{latency: {{warn: 0ms, fail: 30s}}}}}}",
            f"{{name: down, url: '{http_server.base}/status/503', critical: false}}",
        )
    )
    (runner.pytester.path / "checks" / "conftest.py").write_text(_HELD)
    run = runner.run("-m", "daily")
    held = json.loads((runner.pytester.path / "held.json").read_text())
    assert held["records_left"] == 0
    assert sorted(held["checks"]) == ["http.health[down]", "http.health[slow]", "http.health[up]"]
    assert sorted(held["on_reports"], key=lambda s: s["outcome"]) == [
        {"outcome": "failed", "maintenance": False},
        {"outcome": "passed", "maintenance": False},
        {"outcome": "warned", "maintenance": False},
    ]
    assert re.search(r"test_http\.py [.FW]{3}", run.output), run.output
    assert "W" in run.output.split("test_http.py", 1)[1].splitlines()[0]
    assert [c["outcome"] for c in sorted(run.results["checks"], key=lambda c: c["check"])] == [
        "failed",
        "warned",
        "passed",
    ]


def test_records_that_do_not_validate_are_put_back_as_they_were() -> None:
    """The results document takes the records one by one; a bad one leaves `state.records` whole, in order."""
    from types import SimpleNamespace

    from helpers.pages import make_check

    from opsproof.run.results import _take_records

    good = [make_check(i, "passed", "high") for i in range(3)]
    bad = {**make_check(3, "passed", "high"), "outcome": "not an outcome"}
    records = {c["id"]: c for c in [*good[:2], bad, good[2]]}
    state = SimpleNamespace(records=dict(records))
    with pytest.raises(ValueError, match="outcome"):
        _take_records(state)  # type: ignore[arg-type]
    assert state.records == records and list(state.records) == list(records)
    state.records = {c["id"]: c for c in good}
    taken = _take_records(state)  # type: ignore[arg-type]
    assert [m.id for m in taken] == [c["id"] for c in good] and state.records == {}


@pytest.mark.filterwarnings("ignore:OWN-WARNING")  # in this process, the own check's warning reaches this test
def test_own_checks_run_without_the_warnings_wrapper_unless_a_filter_is_configured(
    runner: Runner, http_server: HttpServer
) -> None:
    """A team's check keeps pytest's warnings capture; an own check's is left out, and kept when `-W` asks."""
    runner.profile(http_profile(f"{{name: up, url: '{http_server.base}/health'}}"))
    runner.pytester.makepyfile(
        **{
            "checks/health/test_team_smoke.py": (
                "import warnings\n"
                "import pytest\n"
                "pytestmark = [pytest.mark.daily]\n"
                "def test_smoke():\n"
                "    warnings.warn(UserWarning('TEAM-WARNING'))\n"
            ),
            "checks/health/test_http.py": (
                "import warnings\n"
                "import pytest\n"
                "pytestmark = [pytest.mark.health]\n"
                "def test_health(item, facts, check):\n"
                "    warnings.warn(UserWarning('OWN-WARNING'))\n"
                "    assert facts.status == 200\n"
            ),
        }
    )
    run = runner.run("-m", "daily")
    assert run.record("http.health[up]")["outcome"] == "passed"
    summary = run.output.split("warnings summary", 1)[1]
    assert "TEAM-WARNING" in summary and "OWN-WARNING" not in summary, run.output
    # A filter configured for the tests applies to own checks too: the wrapper stays.
    shutil.rmtree(runner.report_dir)
    strict = runner.run("-m", "daily", "-W", "error::UserWarning")
    assert strict.record("http.health[up]")["outcome"] == "error", strict.record("http.health[up]")
    assert "OWN-WARNING" in strict.record("http.health[up]")["message"]


def test_records_given_the_same_fields_share_one_fields_set_that_refuses_a_new_field() -> None:
    """The document's records share pydantic's fields-set; dumps are unchanged, and marking a new field raises."""
    from types import SimpleNamespace

    from helpers.pages import make_check

    from opsproof.run.results import _take_records

    checks = [make_check(i, "passed", "high") for i in range(3)]
    checks.append({**make_check(3, "failed", "high"), "measures": {"x": 1.0}})
    taken = _take_records(SimpleNamespace(records={c["id"]: dict(c) for c in checks}))  # type: ignore[arg-type]
    assert [m.model_dump(exclude_unset=True) for m in taken] == checks
    assert taken[0].model_fields_set is taken[1].model_fields_set is taken[2].model_fields_set
    assert taken[3].model_fields_set is not taken[0].model_fields_set
    taken[0].message = "a field already given: allowed"
    with pytest.raises(TypeError, match="read-only"):
        taken[0].waiver = None
    assert "waiver" not in taken[1].model_dump(exclude_unset=True)
    copy = taken[0].model_copy(update={"outcome": "failed"})
    assert copy.outcome == "failed" and taken[1].outcome == "passed"


_LOOP_SEEN = '''
from pathlib import Path

def pytest_runtestloop(session):
    Path(session.config.rootpath, "{name}.ran").write_text("yes")
'''


def test_other_plugins_test_loop_hooks_still_run_with_the_quiet_loop(runner: Runner, http_server: HttpServer) -> None:
    """opsproof runs pytest's loop itself (own checks' protocol without the warnings wrapper), after the
    conftests' and later plugins' `pytest_runtestloop`; a plugin registered before it (`-p`) would be
    skipped, so then pytest's own loop runs. Either way every such hook runs and the checks are recorded."""
    runner.profile(http_profile(f"{{name: up, url: '{http_server.base}/health'}}"))
    (runner.pytester.path / "checks" / "conftest.py").write_text(_LOOP_SEEN.format(name="conftest"))
    (runner.pytester.path / "early_plugin.py").write_text(_LOOP_SEEN.format(name="early"))
    runner.pytester.syspathinsert()
    for args, ran in ((), {"conftest"}), (("-p", "early_plugin"), {"conftest", "early"}):
        for name in ("conftest", "early"):
            (runner.pytester.path / f"{name}.ran").unlink(missing_ok=True)
        shutil.rmtree(runner.report_dir, ignore_errors=True)
        run = runner.run("-m", "daily", *args)
        assert run.record("http.health[up]")["outcome"] == "passed"
        assert {name for name in ("conftest", "early") if (runner.pytester.path / f"{name}.ran").exists()} == ran


def test_facts_wait_as_json_until_a_check_asks(tmp_path: Path, http_server: HttpServer) -> None:
    """A probe process's facts stay parsed JSON until asked (thousands may wait for their checks), then one model."""
    import time

    from opsproof.probes import Facts

    path = tmp_path / "p.yaml"
    path.write_text(http_profile(f"{{name: a, url: '{http_server.base}/health'}}"))
    gatherer = Gatherer(load_profile(path).profile)  # in a probe process, as a run probes
    try:
        gatherer.start({"http": {"a"}}, {("http", "a"): 2})
        deadline = time.monotonic() + 30
        while ("http", "a") not in gatherer._facts and time.monotonic() < deadline:
            time.sleep(0.01)
        assert isinstance(gatherer._facts[("http", "a")], dict)
        first = gatherer.facts("http", "a")
        assert isinstance(first, Facts) and first.status == 200
        assert gatherer.facts("http", "a") is first
    finally:
        gatherer.stop()


def test_a_kind_check_shares_its_functions_location_and_it_is_pytests_own(
    runner: Runner, http_server: HttpServer
) -> None:
    """Every check's location (file, line, name: junit.xml, -v and the reports use it) is what pytest makes."""
    names = ("a", "b", "c")
    runner.profile(http_profile(*(f"{{name: {n}, url: '{http_server.base}/health'}}" for n in names)))
    runner.pytester.makeconftest(
        "import json\n"
        "import pytest\n"
        "from _pytest.nodes import Item\n"
        "@pytest.hookimpl(trylast=True)\n"
        "def pytest_collection_modifyitems(items):\n"
        "    rows = [[i.nodeid, i.__dict__.get('location'), Item.location.func(i)] for i in items]\n"
        "    with open('locations.json', 'w') as out:\n"
        "        json.dump(rows, out)\n"
    )
    run = runner.run("-m", "daily")
    assert run.record("http.health[a]")["outcome"] == "passed"
    rows = json.loads((runner.pytester.path / "locations.json").read_text())
    http = [row for row in rows if "test_http.py::test_health[" in row[0]]
    assert [row[0].rsplit("[", 1)[1] for row in http] == ["a]", "b]", "c]"]
    # The first is pytest's own (worked out when asked); the others are given, and equal what pytest makes.
    assert http[0][1] is None or http[0][1] == http[0][2]
    for nodeid, shared, own in http[1:]:
        assert shared is not None, nodeid
        assert shared == own, nodeid
    assert http[1][2][2] == "test_health[b]"


TEAM_CHECK = (
    "import pytest\n"
    "pytestmark = [pytest.mark.daily]\n"
    "def test_team_smoke():\n"
    "    assert 1 + 1 == 3, 'the team smoke test failed'\n"
)


def test_a_failed_kind_check_shows_pytest_its_finding_and_a_team_check_its_traceback(
    runner: Runner, closed_port: str
) -> None:
    """pytest's short traceback of a kind's failed check parsed each frame's module again (~3.5 ms a
    check: 1,000 endpoints down took 4.5 s where the same run passing took 0.9 s). A kind's check
    now shows the finding alone; a team's own check keeps its traceback, as does `--tb=long`."""
    runner.profile(http_profile(f"{{name: down, url: '{closed_port}/health'}}"))
    runner.pytester.makepyfile(**{"checks/health/test_team_smoke.py": TEAM_CHECK})
    run = runner.run("-m", "daily", subprocess=True)
    assert run.ret == 1, run.output
    assert run.record("http.health[down]")["outcome"] == "failed"
    kind_block = run.output.split("_ test_health[down] _", 1)[1].split("\n_", 1)[0]
    assert "connection refused" in kind_block
    assert "test_http.py:" not in kind_block, kind_block  # no frame of the check's code
    team_block = run.output.split("_ test_team_smoke _", 1)[1]
    assert "test_team_smoke.py:4" in team_block, team_block
    long = runner.run("-m", "daily", "--tb=long", subprocess=True)
    long_block = long.output.split("_ test_health[down] _", 1)[1].split("\n_", 1)[0]
    assert "test_http.py:" in long_block, long_block
