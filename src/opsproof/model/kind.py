"""What a kind of check declares about itself, in one place: `KIND = Kind(...)` in opsproof/targets/<kind>.py.

The profile's sections and its JSON Schema, the controls catalogue, the probes the
gatherer runs and the markers of the kind's checks are all derived from these
declarations (see `opsproof.targets.kinds()`)::

    KIND = Kind(
        name="http",                            # the profile section and the prefix of check ids
        target=HttpTarget,                      # the profile model of one item
        probe="opsproof.probes.http",           # the module holding `PROBE = ProbeKind(...)`
        checks="checks/health/test_http.py",    # the checks file
        cadence="daily",                        # unless an item sets `cadence:`
        areas=("health",),                      # the area markers of its checks
        post_deploy=True,                       # in `-m post_deploy` unless an item says otherwise
        aspect_keys={},                         # checks judging a key of another name (replication_lag)
        controls={"http": ("SOC2:CC7.1", ...)}, # the catalogue: `kind` and `kind.aspect` entries
    )
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from opsproof.model.markers import AREA_MARKERS, CADENCE_MARKERS

_NAME = re.compile(r"[a-z][a-z0-9_]*")


@dataclass(frozen=True)
class Kind:
    """One kind of check target: its profile model, probe, checks file, defaults and controls."""

    name: str
    target: type[Any]
    probe: str
    checks: str
    cadence: str
    areas: tuple[str, ...]
    controls: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    # Whether an item's checks are in `-m post_deploy` unless it says `post_deploy:` itself.
    post_deploy: bool = False
    # A check judging an item key of another name (`test_replication_lag` judges `replication:`):
    # that key's own `severity:`/`cadence:` are the check's. Checks named as their key need no entry.
    aspect_keys: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # A declaration that cannot work fails on import, naming the kind, not at the first run.
        problems = []
        if not _NAME.fullmatch(self.name):
            problems.append("its name is not a lower-case identifier")
        if self.cadence not in CADENCE_MARKERS:
            problems.append(f"cadence {self.cadence!r} is not one of {', '.join(CADENCE_MARKERS)}")
        problems += [f"area {a!r} is not one of {', '.join(AREA_MARKERS)}" for a in self.areas if a not in AREA_MARKERS]
        if not self.checks.endswith(f"/test_{self.name}.py"):
            problems.append(f"its checks file {self.checks!r} is not checks/<area>/test_{self.name}.py")
        if self.name not in self.controls:
            problems.append(f"its controls have no {self.name!r} entry")
        problems += [
            f"controls key {key!r} is not {self.name!r} or {self.name}.<aspect>"
            for key in self.controls
            if key != self.name and not key.startswith(self.name + ".")
        ]
        fields = getattr(self.target, "model_fields", {})
        problems += [
            f"aspect_keys maps {check!r} to {key!r}, which is not a key of its items"
            for check, key in self.aspect_keys.items()
            if key not in fields
        ]
        if problems:
            raise ValueError(f"kind {self.name!r}: " + "; ".join(problems))
