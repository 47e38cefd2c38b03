"""Kubernetes objects as the API server returns them, in the states the checks look for.

    api.add(pod("shop", "api-1", waiting="CrashLoopBackOff", restarts=7))
    api.add(cronjob("shop", "backup", last_success=30 * 3600))
    api.add(certificate("shop", "api-tls", days_left=12))

Times are relative to now (`ago(seconds)`), so the objects say the same thing whenever
a test runs.
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from opsproof.testing.certs import Authority


def ago(seconds: float) -> str:
    """An API server timestamp `seconds` in the past (negative: in the future)."""
    return _stamp(datetime.now(UTC) - timedelta(seconds=seconds))


def _stamp(moment: datetime) -> str:
    """RFC 3339 in whole seconds, as the API server writes metadata times: 2026-11-24T10:45:00Z."""
    return moment.replace(microsecond=0).isoformat().replace("+00:00", "Z")


def _meta(namespace: str | None, name: str, labels: Mapping[str, str] | None, age: float) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "creationTimestamp": ago(age), "labels": dict(labels or {"app": name})}
    if namespace is not None:
        meta["namespace"] = namespace
    return meta


def namespace(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": _meta(None, name, {}, 86400 * 90),
        "status": {"phase": "Active"},
    }


def pod(
    ns: str,
    name: str,
    *,
    phase: str = "Running",
    ready: bool = True,
    restarts: int = 0,
    waiting: str | None = None,
    terminated: str | None = None,
    last_terminated: str | None = None,
    last_finished: float = 3600.0,
    age: float = 86400.0,
    started: float | None = None,
    reason: str | None = None,
    labels: Mapping[str, str] | None = None,
    node: str = "node-1",
    containers: int = 1,
    init_waiting: str | None = None,
    unschedulable: str | None = None,
    finished: float = 600.0,
) -> dict[str, Any]:
    """A pod as the API server lists it (status as the kubelet writes it), its first container in the state given."""
    labels = dict(labels or {"app": name.rsplit("-", 2)[0]})
    specs = [
        {
            "name": f"{labels.get('app', 'app')}{'' if i == 0 else f'-sidecar-{i}'}",
            "image": f"registry.example.com/{labels.get('app', 'app')}:1.4.{i}",
            "ports": [{"containerPort": 8080 + i, "protocol": "TCP"}],
            "resources": {"limits": {"cpu": "500m", "memory": "512Mi"}, "requests": {"cpu": "100m", "memory": "256Mi"}},
            "env": [{"name": "LOG_LEVEL", "value": "info"}, {"name": "PORT", "value": str(8080 + i)}],
            "readinessProbe": {"httpGet": {"path": "/ready", "port": 8080 + i}, "periodSeconds": 10},
            "terminationMessagePath": "/dev/termination-log",
            "imagePullPolicy": "IfNotPresent",
        }
        for i in range(containers)
    ]
    statuses = []
    for index, spec in enumerate(specs):
        first = index == 0
        state: dict[str, Any]
        if first and waiting:
            state = {"waiting": {"reason": waiting, "message": f"{waiting}: see kubectl describe pod {name}"}}
        elif first and terminated:
            state = {
                "terminated": {
                    "reason": terminated,
                    "exitCode": 137 if terminated == "OOMKilled" else 1,
                    "finishedAt": ago(60),
                }
            }
        elif phase == "Succeeded":
            state = {"terminated": {"reason": "Completed", "exitCode": 0, "finishedAt": ago(age / 2)}}
        elif phase == "Failed":
            state = {"terminated": {"reason": "Error", "exitCode": 1, "finishedAt": ago(finished)}}
        elif phase == "Pending":
            state = {"waiting": {"reason": "ContainerCreating"}}
        else:
            state = {"running": {"startedAt": ago(started if started is not None else age)}}
        status: dict[str, Any] = {
            "name": spec["name"],
            "image": spec["image"],
            "imageID": f"registry.example.com/{spec['name']}@sha256:{'ab' * 32}",
            "containerID": f"containerd://{secrets.token_hex(32)}",
            "ready": ready if first else phase == "Running",
            "started": "running" in state,
            "restartCount": restarts if first else 0,
            "state": state,
            "lastState": {},
        }
        if first and (last_terminated or restarts):
            status["lastState"] = {
                "terminated": {
                    "reason": last_terminated or "Error",
                    "exitCode": 137 if last_terminated == "OOMKilled" else 1,
                    "startedAt": ago(last_finished + 600),
                    "finishedAt": ago(last_finished),
                }
            }
        statuses.append(status)
    pod_status: dict[str, Any] = {
        "phase": phase,
        "hostIP": "10.0.0.11",
        "podIP": "10.244.1.23",
        "startTime": ago(age),
        "qosClass": "Burstable",
        "conditions": [
            {
                "type": "Ready",
                "status": "True" if ready and phase == "Running" else "False",
                "lastTransitionTime": ago(age),
            },
            {"type": "PodScheduled", "status": "True", "lastTransitionTime": ago(age)},
        ],
        "containerStatuses": statuses,
    }
    if unschedulable:
        # The scheduler found no node: no containers were ever created, and it says why.
        pod_status = {
            "phase": "Pending",
            "qosClass": "Burstable",
            "conditions": [
                {
                    "type": "PodScheduled",
                    "status": "False",
                    "reason": "Unschedulable",
                    "message": unschedulable,
                    "lastTransitionTime": ago(age),
                }
            ],
        }
    if reason:
        pod_status["reason"] = reason
        pod_status["message"] = f"The node was low on resource: memory. ({reason})" if reason == "Evicted" else reason
    if init_waiting:
        pod_status["initContainerStatuses"] = [
            {
                "name": "migrate",
                "ready": False,
                "restartCount": 4,
                "state": {"waiting": {"reason": init_waiting}},
                "lastState": {},
            }
        ]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            **_meta(ns, name, labels, age),
            "generateName": name.rsplit("-", 1)[0] + "-",
            "ownerReferences": [
                {
                    "apiVersion": "apps/v1",
                    "kind": "ReplicaSet",
                    "name": name.rsplit("-", 1)[0],
                    "uid": "6f1c2d3e-0000-4000-8000-000000000001",
                    "controller": True,
                }
            ],
            "managedFields": [
                {
                    "manager": "kubelet",
                    "operation": "Update",
                    "apiVersion": "v1",
                    "time": ago(age),
                    "fieldsType": "FieldsV1",
                    "fieldsV1": {"f:status": {"f:conditions": {}, "f:containerStatuses": {}, "f:phase": {}}},
                }
            ],
        },
        "spec": {
            "containers": specs,
            "nodeName": node,
            "restartPolicy": "Always",
            "schedulerName": "default-scheduler",
            "serviceAccountName": "default",
            "terminationGracePeriodSeconds": 30,
            "dnsPolicy": "ClusterFirst",
        },
        "status": pod_status,
    }


def deployment(
    ns: str,
    name: str,
    *,
    replicas: int = 3,
    available: int | None = None,
    stalled: bool = False,
    labels: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    available = replicas if available is None else available
    conditions = [
        {
            "type": "Available",
            "status": "True" if available >= replicas else "False",
            "reason": "MinimumReplicasAvailable",
        },
        {
            "type": "Progressing",
            "status": "False",
            "reason": "ProgressDeadlineExceeded",
            "message": f'ReplicaSet "{name}-7d4b9" has timed out progressing.',
        }
        if stalled
        else {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable"},
    ]
    status = {
        "replicas": replicas,
        "readyReplicas": available,
        "availableReplicas": available,
        "updatedReplicas": replicas,
        "conditions": conditions,
    }
    if not available:
        del status["availableReplicas"]  # the API server omits zero counts
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta(ns, name, labels, 86400 * 30),
        "spec": {"replicas": replicas},
        "status": status,
    }


def statefulset(
    ns: str, name: str, *, replicas: int = 3, available: int | None = None, labels: Mapping[str, str] | None = None
) -> dict[str, Any]:
    available = replicas if available is None else available
    status = {
        "replicas": replicas,
        "readyReplicas": available,
        "availableReplicas": available,
        "currentReplicas": replicas,
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": _meta(ns, name, labels, 86400 * 30),
        "spec": {"replicas": replicas},
        "status": status,
    }


def daemonset(
    ns: str, name: str, *, desired: int = 3, available: int | None = None, labels: Mapping[str, str] | None = None
) -> dict[str, Any]:
    available = desired if available is None else available
    status = {
        "desiredNumberScheduled": desired,
        "currentNumberScheduled": desired,
        "numberReady": available,
        "numberAvailable": available,
        "numberMisscheduled": 0,
    }
    if available < desired:
        status["numberUnavailable"] = desired - available
    return {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": _meta(ns, name, labels, 86400 * 30),
        "status": status,
    }


def hpa(
    ns: str,
    name: str,
    *,
    current: int = 3,
    minimum: int = 2,
    maximum: int = 10,
    able: bool = True,
    active: bool = True,
    inactive_reason: str = "FailedGetResourceMetric",
    labels: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    # The HPA controller's own messages (pkg/controller/podautoscaler).
    unable = (
        f'the HPA controller was unable to get the target\'s current scale: deployments/scale.apps "{name}" not found'
    )
    no_metrics = (
        "the HPA was unable to compute the replica count: unable to get metrics for resource cpu: "
        "no metrics returned from resource metrics API"
    )
    computed = "the HPA was able to successfully calculate a replica count from cpu resource utilization"
    conditions = [
        {
            "type": "AbleToScale",
            "status": "True" if able else "False",
            "reason": "ReadyForNewScale" if able else "FailedGetScale",
            "message": "recommended size matches current size" if able else unable,
        },
        {
            "type": "ScalingActive",
            "status": "True" if active else "False",
            "reason": "ValidMetricFound" if active else inactive_reason,
            "message": computed if active else no_metrics,
        },
        {
            "type": "ScalingLimited",
            "status": "True" if current >= maximum else "False",
            "reason": "TooManyReplicas" if current >= maximum else "DesiredWithinRange",
        },
    ]
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": _meta(ns, name, labels, 86400 * 30),
        "spec": {
            "minReplicas": minimum,
            "maxReplicas": maximum,
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
        },
        "status": {"currentReplicas": current, "desiredReplicas": current, "conditions": conditions},
    }


def node(
    name: str,
    *,
    ready: str = "True",
    pressure: Iterable[str] = (),
    unschedulable: bool = False,
    labels: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    under = set(pressure)
    conditions = [
        {
            "type": kind,
            "status": "True" if kind in under else "False",
            "reason": f"KubeletHas{'Insufficient' if kind in under else 'Sufficient'}{kind.removesuffix('Pressure')}",
        }
        for kind in ("MemoryPressure", "DiskPressure", "PIDPressure")
    ]
    conditions.append(
        {
            "type": "Ready",
            "status": ready,
            "reason": "KubeletReady"
            if ready == "True"
            else "NodeStatusUnknown"
            if ready == "Unknown"
            else "KubeletNotReady",
            "message": "kubelet is posting ready status"
            if ready == "True"
            else "Kubelet stopped posting node status."
            if ready == "Unknown"
            else "container runtime network not ready",
        }
    )
    obj: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": _meta(
            None,
            name,
            {"kubernetes.io/hostname": name, "node.kubernetes.io/instance-type": "m5.large", **(labels or {})},
            86400 * 60,
        ),
        "spec": {"podCIDR": "10.244.1.0/24"},
        "status": {"conditions": conditions, "nodeInfo": {"kubeletVersion": "v1.31.0", "osImage": "Ubuntu 24.04 LTS"}},
    }
    if unschedulable:
        obj["spec"]["unschedulable"] = True
    return obj


def service(
    ns: str,
    name: str,
    *,
    selector: Mapping[str, str] | None = None,
    type_: str = "ClusterIP",
    labels: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    spec: dict[str, Any] = {"type": type_, "ports": [{"port": 80, "targetPort": 8080, "protocol": "TCP"}]}
    if type_ == "ExternalName":
        spec = {"type": type_, "externalName": f"{name}.example.com"}
    elif selector is None:
        spec["selector"] = {"app": name}
    elif selector:
        spec["selector"] = dict(selector)
    return {"apiVersion": "v1", "kind": "Service", "metadata": _meta(ns, name, labels, 86400 * 30), "spec": spec}


def endpoint_slice(
    ns: str, service_name: str, *, ready: int = 2, not_ready: int = 0, suffix: str = "abcde"
) -> dict[str, Any]:
    endpoints = [
        {
            "addresses": [f"10.244.1.{i + 10}"],
            "conditions": {"ready": i < ready, "serving": i < ready, "terminating": False},
            "nodeName": "node-1",
        }
        for i in range(ready + not_ready)
    ]
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": _meta(
            ns,
            f"{service_name}-{suffix}",
            {
                "kubernetes.io/service-name": service_name,
                "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io",
            },
            3600,
        ),
        "addressType": "IPv4",
        "endpoints": endpoints,
        "ports": [{"name": "", "port": 8080, "protocol": "TCP"}],
    }


def pvc(
    ns: str,
    name: str,
    *,
    phase: str = "Bound",
    age: float = 86400.0,
    storage_class: str = "gp3",
    labels: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    spec = {
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": "10Gi"}},
        "storageClassName": storage_class,
    }
    if phase == "Bound":
        spec["volumeName"] = f"pvc-{secrets.token_hex(8)}"
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": _meta(ns, name, labels, age),
        "spec": spec,
        "status": {"phase": phase},
    }


def cronjob(
    ns: str,
    name: str,
    *,
    last_success: float | None = 3600.0,
    last_schedule: float | None = None,
    schedule: str = "0 2 * * *",
    suspend: bool = False,
    age: float = 86400.0 * 30,
    labels: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    status: dict[str, Any] = {}
    if last_schedule is not None or last_success is not None:
        status["lastScheduleTime"] = ago(last_schedule if last_schedule is not None else last_success or 0)
    if last_success is not None:
        status["lastSuccessfulTime"] = ago(last_success)
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": _meta(ns, name, labels, age),
        "spec": {
            "schedule": schedule,
            "suspend": suspend,
            "jobTemplate": {
                "spec": {
                    "template": {
                        "spec": {
                            "containers": [{"name": name, "image": f"registry.example.com/{name}:1"}],
                            "restartPolicy": "OnFailure",
                        }
                    }
                }
            },
        },
        "status": status,
    }


def certificate(
    ns: str,
    name: str,
    *,
    days_left: float = 60.0,
    lifetime_days: float = 90.0,
    ready: bool = True,
    reason: str | None = None,
    message: str | None = None,
    labels: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """A cert-manager Certificate (cert-manager.io/v1) with its status as cert-manager writes it."""
    not_after = datetime.now(UTC) + timedelta(days=days_left)
    not_before = not_after - timedelta(days=lifetime_days)
    condition = {
        "type": "Ready",
        "status": "True" if ready else "False",
        "reason": reason or ("Ready" if ready else "Failed"),
        "message": message
        or (
            "Certificate is up to date and has not expired"
            if ready
            else "The certificate request has failed to complete and will be retried"
        ),
        "lastTransitionTime": ago(3600),
    }
    return {
        "apiVersion": "cert-manager.io/v1",
        "kind": "Certificate",
        "metadata": _meta(ns, name, labels, 86400 * 60),
        "spec": {
            "secretName": f"{name}-tls",
            "dnsNames": [f"{name}.example.com"],
            "issuerRef": {"name": "letsencrypt", "kind": "ClusterIssuer"},
        },
        "status": {
            "conditions": [condition],
            "notBefore": _stamp(not_before),
            "notAfter": _stamp(not_after),
            "renewalTime": _stamp(not_after - timedelta(days=lifetime_days / 3)),
        },
    }


def tls_secret(
    ns: str,
    name: str,
    *,
    days_left: float = 60.0,
    lifetime_days: float = 90.0,
    authority: Authority | None = None,
    crt: bytes | None = None,
    labels: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """A Secret of type kubernetes.io/tls whose tls.crt (a leaf and its chain) expires in `days_left`."""
    key_pem = b""
    if crt is None:
        issuer = authority or Authority.create()
        not_after = datetime.now(UTC) + timedelta(days=days_left)
        leaf = issuer.issue(
            f"{name}.example.com", not_before=not_after - timedelta(days=lifetime_days), not_after=not_after
        )
        crt, key_pem = leaf.chain_pem, leaf.key_pem
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "kubernetes.io/tls",
        "metadata": _meta(ns, name, labels, 86400 * 30),
        "data": {"tls.crt": base64.b64encode(crt).decode(), "tls.key": base64.b64encode(key_pem).decode()},
    }


def opaque_secret(ns: str, name: str, value: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": _meta(ns, name, {}, 86400),
        "data": {"password": base64.b64encode(value.encode()).decode()},
    }


def event(
    ns: str,
    name: str,
    *,
    reason: str = "BackOff",
    message: str = "Back-off restarting failed container",
    kind: str = "Pod",
    object_name: str = "api-1",
    type_: str = "Warning",
    last_seen: float = 600.0,
    count: int = 1,
) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": _meta(ns, name, {}, last_seen + 60),
        "involvedObject": {"kind": kind, "namespace": ns, "name": object_name, "apiVersion": "v1"},
        "reason": reason,
        "message": message,
        "type": type_,
        "count": count,
        "firstTimestamp": ago(last_seen + 60 * count),
        "lastTimestamp": ago(last_seen),
        "source": {"component": "kubelet", "host": "node-1"},
    }


