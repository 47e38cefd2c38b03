"""The controls catalogue, per-profile overrides, and report.html's roll-up by control."""

from __future__ import annotations

import re

import pytest
from helpers.pages import make_check, make_results
from pydantic import TypeAdapter, ValidationError

from conftest import HttpServer, Runner, http_profile
from opsproof.evidence.html import control_sort_key, render_html
from opsproof.model.controls import (
    CHANGE_CONTROLS,
    CONTROLS,
    FRAMEWORKS,
    ControlMap,
    ControlsOverride,
    resolve_framework,
)
from opsproof.profile import ITEM_SECTIONS, Profile
from opsproof.targets import catalogue, controls_for

CATALOGUE = catalogue()

WIRED = "controls" in Profile.model_fields


def test_every_kind_has_controls_and_every_control_a_title() -> None:
    for section in ITEM_SECTIONS:
        assert CATALOGUE.get(section), f"{section} has no controls"
    for key, controls in CATALOGUE.items():
        for control in controls:
            assert control in CONTROLS, f"{key}: {control} has no title"
            assert control.split(":")[0] in FRAMEWORKS


def test_the_new_kinds_map_to_their_frameworks() -> None:
    assert {"SOC2:A1.2", "SOC2:A1.3", "ISO27001:A.8.13"} <= set(controls_for("backups", "max_age"))
    assert {"SOC2:A1.3", "ISO27001:A.8.13", "ISO27001:A.5.30"} <= set(controls_for("drills", "restore"))
    for kind in ("kubernetes", "prometheus", "hosts"):
        assert {"SOC2:CC7.1", "SOC2:CC7.2", "ISO27001:A.8.16"} <= set(controls_for(kind, "anything")), kind
    assert "ISO27001:A.8.6" in controls_for("hosts", "disk")
    assert controls_for("postgres", "wal_archiving") == list(CATALOGUE["postgres.wal_archiving"])
    assert all("SOX-ITGC:OPS" in controls for controls in CATALOGUE.values())


def test_profile_keys_replace_catalogue_keys_most_specific_wins() -> None:
    controls = ControlMap(CATALOGUE, {"postgres": ["INTERNAL:DB-1"], "http.health": ["INTERNAL:WEB-1"]})
    assert controls.controls("postgres", "connections", "postgres.connections[primary]") == ["INTERNAL:DB-1"]
    # The catalogue's more specific entry still wins over the profile's kind entry.
    assert controls.controls("postgres", "wal_archiving", "postgres.wal_archiving[primary]") == list(
        CATALOGUE["postgres.wal_archiving"]
    )
    assert controls.controls("http", "health", "http.health[api]") == ["INTERNAL:WEB-1"]
    assert controls.controls("tls", "expiry", "tls.expiry[api]") == list(CATALOGUE["tls"])


def test_check_id_globs_win_then_item_controls_win_over_all() -> None:
    controls = ControlMap(CATALOGUE, {"http.health[reporting]": ["SOC2:A1.1"], "http": ["INTERNAL:WEB-1"]})
    assert controls.controls("http", "health", "http.health[reporting]") == ["SOC2:A1.1"]
    assert controls.controls("http", "health", "http.health[api]") == ["INTERNAL:WEB-1"]
    own = controls.controls("http", "health", "http.health[reporting]", item_controls=["SOC2:CC7.4"])
    assert own == ["SOC2:CC7.4"]


def test_change_controls_are_added_once() -> None:
    found = ControlMap(CATALOGUE, {"http": ["SOC2:CC8.1"]}).controls("http", "health", "http.health[a]", validates_change=True)
    assert found == ["SOC2:CC8.1", *(c for c in CHANGE_CONTROLS if c != "SOC2:CC8.1")]


def test_unknown_kinds_in_overrides_are_named() -> None:
    controls = ControlMap(CATALOGUE, {"postgress": ["SOC2:CC7.1"], "http.health": ["SOC2:CC7.1"], "x*": ["SOC2:CC7.1"]})
    assert controls.unknown_kinds(["http", "postgres"]) == ["postgress"]


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ({"http": ["CC7.1"]}, "invalid control id 'CC7.1': expected FRAMEWORK:CONTROL"),
        ({"Http Checks": ["SOC2:CC7.1"]}, "invalid controls key 'Http Checks'"),
        ({"http": "SOC2:CC7.1"}, "list"),
    ],
)
def test_override_validation(value: object, words: str) -> None:
    with pytest.raises(ValidationError) as raised:
        TypeAdapter(ControlsOverride).validate_python(value)
    assert words in str(raised.value)


def test_framework_names() -> None:
    assert resolve_framework("soc2") == "SOC2"
    assert resolve_framework("SOX") == "SOX-ITGC"
    assert resolve_framework("iso27001") == "ISO27001"
    assert resolve_framework("internal", known=["INTERNAL:DB-1"]) == "INTERNAL"
    assert resolve_framework("pci") is None


def test_control_ids_sort_naturally_by_framework() -> None:
    ids = ["ISO27001:A.8.13", "SOC2:CC7.2", "ISO27001:A.8.6", "SOX-ITGC:OPS", "SOC2:A1.2", "ACME:X"]
    assert sorted(ids, key=control_sort_key) == [
        "SOX-ITGC:OPS",
        "SOC2:A1.2",
        "SOC2:CC7.2",
        "ISO27001:A.8.6",
        "ISO27001:A.8.13",
        "ACME:X",
    ]


def test_report_html_rolls_results_up_by_control() -> None:
    results = make_results(0)
    results["checks"] = [
        make_check(1, "passed", "high", controls=["SOC2:CC7.1", "SOX-ITGC:OPS"]),
        make_check(2, "failed", "critical", controls=["SOC2:CC7.1"]),
        make_check(3, "passed", "low", controls=["ACME:OPS-7"]),
    ]
    page = render_html(results)
    section = page[page.index("<h2>Controls</h2>") : page.index("<h2>Waivers</h2>")]
    rows = {
        m.group(1): m.group(0) for m in re.finditer(r'<tr><td><span class="control">([^<]+)</span>.*?</tr>', section)
    }
    assert list(rows) == ["SOX-ITGC:OPS", "SOC2:CC7.1", "ACME:OPS-7"]
    assert 'badge o-failed">failed' in rows["SOC2:CC7.1"]
    assert "http.health[svc-0002]" in rows["SOC2:CC7.1"]  # the failing check is named and linked
    assert CONTROLS["SOC2:CC7.1"] in rows["SOC2:CC7.1"]
    assert "(not in the catalogue)" in rows["ACME:OPS-7"]
    assert 'badge o-passed">passed' in rows["SOX-ITGC:OPS"]
    assert "SOC2: SOC 2 Trust Services Criteria" in section and ">ACME</th>" in section


def test_records_carry_the_catalogue_controls(runner: Runner, http_server: HttpServer) -> None:
    runner.profile(http_profile(f"{{name: up, url: '{http_server.base}/health'}}"))
    run = runner.run("-m", "daily")
    assert run.record("http.health[up]")["controls"] == list(CATALOGUE["http"])
    assert '<span class="control">SOC2:CC7.1</span>' in (run.bundle / "report.html").read_text()


@pytest.mark.skipif(not WIRED, reason="Profile.controls is not wired into profile.py yet (the lead's)")
def test_profile_controls_override_records(runner: Runner, http_server: HttpServer) -> None:
    extra = "controls:\n  http: [INTERNAL:WEB-1]\n  'http.health[down]': [SOC2:A1.1]\n"
    runner.profile(
        http_profile(
            f"{{name: up, url: '{http_server.base}/health'}}",
            f"{{name: down, url: '{http_server.base}/status/503', critical: false}}",
            extra=extra,
        )
    )
    run = runner.run("-m", "daily")
    assert run.record("http.health[up]")["controls"] == ["INTERNAL:WEB-1"]
    assert run.record("http.health[down]")["controls"] == ["SOC2:A1.1"]


@pytest.mark.skipif(not WIRED, reason="Profile.controls is not wired into profile.py yet (the lead's)")
def test_profile_controls_with_an_unknown_kind_is_a_usage_error(runner: Runner, http_server: HttpServer) -> None:
    runner.profile(http_profile(f"{{name: up, url: '{http_server.base}/health'}}", extra="controls: {htp: [A:B]}\n"))
    run = runner.run("-m", "daily")
    assert run.ret == 4
    assert "controls: unknown kind 'htp'" in run.output


@pytest.mark.skipif(not WIRED, reason="Profile.controls is not wired into profile.py yet (the lead's)")
def test_profile_controls_with_a_bad_control_id_names_file_and_line(runner: Runner, http_server: HttpServer) -> None:
    runner.profile(http_profile(f"{{name: up, url: '{http_server.base}/health'}}", extra="controls:\n  http: [CC7]\n"))
    run = runner.run("-m", "daily")
    assert run.ret == 4
    assert re.search(r"test.yaml:\d+: controls.http\[0\]: invalid control id 'CC7'", run.output), run.output
