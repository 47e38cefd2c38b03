"""Profile model of `kubernetes` items: a cluster (or some of its namespaces) read with get/list only.

An item names how to reach the API server (a kubeconfig file and context, or the pod's
in-cluster service account), which namespaces and labels to look at, and the
expectations of each aspect. Everything a mistake can be caught in is checked at load,
so a typo is a usage error naming its line, not a red check at 3am::

    kubernetes:
      - name: prod-cluster
        kubeconfig: ~/.kube/config
        context: prod
        namespaces: [scorpius-platform]
        selector: app.kubernetes.io/part-of=scorpius

Label selectors are parsed here (`LabelSelector`), with the API server's grammar:
`a=b`, `a==b`, `a!=b`, `a in (x,y)`, `a notin (x)`, `a`, `!a`, joined by commas.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    GetJsonSchemaHandler,
    StrictBool,
    StrictInt,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.json_schema import JsonSchemaValue

from opsproof.model.bounded_read import MIB, UnreadableFile, read_regular_file
from opsproof.model.fields import (
    Duration,
    Item,
    Name,
    OwnCadence,
    OwnSeverity,
    Percent,
    Strict,
    Threshold,
    check_order,
    default_threshold,
    unique_names,
)
from opsproof.model.kind import Kind
from opsproof.model.trends import CountIncrease
from opsproof.model.yaml_limits import TooLarge, safe_load_bounded
from opsproof.targets.kubernetes_more import (
    HpaExpectation,
    NetworkPolicySettings,
    ResourceExpectation,
    UsageSettings,
)
from opsproof.targets.tls import Expiry

# -- label selectors ---------------------------------------------------------------------

_DNS_LABEL = r"[a-z0-9](?:[-a-z0-9]*[a-z0-9])?"
_NAME = r"[A-Za-z0-9](?:[-A-Za-z0-9_.]*[A-Za-z0-9])?"
_KEY = re.compile(rf"(?:(?P<prefix>{_DNS_LABEL}(?:\.{_DNS_LABEL})*)/)?(?P<name>{_NAME})")
_VALUE = re.compile(rf"(?:{_NAME})?")
_EQUALITY = re.compile(r"\s*(?P<key>[^\s!=,()]+)\s*(?P<op>==|!=|=)\s*(?P<value>[^\s!=,()]*)\s*")
_SET = re.compile(r"\s*(?P<key>[^\s!=,()]+)\s+(?P<op>in|notin)\s*\((?P<values>[^()]*)\)\s*")
_EXISTS = re.compile(r"\s*(?P<bang>!?)\s*(?P<key>[^\s!=,()]+)\s*")

SelectorOp = Literal["=", "!=", "in", "notin", "exists", "!"]


@dataclass(frozen=True)
class Requirement:
    """One term of a label selector: `key op values`."""

    key: str
    op: SelectorOp
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        value = labels.get(self.key)
        if self.op == "=":
            return value == self.values[0]
        if self.op == "!=":
            return value != self.values[0]  # an absent label is "not equal", as the API server has it
        if self.op == "in":
            return value in self.values
        if self.op == "notin":
            return value not in self.values
        if self.op == "exists":
            return self.key in labels
        return self.key not in labels


@dataclass(frozen=True)
class LabelSelector:
    """A parsed label selector; every requirement must match.

    >>> LabelSelector.parse("app in (api, web), tier!=cache").matches({"app": "web"})
    True
    """

    text: str
    requirements: tuple[Requirement, ...]

    @classmethod
    def parse(cls, text: str) -> LabelSelector:
        """Raise ValueError, in the API server's terms, for what it would refuse."""
        terms = _split_terms(text)
        if not terms:
            raise ValueError("empty label selector: omit it to select everything")
        return cls(text, tuple(_requirement(term) for term in terms))

    def matches(self, labels: Mapping[str, str] | None) -> bool:
        found = labels or {}
        return all(r.matches(found) for r in self.requirements)


def _split_terms(text: str) -> list[str]:
    # Commas separate terms, except inside `in (a, b)`.
    terms: list[str] = []
    current: list[str] = []
    depth = 0
    for char in text:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth < 0:
                raise ValueError(f"unbalanced parenthesis in label selector {text!r}")
        if char == "," and depth == 0:
            terms.append("".join(current))
            current = []
        else:
            current.append(char)
    if depth:
        raise ValueError(f"unbalanced parenthesis in label selector {text!r}")
    terms.append("".join(current))
    if len(terms) > 1 and any(not t.strip() for t in terms):
        raise ValueError(f"empty term in label selector {text!r}")
    return [t for t in terms if t.strip()]


def _requirement(term: str) -> Requirement:
    if match := _SET.fullmatch(term):
        values = tuple(v.strip() for v in match["values"].split(","))
        if not any(values):
            raise ValueError(f"label selector term {term.strip()!r}: `{match['op']}` needs at least one value")
        op: SelectorOp = "in" if match["op"] == "in" else "notin"
        return Requirement(_key(match["key"], term), op, tuple(_value(v, term) for v in values))
    if match := _EQUALITY.fullmatch(term):
        equality: SelectorOp = "!=" if match["op"] == "!=" else "="
        return Requirement(_key(match["key"], term), equality, (_value(match["value"], term),))
    if match := _EXISTS.fullmatch(term):
        return Requirement(_key(match["key"], term), "!" if match["bang"] else "exists")
    raise ValueError(
        f"label selector term {term.strip()!r} is not `key=value`, `key!=value`, `key in (a,b)`, "
        "`key notin (a,b)`, `key` or `!key`"
    )


def _key(key: str, term: str) -> str:
    match = _KEY.fullmatch(key)
    if match is None or len(match["name"]) > 63 or len(match["prefix"] or "") > 253:
        raise ValueError(
            f"label selector term {term.strip()!r}: {key!r} is not a label key "
            "(name of at most 63 letters, digits, - _ . with an optional DNS prefix/)"
        )
    return key


def _value(value: str, term: str) -> str:
    if len(value) > 63 or not _VALUE.fullmatch(value):
        raise ValueError(
            f"label selector term {term.strip()!r}: {value!r} is not a label value "
            "(at most 63 letters, digits, - _ . starting and ending with a letter or digit)"
        )
    return value


def _selector(text: str) -> str:
    LabelSelector.parse(text)
    return text


# A label selector, parsed at load (the API server's 400 would otherwise come at 3am).
SelectorText = Annotated[
    str,
    AfterValidator(_selector),
    Field(description="a label selector: app=api, tier in (web,api), !canary"),
]

# -- kubeconfig --------------------------------------------------------------------------

NamespaceName = Annotated[
    str,
    Field(
        pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$",
        max_length=63,
        description="a namespace name (lower-case letters, digits and -)",
    ),
]


def default_kubeconfig() -> str:
    """What kubectl reads without --kubeconfig: $KUBECONFIG (a list), else ~/.kube/config."""
    return os.environ.get("KUBECONFIG") or str(Path("~/.kube/config").expanduser())


def kubeconfig_paths(value: str, base: Path | None) -> list[Path]:
    """The files of a kubeconfig setting (`a:b` is a list, as in $KUBECONFIG), resolved and checked."""
    paths = []
    for part in value.split(os.pathsep):
        if not part:
            continue
        path = Path(part).expanduser()
        if not path.is_absolute() and base is not None:
            path = base / path
        if not path.is_file():
            what = "is not a regular file" if path.exists() else "does not exist"
            raise ValueError(f"kubeconfig file {str(path)!r} {what}")
        paths.append(path.absolute())  # the probe reads it whatever its working directory
    if not paths:
        raise ValueError("kubeconfig names no file")
    return paths


@dataclass(frozen=True)
class KubeconfigSummary:
    """What a profile can be checked against without connecting: context and cluster names."""

    contexts: dict[str, dict[str, Any]]
    clusters: set[str]
    current_context: str | None


KUBECONFIG_LIMIT = 16 * MIB  # a kubeconfig with every cluster of a large estate is well under 1 MiB


def read_kubeconfig(paths: list[Path]) -> KubeconfigSummary:
    """Merge the files as kubectl does (the first file to name a context, cluster or current-context wins).

    Only names are read out of the files: a kubeconfig holds credentials, and no message
    made here quotes anything else from it.
    """
    contexts: dict[str, dict[str, Any]] = {}
    clusters: set[str] = set()
    current: str | None = None
    for path in paths:
        try:
            data = safe_load_bounded(read_regular_file(path, KUBECONFIG_LIMIT).decode("utf-8")) or {}
        except UnreadableFile as exc:
            raise ValueError(f"kubeconfig file {str(path)!r} cannot be read: {exc}") from None
        except UnicodeDecodeError:
            raise ValueError(f"kubeconfig file {str(path)!r} is not UTF-8 text") from None
        except TooLarge as exc:
            raise ValueError(f"kubeconfig file {str(path)!r}:{exc}") from None
        except yaml.YAMLError:
            raise ValueError(f"kubeconfig file {str(path)!r} is not valid YAML") from None
        if not isinstance(data, dict):
            raise ValueError(f"kubeconfig file {str(path)!r} is not a kubeconfig (a mapping with contexts:)")
        for entry in data.get("contexts") or []:
            if isinstance(entry, dict) and isinstance(entry.get("name"), str):
                contexts.setdefault(entry["name"], entry.get("context") or {})
        for entry in data.get("clusters") or []:
            if isinstance(entry, dict) and isinstance(entry.get("name"), str):
                clusters.add(entry["name"])
        if current is None and data.get("current-context"):
            current = str(data["current-context"])
    return KubeconfigSummary(contexts, clusters, current)


def _check_context(paths: list[Path], context: str | None) -> None:
    summary = read_kubeconfig(paths)
    shown = ", ".join(str(p) for p in paths)
    known = ", ".join(sorted(summary.contexts)) or "none"
    name = context or summary.current_context
    if name is None:
        raise ValueError(f"kubeconfig {shown} has no current-context: name one with `context:` (contexts: {known})")
    if name not in summary.contexts:
        which = "context" if context else "current-context"
        raise ValueError(f"{which} {name!r} is not in kubeconfig {shown} (contexts: {known})")
    cluster = summary.contexts[name].get("cluster")
    if not isinstance(cluster, str) or cluster not in summary.clusters:
        raise ValueError(f"context {name!r} names cluster {cluster!r}, which kubeconfig {shown} does not define")


# -- thresholds and settings -------------------------------------------------------------

Count = Annotated[StrictInt, Field(ge=0)]


def _on_off(value: Any) -> Any:
    # `nodes: false` turns an aspect off; `nodes: true` keeps its defaults.
    if value is False:
        return None
    if value is True:
        return {}
    return value


Verdict = Literal["warn", "fail", "pass"]


class RestartLimits(Threshold[Count]):
    """`{warn, fail}` on one container's restartCount, and/or `increase:` of all restarts since the previous run."""

    increase: CountIncrease | None = Field(
        None,
        description="{warn, fail} on the restarts (summed over the selected pods' containers) since the previous run "
        "(docs/trends.md); a sum that went down (pods replaced) is a reset and passes",
    )

    @model_validator(mode="after")
    def _judges_something(self) -> RestartLimits:  # replaces Threshold's: an increase alone judges something
        if self.warn is None and self.fail is None and self.increase is None:
            raise ValueError("an empty threshold {} judges nothing: give warn, fail or both, or increase:")
        return self


class PodSettings(Strict):
    """Pods: phase, readiness, waiting reasons (kubernetes.pods) and restarts (kubernetes.restarts)."""

    grace: Annotated[Duration, Field(ge=0)] = Field(
        "5m",  # written as a profile would, and validated like one
        validate_default=True,
        description="a pod (or container) younger than this is starting, not failing: Pending, not ready; default 5m",
    )
    restarts: RestartLimits = Field(
        default_factory=default_threshold(warn=3, fail=10),
        validate_default=True,
        description="restarts of one container (its restartCount); default {warn: 3, fail: 10}; `increase:` judges "
        "new restarts since the previous run",
    )
    window: Annotated[Duration, Field(gt=0)] | None = Field(
        "24h",
        validate_default=True,
        description="restarts, OOMKills and Failed pods older than this are history, not findings "
        "(a Failed Job pod is kept until its CronJob's history limit prunes it); null: all count; default 24h",
    )
    oom_killed: Verdict = Field(
        "fail", description="a container OOMKilled within the window: fail (default), warn or pass"
    )

    @field_validator("restarts")
    @classmethod
    def _restarts_order(cls, value: RestartLimits) -> RestartLimits:
        check_order(value, lower_is_worse=False)
        return value


class WorkloadSettings(Strict):
    """Deployments, StatefulSets and DaemonSets: available replicas against desired."""

    available: Threshold[Percent] = Field(
        default_factory=default_threshold(warn="100%", fail="50%"),
        validate_default=True,
        description="available / desired replicas of the worst workload, lower is worse; "
        "default {warn: 100%, fail: 50%}",
    )
    severity: OwnSeverity = None
    cadence: OwnCadence = None

    @field_validator("available")
    @classmethod
    def _available_order(cls, value: Threshold[float]) -> Threshold[float]:
        check_order(value, lower_is_worse=True)
        return value


class HpaSettings(Strict):
    """HorizontalPodAutoscalers: at their maximum (capacity) or unable to scale."""

    at_max: Verdict = Field("warn", description="an HPA at maxReplicas: warn (default), fail or pass")
    severity: OwnSeverity = None
    cadence: OwnCadence = None


class NodeSettings(Strict):
    """Nodes: Ready, pressure conditions, cordoned."""

    selector: SelectorText | None = Field(None, description="only nodes with these labels (e.g. a node pool)")
    cordoned: Verdict = Field("warn", description="a cordoned (unschedulable) node: warn (default), fail or pass")
    severity: OwnSeverity = None
    cadence: OwnCadence = None


class CronJobExpectation(Strict):
    """CronJobs whose last successful run must be recent: backups, security scans."""

    name: Name = Field(description="the part's name in the check id: kubernetes.cronjob[<item>/<name>]")
    match: str | None = Field(
        None,
        min_length=1,
        description="glob over CronJob names (`postgres-backup*`), or `namespace/name` globs; default: the name",
    )
    selector: SelectorText | None = Field(None, description="CronJobs with these labels (with match: both must hold)")
    last_success: Threshold[Duration] = Field(
        description="age of the newest successful run (or of the CronJob, if none yet): {warn: 25h, fail: 26h}"
    )
    severity: OwnSeverity = None
    cadence: OwnCadence = None

    @field_validator("last_success")
    @classmethod
    def _age_order(cls, value: Threshold[float]) -> Threshold[float]:
        check_order(value, lower_is_worse=False)
        return value

    @property
    def pattern(self) -> str:
        return self.match if self.match is not None else (self.name if self.selector is None else "*")


class CertificateSettings(Strict):
    """cert-manager Certificates (cert-manager.io/v1): Ready, and time left before status.notAfter."""

    expires: Expiry = Field(
        default_factory=default_threshold(warn="30d", fail="7d"),
        validate_default=True,
        description="time or share of lifetime left: default {warn: 30d, fail: 7d}",
    )
    severity: OwnSeverity = None
    cadence: OwnCadence = None


class TlsSecretSettings(Strict):
    """Secrets of type kubernetes.io/tls: time left on the certificate in tls.crt."""

    expires: Expiry = Field(
        default_factory=default_threshold(warn="30d", fail="7d"),
        validate_default=True,
        description="time or share of lifetime left: default {warn: 30d, fail: 7d}",
    )
    severity: OwnSeverity = None
    cadence: OwnCadence = None


class EventSettings(Strict):
    """Warning events of the recent past (the daily 'review overnight alerts')."""

    within: Annotated[Duration, Field(gt=0)] = Field(
        "24h",
        validate_default=True,
        description="how far back to look; default 24h",
    )
    count: Threshold[Count] = Field(
        default_factory=default_threshold(warn=0),
        validate_default=True,
        description="Warning events (distinct event objects) in the window; default {warn: 0}: any one warns",
    )
    ignore_reasons: list[Annotated[str, Field(min_length=1)]] = Field(
        default_factory=list, description="event reasons not counted (e.g. known noise such as FailedScheduling)"
    )
    severity: OwnSeverity = None
    cadence: OwnCadence = None

    @field_validator("count")
    @classmethod
    def _count_order(cls, value: Threshold[int]) -> Threshold[int]:
        check_order(value, lower_is_worse=False)
        return value


class _OrBoolean:
    """JSON Schema: the settings' own schema, or true/false (editors then complete both)."""

    def __get_pydantic_json_schema__(self, schema: Any, handler: GetJsonSchemaHandler) -> JsonSchemaValue:
        return {"anyOf": [handler(schema), {"type": "boolean"}]}


# An aspect's settings, or `false` to turn it off (a service account without that permission).
OnOff = BeforeValidator(_on_off)
AspectSchema = _OrBoolean()


class ClusterAccess(Strict):
    """How to reach an API server: a kubeconfig file and context, or the pod's service account.

    Shared by `kubernetes` items and the Kubernetes source of `logs` items, so both read
    credentials the same way and refuse the same mistakes at load.
    """

    # in_cluster comes first: the kubeconfig and context validators look at it.
    in_cluster: StrictBool = Field(
        False, description="use the pod's service account (KUBERNETES_SERVICE_HOST and its token)"
    )
    kubeconfig: str | None = Field(
        None,
        validate_default=True,
        description="kubeconfig file (or an `a:b` list); relative to the profile; default $KUBECONFIG, else "
        "~/.kube/config. Not with in_cluster",
    )
    context: Annotated[str, Field(min_length=1)] | None = Field(
        None, validate_default=True, description="kubeconfig context; default its current-context"
    )
    token: Annotated[str, Field(min_length=1)] | None = Field(
        None, description="bearer token, e.g. ${K8S_TOKEN}; replaces the kubeconfig user's credentials"
    )

    @field_validator("kubeconfig")
    @classmethod
    def _kubeconfig_exists(cls, value: str | None, info: ValidationInfo) -> str | None:
        if info.data.get("in_cluster", False):
            if value is not None:
                raise ValueError("in_cluster uses the pod's service account: give no kubeconfig")
            return None
        base = (info.context or {}).get("profile_dir")
        paths = kubeconfig_paths(value if value is not None else default_kubeconfig(), _path(base))
        # Resolved once, here: the probe reads exactly the files validated.
        return os.pathsep.join(str(p) for p in paths)

    @field_validator("context")
    @classmethod
    def _context_exists(cls, value: str | None, info: ValidationInfo) -> str | None:
        if info.data.get("in_cluster", False):
            if value is not None:
                raise ValueError("in_cluster uses the pod's service account: give no context")
            return None
        kubeconfig = info.data.get("kubeconfig")
        if kubeconfig:  # absent when the kubeconfig itself was refused: that error is enough
            _check_context([Path(p) for p in kubeconfig.split(os.pathsep)], value)
        return value

    @property
    def kubeconfig_files(self) -> list[Path]:
        return [Path(p) for p in (self.kubeconfig or "").split(os.pathsep) if p]


class KubernetesTarget(Item, ClusterAccess):
    """A Kubernetes cluster, or some of its namespaces, read with get and list only."""

    namespaces: Annotated[list[NamespaceName], Field(min_length=1)] | None = Field(
        None, description="namespaces to check; default all (nodes are cluster-wide either way)"
    )
    selector: SelectorText | None = Field(
        None,
        description="label selector for pods, workloads, HPAs, services, PVCs, Certificates and TLS Secrets",
    )
    page_size: StrictInt = Field(500, ge=1, le=10000, description="objects per list call (limit/continue)")
    pods: PodSettings = Field(default_factory=PodSettings, description="pods and restarts settings")
    workloads: Annotated[WorkloadSettings | None, OnOff, AspectSchema] = Field(
        default_factory=WorkloadSettings, description="Deployments, StatefulSets, DaemonSets; false: not checked"
    )
    hpa: Annotated[HpaSettings | None, OnOff, AspectSchema] = Field(
        default_factory=HpaSettings, description="HorizontalPodAutoscalers; false: not checked"
    )
    nodes: Annotated[NodeSettings | None, OnOff, AspectSchema] = Field(
        default_factory=NodeSettings, description="Nodes (cluster-wide: needs list on nodes); false: not checked"
    )
    services: StrictBool = Field(True, description="Services without ready endpoints (EndpointSlices)")
    pvcs: StrictBool = Field(True, description="PersistentVolumeClaims not Bound")
    cronjobs: Annotated[list[CronJobExpectation], unique_names("cronjobs")] = Field(
        default_factory=list, description="CronJobs whose last success must be recent; one check each"
    )
    certificates: Annotated[CertificateSettings | None, OnOff, AspectSchema] = Field(
        None, description="cert-manager Certificates; absent: not checked"
    )
    tls_secrets: Annotated[TlsSecretSettings | None, OnOff, AspectSchema] = Field(
        None, description="TLS Secrets' certificates (needs list on secrets); absent: not checked"
    )
    events: Annotated[EventSettings | None, OnOff, AspectSchema] = Field(
        None, description="Warning events in the recent past; absent: not checked"
    )
    usage: Annotated[UsageSettings | None, OnOff, AspectSchema] = Field(
        None, description="CPU and memory from the metrics API (kubectl top) against limits; absent: not checked"
    )
    ingresses: StrictBool = Field(
        False, description="Ingresses have an address, backend Services with ready endpoints, their TLS Secrets"
    )
    network_policies: Annotated[NetworkPolicySettings | None, OnOff, AspectSchema] = Field(
        None, description="a default-deny ingress NetworkPolicy in each namespace; absent: not checked"
    )
    hpa_specs: Annotated[list[HpaExpectation], unique_names("hpa_specs")] = Field(
        default_factory=list, description="HPA spec values (min/max replicas, CPU target); one check each"
    )
    resources: Annotated[list[ResourceExpectation], unique_names("resources")] = Field(
        default_factory=list, description="objects of any kind judged by a condition or fields; one check each"
    )

    @field_validator("namespaces")
    @classmethod
    def _unique_namespaces(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and len(set(value)) != len(value):
            raise ValueError("a namespace is listed twice")
        return value

    @field_validator("resources")
    @classmethod
    def _resource_selectors(cls, value: list[ResourceExpectation]) -> list[ResourceExpectation]:
        for wanted in value:
            if wanted.selector is not None:
                try:
                    LabelSelector.parse(wanted.selector)
                except ValueError as exc:
                    raise ValueError(f"resource {wanted.name!r}: {exc}") from None
        return value

    @property
    def label_selector(self) -> LabelSelector | None:
        return LabelSelector.parse(self.selector) if self.selector else None


def _path(base: object) -> Path | None:
    return Path(str(base)) if base is not None else None


KIND = Kind(
    name="kubernetes",
    target=KubernetesTarget,
    probe="opsproof.probes.kubernetes",
    checks="checks/infra/test_kubernetes.py",
    cadence="daily",
    areas=("infra",),
    controls={
        # Clusters, alerting and hosts: monitoring for anomalies and capacity.
        "kubernetes": ("SOC2:CC7.1", "SOC2:CC7.2", "SOC2:A1.1", "ISO27001:A.8.16", "ISO27001:A.8.6", "SOX-ITGC:OPS"),
        "kubernetes.cronjob": ("SOC2:CC7.1", "SOC2:A1.2", "ISO27001:A.8.13", "SOX-ITGC:OPS"),
        "kubernetes.certificates": ("SOC2:CC7.1", "SOC2:CC6.7", "ISO27001:A.8.24", "SOX-ITGC:OPS"),
        "kubernetes.tls_secrets": ("SOC2:CC7.1", "SOC2:CC6.7", "ISO27001:A.8.24", "SOX-ITGC:OPS"),
        "kubernetes.events": ("SOC2:CC7.2", "SOC2:CC7.3", "ISO27001:A.8.16", "ISO27001:A.8.15", "SOX-ITGC:OPS"),
        # A default deny between workloads: access to them is restricted (CC6.1), and checked daily.
        "kubernetes.network_policies": ("SOC2:CC6.1", "SOC2:CC7.1", "SOX-ITGC:OPS"),
        # `kubectl top` against limits: capacity (A1.1, ISO A.8.6).
        "kubernetes.usage": ("SOC2:A1.1", "SOC2:CC7.1", "ISO27001:A.8.6", "ISO27001:A.8.16", "SOX-ITGC:OPS"),
    },
)
