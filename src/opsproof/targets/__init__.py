"""Profile models of check targets, one module per kind, and the registry of kinds.

Each module `opsproof/targets/<kind>.py` holds the profile model of one item of its kind
and declares the kind with `KIND = Kind(...)` (see `opsproof.model.kind`). Everything
that lists kinds asks the registry: the profile's sections and JSON Schema, the controls
catalogue, the probes the gatherer runs, the markers of a kind's checks.

The registry is lazy. A kind's name is its module's name (`names()`, a listing of this
package, nothing imported); its declaration is imported when it is asked for (`kind(name)`).
A run imports the modules of the kinds its profile has, not all sixteen: each builds its
pydantic models on import, and all of them together cost a run ~0.1 s of start-up.
`kinds()` imports every one (the JSON Schema, the docs, the full catalogue).

Adding a kind is one module here (model + `KIND`), one probe module
(`opsproof/probes/<kind>.py` with `PROBE = ProbeKind(...)`) and one checks file
(`checks/<area>/test_<kind>.py`), with their tests and a page `docs/kinds/<kind>.md`.
A module here that is not a kind is named in `HELPERS`.
tests/core/test_kinds.py fails when a kind is registered somewhere but not everywhere.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterator, Mapping
from functools import cache

from opsproof.model.kind import Kind

__all__ = ["HELPERS", "Kind", "catalogue", "controls_for", "kind", "kinds", "lazy_catalogue", "names"]

# Modules of this package that declare no kind: models shared by several kinds' modules.
HELPERS = frozenset({"kubernetes_more", "valued"})


@cache
def names() -> tuple[str, ...]:
    """Every registered kind's name, sorted: the modules of this package, none imported."""
    found = (info.name for info in pkgutil.iter_modules(__path__))
    return tuple(sorted(name for name in found if not name.startswith("_") and name not in HELPERS))


@cache
def kind(name: str) -> Kind:
    """One kind by name, importing its module only; KeyError when no module declares it."""
    if name not in names():
        raise KeyError(name)
    declared = getattr(importlib.import_module(f"{__name__}.{name}"), "KIND", None)
    if not isinstance(declared, Kind):
        raise TypeError(f"opsproof/targets/{name}.py declares no KIND = Kind(...) (a helper module belongs in HELPERS)")
    if declared.name != name:
        raise ValueError(f"opsproof/targets/{name}.py declares kind {declared.name!r}")
    return declared


@cache
def kinds() -> dict[str, Kind]:
    """Every registered kind, by name (imports every kind's module)."""
    return {name: kind(name) for name in names()}


@cache
def catalogue() -> dict[str, tuple[str, ...]]:
    """The controls catalogue: every kind's `kind` and `kind.aspect` entries."""
    return {key: tuple(controls) for k in kinds().values() for key, controls in k.controls.items()}


class _LazyCatalogue(Mapping[str, tuple[str, ...]]):
    """The catalogue, reading a kind's entries from its declaration only when a key of that kind is asked for.

    An entry's key starts with its kind's name (`Kind` refuses any other), so a lookup
    imports one kind's module; listing the whole catalogue imports them all.
    """

    def __getitem__(self, key: str) -> tuple[str, ...]:
        name = key.split(".", 1)[0]
        if name not in names():
            raise KeyError(key)
        return tuple(kind(name).controls[key])

    def __iter__(self) -> Iterator[str]:
        return iter(catalogue())

    def __len__(self) -> int:
        return len(catalogue())


lazy_catalogue: Mapping[str, tuple[str, ...]] = _LazyCatalogue()


def controls_for(kind_name: str, aspect: str) -> list[str]:
    """The catalogue's controls of one check, without profile overrides."""
    table = lazy_catalogue
    return list(table.get(f"{kind_name}.{aspect}", table.get(kind_name, ())))
