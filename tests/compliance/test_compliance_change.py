"""Change context: the change a post-deploy run validated, in its record, from options or CI variables."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from conftest import HttpServer, Runner, http_profile
from opsproof.compliance import ComplianceError
from opsproof.compliance.change import _CI_SYSTEMS, COMMIT_VARIABLES, IMAGE_VARIABLES, change_context

SHA = "3f2a9c1e" + "0" * 32
DIGEST = "sha256:" + "ab" * 32


@pytest.fixture(autouse=True)
def no_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests may themselves run in CI: its variables must not leak into the runs they start."""
    names = {*COMMIT_VARIABLES, *IMAGE_VARIABLES, "OPSPROOF_CHANGE", "OPSPROOF_COMMIT", "OPSPROOF_IMAGE_DIGEST"}
    names |= {system[1] for system in _CI_SYSTEMS}
    for name in names:
        monkeypatch.delenv(name, raising=False)


def test_options_win_over_opsproof_variables_over_ci_variables() -> None:
    environ = {"GITHUB_ACTIONS": "true", "GITHUB_SHA": "b" * 40, "OPSPROOF_COMMIT": "c" * 40}
    assert change_context(environ=environ)["commit"] == "c" * 40
    found = change_context(commit=SHA, ticket="CHG-42", environ=environ)
    assert found["commit"] == SHA
    assert found["sources"] == {"ticket": "--change", "commit": "--commit"}


@pytest.mark.parametrize(
    ("environ", "variable", "provider"),
    [
        ({"GITHUB_ACTIONS": "true", "GITHUB_SHA": SHA}, "GITHUB_SHA", "github-actions"),
        ({"GITLAB_CI": "true", "CI_COMMIT_SHA": SHA}, "CI_COMMIT_SHA", "gitlab-ci"),
        ({"JENKINS_URL": "https://ci/", "GIT_COMMIT": SHA}, "GIT_COMMIT", "jenkins"),
        ({"TF_BUILD": "True", "BUILD_SOURCEVERSION": SHA}, "BUILD_SOURCEVERSION", "azure-pipelines"),
        ({"CIRCLECI": "true", "CIRCLE_SHA1": SHA}, "CIRCLE_SHA1", "circleci"),
    ],
)
def test_ci_variables_give_the_commit_and_the_build(environ: dict[str, str], variable: str, provider: str) -> None:
    found = change_context(environ=environ)
    assert found["commit"] == SHA
    assert found["sources"]["commit"] == variable
    assert found["ci"]["provider"] == provider


def test_github_build_url_is_composed() -> None:
    environ = {
        "GITHUB_ACTIONS": "true",
        "GITHUB_SERVER_URL": "https://github.com",
        "GITHUB_REPOSITORY": "acme/shop",
        "GITHUB_RUN_ID": "991",
        "GITHUB_REF_NAME": "main",
    }
    ci = change_context(environ=environ)["ci"]
    assert ci == {
        "provider": "github-actions",
        "build_url": "https://github.com/acme/shop/actions/runs/991",
        "ref": "main",
        "build_id": "991",
    }


def test_nothing_known_is_all_none() -> None:
    assert change_context(environ={}) == {
        "ticket": None,
        "commit": None,
        "image_digest": None,
        "ci": None,
        "sources": {},
    }


@pytest.mark.parametrize(
    ("kwargs", "environ", "words"),
    [
        ({"commit": "not-a-sha"}, {}, "--commit 'not-a-sha': a commit is 7 to 64 hexadecimal digits"),
        ({}, {"GIT_COMMIT": "zzz"}, "GIT_COMMIT 'zzz'"),
        ({"image_digest": "app:latest"}, {}, "--image-digest 'app:latest': an image digest is sha256:"),
        ({"ticket": "CHG 1; rm -rf"}, {}, "--change 'CHG 1; rm -rf': a change ticket is"),
        ({"ticket": " "}, {}, "--change: empty value"),
    ],
)
def test_malformed_values_are_refused(kwargs: dict[str, str], environ: dict[str, str], words: str) -> None:
    with pytest.raises(ComplianceError) as raised:
        change_context(environ=environ, **kwargs)
    assert words in str(raised.value)


def test_image_digest_with_a_name() -> None:
    found = change_context(image_digest=f"registry.example.com/shop@{DIGEST}", environ={})
    assert found["image_digest"] == f"registry.example.com/shop@{DIGEST}"


def test_a_post_deploy_run_records_its_change_and_change_management_controls(
    runner: Runner, http_server: HttpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GITLAB_CI", "true")
    monkeypatch.setenv("CI_COMMIT_SHA", SHA)
    monkeypatch.setenv("CI_JOB_URL", "https://gitlab.example.com/shop/-/jobs/7")
    runner.profile(http_profile(f"{{name: up, url: '{http_server.base}/health'}}"))
    run = runner.run("-m", "post_deploy", "--change", "CHG-1234", "--image-digest", DIGEST)
    assert run.ret == 0, run.output
    change = run.results["run"]["change"]
    assert change["ticket"] == "CHG-1234"
    assert change["commit"] == SHA
    assert change["image_digest"] == DIGEST
    assert change["sources"] == {"ticket": "--change", "commit": "CI_COMMIT_SHA", "image_digest": "--image-digest"}
    assert change["ci"]["build_url"] == "https://gitlab.example.com/shop/-/jobs/7"
    controls = run.record("http.health[up]")["controls"]
    assert {"SOX-ITGC:CM", "SOC2:CC8.1", "ISO27001:A.8.32"} <= set(controls)
    assert "change CHG-1234, commit 3f2a9c1e0000" in run.output
    html = (run.bundle / "report.html").read_text()
    assert "CHG-1234" in html and "from CI_COMMIT_SHA" in html
    props = {p.get("name"): p.get("value") for p in ET.parse(run.bundle / "junit.xml").getroot().iter("property")}
    assert props["opsproof.change.ticket"] == "CHG-1234"


def test_a_run_without_change_context_is_not_change_evidence(runner: Runner, http_server: HttpServer) -> None:
    runner.profile(http_profile(f"{{name: up, url: '{http_server.base}/health'}}"))
    run = runner.run("-m", "daily")
    assert run.results["run"]["change"]["ticket"] is None
    assert "SOX-ITGC:CM" not in run.record("http.health[up]")["controls"]


def test_a_malformed_commit_is_a_usage_error(runner: Runner, http_server: HttpServer) -> None:
    runner.profile(http_profile(f"{{name: up, url: '{http_server.base}/health'}}"))
    run = runner.run("-m", "daily", "--commit", "HEAD~1")
    assert run.ret == 4
    assert "--commit 'HEAD~1': a commit is 7 to 64 hexadecimal digits" in run.output
    assert not run.report_dir.exists() or not run.bundles
