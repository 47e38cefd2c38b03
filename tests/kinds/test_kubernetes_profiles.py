"""Kubernetes profile input: every bad value is a usage error naming the key and line; label selectors."""

from pathlib import Path

import pytest
from helpers.kubernetes_servers import (
    KubeCluster,
    kube_cluster,
    kube_profile,
)

import opsproof
from conftest import Runner, profile_error
from opsproof.targets.kubernetes import LabelSelector

__all__ = ["kube_cluster"]  # fixtures, for pytest


# -- profiles ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            "context: prod",
            "kubernetes[0].context: context 'prod' is not in kubeconfig KUBECONFIG (contexts: main, other)",
        ),
        ("selector: 'app=web=x'", "kubernetes[0].selector: label selector term 'app=web=x' is not `key=value`"),
        (
            "selector: 'app in ()'",
            "kubernetes[0].selector: label selector term 'app in ()': `in` needs at least one value",
        ),
        (
            "selector: 'tier=-web'",
            "kubernetes[0].selector: label selector term 'tier=-web': '-web' is not a label value",
        ),
        ("namespaces: [Shop]", "kubernetes[0].namespaces[0]: string should match pattern"),
        ("namespaces: [shop, shop]", "kubernetes[0].namespaces: a namespace is listed twice"),
        ("namespaces: []", "kubernetes[0].namespaces: list should have at least 1 item"),
        (
            "pods: {restarts: {warn: 10, fail: 3}}",
            "kubernetes[0].pods.restarts: higher is worse here: warn must be at or below fail",
        ),
        (
            "pods: {restarts: {warn: -1}}",
            "kubernetes[0].pods.restarts.warn: input should be greater than or equal to 0",
        ),
        ("pods: {grace: soon}", "kubernetes[0].pods.grace: invalid duration 'soon'"),
        ("workloads: {available: {warn: 50%, fail: 90%}}", "kubernetes[0].workloads.available: lower is worse here"),
        (
            "certificates: {expires: {warn: 7d, fail: 30d}}",
            "kubernetes[0].certificates.expires: warn 7d is less than fail 30d",
        ),
        ("hpa: {at_max: sometimes}", "kubernetes[0].hpa.at_max: input should be 'warn', 'fail' or 'pass'"),
        ("events: {within: 0s}", "kubernetes[0].events.within: input should be greater than 0"),
        (
            "cronjobs: [{name: b, last_success: {}}]",
            "kubernetes[0].cronjobs[0].last_success: an empty threshold {} judges nothing: give warn, fail or both",
        ),
        ("cronjobs: [{name: b}]", "kubernetes[0].cronjobs[0].last_success: required key is missing"),
        (
            "cronjobs: [{name: b, last_success: {fail: 1d}}, {name: b, last_success: {fail: 2d}}]",
            "kubernetes[0].cronjobs: two cronjobs are named 'b': the names are check ids",
        ),
        ("in_cluster: true", "kubernetes[0].kubeconfig: in_cluster uses the pod's service account: give no kubeconfig"),
        ("page_size: 0", "kubernetes[0].page_size: input should be greater than or equal to 1"),
        ("namespace: shop", "kubernetes[0].namespace: unknown key"),
    ],
)
def test_bad_profile_values_are_usage_errors(
    extra: str, message: str, kube_cluster: KubeCluster, tmp_path: Path
) -> None:
    text = profile_error(tmp_path, kube_profile(f"{{name: a, kubeconfig: '{kube_cluster.kubeconfig}', {extra}}}"))
    assert text.startswith("bad.yaml:4: kubernetes[0]")
    assert message.replace("KUBECONFIG", str(kube_cluster.kubeconfig)) in text, text


@pytest.mark.parametrize(
    ("file", "content", "ending"),
    [
        # The whole message: the line and key, then what is wrong.
        (
            "missing.yaml",
            None,
            "bad.yaml:4: kubernetes[0].kubeconfig: kubeconfig file 'FOLDER/missing.yaml' does not exist",
        ),
        (
            "no-current",
            "apiVersion: v1\nclusters: [{name: c, cluster: {server: 'https://x'}}]\n"
            "contexts: [{name: x, context: {cluster: c}}]\n",
            "kubeconfig FOLDER/no-current has no current-context: name one with `context:` (contexts: x)",
        ),
        (
            "dangling",
            "current-context: x\ncontexts: [{name: x, context: {cluster: gone}}]\n",
            "context 'x' names cluster 'gone', which kubeconfig FOLDER/dangling does not define",
        ),
        ("broken", "clusters: [\n", "kubeconfig file 'FOLDER/broken' is not valid YAML"),
    ],
)
def test_kubeconfig_problems_are_usage_errors(tmp_path: Path, file: str, content: str | None, ending: str) -> None:
    if content is not None:
        (tmp_path / file).write_text(content)
    text = profile_error(tmp_path, kube_profile(f"{{name: a, kubeconfig: {file}}}"))
    expected = ending.replace("FOLDER", str(tmp_path))
    assert text == expected if expected.startswith("bad.yaml:") else text.endswith(expected), text


def test_kubeconfig_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kube_cluster: KubeCluster
) -> None:
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "nowhere"))
    error = profile_error(tmp_path, kube_profile("{name: a}"))
    assert "kubeconfig file" in error and "nowhere' does not exist" in error
    # $KUBECONFIG's list form, relative paths to the profile, and kubectl's first-current-context rule.
    (tmp_path / "no-current").write_text(
        "apiVersion: v1\nclusters: [{name: c, cluster: {server: 'https://x'}}]\ncontexts: [{name: x, context: {cluster: c}}]\n"
    )
    monkeypatch.setenv("KUBECONFIG", f"{tmp_path / 'no-current'}:{kube_cluster.kubeconfig}")
    path = tmp_path / "good.yaml"
    path.write_text(kube_profile("{name: a}"))
    assert (
        opsproof.load_profile(path).profile.kubernetes[0].kubeconfig
        == f"{tmp_path / 'no-current'}:{kube_cluster.kubeconfig}"
    )


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            "pods: {restarts: {warn: 10, fail: 3}}",
            "kubernetes[0].pods.restarts: higher is worse here: warn must be at or below fail",
        ),
        (
            "context: prod",
            "kubernetes[0].context: context 'prod' is not in kubeconfig KUBECONFIG (contexts: main, other)",
        ),
        ("kubeconfig: gone.yaml", "kubernetes[0].kubeconfig: kubeconfig file 'PROFILES/gone.yaml' does not exist"),
    ],
)
def test_bad_profile_is_exit_4_naming_the_line(
    runner: Runner, kube_cluster: KubeCluster, extra: str, message: str
) -> None:
    given = (
        f"{{name: typo, kubeconfig: '{kube_cluster.kubeconfig}', {extra}}}"
        if "kubeconfig" not in extra
        else f"{{name: typo, {extra}}}"
    )
    path = runner.profile(kube_profile(given))
    run = runner.run("-m", "daily")
    assert run.ret == 4
    expected = message.replace("KUBECONFIG", str(kube_cluster.kubeconfig)).replace("PROFILES", str(path.parent))
    assert f"profiles/test.yaml:4: {expected}" in run.output, run.output
    assert not run.report_dir.exists() or not run.bundles  # a usage error writes no bundle


# -- units -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("selector", "labels", "matches"),
    [
        ("app=api", {"app": "api"}, True),
        ("app==api", {"app": "web"}, False),
        ("app!=api", {}, True),  # an absent label is "not equal"
        ("app in (api, web),tier", {"app": "web", "tier": "x"}, True),
        ("app notin (api)", {}, True),
        ("!canary", {"canary": "true"}, False),
        ("example.com/team=ops, env in (prod)", {"example.com/team": "ops", "env": "prod"}, True),
        ("app=", {"app": ""}, True),
    ],
)
def test_label_selectors_match_as_the_api_server_does(selector: str, labels: dict[str, str], matches: bool) -> None:
    assert LabelSelector.parse(selector).matches(labels) is matches
