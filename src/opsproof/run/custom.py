"""Checks of one's own: a pytest test in `checks/` that is not parametrized over a kind's items.

Such a check takes the `check` fixture (the same `Check` a kind's checks fill) and says its
severity, controls and target with the `opsproof` marker (docs/custom-checks.md)::

    @pytest.mark.daily
    @pytest.mark.opsproof(severity="critical", controls=["SOC2:CC8.1"], target="app-db")
    def test_migration_head(check: Check, profile: Profile) -> None: ...

Its check id is `<file>.<function>[<target>]`: `checks/release/test_migrations.py::test_migration_head`
is `migrations.migration_head[app-db]`; a parametrized one takes its parameter id as the target.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import pytest

from opsproof.model.controls import is_control_id
from opsproof.model.fields import NAME_PATTERN, SEVERITIES
from opsproof.model.shards import Shard

MARKER = "opsproof"
MARKER_HELP = (
    "opsproof(severity=..., controls=[...], target=..., zone=...): the severity (default high), compliance "
    "controls, target and network zone of a check of your own (docs/custom-checks.md)"
)
DEFAULT_SEVERITY = "high"
_KEYS = ("severity", "controls", "target", "zone")
_TARGET = re.compile(NAME_PATTERN)


@dataclass(frozen=True)
class Declared:
    """What a check of one's own says about itself in its `opsproof` marker."""

    severity: str = DEFAULT_SEVERITY
    controls: tuple[str, ...] = ()
    target: str | None = None
    zone: str | None = None  # the `--zone` runner that runs it (a check that must run inside a network zone)


def declared(item: pytest.Item) -> Declared:
    """The check's `opsproof` marker, validated; a mistake is a usage error naming the check (exit 4)."""
    marker = item.get_closest_marker(MARKER)
    if marker is None:
        return Declared()
    where = f"{item.nodeid}: @pytest.mark.{MARKER}(...)"
    if marker.args:
        raise pytest.UsageError(f"{where} takes keywords only ({', '.join(_KEYS)}), not {marker.args!r}")
    unknown = sorted(set(marker.kwargs) - set(_KEYS))
    if unknown:
        raise pytest.UsageError(f"{where}: unknown keyword {unknown[0]!r}; use {', '.join(_KEYS)}")
    severity = marker.kwargs.get("severity", DEFAULT_SEVERITY)
    if severity not in SEVERITIES:
        raise pytest.UsageError(f"{where}: severity {severity!r} is not one of {', '.join(SEVERITIES)}")
    controls = marker.kwargs.get("controls", ())
    if isinstance(controls, str) or not isinstance(controls, list | tuple):
        raise pytest.UsageError(f"{where}: controls must be a list of control ids such as ['SOC2:CC7.1']")
    for control in controls:
        if not is_control_id(control):
            raise pytest.UsageError(
                f"{where}: invalid control id {control!r}: expected FRAMEWORK:CONTROL, e.g. SOC2:CC7.1"
            )
    target = marker.kwargs.get("target")
    if target is not None and (not isinstance(target, str) or not _TARGET.match(target)):
        raise pytest.UsageError(f"{where}: target {target!r} must be a name (letters, digits and _ . : -)")
    zone = marker.kwargs.get("zone")
    if zone is not None and (not isinstance(zone, str) or not _TARGET.match(zone)):
        raise pytest.UsageError(f"{where}: zone {zone!r} must be a name (letters, digits and _ . : -), as in --zone")
    return Declared(severity=severity, controls=tuple(controls), target=target, zone=zone)


def identity(item: pytest.Item) -> tuple[str, str, str | None, str]:
    """(check id, kind, target, severity) of a check of one's own: `<file>.<function>[<target>]`."""
    own = declared(item)
    kind = item.path.stem.removeprefix("test_")
    aspect = getattr(item, "originalname", item.name).removeprefix("test_")
    callspec = getattr(item, "callspec", None)
    target = own.target or (callspec.id if callspec is not None else None)
    return f"{kind}.{aspect}" + (f"[{target}]" if target else ""), kind, target, own.severity


def refuse_on_kind_checks(item: pytest.Item) -> None:
    """A kind's checks take their severity from the profile; the marker there would be silently ignored."""
    if item.get_closest_marker(MARKER) is not None:
        raise pytest.UsageError(
            f"{item.nodeid}: @pytest.mark.{MARKER}(...) is for checks of your own; a kind's checks take their "
            "severity from the profile (`severity:`) and their controls from its `controls:`"
        )


def controls_of(item: pytest.Item) -> list[str] | None:
    """The controls the marker names (None: none named, the profile's `controls:` globs may give some)."""
    return list(declared(item).controls) or None


def runs_in(item: pytest.Item, shard: Shard | None, only: frozenset[tuple[str, str]] | None) -> bool:
    """Whether this runner runs a check of one's own: with --shard, the one shard its check id hashes to.

    It has no profile item to shard by, and every shard running it would put it in a sealed run as
    many times. A --zone run owns its zone's items and the checks whose marker names that zone
    (`zone="vpc-data"`), shared among the zone's shards the same way; a zone-less partition owns
    every check, zoned or not, as it owns every item. Seal-run's collection of what a silent shard
    owed (`only`) names items, so it runs none.
    """
    if only is not None:
        return False
    if shard is None:
        return True
    check_id, kind, _, _ = identity(item)
    return shard.owns(kind, check_id, declared(item).zone)
