"""More Kubernetes checks (runbooks 000, 001, 002, 003: `kubectl top`, ingress, network policies, HPA, KEDA).

The same `kubernetes` items as checks/infra/test_kubernetes.py, read in the same handful
of list calls (see opsproof.probes.kubernetes_more):

- `kubernetes.usage[<name>]`  containers' CPU and memory as a share of their limits (or
  requests), nodes' of their allocatable, from the metrics API (000/001's `kubectl top`)
- `kubernetes.ingresses[<name>]`  an address assigned, backend Services with ready endpoints,
  the TLS Secrets named exist (000's `kubectl get ingress`)
- `kubernetes.network_policies[<name>]`  a default deny for ingress in each namespace (001)
- `kubernetes.hpa_spec[<name>/<part>]`  an HPA's min/max replicas and CPU target (002's HPA spec)
- `kubernetes.resource[<name>/<part>]`  any kind by a status condition or field values (003's
  KEDA ScaledObject, Argo CD Applications)
"""

from __future__ import annotations

from fnmatch import fnmatchcase
from typing import Any

import pytest
from kubernetes_judging import answered, judge, listed, named, observe_offenders

from opsproof import Check, Part, applies, each
from opsproof.probes.kubernetes import KubernetesFacts
from opsproof.targets.kubernetes import KubernetesTarget
from opsproof.targets.kubernetes_more import HpaExpectation, ResourceExpectation
from opsproof.units import format_percent

pytestmark = [pytest.mark.infra]


@applies(lambda item: item.usage is not None)
def test_usage(item: KubernetesTarget, facts: KubernetesFacts, check: Check) -> None:
    settings = item.usage
    assert settings is not None
    keys = ["podmetrics", "pod_resources"] + (["nodemetrics", "node_allocatable"] if settings.nodes else [])
    answered(facts, *keys)
    usage = facts.usage
    failures = []
    for measure in ("cpu", "memory"):
        threshold = getattr(settings, measure)
        worst = usage.get(measure) or []
        if threshold is None:
            continue
        lines = [
            f"{w['pod']} {w['container']} {measure} {format_percent(w['share'])} of its {settings.of}" for w in worst
        ]
        observe_offenders(check, f"{measure}_worst", lines[:5])
        if worst:
            failure = judge(
                check,
                f"{measure} of {settings.of}",
                worst[0]["share"],
                threshold,
                show=format_percent,
                detail=listed(lines),
            )
            failures += [failure] if failure else []
        for node in usage.get("nodes", []) if settings.nodes else []:
            if measure in node:
                failure = judge(
                    check,
                    f"node {node['name']} {measure} of allocatable",
                    node[measure],
                    threshold,
                    show=format_percent,
                )
                failures += [failure] if failure else []
    without = usage.get(f"without_{settings.of}") or {}
    check.observe(containers=usage.get("containers", 0), **{f"without_{settings.of}": without})
    assert usage.get("containers"), "the metrics API has no usage for any running pod of the item"
    assert not failures, "; ".join(failures)
    check.note(f"{usage['containers']} containers within their {settings.of}")


@applies(lambda item: item.ingresses)
def test_ingresses(item: KubernetesTarget, facts: KubernetesFacts, check: Check) -> None:
    answered(facts, "ingresses", "services", "endpointslices", "secrets")
    wrong = [f"{named(i)}: {', '.join(i['problems'])}" for i in facts.ingresses if i["problems"]]
    check.observe(ingresses=len(facts.ingresses), with_problems=len(wrong))
    observe_offenders(check, "problems", wrong)
    assert not wrong, listed(wrong)
    check.note(f"{len(facts.ingresses)} Ingresses with an address and ready backends")


@applies(lambda item: item.network_policies is not None and item.network_policies.default_deny)
def test_network_policies(item: KubernetesTarget, facts: KubernetesFacts, check: Check) -> None:
    answered(facts, "networkpolicies", "namespaces")
    policies = facts.network_policies
    check.expect(default_deny=True)
    check.observe(namespaces=policies["namespaces"], denying=policies["denying"], allow_all=policies["allow_all"][:20])
    assert policies["namespaces"], "no namespace to judge"
    without = policies["without"]
    assert not without, (
        f"no default-deny ingress NetworkPolicy (podSelector {{}}, Ingress, no allow-all rule) in {listed(without)}"
    )
    check.note(f"default deny in {len(policies['namespaces'])} namespaces")


def _spec_problems(hpa: dict[str, Any], wanted: HpaExpectation) -> list[str]:
    problems = []
    if wanted.min_replicas is not None and hpa["min"] < wanted.min_replicas:
        problems.append(f"minReplicas {hpa['min']} (expected at least {wanted.min_replicas})")
    if wanted.max_replicas is not None and (hpa["max"] or 0) < wanted.max_replicas:
        problems.append(f"maxReplicas {hpa['max']} (expected at least {wanted.max_replicas})")
    if wanted.cpu_utilization is not None and hpa["cpu_utilization"] != wanted.cpu_utilization:
        shown = "none" if hpa["cpu_utilization"] is None else format_percent(hpa["cpu_utilization"])
        problems.append(f"CPU target {shown} (expected {format_percent(wanted.cpu_utilization)})")
    return problems


@each("hpa_specs")
def test_hpa_spec(item: KubernetesTarget, part: Part, facts: KubernetesFacts, check: Check) -> None:
    wanted: HpaExpectation = part.spec
    answered(facts, "horizontalpodautoscalers")
    check.expect(
        match=wanted.pattern,
        **{k: v for k, v in wanted.model_dump(include={"min_replicas", "max_replicas"}).items() if v is not None},
    )
    if wanted.cpu_utilization is not None:
        check.expect(cpu_utilization=format_percent(wanted.cpu_utilization))
    matched = [
        h for h in facts.hpa_specs if fnmatchcase(h["name"], wanted.pattern) or fnmatchcase(named(h), wanted.pattern)
    ]
    check.observe(
        hpas=[{k: h[k] for k in ("namespace", "name", "min", "max", "cpu_utilization")} for h in matched[:20]]
    )
    assert matched, f"no HorizontalPodAutoscaler matches {wanted.pattern!r}"
    wrong = [f"{named(h)}: {', '.join(p)}" for h in matched if (p := _spec_problems(h, wanted))]
    assert not wrong, listed(wrong)
    check.note(f"{len(matched)} HPAs as specified")


def _same(value: Any, expected: Any) -> bool:
    # YAML gives `true`, 3 or Healthy; the object may hold "3" where the profile wrote 3.
    if isinstance(expected, bool) or isinstance(value, bool):
        return value is expected
    return value is not None and str(value) == str(expected)


def _resource_problems(obj: dict[str, Any], wanted: ResourceExpectation) -> list[str]:
    problems = []
    if wanted.condition is not None:
        condition = obj.get("condition")
        if condition is None:
            problems.append(f"no {wanted.condition} condition")
        elif condition.get("status") != "True":
            why = condition.get("reason") or condition.get("message") or ""
            problems.append(f"{wanted.condition} {condition.get('status')}" + (f" ({why})" if why else ""))
    for path, expected in wanted.fields.items():
        value = obj["fields"].get(path)
        if not _same(value, expected):
            problems.append(f"{path} is {value!r}, expected {expected!r}")
    return problems


@each("resources")
def test_resource(item: KubernetesTarget, part: Part, facts: KubernetesFacts, check: Check) -> None:
    wanted: ResourceExpectation = part.spec
    check.expect(kind=f"{wanted.kind} {wanted.api_version}", condition=wanted.condition, fields=wanted.fields)
    answered(facts, f"resource/{wanted.name}", namespaced=wanted.namespaced)
    found = facts.resources.get(wanted.name, [])
    wrong = [f"{named(obj)}: {', '.join(p)}" for obj in found if (p := _resource_problems(obj, wanted))]
    check.observe(objects=len(found))
    observe_offenders(check, "problems", wrong)
    assert len(found) >= wanted.min_count, (
        f"{len(found)} {wanted.kind} objects found, expected at least {wanted.min_count}"
    )
    assert not wrong, listed(wrong)
    check.note(f"{len(found)} {wanted.kind} objects as expected")
