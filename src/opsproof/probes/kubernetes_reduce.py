"""Kubernetes objects reduced to facts: counts, and compact entries for the objects worth a look.

Each list is reduced page by page (`Tally`), so a 5,000-pod list never sits in memory
whole and travels to the checks as a few kilobytes.
"""


from __future__ import annotations

import base64
import binascii
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from opsproof.probes import kubernetes_more as more
from opsproof.targets.kubernetes import KubernetesTarget

# Waiting reasons of a container that is on its way up, not in trouble.
STARTING_REASONS = frozenset({"ContainerCreating", "PodInitializing"})
PRESSURE_CONDITIONS = ("MemoryPressure", "DiskPressure", "PIDPressure", "NetworkUnavailable")
MAX_EVENT_GROUPS = 50
WORKLOAD_KINDS = {"deployments": "Deployment", "statefulsets": "StatefulSet", "daemonsets": "DaemonSet"}


Keep = Callable[[dict[str, Any], float], "dict[str, Any] | None"]


@dataclass
class Tally:
    """One resource type reduced page by page: a count, counts by category, and the entries kept.

    Pages are reduced as they arrive, so a 5,000-pod list never sits in memory whole: only
    the compact entries of the objects worth a look do.
    """

    keep: Keep
    now: float
    category: Callable[[dict[str, Any]], str] | None = None
    total: int = 0
    by: Counter[str] = field(default_factory=Counter)
    kept: list[dict[str, Any]] = field(default_factory=list)
    # Other reductions of the same objects (a pod's limits for usage): one list, several tallies.
    also: list[Tally] = field(default_factory=list)

    def add(self, objects: Iterable[dict[str, Any]]) -> None:
        objects = list(objects)
        for other in self.also:
            other.add(objects)
        for obj in objects:
            self.total += 1
            if self.category is not None:
                self.by[self.category(obj)] += 1
            entry = self.keep(obj, self.now)
            if entry is not None:
                self.kept.append(entry)


MORE_KEEPS: dict[str, Keep] = {
    "pod_resources": more.pod_resources,
    "podmetrics": more.pod_metrics,
    "node_allocatable": more.node_allocatable,
    "nodemetrics": more.node_metrics,
    "ingresses": more.ingress_entry,
    "networkpolicies": more.network_policy_entry,
    "hpa_specs": more.hpa_spec_entry,
}


def tally_for(key: str, target: KubernetesTarget, now: float) -> Tally:
    """How each resource type is reduced."""
    if key.startswith("resource/"):
        name = key.removeprefix("resource/")
        return Tally(more.resource_keeper(next(r for r in target.resources if r.name == name)), now)
    if key in MORE_KEEPS:
        return Tally(MORE_KEEPS[key], now)
    if key == "pods":
        return Tally(notable_pod, now, category=lambda obj: str(_dict(obj.get("status")).get("phase") or "Unknown"))
    if key in WORKLOAD_KINDS:
        kind = WORKLOAD_KINDS[key]
        return Tally(lambda obj, _: short_workload(kind, obj), now)
    if key == "events":
        settings = target.events
        within, ignore = (settings.within, set(settings.ignore_reasons)) if settings else (0.0, set())
        return Tally(lambda obj, at: recent_warning(obj, at, within, ignore), now)
    keeps: dict[str, Keep] = {
        "namespaces": lambda obj, _: {"name": _meta(obj).get("name")},
        "horizontalpodautoscalers": lambda obj, _: notable_hpa(obj),
        "nodes": lambda obj, _: notable_node(obj),
        "services": lambda obj, _: service_entry(obj),
        "endpointslices": lambda obj, _: slice_entry(obj),
        "persistentvolumeclaims": unbound_pvc,
        "cronjobs": cronjob_entry,
        "certificates": certificate_entry,
        "secrets": tls_secret_entry,
    }
    return Tally(keeps[key], now)


def _meta(obj: Any) -> dict[str, Any]:
    meta = obj.get("metadata") if isinstance(obj, dict) else None
    return meta if isinstance(meta, dict) else {}


def _age(stamp: Any, now: float) -> float | None:
    """Seconds from an API timestamp (RFC 3339) to `now`; None when absent or unreadable."""
    if not isinstance(stamp, str) or not stamp:
        return None
    try:
        moment = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        return None
    return round(now - moment.timestamp(), 3)


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _conditions(obj: Any) -> dict[str, dict[str, Any]]:
    found = _list(_dict(obj.get("status")).get("conditions"))
    return {c["type"]: c for c in found if isinstance(c, dict) and "type" in c}


def _short(text: Any, limit: int = 200) -> str | None:
    if not isinstance(text, str) or not text:
        return None
    words = " ".join(text.split())
    return words if len(words) <= limit else words[: limit - 1] + "…"


def _compact(entry: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in entry.items() if v is not None and v != [] and v != {}}


# -- pods


def _healthy_at_a_glance(status: dict[str, Any]) -> bool:
    # Most pods of a healthy cluster: Running, every container ready, running, never restarted.
    statuses = _list(status.get("containerStatuses"))
    return (
        status.get("phase") == "Running"
        and bool(statuses)
        and all(
            isinstance(c, dict)
            and c.get("ready") is True
            and not c.get("restartCount")
            and "running" in _dict(c.get("state"))
            and not _dict(c.get("lastState"))
            for c in statuses
        )
    )


def _container(status: dict[str, Any], now: float, *, init: bool) -> dict[str, Any]:
    state = _dict(status.get("state"))
    last = _dict(_dict(status.get("lastState")).get("terminated"))
    entry: dict[str, Any] = {
        "name": str(status.get("name")),
        "ready": bool(status.get("ready")),
        "restarts": _int(status.get("restartCount")),
    }
    if init:
        entry["init"] = True
    if "running" in state:
        entry["state"] = "running"
        entry["started_age_s"] = _age(_dict(state["running"]).get("startedAt"), now)
    elif "waiting" in state:
        entry["state"] = "waiting"
        entry["reason"] = _dict(state["waiting"]).get("reason")
        entry["message"] = _short(_dict(state["waiting"]).get("message"))
    elif "terminated" in state:
        entry["state"] = "terminated"
        entry["reason"] = _dict(state["terminated"]).get("reason")
        entry["exit_code"] = _dict(state["terminated"]).get("exitCode")
    if last:
        entry["last_reason"] = last.get("reason")
        entry["last_exit_code"] = last.get("exitCode")
        entry["last_finished_age_s"] = _age(last.get("finishedAt"), now)
    return {k: v for k, v in entry.items() if v is not None}


def _container_is_fine(entry: dict[str, Any], phase: str) -> bool:
    if entry.get("init"):
        return entry.get("state") == "terminated" and entry.get("reason") == "Completed" and not entry["restarts"]
    if phase == "Succeeded":
        return not entry["restarts"]
    return entry["ready"] and entry.get("state") == "running" and not entry["restarts"] and "last_reason" not in entry


def notable_pod(obj: dict[str, Any], now: float) -> dict[str, Any] | None:
    """A pod with anything short of perfect, compact (the checks judge which matter); None for the rest."""
    status = _dict(obj.get("status"))
    if _healthy_at_a_glance(status):
        return None
    phase = str(status.get("phase") or "Unknown")
    containers = [
        _container(c, now, init=True) for c in _list(status.get("initContainerStatuses")) if isinstance(c, dict)
    ]
    containers += [
        _container(c, now, init=False) for c in _list(status.get("containerStatuses")) if isinstance(c, dict)
    ]
    odd = [c for c in containers if not _container_is_fine(c, phase)]
    if phase == "Succeeded" and not odd:
        return None
    meta = _meta(obj)
    owner = next((_dict(o) for o in _list(meta.get("ownerReferences")) if _dict(o).get("controller")), {})
    return _compact(
        {
            "namespace": meta.get("namespace"),
            "name": meta.get("name"),
            "phase": phase,
            "reason": status.get("reason"),
            "message": _short(status.get("message")),
            "age_s": _age(meta.get("creationTimestamp"), now),
            "finished_age_s": _finished_age(obj, status, now) if phase == "Failed" else None,
            "owner": f"{owner.get('kind')}/{owner.get('name')}" if owner else None,
            "unschedulable": _unschedulable(obj),
            "containers": odd,
        }
    )


def _finished_age(pod: dict[str, Any], status: dict[str, Any], now: float) -> float | None:
    """How long ago a Failed pod ended: its containers' end, else when it stopped being Ready."""
    ends = [
        _age(_dict(_dict(c.get("state")).get("terminated")).get("finishedAt"), now)
        for c in _list(status.get("containerStatuses"))
        if isinstance(c, dict)
    ]
    known = [age for age in ends if age is not None]
    if known:
        return min(known)
    return _age(_conditions(pod).get("Ready", {}).get("lastTransitionTime"), now)


def _unschedulable(pod: dict[str, Any]) -> str | None:
    # The scheduler's own words ("0/3 nodes are available: 3 Insufficient memory") say why a pod is Pending.
    scheduled = _conditions(pod).get("PodScheduled", {})
    if scheduled.get("status") == "False":
        return _short(scheduled.get("message")) or str(scheduled.get("reason") or "not scheduled")
    return None


# -- workloads, autoscalers, nodes


def short_workload(kind: str, obj: dict[str, Any]) -> dict[str, Any] | None:
    """A Deployment, StatefulSet or DaemonSet short of its desired replicas, or whose rollout stalled."""
    spec, status = _dict(obj.get("spec")), _dict(obj.get("status"))
    if kind == "DaemonSet":
        desired = _int(status.get("desiredNumberScheduled"))
        available = _int(status.get("numberAvailable"))
        ready = _int(status.get("numberReady"))
    else:
        desired = _int(spec.get("replicas")) if "replicas" in spec else 1
        ready = _int(status.get("readyReplicas"))
        # StatefulSets carry availableReplicas since 1.22; before that, ready is all there is.
        has_available = "availableReplicas" in status or kind == "Deployment"
        available = _int(status.get("availableReplicas")) if has_available else ready
    progressing = _conditions(obj).get("Progressing", {})
    stalled = progressing.get("reason") == "ProgressDeadlineExceeded" and progressing.get("status") == "False"
    if available >= desired and not stalled:
        return None
    meta = _meta(obj)
    return _compact(
        {
            "kind": kind,
            "namespace": meta.get("namespace"),
            "name": meta.get("name"),
            "desired": desired,
            "available": available,
            "ready": ready,
            "stalled": (_short(progressing.get("message")) or "ProgressDeadlineExceeded") if stalled else None,
            "paused": bool(spec.get("paused")) or None,
        }
    )


def notable_hpa(obj: dict[str, Any]) -> dict[str, Any] | None:
    """An HPA at its maximum, or with AbleToScale or ScalingActive False."""
    spec, status = _dict(obj.get("spec")), _dict(obj.get("status"))
    conditions = _conditions(obj)
    current, maximum = _int(status.get("currentReplicas")), _int(spec.get("maxReplicas"))
    unable = {
        kind: {"reason": c.get("reason"), "message": _short(c.get("message"))}
        for kind in ("AbleToScale", "ScalingActive")
        if (c := conditions.get(kind)) is not None
        and c.get("status") == "False"
        # A target scaled to zero disables scaling on purpose: not a fault.
        and c.get("reason") != "ScalingDisabled"
    }
    at_max = maximum > 0 and current >= maximum
    if not unable and not at_max:
        return None
    meta = _meta(obj)
    return {
        "namespace": meta.get("namespace"),
        "name": meta.get("name"),
        "current": current,
        "desired": _int(status.get("desiredReplicas")),
        "min": _int(spec.get("minReplicas")) or 1,
        "max": maximum,
        "at_max": at_max,
        "unable": unable,
    }


def notable_node(obj: dict[str, Any]) -> dict[str, Any] | None:
    """A node not Ready, under pressure, or cordoned."""
    conditions = _conditions(obj)
    ready = conditions.get("Ready", {})
    pressure = [kind for kind in PRESSURE_CONDITIONS if conditions.get(kind, {}).get("status") == "True"]
    cordoned = bool(_dict(obj.get("spec")).get("unschedulable"))
    if ready.get("status") == "True" and not pressure and not cordoned:
        return None
    return _compact(
        {
            "name": _meta(obj).get("name"),
            "ready": ready.get("status", "Unknown"),
            "ready_reason": ready.get("reason"),
            "ready_message": _short(ready.get("message")),
            "pressure": pressure,
            "cordoned": cordoned,
        }
    )


# -- services and volumes


def service_entry(obj: dict[str, Any]) -> dict[str, Any]:
    spec = _dict(obj.get("spec"))
    selector = _dict(spec.get("selector"))
    meta = _meta(obj)
    return {
        "namespace": str(meta.get("namespace")),
        "name": str(meta.get("name")),
        # No pods behind it by design (ExternalName, or endpoints managed by hand): not judged.
        "judged": spec.get("type") != "ExternalName" and bool(selector),
        "selector": ",".join(f"{k}={v}" for k, v in sorted(selector.items())),
    }


def slice_entry(obj: dict[str, Any]) -> dict[str, Any] | None:
    meta = _meta(obj)
    owner = _dict(meta.get("labels")).get("kubernetes.io/service-name")
    if not owner:
        return None
    endpoints = [_dict(_dict(e).get("conditions")) for e in _list(obj.get("endpoints"))]
    # The API says a nil `ready` is to be read as ready.
    not_ready = sum(1 for conditions in endpoints if conditions.get("ready") is False)
    return {
        "namespace": str(meta.get("namespace")),
        "service": str(owner),
        "ready": len(endpoints) - not_ready,
        "not_ready": not_ready,
    }


def services_without_endpoints(services: Tally, slices: Tally) -> dict[str, Any]:
    """Services with a selector and no ready endpoint in the EndpointSlices of their namespace."""
    ready: Counter[tuple[str, str]] = Counter()
    not_ready: Counter[tuple[str, str]] = Counter()
    for entry in slices.kept:
        key = (entry["namespace"], entry["service"])
        ready[key] += entry["ready"]
        not_ready[key] += entry["not_ready"]
    judged = [entry for entry in services.kept if entry["judged"]]
    notable = [
        {"namespace": e["namespace"], "name": e["name"], "not_ready": not_ready[key], "selector": e["selector"]}
        for e in judged
        if not ready[key := (e["namespace"], e["name"])]
    ]
    return {"total": len(judged), "skipped": services.total - len(judged), "notable": notable}


def unbound_pvc(obj: dict[str, Any], now: float) -> dict[str, Any] | None:
    phase = _dict(obj.get("status")).get("phase") or "Pending"
    if phase == "Bound":
        return None
    meta = _meta(obj)
    return _compact(
        {
            "namespace": meta.get("namespace"),
            "name": meta.get("name"),
            "phase": phase,
            "age_s": _age(meta.get("creationTimestamp"), now),
            "storage_class": _dict(obj.get("spec")).get("storageClassName"),
        }
    )


# -- CronJobs, certificates


def cronjob_entry(obj: dict[str, Any], now: float) -> dict[str, Any]:
    """Every CronJob, compact: the checks match them to the item's expectations by name and labels."""
    meta, spec, status = _meta(obj), _dict(obj.get("spec")), _dict(obj.get("status"))
    return _compact(
        {
            "namespace": meta.get("namespace"),
            "name": meta.get("name"),
            "labels": _dict(meta.get("labels")),
            "schedule": spec.get("schedule"),
            "suspended": bool(spec.get("suspend")),
            "age_s": _age(meta.get("creationTimestamp"), now),
            "last_success_age_s": _age(status.get("lastSuccessfulTime"), now),
            "last_schedule_age_s": _age(status.get("lastScheduleTime"), now),
            "active": len(_list(status.get("active"))),
        }
    )


def certificate_entry(obj: dict[str, Any], now: float) -> dict[str, Any]:
    """A cert-manager Certificate: Ready, its reason, and the dates of the certificate it holds."""
    meta, status = _meta(obj), _dict(obj.get("status"))
    ready = _conditions(obj).get("Ready", {})
    expired_for = _age(status.get("notAfter"), now)  # negative while it is valid
    valid_for = _age(status.get("notBefore"), now)
    return _compact(
        {
            "namespace": meta.get("namespace"),
            "name": meta.get("name"),
            "ready": ready.get("status", "Unknown"),
            "reason": ready.get("reason"),
            "message": _short(ready.get("message")),
            "not_after": status.get("notAfter"),
            "left_s": -expired_for if expired_for is not None else None,
            "lifetime_s": valid_for - expired_for if valid_for is not None and expired_for is not None else None,
            "secret": _dict(obj.get("spec")).get("secretName"),
        }
    )


def tls_secret_entry(obj: dict[str, Any], now: float) -> dict[str, Any]:
    """A TLS Secret's leaf certificate (the first in tls.crt): its dates and subject. tls.key is never read."""
    from cryptography import x509

    meta = _meta(obj)
    entry: dict[str, Any] = {"namespace": meta.get("namespace"), "name": meta.get("name")}
    encoded = _dict(obj.get("data")).get("tls.crt")
    if not encoded:
        return entry | {"error": "tls.crt is empty"}
    try:
        certificate = x509.load_pem_x509_certificates(base64.b64decode(encoded, validate=True))[0]
    except (ValueError, binascii.Error, IndexError, TypeError):
        return entry | {"error": "tls.crt is not a PEM certificate"}
    not_after = certificate.not_valid_after_utc
    subject = certificate.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    return entry | {
        "not_after": not_after.isoformat().replace("+00:00", "Z"),
        "left_s": round(not_after.timestamp() - now, 3),
        "lifetime_s": round(not_after.timestamp() - certificate.not_valid_before_utc.timestamp(), 3),
        "subject": str(subject[0].value) if subject else certificate.subject.rfc4514_string(),
    }


# -- events


def recent_warning(obj: dict[str, Any], now: float, within: float, ignore: set[str]) -> dict[str, Any] | None:
    """A Warning event last seen within the window (ignored reasons marked), compact."""
    if obj.get("type") != "Warning":
        return None
    series = _dict(obj.get("series"))
    meta = _meta(obj)
    seen = (
        series.get("lastObservedTime")
        or obj.get("lastTimestamp")
        or obj.get("eventTime")
        or meta.get("creationTimestamp")
    )
    age = _age(seen, now)
    if age is None or age > within:
        return None
    involved = _dict(obj.get("involvedObject"))
    reason = str(obj.get("reason") or "")
    return {
        "namespace": str(involved.get("namespace") or meta.get("namespace") or ""),
        "kind": str(involved.get("kind") or "?"),
        "name": str(involved.get("name") or "?"),
        "reason": reason,
        "count": _int(series.get("count")) or _int(obj.get("count")) or 1,
        "age_s": age,
        "message": _short(obj.get("message") or obj.get("note")),
        "ignored": reason in ignore,
    }


def group_events(events: Tally, within: float) -> dict[str, Any]:
    """The window's Warning events grouped by object and reason, newest first."""
    groups: dict[tuple[str, str, str, str], dict[str, Any]] = {}
    counted = [e for e in events.kept if not e["ignored"]]
    for event in counted:
        key = (event["namespace"], event["kind"], event["name"], event["reason"])
        group = groups.setdefault(
            key,
            {k: event[k] for k in ("namespace", "kind", "name", "reason")}
            | {"events": 0, "count": 0, "last_age_s": event["age_s"]},
        )
        group["events"] += 1
        group["count"] += event["count"]
        if event["age_s"] <= group["last_age_s"]:
            group["last_age_s"] = event["age_s"]
            group["message"] = event["message"]
    ordered = sorted(groups.values(), key=lambda g: g["last_age_s"])
    return {
        "within_s": within,
        "total": len(counted),
        "ignored": len(events.kept) - len(counted),
        "groups": [_compact(g) for g in ordered[:MAX_EVENT_GROUPS]],
        "more_groups": max(0, len(ordered) - MAX_EVENT_GROUPS),
    }
