"""More objects for the Kubernetes API emulator, in the states the newer checks look for.

metrics-server's PodMetrics and NodeMetrics (`metrics.k8s.io/v1beta1`), Ingresses,
NetworkPolicies, Endpoints, an HPA's CPU target, a node's allocatable, and objects of
any custom resource (a KEDA ScaledObject, an Argo CD Application)::

    api.add(pod_metrics("shop", "api-1", {"api": ("450m", "300Mi")}))   # 90% of a 500m limit
    api.add(ingress("shop", "web", backends=["web"], tls_secret="web-tls", address="203.0.113.10"))
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from opsproof.testing.kube_objects import ago


def _meta(namespace: str | None, name: str, labels: Mapping[str, str] | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "creationTimestamp": ago(86400 * 7), "labels": dict(labels or {"app": name})}
    if namespace is not None:
        meta["namespace"] = namespace
    return meta


def pod_metrics(ns: str, name: str, containers: Mapping[str, tuple[str, str]]) -> dict[str, Any]:
    """What `kubectl top pod` reads: each container's (cpu, memory) usage as quantities."""
    return {
        "apiVersion": "metrics.k8s.io/v1beta1",
        "kind": "PodMetrics",
        "metadata": _meta(ns, name),
        "timestamp": ago(15),
        "window": "15s",
        "containers": [{"name": c, "usage": {"cpu": cpu, "memory": memory}} for c, (cpu, memory) in containers.items()],
    }


def node_metrics(name: str, cpu: str, memory: str) -> dict[str, Any]:
    return {
        "apiVersion": "metrics.k8s.io/v1beta1",
        "kind": "NodeMetrics",
        "metadata": _meta(None, name),
        "timestamp": ago(15),
        "window": "15s",
        "usage": {"cpu": cpu, "memory": memory},
    }


def with_allocatable(node_obj: dict[str, Any], cpu: str = "2", memory: str = "8Gi") -> dict[str, Any]:
    """A node (from `node()`) with its capacity and allocatable as the kubelet reports them."""
    node_obj["status"]["capacity"] = {"cpu": cpu, "memory": memory, "pods": "110"}
    node_obj["status"]["allocatable"] = {"cpu": cpu, "memory": memory, "pods": "110"}
    return node_obj


def with_cpu_target(hpa_obj: dict[str, Any], utilization: int) -> dict[str, Any]:
    """An HPA (from `hpa()`) scaling on average CPU utilization, as runbook 002's spec."""
    hpa_obj["spec"]["metrics"] = [
        {
            "type": "Resource",
            "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": utilization}},
        }
    ]
    return hpa_obj


def ingress(
    ns: str,
    name: str,
    *,
    backends: Iterable[str],
    tls_secret: str | None = None,
    address: str | None = "203.0.113.10",
    host: str = "app.example.com",
) -> dict[str, Any]:
    paths = [
        {"path": f"/{backend}", "pathType": "Prefix", "backend": {"service": {"name": backend, "port": {"number": 80}}}}
        for backend in backends
    ]
    spec: dict[str, Any] = {"ingressClassName": "nginx", "rules": [{"host": host, "http": {"paths": paths}}]}
    if tls_secret:
        spec["tls"] = [{"hosts": [host], "secretName": tls_secret}]
    status: dict[str, Any] = {"loadBalancer": {"ingress": [{"ip": address}]} if address else {}}
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": _meta(ns, name),
        "spec": spec,
        "status": status,
    }


def network_policy(
    ns: str,
    name: str,
    *,
    pod_labels: Mapping[str, str] | None = None,
    ingress_rules: list[dict[str, Any]] | None = None,
    types: Iterable[str] = ("Ingress",),
) -> dict[str, Any]:
    """A NetworkPolicy: no pod_labels selects every pod; no ingress_rules denies all ingress."""
    spec: dict[str, Any] = {
        "podSelector": {"matchLabels": dict(pod_labels)} if pod_labels else {},
        "policyTypes": list(types),
    }
    if ingress_rules is not None:
        spec["ingress"] = ingress_rules
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": _meta(ns, name), "spec": spec}


def endpoints(ns: str, name: str, *, ready: int = 1, not_ready: int = 0) -> dict[str, Any]:
    """The core/v1 Endpoints of a Service (what `kubectl get endpoints` shows)."""
    subset: dict[str, Any] = {"ports": [{"port": 8080, "protocol": "TCP"}]}
    if ready:
        subset["addresses"] = [{"ip": f"10.244.1.{10 + i}"} for i in range(ready)]
    if not_ready:
        subset["notReadyAddresses"] = [{"ip": f"10.244.2.{10 + i}"} for i in range(not_ready)]
    return {"apiVersion": "v1", "kind": "Endpoints", "metadata": _meta(ns, name), "subsets": [subset]}


def custom_object(
    api_version: str,
    kind: str,
    ns: str | None,
    name: str,
    *,
    ready: str | None = "True",
    reason: str | None = None,
    status: Mapping[str, Any] | None = None,
    labels: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """An object of a custom resource with a Ready condition (`ready=None`: none) and more status."""
    body: dict[str, Any] = dict(status or {})
    if ready is not None:
        condition = {"type": "Ready", "status": ready, "lastTransitionTime": ago(3600)}
        if reason:
            condition |= {"reason": reason, "message": f"{reason}: see the controller's logs"}
        body["conditions"] = [condition]
    return {"apiVersion": api_version, "kind": kind, "metadata": _meta(ns, name, labels), "spec": {}, "status": body}
