"""Kubernetes checks against an API emulator on loopback: every outcome comes from staged objects.

The emulator (opsproof.testing.kubernetes) is a real HTTPS server answering the Kubernetes REST
list endpoints; the probe talks to it through the official client and kubeconfig files
written here. See tests/helpers/kubernetes_servers.py for the staged cluster.

This file: each aspect's outcomes (healthy, broken, warned, starting, CronJobs) and the demo's
cluster; test_kubernetes_access.py: how the API is asked and what an unreachable or refusing one
gives; test_kubernetes_profiles.py: bad profile input.
"""

import re

import pytest
from helpers.kubernetes_servers import (
    ASPECTS,
    BACKUPS,
    EVERY_ASPECT,
    UNSCHEDULABLE,
    KubeCluster,
    kube_cluster,
    kube_item,
    kube_profile,
    starting_objects,
)

from conftest import SECRET, Runner
from opsproof.demo.kubernetes import DEMO_NAMESPACE, serve_demo_kubernetes

__all__ = ["kube_cluster"]  # fixtures, for pytest


@pytest.fixture
def token_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("K8S_TOKEN", SECRET)


# -- a healthy namespace -----------------------------------------------------------------


def test_healthy_namespace_passes_every_check(runner: Runner, kube_cluster: KubeCluster, token_env: None) -> None:
    # The token comes from the profile, as ${K8S_TOKEN}; the kubeconfig has the cluster and its CA only.
    aspects = f"namespaces: [shop], nodes: {{selector: pool=good}}, {EVERY_ASPECT}, {BACKUPS}"
    runner.profile(
        kube_profile(kube_item(kube_cluster, "prod", f"token: '${{K8S_TOKEN}}', {aspects}", kube_cluster.tokenless))
    )
    run = runner.run("-m", "daily", "-v")
    assert run.ret == 0, run.output
    for text in [run.output, *(p.read_text(errors="replace") for p in run.bundle.rglob("*") if p.is_file())]:
        assert SECRET not in text
    found = run.outcomes()
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
    # notAfter is the fixture's "now + 60d" to the second: read within that second it is 60d left, later 59d 23h.
    assert re.match(
        r"1 Certificates Ready; soonest: shop/api-tls expires in (59d 23h|60d)\b",
        found["kubernetes.certificates[prod]"][1],
    ), found["kubernetes.certificates[prod]"][1]
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
            kube_item(
                kube_cluster,
                "bad",
                f"namespaces: [broken], nodes: {{selector: pool=bad}}, {EVERY_ASPECT}, cronjobs: [{scans}, {reports}]",
            )
        )
    )
    run = runner.run("-m", "daily")
    assert run.ret == 1
    found = run.outcomes()
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
    # The cluster's certificates expire 3 and 12 days after it was built: checked within half a
    # second of that, the time left rounds to whole days.
    assert re.match(
        r"1 of 3 Certificates not Ready: broken/failed-tls not Ready \(Failed\): ACME challenge failed: 403; "
        r"1 certificate\(s\) under the fail threshold 7d: broken/old-tls expires in (2d 23h|3d) \(",
        message,
    ), message
    certificates = run.record("kubernetes.certificates[bad]")
    assert re.match(r"broken/web-tls expires in (11d 23h|12d)\b", certificates["observed"]["expiring"][1])
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
            kube_item(
                kube_cluster,
                "lenient",
                "namespaces: [broken], nodes: {selector: 'kubernetes.io/hostname in (node-f)'}, "
                "pods: {restarts: {warn: 20}, oom_killed: warn}, workloads: {available: {warn: 100%}}, "
                "certificates: {expires: {warn: 30d, fail: 1d}}, events: {ignore_reasons: [FailedScheduling, Unhealthy, BackOff]}",
            ),
            kube_item(
                kube_cluster,
                "strict",
                "namespaces: [broken], nodes: {selector: 'kubernetes.io/hostname=node-f', cordoned: fail}, hpa: {at_max: fail}, "
                "pods: {window: null, oom_killed: pass}, certificates: {expires: {fail: 90%}}",
            ),
        )
    )
    found = runner.run("-m", "daily").outcomes()
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
            kube_item(kube_cluster, "fresh", "namespaces: [starting], nodes: false"),
            kube_item(kube_cluster, "impatient", "namespaces: [starting], nodes: false, pods: {grace: 10s}"),
        )
    )
    run = runner.run("-m", "daily")
    found = run.outcomes()
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
    runner.profile(
        kube_profile(kube_item(kube_cluster, "jobs", f"namespaces: [shop, broken], nodes: false, {cronjobs}"))
    )
    run = runner.run("-m", "daily", "-k", "cronjob")
    found = run.outcomes()
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
    found = {check: outcome for check, (outcome, _) in run.outcomes().items()}
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
