"""Kubernetes checks against an API emulator on loopback: every outcome comes from staged objects.

The emulator (opsproof.testing.kubernetes) is a real HTTPS server answering the Kubernetes REST
list endpoints; the probe talks to it through the official client and kubeconfig files
written here. See tests/kubernetes_servers.py for the staged cluster.
"""

from __future__ import annotations

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
    OPAQUE_VALUE,
    UNSCHEDULABLE,
    KubeCluster,
    in_cluster_files,
    kube_bare,
    kube_black_hole,
    kube_closed_port,
    kube_cluster,
    kube_profile,
    starting_objects,
    wrong_ca_kubeconfig,
)

import opsproof
from conftest import SECRET, Run, Runner, profile_error
from opsproof.demo.kubernetes import DEMO_NAMESPACE, serve_demo_kubernetes
from opsproof.probes import ProbeContext
from opsproof.probes.kubernetes import PER_NAMESPACE_MAX, gather_kubernetes
from opsproof.probes.kubernetes_client import LISTINGS, OPT_IN_LISTINGS, connect
from opsproof.targets.kubernetes import LabelSelector
from opsproof.testing.kube_objects import pod
from opsproof.testing.kubernetes import KubeApiEmulator, serve_kube_api, write_kubeconfig

__all__ = ["kube_bare", "kube_black_hole", "kube_closed_port", "kube_cluster"]  # fixtures, for pytest

EVERY_ASPECT = "certificates: {}, tls_secrets: {}, events: {}"
ASPECTS = ("pods", "restarts", "workloads", "hpa", "nodes", "services", "pvcs")  # every item gets these
BACKUPS = "cronjobs: [{name: backups, match: '*-backup', last_success: {warn: 25h, fail: 26h}}]"


@pytest.fixture
def token_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("K8S_TOKEN", SECRET)


def outcomes(run: Run) -> dict[str, tuple[str, str]]:
    return {c["check"]: (c["outcome"], c["message"]) for c in run.results["checks"]}


def item(cluster: KubeCluster, name: str, extra: str = "", kubeconfig: Path | None = None) -> str:
    return f"{{name: {name}, kubeconfig: '{kubeconfig or cluster.kubeconfig}', context: main{', ' + extra if extra else ''}}}"


# -- a healthy namespace -----------------------------------------------------------------


def test_healthy_namespace_passes_every_check(runner: Runner, kube_cluster: KubeCluster, token_env: None) -> None:
    # The token comes from the profile, as ${K8S_TOKEN}; the kubeconfig has the cluster and its CA only.
    aspects = f"namespaces: [shop], nodes: {{selector: pool=good}}, {EVERY_ASPECT}, {BACKUPS}"
    runner.profile(
        kube_profile(item(kube_cluster, "prod", f"token: '${{K8S_TOKEN}}', {aspects}", kube_cluster.tokenless))
    )
    run = runner.run("-m", "daily", "-v")
    assert run.ret == 0, run.output
    for text in [run.output, *(p.read_text(errors="replace") for p in run.bundle.rglob("*") if p.is_file())]:
        assert SECRET not in text
    found = outcomes(run)
    assert sorted(found) == sorted(
        [f"kubernetes.{aspect}[prod]" for aspect in (*ASPECTS, "certificates", "tls_secrets", "events")]
        + ["kubernetes.cronjob[prod/backups]"]
    )
    assert {outcome for outcome, _ in found.values()} == {"passed"}, found
    assert found["kubernetes.pods[prod]"][1] == "5 pods (4 Running, 1 Succeeded), all healthy"
    assert found["kubernetes.restarts[prod]"][1] == (
        "1 container(s) restarted within 1d; most: shop/cart-5f6c7-0 container cart (1 restarts, last 2h ago: Error)"
    )
    assert found["kubernetes.workloads[prod]"][1] == (
        "5 workloads (3 Deployments, 1 StatefulSet, 1 DaemonSet), all at their desired replicas"
    )
    assert found["kubernetes.hpa[prod]"][1] == "2 HPAs able to scale, none at maximum"  # scaled to zero is no fault
    assert found["kubernetes.nodes[prod]"][1] == "2 nodes matching pool=good Ready, no pressure"
    # The `cart` endpoints carry no `ready` condition: the API says to read that as ready.
    assert (
        found["kubernetes.services[prod]"][1]
        == "2 Services, each with a ready endpoint (1 without a selector not judged)"
    )
    assert found["kubernetes.pvcs[prod]"][1] == "1 PersistentVolumeClaims Bound"
    assert found["kubernetes.cronjob[prod/backups]"][1].startswith("shop/redis-backup last succeeded 5h ago (schedule")
    assert found["kubernetes.certificates[prod]"][1].startswith(
        "1 Certificates Ready; soonest: shop/api-tls expires in 59d 23h"
    )
    assert found["kubernetes.tls_secrets[prod]"][1].startswith(
        "1 TLS Secrets; soonest: shop/api-tls (api-tls.example.com)"
    )
    assert found["kubernetes.events[prod]"][1] == "no Warning events in the last 1d"  # the one BackOff is 3 days old
    pods = run.record("kubernetes.pods[prod]")
    assert pods["markers"] == ["daily", "infra"]
    assert pods["severity"] == "critical"
    assert pods["observed"]["server"] == kube_cluster.served.url
    assert (
        pods["observed"].items() >= {"context": "main", "scope": "namespaces shop", "reached": True, "pods": 5}.items()
    )
    assert pods["expected"] == {"phase": "Running or Succeeded, every container ready", "grace": "5m", "window": "1d"}
    assert run.record("kubernetes.restarts[prod]")["expected"]["restarts"] == {"warn": "3", "fail": "10"}
    assert run.record("kubernetes.workloads[prod]")["expected"] == {"available": {"warn": "100.0%", "fail": "50.0%"}}
    assert run.record("kubernetes.certificates[prod]")["expected"] == {
        "ready": True,
        "expires": {"warn": "30d", "fail": "7d"},
    }


# -- every failing state -----------------------------------------------------------------


def test_broken_namespace_fails_each_aspect_naming_the_objects(runner: Runner, kube_cluster: KubeCluster) -> None:
    scans = "{name: scans, match: security-scan, last_success: {warn: 25h, fail: 26h}}"
    reports = "{name: reports, match: 'broken/compliance-*', last_success: {fail: 26h}}"
    runner.profile(
        kube_profile(
            item(
                kube_cluster,
                "bad",
                f"namespaces: [broken], nodes: {{selector: pool=bad}}, {EVERY_ASPECT}, cronjobs: [{scans}, {reports}]",
            )
        )
    )
    run = runner.run("-m", "daily")
    assert run.ret == 1
    found = outcomes(run)
    assert found["kubernetes.pods[bad]"] == (
        "failed",
        "7 of 10 pods not healthy: broken/api-6c9f8-crash: CrashLoopBackOff (container api, 14 restarts); "
        "broken/batch-1-evicted: Failed (Evicted): The node was low on resource: memory. (Evicted); "
        "broken/db-0: container db not ready (running); and 4 more",
    )
    pods = run.record("kubernetes.pods[bad]")["observed"]
    assert pods["by_phase"] == {"Failed": 2, "Pending": 3, "Running": 4, "Unknown": 1}
    # Evicted three days ago: its replacement runs; history, not a finding.
    assert pods["failed_earlier"] == ["broken/batch-0-evicted: Failed (Evicted) 3d ago"]
    assert pods["problems"][3:] == [
        "broken/ghost-3c4d5-lost: phase Unknown: its node stopped reporting",
        f"broken/queue-9f8e7-stuck: Pending for 2h: {UNSCHEDULABLE}",
        "broken/search-4d5e6-init: CrashLoopBackOff (init container migrate, 4 restarts)",
        "broken/web-58d7c-pull: ImagePullBackOff (container web)",
    ]
    outcome, message = found["kubernetes.restarts[bad]"]
    assert outcome == "failed"
    assert message.startswith(
        "1 container(s) OOMKilled within 1d: broken/worker-77b5d-oom container worker OOMKilled 1h ago; "
        "restarts 14 is over the fail threshold 10; broken/api-6c9f8-crash container api (14 restarts, last 2m"
    )
    restarts = run.record("kubernetes.restarts[bad]")["observed"]
    # legacy restarted 50 times, the last 3 days ago: stable since, outside the 24h window.
    assert restarts["restarted_earlier"] == 1 and restarts["max_restarts"] == 14
    assert found["kubernetes.workloads[bad]"] == (
        "failed",
        'broken/search (Deployment): rollout stalled: ReplicaSet "search-7d4b9" has timed out progressing.; '
        "available 0.0% is under the fail threshold 50.0%; broken/db (StatefulSet): 0/1 available; "
        "broken/api (Deployment): 1/3 available; broken/web (Deployment): 2/3 available; and 1 more",
    )
    assert (
        run.record("kubernetes.workloads[bad]")["observed"]["unavailable"][3]
        == "broken/log-agent (DaemonSet): 2/3 available"
    )
    outcome, message = found["kubernetes.hpa[bad]"]
    assert outcome == "failed"
    assert message.startswith("2 HPA(s) cannot scale: broken/batch: AbleToScale False (FailedGetScale): ")
    assert "broken/web: ScalingActive False (FailedGetResourceMetric): the HPA was unable to compute" in message
    assert run.record("kubernetes.hpa[bad]")["observed"]["at_maximum"] == ["broken/api: 10 replicas, at its maximum 10"]
    assert found["kubernetes.nodes[bad]"] == (
        "failed",
        "3 node problem(s) of 4 nodes: node-c: Ready False (container runtime network not ready); "
        "node-d: Ready Unknown (Kubelet stopped posting node status.); node-e: DiskPressure",
    )
    assert run.record("kubernetes.nodes[bad]")["observed"]["cordoned_nodes"] == ["node-f: cordoned (unschedulable)"]
    assert found["kubernetes.services[bad]"] == (
        "failed",
        "2 of 2 Services have no ready endpoint: broken/api: no ready endpoint (2 not ready; selector app=api); "
        "broken/web: no ready endpoint (none at all; selector app=web)",
    )
    assert found["kubernetes.pvcs[bad]"] == (
        "failed",
        "2 of 2 PersistentVolumeClaims not Bound: broken/data-lost: Lost (its PersistentVolume is gone), "
        "storage class gp3; broken/data-pending: Pending for 2h, storage class gp3",
    )
    assert found["kubernetes.cronjob[bad/scans]"] == (
        "failed",
        "last_success_age 1d 6h is over the fail threshold 1d 2h; "
        "broken/security-scan last succeeded 1d 6h ago (schedule 0 2 * * *)",
    )
    assert found["kubernetes.cronjob[bad/reports]"] == (
        "failed",
        "last_success_age 2d is over the fail threshold 1d 2h; broken/compliance-report never succeeded "
        "since it was created 2d ago, last scheduled 1h ago (schedule 0 2 * * *)",
    )
    outcome, message = found["kubernetes.certificates[bad]"]
    assert outcome == "failed"
    assert message.startswith(
        "1 of 3 Certificates not Ready: broken/failed-tls not Ready (Failed): ACME challenge failed: 403; "
        "1 certificate(s) under the fail threshold 7d: broken/old-tls expires in 2d 23h ("
    )
    certificates = run.record("kubernetes.certificates[bad]")
    assert certificates["observed"]["expiring"][1].startswith("broken/web-tls expires in 11d 23h")
    outcome, message = found["kubernetes.tls_secrets[bad]"]
    assert outcome == "failed"
    assert message.startswith(
        "1 TLS Secret(s) without a readable certificate: broken/garbage-tls: tls.crt is not a PEM certificate; "
        "1 TLS Secret(s) under the fail threshold 7d: broken/expired-tls (expired-tls.example.com) expired 2d ago ("
    )
    outcome, message = found["kubernetes.events[bad]"]
    assert outcome == "warned"
    assert message.startswith(
        "warning_events 3 is over the warn threshold 0; Pod broken/queue-9f8e7-stuck FailedScheduling x1 (last 5m"
    )
    events = run.record("kubernetes.events[bad]")["observed"]
    assert events["warning_events"] == 3  # the 2-day-old BackOff is outside the window, the Normal one not a warning
    assert events["recent"][1].startswith("Pod broken/api-6c9f8-crash BackOff x14 (last 10m")


def test_warnings_and_choices(runner: Runner, kube_cluster: KubeCluster) -> None:
    """What warns by default (an HPA at max, a cordoned node, a certificate within 30 days) and the settings that change it."""
    runner.profile(
        kube_profile(
            item(
                kube_cluster,
                "lenient",
                "namespaces: [broken], nodes: {selector: 'kubernetes.io/hostname in (node-f)'}, "
                "pods: {restarts: {warn: 20}, oom_killed: warn}, workloads: {available: {warn: 100%}}, "
                "certificates: {expires: {warn: 30d, fail: 1d}}, events: {ignore_reasons: [FailedScheduling, Unhealthy, BackOff]}",
            ),
            item(
                kube_cluster,
                "strict",
                "namespaces: [broken], nodes: {selector: 'kubernetes.io/hostname=node-f', cordoned: fail}, hpa: {at_max: fail}, "
                "pods: {window: null, oom_killed: pass}, certificates: {expires: {fail: 90%}}",
            ),
        )
    )
    found = outcomes(runner.run("-m", "daily"))
    assert found["kubernetes.nodes[lenient]"] == ("warned", "1 node(s) cordoned: node-f: cordoned (unschedulable)")
    assert found["kubernetes.nodes[strict]"] == ("failed", "1 node(s) cordoned: node-f: cordoned (unschedulable)")
    assert found["kubernetes.restarts[lenient]"][0] == "warned"
    assert found["kubernetes.restarts[lenient]"][1].startswith(
        "1 container(s) OOMKilled within 1d: broken/worker-77b5d-oom"
    )
    # No window: legacy's 50 restarts of 3 days ago count too.
    assert found["kubernetes.restarts[strict]"][1].startswith(
        "restarts 50 is over the fail threshold 10; broken/legacy-1a2b3-old container legacy (50 restarts, last 3d ago: Error)"
    )
    # No fail limit on the available share: the stalled rollout alone fails.
    assert found["kubernetes.workloads[lenient]"] == (
        "failed",
        'broken/search (Deployment): rollout stalled: ReplicaSet "search-7d4b9" has timed out progressing.',
    )
    assert found["kubernetes.hpa[strict]"][1].endswith(
        "; 1 HPA(s) at maxReplicas (no headroom left): broken/api: 10 replicas, at its maximum 10"
    )
    lenient_certs = found["kubernetes.certificates[lenient]"]
    assert lenient_certs[0] == "failed" and "under the fail threshold" not in lenient_certs[1]  # only failed-tls fails
    strict_certs = found["kubernetes.certificates[strict]"]
    assert "3 certificate(s) under the fail threshold 90.0%: " in strict_certs[1]  # a share of the 90-day lifetime
    assert found["kubernetes.events[lenient]"] == ("passed", "no Warning events in the last 1d")
    assert "events" not in " ".join(c for c in found if "strict" in c)  # not configured: not collected


def test_starting_pods_and_claims_within_the_grace_period_pass(runner: Runner, kube_cluster: KubeCluster) -> None:
    kube_cluster.api.extend(starting_objects())  # made now: their ages start now, whenever this test runs
    runner.profile(
        kube_profile(
            item(kube_cluster, "fresh", "namespaces: [starting], nodes: false"),
            item(kube_cluster, "impatient", "namespaces: [starting], nodes: false, pods: {grace: 10s}"),
        )
    )
    run = runner.run("-m", "daily")
    found = outcomes(run)
    assert found["kubernetes.pods[fresh]"] == (
        "passed",
        "2 pods (1 Pending, 1 Running), all healthy; 2 starting (within 5m)",
    )
    starting = run.record("kubernetes.pods[fresh]")["observed"]["starting_pods"]
    assert starting[0].startswith("starting/api-new-pending: Pending 1m")
    assert starting[1].startswith("starting/api-new-warming: container api started 3")
    assert found["kubernetes.pvcs[fresh]"] == ("passed", "1 PersistentVolumeClaims Bound; 1 binding (within 5m)")
    impatient = found["kubernetes.pods[impatient]"][1]
    assert impatient.startswith("2 of 2 pods not healthy: starting/api-new-pending: Pending for 1m")
    assert impatient.endswith(": containers not started; starting/api-new-warming: container api not ready (running)")
    assert found["kubernetes.pvcs[impatient]"][0] == "failed"
    assert "kubernetes.nodes[fresh]" not in found  # nodes: false


# -- CronJobs ----------------------------------------------------------------------------


def test_cronjobs_by_name_glob_and_labels(runner: Runner, kube_cluster: KubeCluster) -> None:
    cronjobs = (
        "cronjobs: ["
        "{name: postgres-backup, last_success: {fail: 26h}}, "  # no match: the name itself
        "{name: labelled, selector: app=backup, last_success: {warn: 4h, fail: 26h}}, "
        "{name: both, match: 'shop/*', selector: 'app in (backup)', last_success: {fail: 26h}}, "
        "{name: young, match: nightly-report, last_success: {fail: 26h}}, "
        "{name: absent, match: 'etcd-*', last_success: {fail: 26h}}]"
    )
    runner.profile(kube_profile(item(kube_cluster, "jobs", f"namespaces: [shop, broken], nodes: false, {cronjobs}")))
    run = runner.run("-m", "daily", "-k", "cronjob")
    found = outcomes(run)
    assert found["kubernetes.cronjob[jobs/postgres-backup]"] == (
        "passed",
        "shop/postgres-backup last succeeded 3h ago (schedule 0 2 * * *)",
    )
    # Labels app=backup: redis-backup (5h: warn) and the suspended legacy-backup in broken (10d: fail).
    assert found["kubernetes.cronjob[jobs/labelled]"] == (
        "failed",
        "last_success_age 10d is over the fail threshold 1d 2h; broken/legacy-backup last succeeded 10d ago "
        "(schedule 0 2 * * *, suspended); shop/redis-backup last succeeded 5h ago (schedule 0 2 * * *)",
    )
    labelled = run.record("kubernetes.cronjob[jobs/labelled]")
    assert labelled["observed"]["suspended"] == 1
    assert labelled["expected"] == {
        "match": "*",
        "selector": "app=backup",
        "last_success_age": {"warn": "4h", "fail": "1d 2h"},
    }
    assert found["kubernetes.cronjob[jobs/both]"][0] == "passed"
    assert found["kubernetes.cronjob[jobs/both]"][1].startswith("shop/redis-backup last succeeded 5h ago")
    # Created an hour ago, never run yet: young enough.
    assert found["kubernetes.cronjob[jobs/young]"] == (
        "passed",
        "shop/nightly-report never succeeded since it was created 1h ago (schedule 0 2 * * *)",
    )
    assert found["kubernetes.cronjob[jobs/absent]"] == (
        "failed",
        "no CronJob matches etcd-* in namespaces shop, broken (6 CronJobs listed)",
    )


# -- scope, selectors, pagination, read-only ---------------------------------------------


def test_lists_once_per_resource_type_read_only(runner: Runner, kube_cluster: KubeCluster) -> None:
    runner.profile(kube_profile(item(kube_cluster, "all", f"{EVERY_ASPECT}, {BACKUPS}")))
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
            item(
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
            item(
                kube_cluster,
                "few",
                "namespaces: [shop, broken], nodes: false, services: false, pvcs: false, hpa: false, workloads: false",
            ),
            item(
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
            item(kube_cluster, "rbac", f"namespaces: [{', '.join(many)}], nodes: false, selector: 'app in (api, cart)'")
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
    runner.profile(kube_profile(item(kube_cluster, "limited", "namespaces: [shop], nodes: {selector: pool=good}")))
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
    runner.profile(kube_profile(item(kube_bare, "bare", "certificates: {}")))
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
            item(kube_bare, "by-profile", "token: '${WRONG_TOKEN}'", kubeconfig=kube_bare.tokenless),
            item(kube_bare, "by-kubeconfig", kubeconfig=literal),
            item(kube_bare, "anonymous", kubeconfig=kube_bare.tokenless),
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
            item(kube_cluster, "fine", "namespaces: [shop], nodes: {selector: pool=good}"),
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
            item(kube_cluster, "slow", "namespaces: [shop], nodes: {selector: pool=good}, events: {}, timeout: 1s")
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
    found = outcomes(run)
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
        ("cronjobs: [{name: b, last_success: {}}]", "kubernetes[0].cronjobs[0].last_success: an empty threshold {} judges nothing: give warn, fail or both"),
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


def test_kubeconfig_problems_are_usage_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kube_cluster: KubeCluster
) -> None:
    def error(item: str) -> str:
        return profile_error(tmp_path, kube_profile(item))

    assert error("{name: a, kubeconfig: missing.yaml}") == (
        f"bad.yaml:4: kubernetes[0].kubeconfig: kubeconfig file '{tmp_path / 'missing.yaml'}' does not exist"
    )
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "nowhere"))
    assert "kubeconfig file" in error("{name: a}") and "nowhere' does not exist" in error("{name: a}")
    (tmp_path / "no-current").write_text(
        "apiVersion: v1\nclusters: [{name: c, cluster: {server: 'https://x'}}]\ncontexts: [{name: x, context: {cluster: c}}]\n"
    )
    assert error("{name: a, kubeconfig: no-current}").endswith(
        f"kubeconfig {tmp_path / 'no-current'} has no current-context: name one with `context:` (contexts: x)"
    )
    (tmp_path / "dangling").write_text("current-context: x\ncontexts: [{name: x, context: {cluster: gone}}]\n")
    assert error("{name: a, kubeconfig: dangling}").endswith(
        f"context 'x' names cluster 'gone', which kubeconfig {tmp_path / 'dangling'} does not define"
    )
    (tmp_path / "broken").write_text("clusters: [\n")
    assert error("{name: a, kubeconfig: broken}").endswith(f"kubeconfig file '{tmp_path / 'broken'}' is not valid YAML")
    # $KUBECONFIG's list form, relative paths to the profile, and kubectl's first-current-context rule.
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


# -- the demo --------------------------------------------------------------------------------


DEMO_ITEM = """\
  - name: scorpius-cluster
    critical: false
    kubeconfig: ${vars.DEMO_KUBECONFIG}
    token: ${DEMO_K8S_TOKEN}
    namespaces: [scorpius-platform]
    certificates: {expires: {warn: 30d, fail: 7d}}
    events: {within: 12h}
    cronjobs:
      - {name: postgres-backup, last_success: {warn: 25h, fail: 26h}}
      - {name: security-scan, last_success: {warn: 25h, fail: 26h}}
"""


def test_demo_cluster(runner: Runner, monkeypatch: pytest.MonkeyPatch) -> None:
    with serve_demo_kubernetes(port=0) as demo:
        for name, value in demo.environ.items():
            monkeypatch.setenv(name, value)
        runner.profile(f"environment: demo\nkubernetes:\n{DEMO_ITEM}")
        run = runner.run("-m", "daily", *(f"--var={k}={v}" for k, v in demo.plain_vars.items()))
        seen = {r.method for r in demo.emulator.requests}
    assert run.ret == 0  # critical: false: the demo's troubles are on display, not blocking
    found = {check: outcome for check, (outcome, _) in outcomes(run).items()}
    assert found == {
        "kubernetes.pods[scorpius-cluster]": "failed",
        "kubernetes.restarts[scorpius-cluster]": "warned",
        "kubernetes.workloads[scorpius-cluster]": "failed",
        "kubernetes.hpa[scorpius-cluster]": "warned",
        "kubernetes.nodes[scorpius-cluster]": "passed",
        "kubernetes.services[scorpius-cluster]": "failed",
        "kubernetes.pvcs[scorpius-cluster]": "passed",
        "kubernetes.cronjob[scorpius-cluster/postgres-backup]": "passed",
        "kubernetes.cronjob[scorpius-cluster/security-scan]": "failed",
        "kubernetes.certificates[scorpius-cluster]": "warned",
        "kubernetes.events[scorpius-cluster]": "warned",
    }
    assert seen == {"GET"}
    assert run.record("kubernetes.pods[scorpius-cluster]")["message"].startswith(
        f"1 of 12 pods not healthy: {DEMO_NAMESPACE}/reporting-worker-5c8f7-2k9xq: CrashLoopBackOff"
    )
    for text in [run.output, *(p.read_text(errors="replace") for p in run.bundle.rglob("*") if p.is_file())]:
        assert demo.token not in text


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
