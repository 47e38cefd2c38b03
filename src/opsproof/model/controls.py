"""Compliance controls: what they are, and which ones each check gives evidence for.

The catalogue (each kind's controls) is declared by the kinds themselves (`Kind.controls`,
gathered by `opsproof.targets.catalogue()`); this module knows the frameworks, the control
titles and how a profile's `controls:` overrides the catalogue.

Every record carries `controls`: ids written `FRAMEWORK:CONTROL` (`SOC2:CC7.1`,
`ISO27001:A.8.13`, `SOX-ITGC:OPS`), so report.html and the period report can roll
results up by control. A record's controls are, most specific first:

1. an item's own `controls:` (attestations declare theirs);
2. a profile `controls:` key that is a glob over check ids (`"http.health[reporting]": [...]`),
   first match in profile order;
3. the profile's or the catalogue's `kind.aspect` entry (`postgres.replication_lag`), else its
   `kind` entry (`postgres`); a profile key replaces the catalogue's key of the same name.

A `post_deploy` check in a run that names the change it validated (`--change`, a commit
or an image digest) is also evidence for change management (SOX ITGC change management,
SOC 2 CC8.1, ISO 27001 A.8.32)::

    controls:                          # in a profile: replaces the catalogue's entry
      http: [SOC2:CC7.1, SOX-ITGC:OPS]
      "backups.*[legacy-*]": [INTERNAL:BR-2]
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Annotated

from pydantic import AfterValidator, Field

from opsproof.model.fields import glob_to_regex

FRAMEWORKS: dict[str, str] = {
    "SOX-ITGC": "SOX IT general controls (computer operations, change management)",
    "SOC2": "SOC 2 Trust Services Criteria (2017, points of focus revised 2022)",
    "ISO27001": "ISO/IEC 27001:2022 Annex A",
}
# What users type after --framework / --type.
FRAMEWORK_ALIASES: dict[str, str] = {
    "sox": "SOX-ITGC",
    "sox-itgc": "SOX-ITGC",
    "itgc": "SOX-ITGC",
    "soc2": "SOC2",
    "soc-2": "SOC2",
    "iso27001": "ISO27001",
    "iso-27001": "ISO27001",
    "iso": "ISO27001",
}

CONTROLS: dict[str, str] = {
    "SOX-ITGC:OPS": "Computer operations: scheduled jobs, monitoring, backup and recovery are performed and "
    "exceptions are resolved",
    "SOX-ITGC:CM": "Change management: changes are authorised, tested and validated after deployment",
    "SOC2:CC6.1": "Logical access security over protected information assets",
    "SOC2:CC6.7": "Transmission of information is restricted and protected (encryption in transit)",
    "SOC2:CC7.1": "Detection and monitoring procedures identify configuration changes and vulnerabilities",
    "SOC2:CC7.2": "System components are monitored for anomalies indicative of malicious acts, natural "
    "disasters and errors",
    "SOC2:CC7.3": "Security events are evaluated to determine whether they are incidents",
    "SOC2:CC7.4": "Security incidents are responded to by a defined incident-response program",
    "SOC2:CC7.5": "Recovery from identified security incidents",
    "SOC2:CC8.1": "Changes to infrastructure, data and software are authorised, tested and implemented",
    "SOC2:A1.1": "Processing capacity is monitored and managed to meet availability objectives",
    "SOC2:A1.2": "Environmental protections, software, data backup processes and recovery infrastructure",
    "SOC2:A1.3": "Recovery plan procedures are tested",
    "ISO27001:A.5.24": "Information security incident management planning and preparation",
    "ISO27001:A.5.30": "ICT readiness for business continuity",
    "ISO27001:A.5.37": "Documented operating procedures",
    "ISO27001:A.8.6": "Capacity management",
    "ISO27001:A.8.8": "Management of technical vulnerabilities",
    "ISO27001:A.8.13": "Information backup",
    "ISO27001:A.8.14": "Redundancy of information processing facilities",
    "ISO27001:A.8.15": "Logging",
    "ISO27001:A.8.16": "Monitoring activities",
    "ISO27001:A.8.17": "Clock synchronization",
    "ISO27001:A.8.19": "Installation of software on operational systems",
    "ISO27001:A.8.24": "Use of cryptography",
    "ISO27001:A.8.32": "Change management",
}

# A post-deploy check of a run that names its change is evidence for that change.
CHANGE_CONTROLS: tuple[str, ...] = ("SOX-ITGC:CM", "SOC2:CC8.1", "ISO27001:A.8.32")

_CONTROL_ID = re.compile(r"[A-Za-z][A-Za-z0-9-]*:[A-Za-z0-9][A-Za-z0-9._-]*")
_KIND_KEY = re.compile(r"[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)?")


def is_control_id(value: object) -> bool:
    """`FRAMEWORK:CONTROL`, e.g. SOC2:CC7.1 or ISO27001:A.8.13."""
    return isinstance(value, str) and _CONTROL_ID.fullmatch(value) is not None


def _control_id(value: str) -> str:
    if not is_control_id(value):
        raise ValueError(
            f"invalid control id {value!r}: expected FRAMEWORK:CONTROL, e.g. SOC2:CC7.1 or ISO27001:A.8.13"
        )
    return value


def _control_key(value: str) -> str:
    if _KIND_KEY.fullmatch(value) or any(ch in value for ch in "*?["):
        return value
    raise ValueError(
        f"invalid controls key {value!r}: expected a kind (postgres), a kind.aspect (postgres.replication_lag) "
        "or a glob over check ids (http.health[reporting], backups.*)"
    )


ControlId = Annotated[str, AfterValidator(_control_id), Field(description="FRAMEWORK:CONTROL, e.g. SOC2:CC7.1")]
ControlKey = Annotated[str, AfterValidator(_control_key)]
# The profile's `controls:` section (wired into Profile as `controls: ControlsOverride`).
ControlsOverride = Annotated[
    dict[ControlKey, list[ControlId]],
    Field(
        description="control ids per kind, kind.aspect or check-id glob; replaces the catalogue's entry",
    ),
]


def framework_of(control: str) -> str:
    return control.split(":", 1)[0]


def resolve_framework(name: str, known: Sequence[str] = ()) -> str | None:
    """`soc2` -> `SOC2`; a framework seen in `known` control ids is accepted as written. None: unknown."""
    lowered = name.strip().lower()
    if lowered in FRAMEWORK_ALIASES:
        return FRAMEWORK_ALIASES[lowered]
    for framework in [*FRAMEWORKS, *(framework_of(c) for c in known)]:
        if framework.lower() == lowered:
            return framework
    return None


def control_sort_key(control: str) -> tuple[int, str, tuple[tuple[int, str], ...]]:
    """SOX, SOC 2, ISO 27001 in that order, then others; ids in natural order (A.8.6 before A.8.13)."""
    framework, _, rest = control.partition(":")
    order = list(FRAMEWORKS).index(framework) if framework in FRAMEWORKS else len(FRAMEWORKS)
    parts = tuple((int(p), "") if p.isdigit() else (-1, p) for p in re.split(r"[.:-]", rest))
    return order, framework, parts


def framework_name(framework: str) -> str:
    """`SOC2` -> `SOC2: SOC 2 Trust Services Criteria (...)`; a framework of the profile's own as it is."""
    return f"{framework}: {FRAMEWORKS[framework]}" if framework in FRAMEWORKS else framework


def control_title(control: str) -> str | None:
    return CONTROLS.get(control)



class ControlMap:
    """The catalogue with one profile's `controls:` applied; built once per run, asked once per record."""

    def __init__(
        self, catalogue: Mapping[str, Sequence[str]], overrides: Mapping[str, Sequence[str]] | None = None
    ) -> None:
        overrides = overrides or {}
        # Looked up, not copied: the run's catalogue reads a kind's declaration only when one of
        # its checks asks (`opsproof.targets.lazy_catalogue`).
        self._catalogue = catalogue
        self._overrides = {k: tuple(v) for k, v in overrides.items() if _KIND_KEY.fullmatch(k)}
        self._globs = [(glob_to_regex(k), tuple(v)) for k, v in overrides.items() if not _KIND_KEY.fullmatch(k)]
        self._by_aspect = lru_cache(maxsize=None)(self._lookup)

    def _entry(self, key: str) -> tuple[str, ...] | None:
        """The profile's entry for `kind` or `kind.aspect`, else the catalogue's; None: neither has one."""
        if key in self._overrides:
            return self._overrides[key]
        found = self._catalogue.get(key)
        return None if found is None else tuple(found)

    def _lookup(self, kind: str, aspect: str) -> tuple[str, ...]:
        found = self._entry(f"{kind}.{aspect}")
        if found is None:
            found = self._entry(kind)
        return found or ()

    def _matching_glob(self, check_id: str) -> tuple[str, ...]:
        for pattern, controls in self._globs:
            if pattern.fullmatch(check_id):
                return controls
        return ()

    def unknown_kinds(self, known: Sequence[str]) -> list[str]:
        """Keys of the table that name no kind in `known` (a typo in a profile's `controls:`)."""
        return sorted({k for k in self._overrides if k.split(".", 1)[0] not in known and k not in self._catalogue})

    def controls(
        self,
        kind: str,
        aspect: str,
        check_id: str,
        *,
        item_controls: Sequence[str] | None = None,
        validates_change: bool = False,
    ) -> list[str]:
        found = tuple(item_controls or ()) or self._matching_glob(check_id) or self._by_aspect(kind, aspect)
        if validates_change:
            found = found + tuple(c for c in CHANGE_CONTROLS if c not in found)
        return list(found)
