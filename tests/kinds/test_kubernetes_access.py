"""Kubernetes checks and the API: one list per resource type, pages, scope, RBAC refusals, missing
CRDs, bad credentials, timeouts, unreachable servers, the in-cluster service account, and the
emulator (opsproof.testing.kubernetes) answering as an API server does.
"""

import asyncio
import json
import ssl
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from helpers.kubernetes_servers import (
    ASPECTS,
    BACKUPS,
    EVERY_ASPECT,
    OPAQUE_VALUE,
    KubeCluster,
    in_cluster_files,
    kube_bare,
    kube_black_hole,
    kube_closed_port,
    kube_cluster,
    kube_item,
    kube_profile,
    wrong_ca_kubeconfig,
)

import opsproof
from conftest import SECRET, Runner
from opsproof.probes import ProbeContext
from opsproof.probes.kubernetes import PER_NAMESPACE_MAX, gather_kubernetes
from opsproof.probes.kubernetes_client import LISTINGS, OPT_IN_LISTINGS, connect
from opsproof.testing.kube_objects import pod
from opsproof.testing.kubernetes import KubeApiEmulator, serve_kube_api, write_kubeconfig

__all__ = ["kube_bare", "kube_black_hole", "kube_closed_port", "kube_cluster"]  # fixtures, for pytest


# -- scope, selectors, pagination, read-only ---------------------------------------------


def test_lists_once_per_resource_type_read_only(runner: Runner, kube_cluster: KubeCluster) -> None:
    runner.profile(kube_profile(kube_item(kube_cluster, "all", f"{EVERY_ASPECT}, {BACKUPS}")))
    kube_cluster.api.clear_requests()
    run = runner.run("-m", "daily")
    seen = list(kube_cluster.api.requests)
    assert len(run.results["checks"]) == len(ASPECTS) + 4
    assert {r.method for r in seen} == {"GET"}
    # All namespaces: one cluster-wide list per resource type (no namespaces list: nothing to verify;
    # usage, ingresses and network policies are not configured here: tests/test_kubernetes_more_checks.py).
    unasked = {"namespaces", *OPT_IN_LISTINGS}
    assert sorted(r.path for r in seen) == sorted(LISTINGS[key].path(None) for key in LISTINGS if key not in unasked)
    assert all(r.query["limit"] == "500" for r in seen)
    assert {r.path: r.query.get("fieldSelector") for r in seen if "fieldSelector" in r.query} == {
        "/api/v1/secrets": "type=kubernetes.io/tls",
        "/api/v1/events": "type=Warning",
    }
    assert run.record("kubernetes.pods[all]")["observed"]["calls"] == len(seen)
    # The field selector kept every other Secret (and its data) out of the probe.
    for path in run.bundle.rglob("*"):
        if path.is_file():
            assert OPAQUE_VALUE not in path.read_text(errors="replace")


def test_pages_of_a_few_objects_give_the_same_facts(runner: Runner, kube_cluster: KubeCluster) -> None:
    runner.profile(
        kube_profile(
            kube_item(
                kube_cluster,
                "paged",
                "page_size: 2, nodes: false, services: false, pvcs: false, hpa: false, workloads: false",
            )
        )
    )
    kube_cluster.api.clear_requests()
    run = runner.run("-m", "daily")
    pods = [r for r in kube_cluster.api.requests if r.path == "/api/v1/pods"]
    total = run.record("kubernetes.pods[paged]")["observed"]["pods"]
    assert total == 5 + 10 + 2
    assert len(pods) == 9  # 17 pods, 2 a page
    assert [bool(r.query.get("continue")) for r in pods] == [False] + [True] * 8
    assert run.record("kubernetes.pods[paged]")["observed"]["calls"] == 9


def test_namespaces_per_namespace_or_cluster_wide(runner: Runner, kube_cluster: KubeCluster) -> None:
    many = ["shop", "broken", "starting", "default", "kube-system", "nope"]
    assert len(many) > PER_NAMESPACE_MAX
    runner.profile(
        kube_profile(
            kube_item(
                kube_cluster,
                "few",
                "namespaces: [shop, broken], nodes: false, services: false, pvcs: false, hpa: false, workloads: false",
            ),
            kube_item(
                kube_cluster,
                "many",
                f"namespaces: [{', '.join(many)}], nodes: false, services: false, pvcs: false, hpa: false, workloads: false",
            ),
        )
    )
    kube_cluster.api.clear_requests()
    run = runner.run("-m", "daily")
    paths = sorted(r.path for r in kube_cluster.api.requests)
    assert paths.count("/api/v1/namespaces/shop/pods") == 1 and paths.count("/api/v1/namespaces/broken/pods") == 1
    assert paths.count("/api/v1/pods") == 1  # `many`: one cluster-wide list, filtered
    assert paths.count("/api/v1/namespaces") == 2  # each item checks its namespaces exist
    assert run.record("kubernetes.pods[few]")["observed"]["pods"] == 15
    many_pods = run.record("kubernetes.pods[many]")
    # `nope` does not exist: every namespaced check says so rather than pass on nothing.
    assert (many_pods["outcome"], many_pods["message"]) == (
        "failed",
        "namespace(s) nope do not exist (a typo, or deleted?): nothing there to check",
    )


def test_cluster_wide_list_forbidden_falls_back_to_each_namespace(runner: Runner, kube_cluster: KubeCluster) -> None:
    many = ["shop", "broken", "starting", "default", "kube-system", "empty-one"]
    kube_cluster.api.add({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "empty-one"}})
    runner.profile(
        kube_profile(
            kube_item(
                kube_cluster, "rbac", f"namespaces: [{', '.join(many)}], nodes: false, selector: 'app in (api, cart)'"
            )
        )
    )
    kube_cluster.api.clear_requests()
    kube_cluster.api.forbidden.add("pods@cluster")  # each namespace stays allowed
    try:
        run = runner.run("-m", "daily", "-k", "pods")
    finally:
        kube_cluster.api.forbidden.discard("pods@cluster")
    pod_paths = [r.path for r in kube_cluster.api.requests if r.path.endswith("/pods")]
    assert pod_paths[0] == "/api/v1/pods"
    assert sorted(pod_paths[1:]) == sorted(f"/api/v1/namespaces/{ns}/pods" for ns in many)
    assert {r.query.get("labelSelector") for r in kube_cluster.api.requests if r.path.endswith("/pods")} == {
        "app in (api, cart)"
    }
    record = run.record("kubernetes.pods[rbac]")
    assert record["outcome"] == "failed"  # broken/api-6c9f8-crash has label app=api
    assert record["observed"]["pods"] == 3 + 1 + 1 + 2  # shop api x3, cart; broken api; starting api x2
    assert record["message"].startswith("1 of 7 pods not healthy: broken/api-6c9f8-crash: CrashLoopBackOff")


# -- refused, forbidden, absent ----------------------------------------------------------


def test_forbidden_resource_is_an_error_for_its_check_only(runner: Runner, kube_cluster: KubeCluster) -> None:
    runner.profile(kube_profile(kube_item(kube_cluster, "limited", "namespaces: [shop], nodes: {selector: pool=good}")))
    kube_cluster.api.forbidden.add("nodes")
    try:
        run = runner.run("-m", "daily")
    finally:
        kube_cluster.api.forbidden.discard("nodes")
    nodes = run.record("kubernetes.nodes[limited]")
    assert (nodes["outcome"], nodes["message"]) == (
        "error",
        'cannot list nodes/v1: nodes is forbidden: User "system:serviceaccount:ops:opsproof" cannot list resource '
        '"nodes" in API group "" at the cluster scope',
    )
    assert {c["outcome"] for c in run.results["checks"] if c["check"] != "kubernetes.nodes[limited]"} == {"passed"}


def test_missing_crd_is_an_error_saying_so(runner: Runner, kube_bare: KubeCluster) -> None:
    runner.profile(kube_profile(kube_item(kube_bare, "bare", "certificates: {}")))
    run = runner.run("-m", "daily")
    record = run.record("kubernetes.certificates[bare]")
    assert (record["outcome"], record["message"]) == (
        "error",
        "the API server does not serve certificates.cert-manager.io/v1 (is cert-manager installed?)",
    )
    assert run.record("kubernetes.pods[bare]")["message"] == "0 pods (no pods), all healthy"


def test_wrong_token_is_an_error_and_never_shown(
    runner: Runner, kube_bare: KubeCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    wrong = "wrong-" + SECRET
    monkeypatch.setenv("WRONG_TOKEN", wrong)
    literal = write_kubeconfig(
        tmp_path / "literal", kube_bare.served, token="literal-Tok3n/never+shown", context="main"
    )
    runner.profile(
        kube_profile(
            kube_item(kube_bare, "by-profile", "token: '${WRONG_TOKEN}'", kubeconfig=kube_bare.tokenless),
            kube_item(kube_bare, "by-kubeconfig", kubeconfig=literal),
            kube_item(kube_bare, "anonymous", kubeconfig=kube_bare.tokenless),
        )
    )
    run = runner.run("-m", "daily", "-v")
    assert run.ret == 1
    for name in ("by-profile", "by-kubeconfig", "anonymous"):
        for aspect in ASPECTS:
            record = run.record(f"kubernetes.{aspect}[{name}]")
            assert record["outcome"] == "error"
            assert record["message"].startswith("the API server rejected the credentials (HTTP 401 Unauthorized)")
    # This emulator echoes the refused header, as a careless proxy would: scrubbed, by name or as ***.
    assert run.record("kubernetes.pods[by-profile]")["message"] == (
        "the API server rejected the credentials (HTTP 401 Unauthorized): Unauthorized (you sent 'Bearer ${WRONG_TOKEN}')"
    )
    assert run.record("kubernetes.pods[by-kubeconfig]")["message"].endswith("(you sent '***')")
    for text in [run.output, *(p.read_text(errors="replace") for p in run.bundle.rglob("*") if p.is_file())]:
        assert wrong not in text and SECRET not in text
        assert "literal-Tok3n/never+shown" not in text


# -- unreachable -------------------------------------------------------------------------


def test_black_hole_times_out_within_the_item_timeout(
    runner: Runner, kube_black_hole: Path, kube_cluster: KubeCluster
) -> None:
    runner.profile(
        kube_profile(
            f"{{name: hole, kubeconfig: '{kube_black_hole}', timeout: 1s}}",
            kube_item(kube_cluster, "fine", "namespaces: [shop], nodes: {selector: pool=good}"),
        )
    )
    started = time.monotonic()
    run = runner.run("-m", "daily")
    elapsed = time.monotonic() - started
    for aspect in ASPECTS:
        hole = run.record(f"kubernetes.{aspect}[hole]")
        assert hole["outcome"] == "failed"
        assert hole["message"].startswith("timed out after 1.0") and hole["message"].endswith("(timeout 1s)")
        assert hole["observed"]["timed_out"] is True
        assert run.record(f"kubernetes.{aspect}[fine]")["outcome"] == "passed"
        assert 1.0 <= hole["observed"]["elapsed_s"] < 1.5  # the item's own deadline, not a retry more
    # The whole run (pytest, the client's import, the bundle) is slower on a loaded machine: a bound
    # that still catches a retry or a second timeout.
    assert elapsed < 1 + 6, f"a 1s black hole took the run {elapsed:.1f}s"


def test_slow_list_times_out_alone(runner: Runner, kube_cluster: KubeCluster) -> None:
    runner.profile(
        kube_profile(
            kube_item(kube_cluster, "slow", "namespaces: [shop], nodes: {selector: pool=good}, events: {}, timeout: 1s")
        )
    )
    kube_cluster.api.delays["events"] = 3.0
    try:
        run = runner.run("-m", "daily")
    finally:
        del kube_cluster.api.delays["events"]
    events = run.record("kubernetes.events[slow]")
    assert events["outcome"] == "failed"
    assert events["message"].startswith("listing events/v1 timed out after 1.0")
    assert run.record("kubernetes.pods[slow]")["outcome"] == "passed"


def test_refused_unresolvable_and_untrusted(
    runner: Runner, kube_closed_port: tuple[Path, int], kube_cluster: KubeCluster, tmp_path: Path
) -> None:
    closed, port = kube_closed_port
    nowhere = write_kubeconfig(
        tmp_path / "nowhere", type(kube_cluster.served)("https://no-such-host.invalid:6443", None), context="main"
    )
    untrusted = wrong_ca_kubeconfig(kube_cluster, tmp_path / "untrusted")
    runner.profile(
        kube_profile(
            f"{{name: closed, kubeconfig: '{closed}'}}",
            f"{{name: nowhere, kubeconfig: '{nowhere}'}}",
            f"{{name: untrusted, kubeconfig: '{untrusted}'}}",
        )
    )
    run = runner.run("-m", "daily")
    found = run.outcomes()
    assert found["kubernetes.pods[closed]"] == ("failed", f"cannot connect to 127.0.0.1:{port}: connection refused")
    assert found["kubernetes.pods[nowhere]"][0] == "failed"
    assert found["kubernetes.pods[nowhere]"][1].startswith("cannot resolve no-such-host.invalid: ")
    assert found["kubernetes.pods[untrusted]"][0] == "failed"
    assert found["kubernetes.pods[untrusted]"][1].startswith(
        f"TLS certificate verification failed for {kube_cluster.served.url.removeprefix('https://')}: "
    )
    assert run.record("kubernetes.pods[closed]")["observed"]["reached"] is False


# -- in-cluster ------------------------------------------------------------------------------


def test_in_cluster_service_account(kube_cluster: KubeCluster, tmp_path: Path) -> None:
    """The pod's token and CA files and KUBERNETES_SERVICE_* variables, read by the client's in-cluster loader."""
    folder, environ = in_cluster_files(kube_cluster, tmp_path / "serviceaccount")
    path = tmp_path / "profile.yaml"
    path.write_text(kube_profile("{name: here, in_cluster: true, namespaces: [shop]}"))
    target = opsproof.load_profile(path).profile.kubernetes[0]

    async def pods() -> int:
        connection = await connect(target, service_account=folder, environ=environ)
        try:
            response = await connection.client.call_api(
                "/api/v1/namespaces/shop/pods", "GET", auth_settings=["BearerToken"], _preload_content=False
            )
            return len((await response.json())["items"])
        finally:
            await connection.client.close()

    assert asyncio.run(pods()) == 5
    missing = tmp_path / "profile2.yaml"
    missing.write_text(kube_profile("{name: elsewhere, in_cluster: true}"))
    loaded = opsproof.load_profile(missing)
    ctx = ProbeContext(loaded.profile, asyncio.Semaphore(4))

    async def facts() -> Any:
        async for found in gather_kubernetes(loaded.profile.kubernetes, ctx):
            return found
        return None

    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
        outside = asyncio.run(facts())
    assert outside.config_error == "cannot use the in-cluster service account: Service host/port is not set."


def test_in_cluster_outside_a_cluster_is_an_error(runner: Runner, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    runner.profile(kube_profile("{name: pod, in_cluster: true}"))
    record = runner.run("-m", "daily").record("kubernetes.pods[pod]")
    assert (record["outcome"], record["message"]) == (
        "error",
        "cannot use the in-cluster service account: Service host/port is not set.",
    )


def test_emulator_answers_as_an_api_server_does(kube_cluster: KubeCluster) -> None:
    """Where the checks rely on the API server's behaviour, so does the emulator: a wrong request would show."""
    assert kube_cluster.served.ca_pem is not None
    context = ssl.create_default_context(cadata=kube_cluster.served.ca_pem.decode())
    base = kube_cluster.served.url

    def call(path: str, method: str = "GET", token: str | None = SECRET) -> tuple[int, dict[str, Any]]:
        request = urllib.request.Request(base + path, method=method)
        if token is not None:
            request.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(request, context=context, timeout=5) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read())

    assert call("/api/v1/namespaces/shop/pods", "DELETE")[0] == 405
    assert call("/api/v1/pods", token=None)[1]["reason"] == "Unauthorized"
    status, body = call("/api/v1/pods?fieldSelector=spec.containers=x")
    assert (status, body["message"]) == (400, 'field label not supported: spec.containers"')
    assert call("/api/v1/pods?labelSelector=app%20in%20()")[0] == 400
    assert call("/api/v1/pods?continue=garbage")[0] == 400
    assert (
        call("/apis/monitoring.coreos.com/v1/prometheuses")[1]["message"]
        == "the server could not find the requested resource"
    )
    status, body = call("/api/v1/pods?fieldSelector=status.phase!=Running,metadata.namespace=broken&limit=3")
    assert status == 200 and body["kind"] == "PodList"
    assert [p["metadata"]["name"] for p in body["items"]] == ["batch-0-evicted", "batch-1-evicted", "ghost-3c4d5-lost"]
    assert body["metadata"]["remainingItemCount"] == 3
    status, rest = call(
        f"/api/v1/pods?fieldSelector=status.phase!=Running,metadata.namespace=broken&continue={body['metadata']['continue']}"
    )
    assert [p["metadata"]["name"] for p in rest["items"]] == [
        "queue-9f8e7-stuck",
        "search-4d5e6-init",
        "web-58d7c-pull",
    ]
    assert "continue" not in rest["metadata"]
    assert call("/api/v1/namespaces/shop")[1]["metadata"]["name"] == "shop"
    assert call("/api/v1/namespaces/nope")[0] == 404
    assert [r.method for r in kube_cluster.api.requests][-11:].count("DELETE") == 1  # recorded, refused


def test_a_client_would_be_refused_its_writes(kube_cluster: KubeCluster) -> None:
    """A check that wrote would be caught: the emulator records the verb and refuses it."""
    api = KubeApiEmulator(token=SECRET)
    api.add(pod("ns", "p-1"))
    with serve_kube_api(api, tls=False) as served:
        request = urllib.request.Request(served.url + "/api/v1/namespaces/ns/pods/p-1", method="PATCH", data=b"{}")
        request.add_header("Authorization", f"Bearer {SECRET}")
        with pytest.raises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(request, timeout=5)
    assert caught.value.code == 405
    assert [(r.method, r.path) for r in api.requests] == [("PATCH", "/api/v1/namespaces/ns/pods/p-1")]
