"""More of what `kubectl` shows, reduced from list calls like the rest of `probes.kubernetes`:

- usage: `metrics.k8s.io/v1beta1` pods and nodes (what `kubectl top` reads), against the
  containers' limits or requests (from the pods list the item makes anyway) and the nodes'
  allocatable (from the nodes list);
- ingresses (`networking.k8s.io/v1`): address, backend Services and their ready endpoints
  (the Services and EndpointSlices lists), TLS Secrets named (the TLS Secrets list);
- network policies (`networking.k8s.io/v1`): a default deny for ingress per namespace;
- HPA specs: min/max replicas and the CPU target of every HPA (the HPAs list);
- resources: any kind (a CRD's), listed by namespace and selector, its conditions and the
  field values the profile names.

One list per resource type (per namespace where the item names a few), however many objects:
a second reduction of a list already made (pods, nodes, HPAs) costs no call (`Tally.also`).
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

from opsproof.targets.kubernetes_more import ResourceExpectation

USAGE_SHOWN = 20  # worst containers and nodes kept per measure
_QUANTITY = re.compile(r"^([+-]?[0-9.]+(?:[eE][+-]?[0-9]+)?)([a-zA-Z]*)$")
_SUFFIXES = {
    "": 1.0,
    "n": 1e-9,
    "u": 1e-6,
    "m": 1e-3,
    "k": 1e3,
    "M": 1e6,
    "G": 1e9,
    "T": 1e12,
    "P": 1e15,
    "E": 1e18,
    "Ki": 1024.0,
    "Mi": 1024.0**2,
    "Gi": 1024.0**3,
    "Ti": 1024.0**4,
    "Pi": 1024.0**5,
    "Ei": 1024.0**6,
}


def quantity(text: Any) -> float | None:
    """A Kubernetes quantity as a number: '250m' -> 0.25 (cores), '512Mi' -> 536870912 (bytes); None if unreadable."""
    if isinstance(text, int | float) and not isinstance(text, bool):
        return float(text)
    match = _QUANTITY.match(str(text).strip()) if text is not None else None
    if match is None or match.group(2) not in _SUFFIXES:
        return None
    try:
        return float(match.group(1)) * _SUFFIXES[match.group(2)]
    except ValueError:
        return None


def _meta(obj: dict[str, Any]) -> dict[str, Any]:
    meta = obj.get("metadata")
    return meta if isinstance(meta, dict) else {}


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


# -- usage ---------------------------------------------------------------------------------


def pod_resources(obj: dict[str, Any], _: float) -> dict[str, Any] | None:
    """A running pod's containers' limits and requests, for the usage shares."""
    if _dict(obj.get("status")).get("phase") != "Running":
        return None
    meta = _meta(obj)
    containers = {}
    for container in _list(_dict(obj.get("spec")).get("containers")):
        resources = _dict(_dict(container).get("resources"))
        containers[str(_dict(container).get("name"))] = {
            side: {kind: quantity(value) for kind, value in _dict(resources.get(side)).items()}
            for side in ("limits", "requests")
        }
    return {"namespace": meta.get("namespace"), "name": meta.get("name"), "containers": containers}


def pod_metrics(obj: dict[str, Any], _: float) -> dict[str, Any]:
    meta = _meta(obj)
    used = {
        str(_dict(c).get("name")): {k: quantity(v) for k, v in _dict(_dict(c).get("usage")).items()}
        for c in _list(obj.get("containers"))
    }
    return {"namespace": meta.get("namespace"), "name": meta.get("name"), "containers": used}


def node_allocatable(obj: dict[str, Any], _: float) -> dict[str, Any]:
    allocatable = _dict(_dict(obj.get("status")).get("allocatable"))
    return {
        "name": _meta(obj).get("name"),
        "cpu": quantity(allocatable.get("cpu")),
        "memory": quantity(allocatable.get("memory")),
    }


def node_metrics(obj: dict[str, Any], _: float) -> dict[str, Any]:
    usage = _dict(obj.get("usage"))
    return {"name": _meta(obj).get("name"), "cpu": quantity(usage.get("cpu")), "memory": quantity(usage.get("memory"))}


def usage_summary(
    resources: list[dict[str, Any]], metrics: list[dict[str, Any]], of: str, nodes: tuple[list[Any], list[Any]] | None
) -> dict[str, Any]:
    """Each container's CPU and memory as a share of its limit (or request), worst first; nodes' of allocatable."""
    specs = {(p["namespace"], p["name"]): p["containers"] for p in resources}
    shares: dict[str, list[dict[str, Any]]] = {"cpu": [], "memory": []}
    unbounded: Counter[str] = Counter()
    measured = 0
    for pod in metrics:
        spec = specs.get((pod["namespace"], pod["name"]))
        if spec is None:
            continue  # not Running, or gone since: the metrics API lags the pods list
        for container, used in pod["containers"].items():
            measured += 1
            bounds = spec.get(container, {}).get(of, {})
            for measure in ("cpu", "memory"):
                limit, value = bounds.get(measure), used.get(measure)
                if not limit or value is None:
                    unbounded[measure] += 1
                    continue
                shares[measure].append(
                    {
                        "pod": f"{pod['namespace']}/{pod['name']}",
                        "container": container,
                        "share": round(100 * value / limit, 2),  # percent, as profiles write them
                        "used": value,
                        "of": limit,
                    }
                )
    summary: dict[str, Any] = {"containers": measured, "of": of, "without_" + of: dict(unbounded)}
    for measure, found in shares.items():
        summary[measure] = sorted(found, key=lambda entry: -entry["share"])[:USAGE_SHOWN]
    if nodes is not None:
        allocatable = {n["name"]: n for n in nodes[0]}
        node_shares = []
        for node in nodes[1]:
            capacity = allocatable.get(node["name"])
            if capacity is None:
                continue
            node_shares.append(
                {
                    "name": node["name"],
                    **{
                        measure: round(100 * node[measure] / capacity[measure], 2)
                        for measure in ("cpu", "memory")
                        if node.get(measure) is not None and capacity.get(measure)
                    },
                }
            )
        summary["nodes"] = node_shares
    return summary


# -- ingresses -------------------------------------------------------------------------------


def ingress_entry(obj: dict[str, Any], _: float) -> dict[str, Any]:
    spec, meta = _dict(obj.get("spec")), _meta(obj)
    backends = set()
    default = _dict(_dict(spec.get("defaultBackend")).get("service")).get("name")
    if default:
        backends.add(str(default))
    for rule in _list(spec.get("rules")):
        for path in _list(_dict(_dict(rule).get("http")).get("paths")):
            name = _dict(_dict(_dict(path).get("backend")).get("service")).get("name")
            if name:
                backends.add(str(name))
    addresses = [
        str(_dict(entry).get("ip") or _dict(entry).get("hostname"))
        for entry in _list(_dict(_dict(obj.get("status")).get("loadBalancer")).get("ingress"))
        if _dict(entry).get("ip") or _dict(entry).get("hostname")
    ]
    secrets = sorted({str(t["secretName"]) for t in _list(spec.get("tls")) if _dict(t).get("secretName")})
    return {
        "namespace": meta.get("namespace"),
        "name": meta.get("name"),
        "addresses": addresses,
        "backends": sorted(backends),
        "tls_secrets": secrets,
    }


def ingress_problems(
    ingresses: list[dict[str, Any]],
    services: list[dict[str, Any]],
    slices: list[dict[str, Any]],
    tls_secrets: list[dict[str, Any]] | None,
) -> list[dict[str, Any]]:
    """Each ingress with what is wrong with it: no address, a backend missing or not ready, a TLS Secret missing."""
    existing = {(s["namespace"], s["name"]) for s in services}
    ready: Counter[tuple[str, str]] = Counter()
    for entry in slices:
        ready[(entry["namespace"], entry["service"])] += entry["ready"]
    secrets = {(s["namespace"], s["name"]) for s in tls_secrets or []}
    judged = []
    for ingress in ingresses:
        ns = ingress["namespace"]
        problems = []
        if not ingress["addresses"]:
            problems.append("no address assigned")
        for backend in ingress["backends"]:
            if (ns, backend) not in existing:
                problems.append(f"backend Service {backend} does not exist")
            elif not ready[(ns, backend)]:
                problems.append(f"backend Service {backend} has no ready endpoint")
        if tls_secrets is not None:
            problems += [f"TLS Secret {s} does not exist" for s in ingress["tls_secrets"] if (ns, s) not in secrets]
        judged.append({**ingress, "problems": problems})
    return judged


# -- network policies -------------------------------------------------------------------------


def _allows_all(rule: dict[str, Any]) -> bool:
    sources = _list(rule.get("from"))
    if not sources:
        return True  # no `from`: every source
    for source in sources:
        block = _dict(_dict(source).get("ipBlock"))
        if block.get("cidr") in ("0.0.0.0/0", "::/0") and not block.get("except"):
            return True
        if (
            "namespaceSelector" in source
            and not _dict(source.get("namespaceSelector"))
            and not source.get("podSelector")
        ):
            return True  # every pod of every namespace
    return False


def network_policy_entry(obj: dict[str, Any], _: float) -> dict[str, Any]:
    spec, meta = _dict(obj.get("spec")), _meta(obj)
    selector = _dict(spec.get("podSelector"))
    types = _list(spec.get("policyTypes"))
    # Without policyTypes, Ingress always applies (and Egress only when egress rules are given).
    ingress = "Ingress" in types or not types
    rules = [_dict(r) for r in _list(spec.get("ingress"))]
    return {
        "namespace": meta.get("namespace"),
        "name": meta.get("name"),
        "selects_all": not selector.get("matchLabels") and not selector.get("matchExpressions"),
        "ingress": ingress,
        "allows_all": any(_allows_all(rule) for rule in rules),
    }


def default_deny(policies: list[dict[str, Any]], namespaces: list[str]) -> dict[str, Any]:
    """Which namespaces have a policy selecting every pod for ingress that allows no source at large."""
    denying: dict[str, list[str]] = {}
    for policy in policies:
        if policy["selects_all"] and policy["ingress"] and not policy["allows_all"]:
            denying.setdefault(policy["namespace"], []).append(policy["name"])
    allow_all = sorted(f"{p['namespace']}/{p['name']}" for p in policies if p["ingress"] and p["allows_all"])
    return {
        "namespaces": namespaces,
        "denying": {ns: sorted(names) for ns, names in denying.items() if ns in namespaces},
        "without": [ns for ns in namespaces if ns not in denying],
        "allow_all": allow_all,
    }


# -- HPA specs and any resource -------------------------------------------------------------------


def hpa_spec_entry(obj: dict[str, Any], _: float) -> dict[str, Any]:
    spec, meta = _dict(obj.get("spec")), _meta(obj)
    cpu = None
    for metric in _list(spec.get("metrics")):
        resource = _dict(_dict(metric).get("resource"))
        target = _dict(resource.get("target"))
        if resource.get("name") == "cpu" and target.get("type") == "Utilization":
            cpu = target.get("averageUtilization")
    return {
        "namespace": meta.get("namespace"),
        "name": meta.get("name"),
        "min": spec.get("minReplicas", 1),
        "max": spec.get("maxReplicas"),
        "cpu_utilization": float(cpu) if isinstance(cpu, int | float) else None,  # percent
    }


def field_value(obj: Any, path: str) -> Any:
    """The value at a dotted path (`status.health.status`); a list index may be a number: `spec.rules.0.host`."""
    found = obj
    for part in path.split("."):
        if isinstance(found, dict):
            found = found.get(part)
        elif isinstance(found, list) and part.isdigit() and int(part) < len(found):
            found = found[int(part)]
        else:
            return None
    return found


def resource_keeper(expectation: ResourceExpectation) -> Any:
    """The reduction of one resource's objects: name, the condition asked for, the fields asked for."""

    def keep(obj: dict[str, Any], _: float) -> dict[str, Any]:
        meta = _meta(obj)
        entry: dict[str, Any] = {"namespace": meta.get("namespace"), "name": meta.get("name")}
        if expectation.condition is not None:
            conditions = {
                c.get("type"): c for c in _list(_dict(obj.get("status")).get("conditions")) if isinstance(c, dict)
            }
            found = conditions.get(expectation.condition)
            entry["condition"] = (
                {"status": found.get("status"), "reason": found.get("reason"), "message": found.get("message")}
                if found
                else None
            )
        entry["fields"] = {path: field_value(obj, path) for path in expectation.fields}
        return entry

    return keep


# -- the facts ---------------------------------------------------------------------------------


def more_facts(target: Any, tallies: dict[str, Any]) -> dict[str, Any]:
    """The new aspects' facts from the item's reduced lists (`Tally` by key); absent where a list failed."""
    found: dict[str, Any] = {}
    usage = target.usage
    if usage is not None and "podmetrics" in tallies and "pod_resources" in tallies:
        nodes = None
        if usage.nodes and "node_allocatable" in tallies and "nodemetrics" in tallies:
            nodes = (tallies["node_allocatable"].kept, tallies["nodemetrics"].kept)
        found["usage"] = usage_summary(tallies["pod_resources"].kept, tallies["podmetrics"].kept, usage.of, nodes)
    if target.ingresses and all(k in tallies for k in ("ingresses", "services", "endpointslices")):
        secrets = tallies["secrets"].kept if "secrets" in tallies else None
        found["ingresses"] = ingress_problems(
            tallies["ingresses"].kept, tallies["services"].kept, tallies["endpointslices"].kept, secrets
        )
    settings = target.network_policies
    if settings is not None and "networkpolicies" in tallies and "namespaces" in tallies:
        existing = [entry["name"] for entry in tallies["namespaces"].kept]
        wanted = target.namespaces or [ns for ns in existing if ns not in settings.ignore_namespaces]
        found["network_policies"] = default_deny(
            tallies["networkpolicies"].kept, [ns for ns in wanted if ns in existing]
        )
    if "hpa_specs" in tallies:
        found["hpa_specs"] = tallies["hpa_specs"].kept
    found["resources"] = {
        key.removeprefix("resource/"): tally.kept for key, tally in tallies.items() if key.startswith("resource/")
    }
    return found
