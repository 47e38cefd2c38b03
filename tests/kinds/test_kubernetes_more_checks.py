"""The newer Kubernetes checks (usage, ingresses, network policies, HPA specs, any resource) against
the API emulator: metrics-server's API, networking.k8s.io and two custom resources staged in
namespaces `apps` (all as expected) and `bad` (one of each trouble).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers.kubernetes_servers import KubeCluster, _cluster, kube_bare, kube_item, kube_profile

from conftest import SECRET, Run, Runner, module_runner, profile_error
from opsproof.probes.kubernetes_more import quantity
from opsproof.targets.kubernetes_more import plural_of
from opsproof.testing.certs import Authority
from opsproof.testing.kube_objects import endpoint_slice, hpa, namespace, node, pod, service, tls_secret
from opsproof.testing.kube_objects_more import (
    custom_object,
    ingress,
    network_policy,
    node_metrics,
    pod_metrics,
    with_allocatable,
    with_cpu_target,
)
from opsproof.testing.kubernetes import KubeApiEmulator

__all__ = ["kube_bare"]  # a fixture, for pytest

KEDA = "keda.sh/v1alpha1"
ARGO = "argoproj.io/v1alpha1"


def stage(api: KubeApiEmulator, authority: Authority) -> None:
    api.define(KEDA, "ScaledObject", "scaledobjects")
    api.define(ARGO, "Application", "applications")
    for ns in ("apps", "bad"):
        api.add(namespace(ns))
    # apps: as expected.
    api.add(pod("apps", "api-0", labels={"app": "api"}), pod("apps", "api-1", labels={"app": "api"}))
    api.add(
        pod_metrics("apps", "api-0", {"api": ("100m", "200Mi")}),
        pod_metrics("apps", "api-1", {"api": ("150m", "256Mi")}),
    )
    api.add(service("apps", "api"), endpoint_slice("apps", "api", ready=2))
    api.add(tls_secret("apps", "api-tls", days_left=60, authority=authority))
    api.add(ingress("apps", "web", backends=["api"], tls_secret="api-tls"))
    api.add(network_policy("apps", "default-deny"))
    api.add(
        network_policy(
            "apps",
            "allow-web",
            pod_labels={"app": "api"},
            ingress_rules=[{"from": [{"podSelector": {"matchLabels": {"app": "gateway"}}}]}],
        )
    )
    api.add(with_cpu_target(hpa("apps", "api", minimum=3, maximum=20), 70))
    api.add(custom_object(KEDA, "ScaledObject", "apps", "worker-scaler"))
    api.add(custom_object(ARGO, "Application", "apps", "api", ready=None, status={"health": {"status": "Healthy"}}))
    # bad: one of each trouble.
    api.add(pod("bad", "hot-0", labels={"app": "hot"}))
    api.add(pod_metrics("bad", "hot-0", {"hot": ("480m", "430Mi")}))  # 96% CPU, 84% memory of 500m / 512Mi
    api.add(service("bad", "api"), endpoint_slice("bad", "api", ready=0, not_ready=2))
    api.add(ingress("bad", "web", backends=["api", "gone"], tls_secret="missing-tls", address=None))
    api.add(network_policy("bad", "allow-all", ingress_rules=[{}]))
    api.add(hpa("bad", "api", minimum=1, maximum=5))
    api.add(
        custom_object(KEDA, "ScaledObject", "bad", "worker-scaler", ready="False", reason="ScaledObjectCheckFailed")
    )
    api.add(custom_object(ARGO, "Application", "bad", "api", ready=None, status={"health": {"status": "Degraded"}}))
    api.add(with_allocatable(node("node-a")), with_allocatable(node("node-b")))
    api.add(node_metrics("node-a", "500m", "2Gi"), node_metrics("node-b", "1900m", "3Gi"))


@pytest.fixture(scope="module")
def more_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeCluster]:
    api = KubeApiEmulator(token=SECRET)
    stage(api, Authority.create("more issuer"))
    yield from _cluster(api, tmp_path_factory.mktemp("kube-more"))


ASPECTS = (
    "ingresses: true, network_policies: {default_deny: true}, "
    "hpa_specs: [{name: api, match: api, min_replicas: 3, max_replicas: 20, cpu_utilization: 70%}], "
    f"resources: [{{name: scalers, api_version: {KEDA}, kind: ScaledObject, condition: Ready}}, "
    f"{{name: apps, api_version: {ARGO}, kind: Application, fields: {{status.health.status: Healthy}}}}]"
)


@pytest.fixture(scope="module")
def more_run(more_cluster: KubeCluster, tmp_path_factory: pytest.TempPathFactory) -> tuple[Run, list[Any]]:
    runner = module_runner(tmp_path_factory.mktemp("more-run"))
    runner.profile(
        kube_profile(
            kube_item(more_cluster, "good", f"namespaces: [apps], usage: {{nodes: false}}, {ASPECTS}"),
            kube_item(more_cluster, "bad", f"namespaces: [bad], usage: {{nodes: false}}, {ASPECTS}"),
            kube_item(more_cluster, "nodes", "namespaces: [apps], usage: {cpu: {warn: 70%, fail: 90%}}"),
            kube_item(more_cluster, "everywhere", "network_policies: {}"),
        )
    )
    seen = len(more_cluster.api.requests)
    run = runner.run("-m", "daily")
    return run, more_cluster.api.requests[seen:]


def test_a_cluster_as_expected_passes_every_new_check(more_run: tuple[Run, list[Any]]) -> None:
    run, _ = more_run
    for check in (
        "usage",
        "ingresses",
        "network_policies",
        "hpa_spec[good/api]",
        "resource[good/scalers]",
        "resource[good/apps]",
    ):
        name = f"kubernetes.{check}" if "[" in check else f"kubernetes.{check}[good]"
        record = run.record(name)
        assert record["outcome"] == "passed", (name, record["message"])
    usage = run.record("kubernetes.usage[good]")
    assert usage["observed"]["containers"] == 2
    assert usage["observed"]["cpu_worst"][0] == "apps/api-1 api cpu 30.0% of its limits"


def test_usage_over_its_limits_fails_and_warns(more_run: tuple[Run, list[Any]]) -> None:
    record = more_run[0].record("kubernetes.usage[bad]")
    assert record["outcome"] == "failed"
    assert record["message"].startswith("cpu of limits 96.0% is over the fail threshold 95.0%; bad/hot-0 hot cpu 96.0%")
    nodes = more_run[0].record("kubernetes.usage[nodes]")
    assert nodes["outcome"] == "failed"
    assert "node node-b cpu of allocatable 95.0% is over the fail threshold 90.0%" in nodes["message"]


def test_ingress_problems_are_named(more_run: tuple[Run, list[Any]]) -> None:
    state, message = (lambda r: (r["outcome"], r["message"]))(more_run[0].record("kubernetes.ingresses[bad]"))
    assert state == "failed"
    assert message == (
        "bad/web: no address assigned, backend Service api has no ready endpoint, "
        "backend Service gone does not exist, TLS Secret missing-tls does not exist"
    )


def test_a_namespace_without_default_deny_fails(more_run: tuple[Run, list[Any]]) -> None:
    record = more_run[0].record("kubernetes.network_policies[bad]")
    assert record["outcome"] == "failed"
    assert record["message"].startswith("no default-deny ingress NetworkPolicy")
    assert record["observed"]["allow_all"] == ["bad/allow-all"]
    everywhere = more_run[0].record("kubernetes.network_policies[everywhere]")
    assert everywhere["observed"]["namespaces"] == ["apps", "bad"]  # all namespaces, kube-* left out
    assert everywhere["outcome"] == "failed" and everywhere["message"].endswith("in bad")


def test_hpa_spec_and_resources_name_what_differs(more_run: tuple[Run, list[Any]]) -> None:
    run = more_run[0]
    assert run.record("kubernetes.hpa_spec[bad/api]")["message"] == (
        "bad/api: minReplicas 1 (expected at least 3), maxReplicas 5 (expected at least 20), "
        "CPU target none (expected 70.0%)"
    )
    scalers = run.record("kubernetes.resource[bad/scalers]")
    assert (
        scalers["outcome"] == "failed"
        and scalers["message"] == "bad/worker-scaler: Ready False (ScaledObjectCheckFailed)"
    )
    apps = run.record("kubernetes.resource[bad/apps]")
    assert apps["message"] == "bad/api: status.health.status is 'Degraded', expected 'Healthy'"


def test_every_request_is_a_get_and_a_list_per_resource_type(more_run: tuple[Run, list[Any]]) -> None:
    run, requests = more_run
    assert {seen.method for seen in requests} == {"GET"}
    # The pods, HPAs and nodes lists serve the usage, spec and allocatable reductions too.
    good = run.record("kubernetes.usage[good]")["observed"]["calls"]
    listed = {seen.path for seen in requests if "/namespaces/apps/" in seen.path}
    assert "/apis/metrics.k8s.io/v1beta1/namespaces/apps/pods" in listed
    assert "/apis/keda.sh/v1alpha1/namespaces/apps/scaledobjects" in listed
    assert good <= 22, good  # one list per resource type, however many objects


def test_no_metrics_server_is_an_error(runner: Runner, kube_bare: KubeCluster) -> None:
    runner.profile(
        kube_profile(
            kube_item(
                kube_bare,
                "bare",
                "usage: {}, resources: [{name: x, api_version: keda.sh/v1alpha1, kind: ScaledObject, condition: Ready}]",
            )
        )
    )
    run = runner.run("-m", "daily", "-k", "usage or resource")
    usage = run.record("kubernetes.usage[bare]")
    assert usage["outcome"] == "error"
    assert (
        usage["message"] == "the API server does not serve pods.metrics.k8s.io/v1beta1 (is metrics-server installed?)"
    )
    resource = run.record("kubernetes.resource[bare/x]")
    assert resource["outcome"] == "error" and "(is its CRD installed?)" in resource["message"]


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ("usage: {cpu: {warn: 90%, fail: 80%}}", "warn must be at or below fail"),
        ("usage: {of: everything}", "usage.of"),
        ("hpa_specs: [{name: a}]", "give min_replicas, max_replicas or cpu_utilization"),
        ("resources: [{name: a, api_version: keda.sh/v1alpha1, kind: ScaledObject}]", "give `condition:` or `fields:`"),
        (
            "resources: [{name: a, api_version: 'not a version', kind: X, condition: Ready}]",
            "resources[0].api_version: 'not a version' is not an apiVersion",
        ),
        ("resources: [{name: a, api_version: v1, kind: Pod, fields: {a.b: [1]}}]", "give a single value"),
        ("resources: [{name: a, api_version: v1, kind: Pod, condition: Ready, selector: 'a in b'}]", "label selector"),
        ("network_policies: {default_deny: maybe}", "network_policies.default_deny"),
    ],
)
def test_bad_new_keys_are_usage_errors(tmp_path: Path, more_cluster: KubeCluster, extra: str, expected: str) -> None:
    message = profile_error(tmp_path, kube_profile(kube_item(more_cluster, "x", extra)))
    assert message.startswith("bad.yaml:") and expected in message, message


def test_quantities_and_plurals() -> None:
    assert quantity("250m") == 0.25
    assert quantity("512Mi") == 512 * 1024**2
    assert quantity("123456789n") == pytest.approx(0.123456789)
    assert quantity("1Gi") == 1024**3
    assert quantity(2) == 2.0
    assert quantity("lots") is None
    assert [plural_of(k) for k in ("ScaledObject", "Application", "NetworkPolicy", "Ingress", "Gateway")] == [
        "scaledobjects",
        "applications",
        "networkpolicies",
        "ingresses",
        "gateways",
    ]
