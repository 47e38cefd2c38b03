"""Kubernetes clusters (runbooks 000, 001, 002, 003, 004: `kubectl get pods/hpa/certificate`, CronJob backups).

Each profile `kubernetes` item is read with a handful of list calls (see
opsproof.probes.kubernetes) and judged aspect by aspect, one check each, so a waiver
covers exactly one:

- `kubernetes.pods[<name>]`  pods not Running/Succeeded, containers not ready, CrashLoopBackOff,
  ImagePullBackOff and other waiting reasons (002's `kubectl get pods | grep -v Running`)
- `kubernetes.restarts[<name>]`  restarts per container against `pods.restarts`; OOMKilled (000)
- `kubernetes.workloads[<name>]`  Deployments, StatefulSets, DaemonSets: available against desired
- `kubernetes.hpa[<name>]`  HPAs at their maximum (capacity) or unable to scale (000, 002, 003)
- `kubernetes.nodes[<name>]`  Ready, pressure conditions, cordoned (001's node resources)
- `kubernetes.services[<name>]`  Services without a ready endpoint (001's `kubectl get endpoints`)
- `kubernetes.pvcs[<name>]`  PersistentVolumeClaims not Bound
- `kubernetes.cronjob[<name>/<part>]`  the last successful run of backup or scan CronJobs (002)
- `kubernetes.certificates[<name>]`  cert-manager Certificates Ready and not expiring (003)
- `kubernetes.tls_secrets[<name>]`  TLS Secrets whose certificate expires soon
- `kubernetes.events[<name>]`  Warning events of the recent past (000's "review overnight alerts")
- `kubernetes.usage[<name>]`  containers' CPU and memory as a share of their limits (or requests),
  nodes' of their allocatable, from the metrics API (000/001/004's `kubectl top`)
- `kubernetes.ingresses[<name>]`  an address, backend Services with ready endpoints, TLS Secrets (000)
- `kubernetes.network_policies[<name>]`  a default deny for ingress in each namespace (001)
- `kubernetes.hpa_spec[<name>/<part>]`  an HPA's min/max replicas and CPU target (002, 003)
- `kubernetes.resource[<name>/<part>]`  any kind by a status condition or field values (003's KEDA, Argo CD)

A cluster that cannot be reached fails every check with the reason; one that refuses the
credentials (401), a resource type it forbids (403), or one it does not serve (404: a
CRD not installed) is an `error`: the check could not run.
"""

from __future__ import annotations

from fnmatch import fnmatchcase
from typing import Any

from kubernetes_judging import IN_MESSAGE, IN_OBSERVED
from kubernetes_judging import answered as _answered
from kubernetes_judging import count_shown as _count_shown
from kubernetes_judging import judge as _judge
from kubernetes_judging import listed as _listed
from kubernetes_judging import named as _named
from kubernetes_judging import observe_offenders as _observe_offenders

from opsproof import Check, Part, applies, each, format_duration, format_percent
from opsproof.judging.over_time import judge_increase
from opsproof.outcomes import reaches
from opsproof.probes.kubernetes import KubernetesFacts
from opsproof.probes.kubernetes_reduce import STARTING_REASONS
from opsproof.targets.kubernetes import CronJobExpectation, KubernetesTarget, LabelSelector
from opsproof.targets.kubernetes_more import HpaExpectation, ResourceExpectation
from opsproof.targets.tls import Expiry, show_remaining

# -- shared --------------------------------------------------------------------------------


def _ago(seconds: float | None) -> str:
    return "at an unknown time" if seconds is None else f"{format_duration(max(0.0, seconds))} ago"


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


# -- pods ----------------------------------------------------------------------------------


def _container_word(container: dict[str, Any]) -> str:
    return f"{'init container' if container.get('init') else 'container'} {container['name']}"


def _pod_trouble(pod: dict[str, Any], grace: float, window: float | None) -> tuple[str, str] | None:
    """('problem' | 'starting' | 'earlier', what) for one notable pod; None when the pods check has nothing to say."""
    phase = pod["phase"]
    containers = pod.get("containers", [])
    for container in containers:
        if container.get("state") == "waiting" and container.get("reason") not in (None, *STARTING_REASONS):
            restarts = f", {container['restarts']} restarts" if container["restarts"] else ""
            return "problem", f"{container['reason']} ({_container_word(container)}{restarts})"
    young = pod.get("age_s") is not None and pod["age_s"] < grace
    if phase == "Failed":
        why = pod.get("reason") or next((c.get("reason") for c in containers if c.get("reason")), None) or "failed"
        detail = f": {pod['message']}" if pod.get("message") else ""
        ended = pod.get("finished_age_s")
        if window is not None and ended is not None and ended > window:
            # Debris: an evicted pod's replacement runs; a failed Job pod stays until its CronJob's
            # history limit prunes it. The CronJob check judges the job; this pod is history.
            return "earlier", f"Failed ({why}) {format_duration(ended)} ago"
        return "problem", f"Failed ({why}){detail}"
    if phase == "Unknown":
        return "problem", "phase Unknown: its node stopped reporting"
    if phase == "Pending":
        pending = format_duration(pod.get("age_s") or 0)
        if young:
            return "starting", f"Pending {pending}"
        return "problem", f"Pending for {pending}: {pod.get('unschedulable') or 'containers not started'}"
    if phase == "Running":
        for container in containers:
            if container.get("init") or container["ready"]:
                continue
            started = container.get("started_age_s")
            if container.get("state") == "running" and started is not None and started < grace:
                return "starting", f"{_container_word(container)} started {format_duration(started)} ago"
            state = container.get("state", "unknown")
            because = f" ({container['reason']})" if container.get("reason") else ""
            return "problem", f"{_container_word(container)} not ready ({state}{because})"
    return None


def test_pods(item: KubernetesTarget, facts: KubernetesFacts, check: Check) -> None:
    grace = item.pods.grace
    check.expect(phase="Running or Succeeded, every container ready", grace=format_duration(grace))
    if item.pods.window is not None:
        check.expect(window=format_duration(item.pods.window))
    _answered(facts, "pods")
    pods = facts.pods
    window = item.pods.window
    found: dict[str, list[str]] = {"problem": [], "starting": [], "earlier": []}
    for pod in pods["notable"]:
        trouble = _pod_trouble(pod, grace, window)
        if trouble is not None:
            found[trouble[0]].append(f"{_named(pod)}: {trouble[1]}")
    problems, starting = found["problem"], found["starting"]
    check.observe(pods=pods["total"], by_phase=pods["by_phase"], unhealthy=len(problems), starting=len(starting))
    _observe_offenders(check, "problems", problems)
    _observe_offenders(check, "starting_pods", starting)
    _observe_offenders(check, "failed_earlier", found["earlier"])
    assert not problems, f"{len(problems)} of {pods['total']} pods not healthy: {_listed(problems)}"
    phases = ", ".join(f"{count} {phase}" for phase, count in pods["by_phase"].items()) or "no pods"
    also = f"; {len(starting)} starting (within {format_duration(grace)})" if starting else ""
    if found["earlier"]:
        also += f"; {len(found['earlier'])} Failed more than {format_duration(window or 0)} ago, not counted"
    check.note(f"{pods['total']} pods ({phases}), all healthy{also}")


def test_restarts(item: KubernetesTarget, facts: KubernetesFacts, check: Check) -> None:
    settings = item.pods
    window = settings.window
    check.expect(window=format_duration(window) if window is not None else "any time")
    if settings.oom_killed != "pass":
        check.expect(oom_killed=settings.oom_killed)
    check.expect_threshold("restarts", settings.restarts, show=_count_shown)
    _answered(facts, "pods")
    counted: list[tuple[int, str]] = []
    oom_killed: list[str] = []
    older = 0
    for pod in facts.pods["notable"]:
        for container in pod.get("containers", []):
            oom = container.get("last_reason") == "OOMKilled" or (
                container.get("state") == "terminated" and container.get("reason") == "OOMKilled"
            )
            if not container["restarts"] and not oom:
                continue
            last = container.get("last_finished_age_s")
            if window is not None and last is not None and last > window:
                older += 1  # restarted, but not lately: stable since
                continue
            where = f"{_named(pod)} {_container_word(container)}"
            reason = f": {container['last_reason']}" if container.get("last_reason") else ""
            counted.append(
                (container["restarts"], f"{where} ({container['restarts']} restarts, last {_ago(last)}{reason})")
            )
            if oom:
                oom_killed.append(f"{where} OOMKilled {_ago(last)}")
    counted.sort(key=lambda entry: -entry[0])
    worst = counted[0][0] if counted else 0
    # Every restarted container is in `notable` (a restart makes a pod notable): their sum is all restarts.
    total = sum(c["restarts"] for pod in facts.pods["notable"] for c in pod.get("containers", []))
    check.measure("restarts", total)  # kept whatever the verdict, for `increase:`
    check.observe(containers_restarted=len(counted), max_restarts=worst, restarted_earlier=older)
    _observe_offenders(check, "restarted", [line for _, line in counted])
    _observe_offenders(check, "oom_killed", oom_killed)
    lately = f"within {format_duration(window)}" if window is not None else "ever"
    if counted:
        check.note(f"{len(counted)} container(s) restarted {lately}; most: {counted[0][1]}")
    else:
        check.note(f"no container restarted {lately} ({facts.pods['total']} pods)")
    killed = f"{len(oom_killed)} container(s) OOMKilled {lately}: {_listed(oom_killed)}"
    if oom_killed and settings.oom_killed == "warn":
        check.warn(killed)
    limits = settings.restarts
    offenders = [line for restarts, line in counted if _over(restarts, _first(limits.warn, limits.fail))]
    too_many = _judge(check, "restarts", worst, limits, detail=_listed(offenders) or None)
    failures = [killed] if oom_killed and settings.oom_killed == "fail" else []
    failures += [too_many] if too_many else []
    assert not failures, "; ".join(failures)
    judge_increase(check, "restarts", total, limits.increase, what="container restarts")


def _over(value: float, limit: float | None) -> bool:
    return limit is not None and reaches(value, limit)


def _first(*limits: float | None) -> float | None:
    return next((limit for limit in limits if limit is not None), None)


# -- workloads, autoscalers, nodes ---------------------------------------------------------


@applies(lambda item: item.workloads is not None)
def test_workloads(item: KubernetesTarget, facts: KubernetesFacts, check: Check) -> None:
    settings = item.workloads
    assert settings is not None
    check.expect_threshold("available", settings.available, show=format_percent)
    _answered(facts, "deployments", "statefulsets", "daemonsets")
    workloads = facts.workloads
    stalled = [
        f"{_named(w)} ({w['kind']}): rollout stalled: {w['stalled']}" for w in workloads["notable"] if w.get("stalled")
    ]
    short = sorted(
        (w for w in workloads["notable"] if w["desired"] > 0 and w["available"] < w["desired"]),
        key=lambda w: w["available"] / w["desired"],
    )
    lines = [f"{_named(w)} ({w['kind']}): {w['available']}/{w['desired']} available" for w in short]
    check.observe(workloads=workloads["totals"], below_desired=len(short))
    _observe_offenders(check, "unavailable", lines)
    _observe_offenders(check, "stalled", stalled)
    total = sum(workloads["totals"].values())
    kinds = ", ".join(_plural(count, kind) for kind, count in workloads["totals"].items())
    failures = [_listed(stalled)] if stalled else []
    if short:
        share = short[0]["available"] / short[0]["desired"] * 100
        check.observe(worst_available_percent=round(share, 1))
        check.note(f"{len(short)} of {total} workloads below their desired replicas: {_listed(lines)}")
        verdict = _judge(
            check,
            "available",
            share,
            settings.available,
            lower_is_worse=True,
            show=format_percent,
            detail=_listed(lines),
        )
        failures += [verdict] if verdict else []
    else:
        check.note(f"{total} workloads ({kinds}), all at their desired replicas")
    assert not failures, "; ".join(failures)


@applies(lambda item: item.hpa is not None)
def test_hpa(item: KubernetesTarget, facts: KubernetesFacts, check: Check) -> None:
    assert item.hpa is not None
    check.expect(at_max=item.hpa.at_max, able_to_scale=True)
    _answered(facts, "horizontalpodautoscalers")
    hpas = facts.hpas
    unable = []
    for hpa in hpas["notable"]:
        for condition, problem in hpa["unable"].items():
            message = f": {problem['message']}" if problem.get("message") else ""
            unable.append(f"{_named(hpa)}: {condition} False ({problem.get('reason')}){message}")
    at_max = [
        f"{_named(h)}: {h['current']} replicas, at its maximum {h['max']}" for h in hpas["notable"] if h["at_max"]
    ]
    check.observe(hpas=hpas["total"], unable_to_scale=len(unable), at_max=len(at_max))
    _observe_offenders(check, "unable", unable)
    _observe_offenders(check, "at_maximum", at_max)
    capacity = f"{len(at_max)} HPA(s) at maxReplicas (no headroom left): {_listed(at_max)}"
    failures = [f"{len(unable)} HPA(s) cannot scale: {_listed(unable)}"] if unable else []
    if at_max and item.hpa.at_max == "fail":
        failures.append(capacity)
    if at_max and item.hpa.at_max == "warn":
        check.warn(capacity)
    assert not failures, "; ".join(failures)
    check.note(
        f"{hpas['total']} HPAs able to scale" + (f"; {len(at_max)} at maximum" if at_max else ", none at maximum")
    )


@applies(lambda item: item.nodes is not None)
def test_nodes(item: KubernetesTarget, facts: KubernetesFacts, check: Check) -> None:
    settings = item.nodes
    assert settings is not None
    check.expect(ready=True, pressure=False, cordoned=settings.cordoned)
    if settings.selector:
        check.expect(selector=settings.selector)
    _answered(facts, "nodes", namespaced=False)
    nodes = facts.nodes
    problems, cordoned = [], []
    for node in nodes["notable"]:
        if node["ready"] != "True":
            why = node.get("ready_message") or node.get("ready_reason") or ""
            problems.append(f"{node['name']}: Ready {node['ready']}" + (f" ({why})" if why else ""))
        if node.get("pressure"):
            problems.append(f"{node['name']}: {', '.join(node['pressure'])}")
        if node.get("cordoned"):
            cordoned.append(f"{node['name']}: cordoned (unschedulable)")
    check.observe(nodes=nodes["total"], not_healthy=len(problems), cordoned=len(cordoned))
    _observe_offenders(check, "problems", problems)
    _observe_offenders(check, "cordoned_nodes", cordoned)
    which = f" matching {settings.selector}" if settings.selector else ""
    assert nodes["total"], f"no nodes{which} listed"
    failures = [f"{len(problems)} node problem(s) of {nodes['total']} nodes: {_listed(problems)}"] if problems else []
    if cordoned and settings.cordoned == "fail":
        failures.append(f"{len(cordoned)} node(s) cordoned: {_listed(cordoned)}")
    if cordoned and settings.cordoned == "warn":
        check.warn(f"{len(cordoned)} node(s) cordoned: {_listed(cordoned)}")
    assert not failures, "; ".join(failures)
    check.note(f"{nodes['total']} nodes{which} Ready, no pressure")


# -- services and volumes ------------------------------------------------------------------


@applies(lambda item: item.services)
def test_services(item: KubernetesTarget, facts: KubernetesFacts, check: Check) -> None:
    check.expect(ready_endpoints="at least one per Service with a selector")
    _answered(facts, "services", "endpointslices")
    services = facts.services
    lines = []
    for service in services["notable"]:
        not_ready = f"{service['not_ready']} not ready" if service["not_ready"] else "none at all"
        lines.append(f"{_named(service)}: no ready endpoint ({not_ready}; selector {service['selector']})")
    check.observe(services=services["total"], without_selector=services["skipped"], without_ready_endpoints=len(lines))
    _observe_offenders(check, "problems", lines)
    assert not lines, f"{len(lines)} of {services['total']} Services have no ready endpoint: {_listed(lines)}"
    skipped = f" ({services['skipped']} without a selector not judged)" if services["skipped"] else ""
    check.note(f"{services['total']} Services, each with a ready endpoint{skipped}")


@applies(lambda item: item.pvcs)
def test_pvcs(item: KubernetesTarget, facts: KubernetesFacts, check: Check) -> None:
    grace = item.pods.grace
    check.expect(phase="Bound", grace=format_duration(grace))
    _answered(facts, "persistentvolumeclaims")
    pvcs = facts.pvcs
    problems, waiting = [], []
    for pvc in pvcs["notable"]:
        age = pvc.get("age_s")
        storage = f", storage class {pvc['storage_class']}" if pvc.get("storage_class") else ""
        if pvc["phase"] == "Pending" and age is not None and age < grace:
            waiting.append(f"{_named(pvc)}: Pending {format_duration(age)}{storage}")
        elif pvc["phase"] == "Lost":
            problems.append(f"{_named(pvc)}: Lost (its PersistentVolume is gone){storage}")
        else:
            problems.append(f"{_named(pvc)}: {pvc['phase']} for {format_duration(age or 0)}{storage}")
    check.observe(pvcs=pvcs["total"], not_bound=len(problems), binding=len(waiting))
    _observe_offenders(check, "problems", problems)
    assert not problems, f"{len(problems)} of {pvcs['total']} PersistentVolumeClaims not Bound: {_listed(problems)}"
    also = f"; {len(waiting)} binding (within {format_duration(grace)})" if waiting else ""
    check.note(f"{pvcs['total']} PersistentVolumeClaims Bound{also}")


# -- CronJobs ------------------------------------------------------------------------------


def _matches(cronjob: dict[str, Any], spec: CronJobExpectation) -> bool:
    pattern = spec.pattern
    name = f"{cronjob['namespace']}/{cronjob['name']}" if "/" in pattern else cronjob["name"]
    if not fnmatchcase(name, pattern):
        return False
    return spec.selector is None or LabelSelector.parse(spec.selector).matches(cronjob.get("labels"))


@each("cronjobs")
def test_cronjob(item: KubernetesTarget, part: Part, facts: KubernetesFacts, check: Check) -> None:
    spec: CronJobExpectation = part.spec
    check.expect(match=spec.pattern)
    if spec.selector:
        check.expect(selector=spec.selector)
    check.expect_threshold("last_success_age", spec.last_success, show=format_duration)
    _answered(facts, "cronjobs")
    matched = [c for c in facts.cronjobs if _matches(c, spec)]
    selector = f" with labels {spec.selector}" if spec.selector else ""
    assert matched, (
        f"no CronJob matches {spec.pattern}{selector} in {facts.scope} ({len(facts.cronjobs)} CronJobs listed)"
    )
    judged = []
    for cronjob in matched:
        success = cronjob.get("last_success_age_s")
        age = success if success is not None else cronjob.get("age_s") or 0.0
        if success is not None:
            said = f"last succeeded {_ago(success)}"
        else:
            scheduled = (
                f", last scheduled {_ago(cronjob['last_schedule_age_s'])}" if "last_schedule_age_s" in cronjob else ""
            )
            said = f"never succeeded since it was created {_ago(cronjob.get('age_s'))}{scheduled}"
        flags = ", suspended" if cronjob.get("suspended") else ""
        running = f", {cronjob['active']} job(s) running" if cronjob.get("active") else ""
        judged.append((age, f"{_named(cronjob)} {said} (schedule {cronjob.get('schedule')}{flags}{running})"))
    judged.sort(key=lambda entry: -entry[0])
    check.observe(
        cronjobs=[line for _, line in judged[:IN_OBSERVED]],
        oldest_success_age_s=round(judged[0][0]),
        suspended=sum(1 for c in matched if c.get("suspended")),
    )
    check.note(
        "; ".join(line for _, line in judged[:IN_MESSAGE])
        + (f"; and {len(judged) - IN_MESSAGE} more" if len(judged) > IN_MESSAGE else "")
    )
    limits = spec.last_success
    late = [line for age, line in judged if _over(age, _first(limits.warn, limits.fail))]
    check.threshold("last_success_age", judged[0][0], limits, show=format_duration, detail=_listed(late) or None)


# -- certificates --------------------------------------------------------------------------


def _expiry(entries: list[tuple[str, dict[str, Any]]], expires: Expiry, check: Check, what: str) -> str | None:
    """Judge time left (or share of lifetime left) on each certificate; fail past fail, warn past warn."""
    check.expect(expires=expires.shown())
    failing, warning, timed = [], [], []
    for name, entry in entries:
        left = entry["left_s"]
        lifetime = entry.get("lifetime_s") or 0
        share = left / lifetime * 100 if lifetime > 0 else 0.0
        when = (
            f"expires in {format_duration(left)} ({entry.get('not_after')})"
            if left > 0
            else f"expired {format_duration(-left)} ago ({entry.get('not_after')})"
        )
        line = f"{name} {when}"
        timed.append((left, line))
        level = "fail" if left <= 0 else None
        for threshold in ("fail", "warn"):
            limit = getattr(expires, threshold)
            if level is None and limit is not None and (left if limit[0] == "duration" else share) < limit[1]:
                level = threshold
        if level == "fail":
            failing.append(line)
        elif level == "warn":
            warning.append(line)
    timed.sort()
    if timed:
        check.observe(soonest_left_s=round(timed[0][0]), soonest=timed[0][1])
    _observe_offenders(check, "expiring", [line for _, line in timed if line in failing or line in warning])
    if warning:
        warn = show_remaining(expires.warn) if expires.warn else ""
        check.warn(f"{len(warning)} {what} under the warn threshold {warn}: {_listed(warning)}")
    if failing:
        fail = f"under the fail threshold {show_remaining(expires.fail)}" if expires.fail else "expired"
        return f"{len(failing)} {what} {fail}: {_listed(failing)}"
    return None


@applies(lambda item: item.certificates is not None)
def test_certificates(item: KubernetesTarget, facts: KubernetesFacts, check: Check) -> None:
    assert item.certificates is not None
    check.expect(ready=True)
    _answered(facts, "certificates")
    certificates = facts.certificates
    not_ready = []
    for certificate in certificates:
        if certificate["ready"] != "True":
            why = certificate.get("reason") or "no reason given"
            message = f": {certificate['message']}" if certificate.get("message") else ""
            not_ready.append(f"{_named(certificate)} not Ready ({why}){message}")
    check.observe(certificates=len(certificates), not_ready=len(not_ready))
    _observe_offenders(check, "not_ready_certificates", not_ready)
    dated = [(_named(c), c) for c in certificates if c.get("left_s") is not None]
    failures = (
        [f"{len(not_ready)} of {len(certificates)} Certificates not Ready: {_listed(not_ready)}"] if not_ready else []
    )
    expiring = _expiry(dated, item.certificates.expires, check, "certificate(s)")
    failures += [expiring] if expiring else []
    assert not failures, "; ".join(failures)
    soonest = check.observed.get("soonest")
    check.note(f"{len(certificates)} Certificates Ready" + (f"; soonest: {soonest}" if soonest else ""))


@applies(lambda item: item.tls_secrets is not None)
def test_tls_secrets(item: KubernetesTarget, facts: KubernetesFacts, check: Check) -> None:
    assert item.tls_secrets is not None
    _answered(facts, "secrets")
    secrets = facts.tls_secrets
    unreadable = [f"{_named(s)}: {s['error']}" for s in secrets if "error" in s]
    check.observe(tls_secrets=len(secrets), unreadable=len(unreadable))
    _observe_offenders(check, "unreadable_secrets", unreadable)
    dated = [(f"{_named(s)} ({s.get('subject')})", s) for s in secrets if "left_s" in s]
    failures = (
        [f"{len(unreadable)} TLS Secret(s) without a readable certificate: {_listed(unreadable)}"] if unreadable else []
    )
    expiring = _expiry(dated, item.tls_secrets.expires, check, "TLS Secret(s)")
    failures += [expiring] if expiring else []
    assert not failures, "; ".join(failures)
    soonest = check.observed.get("soonest")
    check.note(f"{len(secrets)} TLS Secrets" + (f"; soonest: {soonest}" if soonest else ""))


# -- events --------------------------------------------------------------------------------


def _event_line(group: dict[str, Any]) -> str:
    seen = (
        f"{group['kind']} {group['namespace']}/{group['name']} {group['reason']} x{group['count']} "
        f"(last {_ago(group['last_age_s'])})"
    )
    return f"{seen}: {group['message']}" if group.get("message") else seen


@applies(lambda item: item.events is not None)
def test_events(item: KubernetesTarget, facts: KubernetesFacts, check: Check) -> None:
    settings = item.events
    assert settings is not None
    window = format_duration(settings.within)
    check.expect(within=window)
    if settings.ignore_reasons:
        check.expect(ignore_reasons=settings.ignore_reasons)
    _answered(facts, "events")
    events = facts.events
    lines = [_event_line(group) for group in events["groups"]]
    check.observe(
        warning_events=events["total"], ignored=events["ignored"], objects=len(events["groups"]) + events["more_groups"]
    )
    _observe_offenders(check, "recent", lines)
    if events["total"]:
        check.note(f"{events['total']} Warning event(s) in the last {window}: {_listed(lines)}")
    else:
        check.note(f"no Warning events in the last {window}")
    check.threshold("warning_events", events["total"], settings.count, show=_count_shown, detail=_listed(lines) or None)


# -- more of what kubectl shows: usage, ingresses, network policies, HPA specs, any resource --


@applies(lambda item: item.usage is not None)
def test_usage(item: KubernetesTarget, facts: KubernetesFacts, check: Check) -> None:
    settings = item.usage
    assert settings is not None
    keys = ["podmetrics", "pod_resources"] + (["nodemetrics", "node_allocatable"] if settings.nodes else [])
    _answered(facts, *keys)
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
        _observe_offenders(check, f"{measure}_worst", lines[:5])
        if worst:
            failure = _judge(
                check,
                f"{measure} of {settings.of}",
                worst[0]["share"],
                threshold,
                show=format_percent,
                detail=_listed(lines),
            )
            failures += [failure] if failure else []
        for node in usage.get("nodes", []) if settings.nodes else []:
            if measure in node:
                failure = _judge(
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
    _answered(facts, "ingresses", "services", "endpointslices", "secrets")
    wrong = [f"{_named(i)}: {', '.join(i['problems'])}" for i in facts.ingresses if i["problems"]]
    check.observe(ingresses=len(facts.ingresses), with_problems=len(wrong))
    _observe_offenders(check, "problems", wrong)
    assert not wrong, _listed(wrong)
    check.note(f"{len(facts.ingresses)} Ingresses with an address and ready backends")


@applies(lambda item: item.network_policies is not None and item.network_policies.default_deny)
def test_network_policies(item: KubernetesTarget, facts: KubernetesFacts, check: Check) -> None:
    _answered(facts, "networkpolicies", "namespaces")
    policies = facts.network_policies
    check.expect(default_deny=True)
    check.observe(namespaces=policies["namespaces"], denying=policies["denying"], allow_all=policies["allow_all"][:20])
    assert policies["namespaces"], "no namespace to judge"
    without = policies["without"]
    assert not without, (
        f"no default-deny ingress NetworkPolicy (podSelector {{}}, Ingress, no allow-all rule) in {_listed(without)}"
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
    _answered(facts, "horizontalpodautoscalers")
    check.expect(
        match=wanted.pattern,
        **{k: v for k, v in wanted.model_dump(include={"min_replicas", "max_replicas"}).items() if v is not None},
    )
    if wanted.cpu_utilization is not None:
        check.expect(cpu_utilization=format_percent(wanted.cpu_utilization))
    matched = [
        h for h in facts.hpa_specs if fnmatchcase(h["name"], wanted.pattern) or fnmatchcase(_named(h), wanted.pattern)
    ]
    check.observe(
        hpas=[{k: h[k] for k in ("namespace", "name", "min", "max", "cpu_utilization")} for h in matched[:20]]
    )
    assert matched, f"no HorizontalPodAutoscaler matches {wanted.pattern!r}"
    wrong = [f"{_named(h)}: {', '.join(p)}" for h in matched if (p := _spec_problems(h, wanted))]
    assert not wrong, _listed(wrong)
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
    _answered(facts, f"resource/{wanted.name}", namespaced=wanted.namespaced)
    found = facts.resources.get(wanted.name, [])
    wrong = [f"{_named(obj)}: {', '.join(p)}" for obj in found if (p := _resource_problems(obj, wanted))]
    check.observe(objects=len(found))
    _observe_offenders(check, "problems", wrong)
    assert len(found) >= wanted.min_count, (
        f"{len(found)} {wanted.kind} objects found, expected at least {wanted.min_count}"
    )
    assert not wrong, _listed(wrong)
    check.note(f"{len(found)} {wanted.kind} objects as expected")
