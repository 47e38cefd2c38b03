"""Kubernetes API emulators for the kubernetes checks, staged with objects in every state the checks judge.

No real API server can run here, so the tests talk to `opsproof.testing.kubernetes.KubeApiEmulator`
(an aiohttp app serving the REST list endpoints, label and field selectors, pagination,
401/403/404, and recording every request), over HTTPS with a CA made for the run, through
the real `kubernetes` client and real kubeconfig files written in tmp.

The main cluster's namespaces each hold one story:

- `shop`: everything healthy (a completed Job pod, a pod restarted once two hours ago, a
  Deployment scaled to zero and its HPA with scaling disabled, a Service whose endpoints
  have no `ready` condition, which the API says means ready);
- `broken`: one object in each failing state;
- `starting`: pods and a claim younger than the grace period.

Nodes labelled `pool=good` are healthy; `pool=bad` ones are NotReady, Unknown, under disk
pressure, or cordoned.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from conftest import SECRET, listening_black_hole
from opsproof.testing.certs import Authority
from opsproof.testing.kube_objects import (
    certificate,
    cronjob,
    daemonset,
    deployment,
    endpoint_slice,
    event,
    hpa,
    namespace,
    node,
    opaque_secret,
    pod,
    pvc,
    service,
    statefulset,
    tls_secret,
)
from opsproof.testing.kubernetes import KubeApiEmulator, ServedApi, serve_kube_api, write_kubeconfig
from opsproof.testing.servers import free_port

HOUR = 3600.0
DAY = 86400.0
OPAQUE_VALUE = "opaque-db-Passw0rd-never-listed"
# The opt-in aspects, every one on; the aspects every item gets; a CronJob of backups.
EVERY_ASPECT = "certificates: {}, tls_secrets: {}, events: {}"
ASPECTS = ("pods", "restarts", "workloads", "hpa", "nodes", "services", "pvcs")
BACKUPS = "cronjobs: [{name: backups, match: '*-backup', last_success: {warn: 25h, fail: 26h}}]"


def shop_objects(authority: Authority) -> list[dict[str, Any]]:
    ns = "shop"
    objects: list[dict[str, Any]] = [namespace(ns)]
    objects += [pod(ns, f"api-7d4b9-{i}", labels={"app": "api", "tier": "web"}) for i in range(3)]
    objects.append(pod(ns, "cart-5f6c7-0", labels={"app": "cart", "tier": "web"}, restarts=1, last_finished=2 * HOUR))
    objects.append(pod(ns, "migrate-28512-x", labels={"app": "migrate"}, phase="Succeeded", ready=False))
    objects += [
        deployment(ns, "api", replicas=3, labels={"app": "api", "tier": "web"}),
        deployment(ns, "cart", replicas=1, labels={"app": "cart", "tier": "web"}),
        deployment(ns, "archive", replicas=0, available=0, labels={"app": "archive"}),
        statefulset(ns, "db", replicas=1),
        daemonset(ns, "log-agent", desired=2),
        hpa(ns, "api", current=3, maximum=10),
        hpa(ns, "archive", current=0, minimum=1, maximum=3, active=False, inactive_reason="ScalingDisabled"),
        service(ns, "api", labels={"app": "api", "tier": "web"}),
        endpoint_slice(ns, "api", ready=3),
        service(ns, "cart"),
        _nil_ready_slice(ns, "cart"),
        service(ns, "docs", type_="ExternalName"),
        pvc(ns, "data-db-0"),
        cronjob(ns, "postgres-backup", last_success=3 * HOUR, labels={"app": "backup"}),
        cronjob(ns, "redis-backup", last_success=5 * HOUR, labels={"app": "backup"}),
        cronjob(ns, "nightly-report", last_success=None, age=HOUR),
        certificate(ns, "api-tls", days_left=60),
        tls_secret(ns, "api-tls", days_left=80, authority=authority),
        opaque_secret(ns, "db-password", OPAQUE_VALUE),
        event(ns, "api.old", reason="BackOff", last_seen=3 * DAY, object_name="api-7d4b9-0"),
        event(ns, "api.normal", reason="Pulled", type_="Normal", message="Successfully pulled image"),
    ]
    return objects


def _nil_ready_slice(ns: str, service_name: str) -> dict[str, Any]:
    obj = endpoint_slice(ns, service_name, ready=1)
    for endpoint in obj["endpoints"]:
        del endpoint["conditions"]["ready"]
    return obj


UNSCHEDULABLE = "0/3 nodes are available: 3 Insufficient memory. preemption: 0/3 nodes are available"


def broken_objects(authority: Authority) -> list[dict[str, Any]]:
    ns = "broken"
    objects: list[dict[str, Any]] = [namespace(ns)]
    objects += [
        pod(
            ns,
            "api-6c9f8-crash",
            labels={"app": "api"},
            ready=False,
            waiting="CrashLoopBackOff",
            restarts=14,
            last_finished=120,
        ),
        pod(
            ns,
            "web-58d7c-pull",
            labels={"app": "web"},
            phase="Pending",
            ready=False,
            waiting="ImagePullBackOff",
            age=HOUR,
        ),
        pod(
            ns,
            "worker-77b5d-oom",
            labels={"app": "worker"},
            restarts=2,
            last_terminated="OOMKilled",
            last_finished=HOUR,
        ),
        pod(ns, "batch-1-evicted", labels={"app": "batch"}, phase="Failed", ready=False, reason="Evicted"),
        pod(
            ns,
            "batch-0-evicted",
            labels={"app": "batch"},
            phase="Failed",
            ready=False,
            reason="Evicted",
            finished=3 * DAY,
        ),
        pod(ns, "db-0", labels={"app": "db"}, ready=False, started=HOUR),
        pod(
            ns,
            "queue-9f8e7-stuck",
            labels={"app": "queue"},
            phase="Pending",
            ready=False,
            age=2 * HOUR,
            unschedulable=UNSCHEDULABLE,
        ),
        pod(
            ns,
            "search-4d5e6-init",
            labels={"app": "search"},
            phase="Pending",
            ready=False,
            init_waiting="CrashLoopBackOff",
        ),
        pod(ns, "legacy-1a2b3-old", labels={"app": "legacy"}, restarts=50, last_finished=3 * DAY),
        pod(ns, "ghost-3c4d5-lost", labels={"app": "ghost"}, phase="Unknown", ready=False),
    ]
    objects += [
        deployment(ns, "api", replicas=3, available=1),
        deployment(ns, "web", replicas=3, available=2),
        deployment(ns, "search", replicas=2, available=2, stalled=True),
        statefulset(ns, "db", replicas=1, available=0),
        daemonset(ns, "log-agent", desired=3, available=2),
        hpa(ns, "api", current=10, maximum=10),
        hpa(ns, "web", current=2, active=False),
        hpa(ns, "batch", current=1, able=False),
        service(ns, "api"),
        endpoint_slice(ns, "api", ready=0, not_ready=2),
        service(ns, "web"),
        service(ns, "manual", selector={}),
        pvc(ns, "data-pending", phase="Pending", age=2 * HOUR),
        pvc(ns, "data-lost", phase="Lost"),
        cronjob(ns, "security-scan", last_success=30 * HOUR, labels={"app": "security-scanner"}),
        cronjob(ns, "compliance-report", last_success=None, last_schedule=HOUR, age=2 * DAY),
        cronjob(ns, "legacy-backup", last_success=10 * DAY, suspend=True, labels={"app": "backup"}),
        certificate(ns, "web-tls", days_left=12),
        certificate(ns, "old-tls", days_left=3),
        certificate(ns, "failed-tls", days_left=40, ready=False, reason="Failed", message="ACME challenge failed: 403"),
        tls_secret(ns, "web-tls", days_left=12, authority=authority),
        tls_secret(ns, "expired-tls", days_left=-2, authority=authority),
        tls_secret(ns, "garbage-tls", crt=b"this is not a certificate"),
        event(ns, "api.17f2a", reason="BackOff", object_name="api-6c9f8-crash", count=14, last_seen=600),
        event(
            ns,
            "queue.17f2b",
            reason="FailedScheduling",
            kind="Pod",
            object_name="queue-9f8e7-stuck",
            message=UNSCHEDULABLE,
            last_seen=300,
        ),
        event(
            ns,
            "db.17f2c",
            reason="Unhealthy",
            object_name="db-0",
            message="Readiness probe failed: HTTP probe failed with statuscode: 503",
            last_seen=2 * HOUR,
        ),
        event(ns, "old.17f00", reason="BackOff", object_name="api-6c9f8-crash", last_seen=2 * DAY),
    ]
    return objects


def starting_objects() -> list[dict[str, Any]]:
    ns = "starting"
    return [
        namespace(ns),
        pod(ns, "api-new-pending", labels={"app": "api"}, phase="Pending", ready=False, age=60),
        pod(ns, "api-new-warming", labels={"app": "api"}, ready=False, age=40, started=30),
        pvc(ns, "data-new", phase="Pending", age=30),
    ]


def node_objects() -> list[dict[str, Any]]:
    return [
        node("node-a", labels={"pool": "good"}),
        node("node-b", labels={"pool": "good"}),
        node("node-c", ready="False", labels={"pool": "bad"}),
        node("node-d", ready="Unknown", labels={"pool": "bad"}),
        node("node-e", pressure=["DiskPressure"], labels={"pool": "bad"}),
        node("node-f", unschedulable=True, labels={"pool": "bad"}),
    ]


@dataclass
class KubeCluster:
    """An emulator served over HTTPS, with kubeconfig files for it."""

    api: KubeApiEmulator
    served: ServedApi
    kubeconfig: Path  # the user's token (SECRET) written in the file; contexts `main` and `other`
    tokenless: Path  # the cluster and its CA only: the profile gives `token: ${K8S_TOKEN}`
    folder: Path

    def methods(self) -> set[str]:
        return {seen.method for seen in self.api.requests}

    def paths(self) -> list[str]:
        return [seen.path for seen in self.api.requests]


def _cluster(api: KubeApiEmulator, folder: Path, **serve: Any) -> Iterator[KubeCluster]:
    with serve_kube_api(api, **serve) as served:
        kubeconfig = write_kubeconfig(
            folder / "kubeconfig", served, token=SECRET, context="main", extra_contexts=["other"]
        )
        tokenless = write_kubeconfig(folder / "kubeconfig-tokenless", served, context="main")
        yield KubeCluster(api, served, kubeconfig, tokenless, folder)


@pytest.fixture(scope="module")
def kube_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeCluster]:
    """The main cluster: namespaces shop, broken and starting, good and bad nodes, cert-manager installed.

    One per module, not per session: its objects' times are set when it is built ("restarted 2m
    ago", "Pending for 2h") and the checks' messages quote them, so a cluster built minutes before a
    test (another module's, earlier in a long run) would show other figures.
    """
    authority = Authority.create("cluster issuer")
    api = KubeApiEmulator(token=SECRET)
    api.extend(shop_objects(authority) + broken_objects(authority) + starting_objects() + node_objects())
    api.add(namespace("kube-system"), namespace("default"))
    yield from _cluster(api, tmp_path_factory.mktemp("kube"))


@pytest.fixture(scope="session")
def kube_bare(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeCluster]:
    """An empty cluster without cert-manager (no Certificate CRD), that echoes the credentials it refuses."""
    api = KubeApiEmulator(token=SECRET, echo_credentials=True)
    api.add(namespace("default"), node("node-a"))
    yield from _cluster(api, tmp_path_factory.mktemp("kube-bare"))


@pytest.fixture(scope="session")
def kube_black_hole(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A kubeconfig whose server completes TCP handshakes and never answers (not even TLS)."""
    with listening_black_hole() as port:
        yield _kubeconfig_for(tmp_path_factory.mktemp("kube-hole") / "kubeconfig", f"https://127.0.0.1:{port}")


@pytest.fixture
def kube_closed_port(tmp_path: Path) -> tuple[Path, int]:
    port = free_port(0)
    return _kubeconfig_for(tmp_path / "kubeconfig", f"https://127.0.0.1:{port}"), port


def _kubeconfig_for(path: Path, server: str, ca_pem: bytes | None = None) -> Path:
    return write_kubeconfig(path, ServedApi(server, ca_pem or Authority.create().pem), token=SECRET, context="main")


def kube_item(cluster: KubeCluster, name: str, extra: str = "", kubeconfig: Path | None = None) -> str:
    """A `kubernetes` item on `cluster` (context `main`), with `extra` keys."""
    return f"{{name: {name}, kubeconfig: '{kubeconfig or cluster.kubeconfig}', context: main{', ' + extra if extra else ''}}}"


def kube_profile(*items: str, extra: str = "") -> str:
    """A profile whose kubernetes items are given as YAML flow mappings."""
    body = "\n".join(f"  - {item}" for item in items)
    return f"environment: test\ndefaults: {{timeout: 3s}}\nkubernetes:\n{body}\n{extra}"


def wrong_ca_kubeconfig(cluster: KubeCluster, path: Path) -> Path:
    """The cluster's address with another CA: verification must fail."""
    return _kubeconfig_for(path, cluster.served.url, Authority.create("some other CA").pem)


def in_cluster_files(cluster: KubeCluster, folder: Path) -> tuple[Path, dict[str, str]]:
    """A service account folder (token, ca.crt) and the environment a pod would have."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "token").write_text(SECRET)
    assert cluster.served.ca_pem is not None
    (folder / "ca.crt").write_bytes(cluster.served.ca_pem)
    host, port = cluster.served.url.removeprefix("https://").rsplit(":", 1)
    return folder, {"KUBERNETES_SERVICE_HOST": host, "KUBERNETES_SERVICE_PORT": port}
