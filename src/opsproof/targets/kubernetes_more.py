"""More of what `kubectl` shows, as `kubernetes` item keys: usage, ingresses, network policies,
HPA specs and any resource by condition or field values::

    kubernetes:
      - name: scorpius-cluster
        namespaces: [scorpius-platform]
        usage: {cpu: {warn: 70%, fail: 90%}, memory: {warn: 80%, fail: 95%}}
        ingresses: true
        network_policies: {default_deny: true}
        hpa_specs:
          - {name: anomaly, match: anomaly-detection-api, min_replicas: 3, max_replicas: 20, cpu_utilization: 70%}
        resources:
          - {name: scalers, api_version: keda.sh/v1alpha1, kind: ScaledObject, condition: Ready}
          - {name: apps, api_version: argoproj.io/v1alpha1, kind: Application,
             fields: {"status.health.status": Healthy}}

Kept apart from `targets.kubernetes` (which lists these models on `KubernetesTarget`) so each
file stays small; nothing here imports it (a `resources:` selector is parsed there).
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, StrictBool, StrictInt, field_validator, model_validator

from opsproof.model.fields import Name, Percent, Rising, Strict, Threshold, default_threshold

ShareThreshold = Annotated[Threshold[Percent], Rising]
SYSTEM_NAMESPACES = ("kube-system", "kube-public", "kube-node-lease")


class UsageSettings(Strict):
    """`kubectl top`: what metrics-server measures, as a share of limits (or requests) and of allocatable."""

    cpu: ShareThreshold | None = Field(
        default_factory=default_threshold(warn="80%", fail="95%"),
        validate_default=True,
        description="a container's CPU as a share of its limit; default {warn: 80%, fail: 95%}",
    )
    memory: ShareThreshold | None = Field(
        default_factory=default_threshold(warn="80%", fail="95%"),
        validate_default=True,
        description="a container's memory as a share of its limit; default {warn: 80%, fail: 95%}",
    )
    of: Literal["limits", "requests"] = Field(
        "limits", description="share of the container's limits (default) or of its requests"
    )
    nodes: StrictBool = Field(
        True, description="also judge each node's usage as a share of its allocatable (needs list on nodes)"
    )


class NetworkPolicySettings(Strict):
    """NetworkPolicies: each namespace has a default deny for ingress."""

    default_deny: StrictBool = Field(
        True,
        description="a policy selecting every pod (podSelector {}) with Ingress in policyTypes and no allow-all rule",
    )
    ignore_namespaces: list[Annotated[str, Field(min_length=1)]] = Field(
        default_factory=lambda: list(SYSTEM_NAMESPACES),
        description="namespaces not judged when the item lists all; default the kube-* system ones",
    )


class HpaExpectation(Strict):
    """The spec of HorizontalPodAutoscalers: replica bounds and the CPU target they scale on."""

    name: Name = Field(description="the part's name in the check id: kubernetes.hpa_spec[<item>/<name>]")
    match: Annotated[str, Field(min_length=1)] | None = Field(
        None, description="glob over HPA names (or `namespace/name`); default: the name"
    )
    min_replicas: StrictInt | None = Field(None, ge=0, description="spec.minReplicas must be at least this")
    max_replicas: StrictInt | None = Field(None, ge=1, description="spec.maxReplicas must be at least this")
    cpu_utilization: Percent | None = Field(
        None, description="the CPU Utilization target (averageUtilization) must equal this: 70%"
    )

    @model_validator(mode="after")
    def _something(self) -> HpaExpectation:
        if self.min_replicas is None and self.max_replicas is None and self.cpu_utilization is None:
            raise ValueError(f"hpa spec {self.name!r}: give min_replicas, max_replicas or cpu_utilization")
        return self

    @property
    def pattern(self) -> str:
        return self.match if self.match is not None else self.name


_API_VERSION = re.compile(r"^(?:[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?v[0-9]+[a-z0-9]*$")


def _api_version(text: str) -> str:
    if not _API_VERSION.fullmatch(text):
        raise ValueError(f"{text!r} is not an apiVersion (group/version, e.g. keda.sh/v1alpha1, or v1)")
    return text


def plural_of(kind: str) -> str:
    """The plural the API server serves a kind under, as CRDs conventionally name it: Policy -> policies."""
    lower = kind.lower()
    if lower.endswith("y") and lower[-2:-1] not in ("a", "e", "i", "o", "u"):
        return lower[:-1] + "ies"
    if lower.endswith(("s", "x", "ch", "sh")):
        return lower + "es"
    return lower + "s"


class ResourceExpectation(Strict):
    """Objects of any API group and kind (a CRD's), judged by a status condition or by field values."""

    name: Name = Field(description="the part's name in the check id: kubernetes.resource[<item>/<name>]")
    api_version: Annotated[str, AfterValidator(_api_version)] = Field(
        description="group/version: keda.sh/v1alpha1, argoproj.io/v1alpha1, cert-manager.io/v1"
    )
    kind: Annotated[str, Field(pattern=r"^[A-Z][A-Za-z0-9]*$")] = Field(description="ScaledObject, Application...")
    plural: Annotated[str, Field(pattern=r"^[a-z0-9]+$")] | None = Field(
        None, description="the resource's plural in its URL; default the kind's lower-case plural"
    )
    namespaced: StrictBool = Field(True, description="false for cluster-scoped kinds (ClusterIssuer)")
    # Parsed by KubernetesTarget (targets.kubernetes holds the grammar and imports this module).
    selector: Annotated[str, Field(min_length=1)] | None = Field(None, description="only objects with these labels")
    condition: Annotated[str, Field(min_length=1)] | None = Field(
        None, description="a status condition type that must be True on every object: Ready"
    )
    fields: dict[Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$")], Any] = Field(
        default_factory=dict,
        description='dotted paths and the value each must have: {"status.health.status": Healthy}',
    )
    min_count: StrictInt = Field(1, ge=0, description="objects expected at least; default 1 (none found fails)")

    @field_validator("fields")
    @classmethod
    def _scalars(cls, value: dict[str, Any]) -> dict[str, Any]:
        for path, expected in value.items():
            if isinstance(expected, dict | list):
                raise ValueError(f"{path}: give a single value (a string, number or true/false)")
        return value

    @model_validator(mode="after")
    def _judged(self) -> ResourceExpectation:
        if self.condition is None and not self.fields:
            raise ValueError(f"resource {self.name!r}: give `condition:` or `fields:` (or both)")
        return self

    @property
    def resource_plural(self) -> str:
        return self.plural or plural_of(self.kind)
