"""Profile models of check targets, one module per kind, and the registry of kinds.

Each module `opsproof/targets/<kind>.py` holds the profile model of one item of its kind
and declares the kind with `KIND = Kind(...)` (see `opsproof.model.kind`). Everything
that lists kinds asks `kinds()`: the profile's sections and JSON Schema, the controls
catalogue, the probes the gatherer runs, the markers of a kind's checks.

Adding a kind is one module here (model + `KIND`), one probe module
(`opsproof/probes/<kind>.py` with `PROBE = ProbeKind(...)`) and one checks file
(`checks/<area>/test_<kind>.py`), with their tests and a page `docs/kinds/<kind>.md`.
tests/core/test_kinds.py fails when a kind is registered somewhere but not everywhere.
"""

from __future__ import annotations

import importlib
import pkgutil
from functools import cache

from opsproof.model.kind import Kind

__all__ = ["Kind", "catalogue", "controls_for", "kind", "kinds"]

@cache
def kinds() -> dict[str, Kind]:
    """Every registered kind, by name: the `KIND` of each module of this package."""
    found: list[Kind] = []
    for module_info in pkgutil.iter_modules(__path__):
        declared = getattr(importlib.import_module(f"{__name__}.{module_info.name}"), "KIND", None)
        if isinstance(declared, Kind):
            if declared.name != module_info.name:
                raise ValueError(f"opsproof/targets/{module_info.name}.py declares kind {declared.name!r}")
            found.append(declared)
    return {k.name: k for k in sorted(found, key=lambda k: k.name)}


def kind(name: str) -> Kind:
    """One kind by name; KeyError when no module declares it."""
    return kinds()[name]


@cache
def catalogue() -> dict[str, tuple[str, ...]]:
    """The controls catalogue: every kind's `kind` and `kind.aspect` entries."""
    return {key: tuple(controls) for k in kinds().values() for key, controls in k.controls.items()}


def controls_for(kind_name: str, aspect: str) -> list[str]:
    """The catalogue's controls of one check, without profile overrides."""
    table = catalogue()
    return list(table.get(f"{kind_name}.{aspect}", table.get(kind_name, ())))
