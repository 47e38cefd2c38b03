"""The demo's Kubernetes cluster (runbooks 000 and 002: pods, HPA, backup CronJobs, cert-manager certificates).

Served by the emulator of `opsproof.testing.kubernetes`, with objects made by
`opsproof.testing.kube_objects`.
"""

from __future__ import annotations

import secrets
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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
    pod,
    pvc,
    service,
    statefulset,
)
from opsproof.testing.kubernetes import KubeApiEmulator, serve_kube_api, write_kubeconfig

DEMO_NAMESPACE = "scorpius-platform"
KUBECONFIG_VARIABLE = "DEMO_KUBECONFIG"
TOKEN_VARIABLE = "DEMO_K8S_TOKEN"
DEMO_PORT = 16443


def demo_objects() -> list[dict[str, Any]]:
    """Runbook 000's platform and 002's daily script: mostly healthy, with one of each common trouble.

    Warnings: reporting-worker restarted 6 times, the wallet-guard HPA is at its maximum
    (capacity), api-tls expires in 12 days, a BackOff warning event. Failures: reporting-worker
    is in CrashLoopBackOff (so its Deployment is 0/1 and its Service has no ready endpoint), the
    security-scan CronJob last succeeded 30 hours ago (runbook 002's daily security scanner).
    redis-0 was OOMKilled three days ago: outside the 24h window, history.
    """
    ns = DEMO_NAMESPACE
    objects: list[dict[str, Any]] = [namespace(ns), namespace("kube-system")]
    objects += [node(f"node-{i}") for i in (1, 2, 3)]
    for app, replicas in (("wallet-guard", 3), ("auth-proxy", 2), ("usage-meter", 2), ("audit-trail", 2)):
        objects.append(deployment(ns, app, replicas=replicas))
        objects += [pod(ns, f"{app}-7d4b9-{i:05x}", labels={"app": app}) for i in range(replicas)]
        objects += [service(ns, app), endpoint_slice(ns, app, ready=replicas)]
    objects.append(deployment(ns, "reporting-worker", replicas=1, available=0))
    objects.append(
        pod(
            ns,
            "reporting-worker-5c8f7-2k9xq",
            labels={"app": "reporting-worker"},
            ready=False,
            waiting="CrashLoopBackOff",
            restarts=6,
            last_finished=120,
        )
    )
    objects += [service(ns, "reporting-worker"), endpoint_slice(ns, "reporting-worker", ready=0, not_ready=1)]
    objects.append(statefulset(ns, "postgresql", replicas=1))
    objects.append(pod(ns, "postgresql-0", labels={"app": "postgresql"}))
    objects.append(pvc(ns, "data-postgresql-0"))
    objects.append(statefulset(ns, "redis", replicas=1))
    objects.append(
        pod(ns, "redis-0", labels={"app": "redis"}, restarts=1, last_terminated="OOMKilled", last_finished=86400 * 3)
    )
    objects.append(daemonset("kube-system", "node-exporter", desired=3))
    objects.append(hpa(ns, "wallet-guard", current=10, maximum=10))
    objects.append(hpa(ns, "auth-proxy", current=2, maximum=6))
    objects.append(cronjob(ns, "postgres-backup", last_success=3 * 3600, labels={"app": "backup"}))
    objects.append(
        cronjob(ns, "security-scan", last_success=30 * 3600, schedule="0 1 * * *", labels={"app": "security-scanner"})
    )
    objects.append(certificate(ns, "api-tls", days_left=12))
    objects.append(certificate(ns, "auth-proxy-tls", days_left=75))
    objects.append(event(ns, "reporting-worker.17f2a", object_name="reporting-worker-5c8f7-2k9xq", count=14))
    return objects


def stage_demo_logs(emulator: KubeApiEmulator) -> None:
    """Runbook 000's `kubectl logs deployment/auth-proxy | grep "authentication failed"`: over its warn count.

    34 failed logins in the last day across the two auth-proxy pods (the demo profile warns
    at 20), a few rate-limited requests (under their threshold), and older failures from two
    days ago that the 24h window leaves out.
    """
    for index, failures in enumerate((20, 14)):
        name = f"auth-proxy-7d4b9-{index:05x}"
        lines = [
            (3600.0 * 20 - i * 97, f"WARN authentication failed for user ops{i % 5} from 10.0.4.{i}")
            for i in range(failures)
        ]
        lines += [(7200.0 - i * 60, "INFO rate_limit_exceeded client=usage-meter") for i in range(3)]
        lines += [(600.0 - i, f"INFO GET /v1/session/{i} 200") for i in range(50)]
        lines += [(86400.0 * 2 + i, "WARN authentication failed for user ops1 from 10.0.4.7") for i in range(40)]
        emulator.add_log(DEMO_NAMESPACE, name, "auth-proxy", lines)


@dataclass
class DemoKubernetes:
    """The demo cluster: where its kubeconfig is, and the token the profile passes as a secret."""

    kubeconfig: Path
    token: str
    url: str
    emulator: KubeApiEmulator = field(repr=False)

    @property
    def plain_vars(self) -> dict[str, str]:
        return {KUBECONFIG_VARIABLE: str(self.kubeconfig)}

    @property
    def environ(self) -> dict[str, str]:
        return {TOKEN_VARIABLE: self.token}

    @property
    def line(self) -> str:
        return (
            f"Kubernetes API (emulated) at {self.url}, kubeconfig {self.kubeconfig} "
            "(reporting-worker crash-loops, the security-scan CronJob is late, auth-proxy logs many failed logins)"
        )


@contextmanager
def serve_demo_kubernetes(port: int = DEMO_PORT) -> Iterator[DemoKubernetes]:
    """Start the demo cluster's API on 127.0.0.1 (HTTPS, its own CA); yield its kubeconfig and token.

    The kubeconfig holds the cluster and its CA but no credentials: the profile gives the
    token as `token: ${DEMO_K8S_TOKEN}`, so reports show the reference, never the value.
    """
    token = secrets.token_urlsafe(32)
    emulator = KubeApiEmulator(token=token)
    emulator.extend(demo_objects())
    stage_demo_logs(emulator)
    with (
        tempfile.TemporaryDirectory(prefix="opsproof-demo-k8s-") as folder,
        serve_kube_api(emulator, port=port) as served,
    ):
        path = write_kubeconfig(Path(folder) / "kubeconfig", served, context="demo")
        yield DemoKubernetes(kubeconfig=path, token=token, url=served.url, emulator=emulator)
